"""Tests for centernet.evaluation.metrics: COCO metrics (pycocotools) and VOC AP50.

Expected values come from hand computation (worked out in comments) or from pycocotools run
directly on JSON files, never from the code under test run a second time.
"""

import contextlib
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from centernet.evaluation.coco_format import GroundTruthImage, coco_ground_truth, detections_to_coco
from centernet.evaluation.metrics import (
    COCO_STAT_NAMES,
    CocoEvaluator,
    coco_metrics,
    format_metrics_table,
)
from centernet.evaluation.voc_metrics import voc_ap50

EXACT = 1e-9


def _image(image_id, boxes, labels, is_crowd=None, size=(100, 100)):
    return GroundTruthImage(
        image_id=image_id, height=size[0], width=size[1],
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        is_crowd=None if is_crowd is None else np.asarray(is_crowd, dtype=bool),
    )


def _detection(image_id, xyxy, score, category_id=0):
    x1, y1, x2, y2 = xyxy
    return {"image_id": image_id, "category_id": category_id,
            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


def _single_box_metrics(detection_xyxy):
    """COCO metrics for one GT box [0, 0, 10, 10] and one detection."""
    ground_truth = coco_ground_truth([_image(1, [[0, 0, 10, 10]], [0])], ["box"])
    return coco_metrics(ground_truth, [_detection(1, detection_xyxy, 0.9)])


# ------------------------------------------------------------------------------------------
# COCO metrics: hand-computed truth
# ------------------------------------------------------------------------------------------


def test_perfect_detections_score_one():
    images = [
        _image(1, [[10, 10, 50, 60], [60, 5, 95, 40]], [0, 1]),
        _image(2, [[0, 0, 99, 99], [20, 30, 40, 45], [50, 50, 70, 90]], [2, 0, 1]),
    ]
    ground_truth = coco_ground_truth(images, ["a", "b", "c"])
    detections = [
        _detection(image.image_id, box.tolist(), 1.0, int(label))
        for image in images for box, label in zip(image.boxes, image.labels)
    ]
    metrics = coco_metrics(ground_truth, detections)
    for key in ("AP", "AP50", "AP75", "AR100", "AP50/a", "AP50/b", "AP50/c"):
        assert metrics[key] == pytest.approx(1.0, abs=EXACT), key
    for use_07_metric in (True, False):
        voc = voc_ap50(ground_truth, detections, use_07_metric)
        assert voc["mAP"] == pytest.approx(1.0, abs=EXACT)
        assert voc["AP/a"] == voc["AP/b"] == voc["AP/c"] == 1.0


def test_shift_of_two_pixels_misses_iou_one_half():
    # GT [0,0,10,10], detection [2,2,12,12]: intersection 8*8 = 64,
    # union 100 + 100 - 64 = 136, IoU = 64/136 = 0.4706 < 0.5: no match at any threshold.
    assert 64 / 136 < 0.5
    metrics = _single_box_metrics([2, 2, 12, 12])
    assert metrics["AP50"] == 0.0
    assert metrics["AP"] == 0.0


def test_shift_of_one_pixel_passes_four_of_ten_thresholds():
    # GT [0,0,10,10], detection [1,1,11,11]: intersection 9*9 = 81,
    # union 100 + 100 - 81 = 119, IoU = 81/119 = 0.6807.
    # It passes the thresholds 0.50, 0.55, 0.60, 0.65 (precision 1 at every recall) and fails
    # 0.70 ... 0.95 (precision 0): AP = 4/10 = 0.4, AP50 = 1, AP75 = 0.
    # The box area is 100 px² < 32²: "small"; medium and large have no GT -> NaN.
    iou = 81 / 119
    assert 0.65 <= iou < 0.70
    metrics = _single_box_metrics([1, 1, 11, 11])
    assert metrics["AP50"] == pytest.approx(1.0, abs=EXACT)
    assert metrics["AP75"] == 0.0
    assert metrics["AP"] == pytest.approx(0.4, abs=EXACT)
    assert metrics["APs"] == pytest.approx(0.4, abs=EXACT)
    assert metrics["AR100"] == pytest.approx(0.4, abs=EXACT)
    assert math.isnan(metrics["APm"]) and math.isnan(metrics["APl"])
    assert math.isnan(metrics["ARm"]) and math.isnan(metrics["ARl"])


def test_crowd_regions_are_ignored():
    images = [_image(1, [[0, 0, 20, 20], [50, 50, 90, 90], [30, 0, 45, 15]], [0, 0, 0],
                     is_crowd=[False, True, False])]
    ground_truth = coco_ground_truth(images, ["a"])
    assert [a["iscrowd"] for a in ground_truth["annotations"]] == [0, 1, 0]
    hits = [_detection(1, [0, 0, 20, 20], 0.9), _detection(1, [30, 0, 45, 15], 0.8)]
    on_crowd = _detection(1, [50, 50, 90, 90], 0.95)  # highest score, on the crowd box

    # The undetected crowd box does not lower recall ...
    assert coco_metrics(ground_truth, hits)["AR100"] == pytest.approx(1.0, abs=EXACT)
    # ... and a detection on it is not a false positive.
    for detections in (hits, [on_crowd, *hits]):
        metrics = coco_metrics(ground_truth, detections)
        assert metrics["AP"] == pytest.approx(1.0, abs=EXACT)
        assert metrics["AR100"] == pytest.approx(1.0, abs=EXACT)
        for use_07_metric in (True, False):
            assert voc_ap50(ground_truth, detections, use_07_metric)["mAP"] == 1.0


def test_empty_detections_give_zeros():
    images = [_image(1, [[0, 0, 20, 20], [0, 0, 99, 99]], [0, 1]), _image(2, [], [])]
    ground_truth = coco_ground_truth(images, ["a", "b", "c"])
    metrics = coco_metrics(ground_truth, [])
    # Small (20² < 32²) and large (99² > 96²) GT exist, medium does not.
    for key in ("AP", "AP50", "AP75", "APs", "APl", "AR1", "AR10", "AR100", "ARs", "ARl"):
        assert metrics[key] == 0.0, key
    assert math.isnan(metrics["APm"]) and math.isnan(metrics["ARm"])
    assert metrics["AP50/a"] == metrics["AP50/b"] == 0.0
    assert math.isnan(metrics["AP50/c"])  # no ground truth for class c
    for use_07_metric in (True, False):
        assert voc_ap50(ground_truth, [], use_07_metric) == {
            "mAP": 0.0, "AP/a": 0.0, "AP/b": 0.0, "AP/c": pytest.approx(math.nan, nan_ok=True)
        }


# ------------------------------------------------------------------------------------------
# COCO metrics: pycocotools on files
# ------------------------------------------------------------------------------------------


def _random_scene(rng, num_images=6, num_classes=3):
    """Random images, boxes of every size class, and detections: every found box shifted by
    (+3, -2) px with a random score, some boxes missed, some class swaps, some false positives."""
    images, batch_boxes, batch_scores, batch_classes = [], [], [], []
    for image_id in range(10, 10 + num_images):
        n = rng.integers(3, 9)
        sizes = rng.choice([12.0, 50.0, 150.0], size=(n, 1)) * rng.uniform(0.7, 1.3, size=(n, 2))
        corners = rng.uniform(0, 400, size=(n, 2))
        boxes = np.concatenate([corners, corners + sizes], axis=1)
        labels = np.arange(n) % num_classes  # every class has ground truth
        is_crowd = rng.random(n) < 0.1
        images.append(_image(image_id, boxes, labels, is_crowd, size=(600, 600)))

        found = rng.random(n) < 0.8
        det_boxes = boxes[found] + np.array([3.0, -2.0, 3.0, -2.0])
        det_classes = np.where(rng.random(found.sum()) < 0.1, (labels[found] + 1) % num_classes,
                               labels[found])
        false_corners = rng.uniform(0, 500, size=(4, 2))
        false_boxes = np.concatenate([false_corners, false_corners + rng.uniform(5, 100, (4, 2))], 1)
        k_boxes = np.concatenate([det_boxes, false_boxes])[:10]
        k_classes = np.concatenate([det_classes, rng.integers(0, num_classes, 4)])[:10]
        pad = 10 - len(k_boxes)
        batch_boxes.append(np.pad(k_boxes, ((0, pad), (0, 0))))
        batch_classes.append(np.pad(k_classes, (0, pad)))
        batch_scores.append(np.pad(rng.uniform(0.05, 1.0, len(k_boxes)), (0, pad),
                                   constant_values=-1.0))  # padding below the threshold
    image_ids = np.array([image.image_id for image in images])
    batch = (image_ids, np.stack(batch_boxes), np.stack(batch_scores), np.stack(batch_classes))
    return images, batch


def _pycocotools_stats(gt_file, det_file):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_file))
        evaluation = COCOeval(coco_gt, coco_gt.loadRes(str(det_file)), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def test_matches_pycocotools_on_files(tmp_path):
    rng = np.random.default_rng(0)
    category_ids = [1, 3, 7]
    images, batch = _random_scene(rng)
    ground_truth = coco_ground_truth(images, ["cat", "dog", "cow"], category_ids)
    detections = detections_to_coco(*batch, category_ids=category_ids)
    gt_file, det_file = tmp_path / "gt.json", tmp_path / "det.json"
    gt_file.write_text(json.dumps(ground_truth))
    det_file.write_text(json.dumps(detections))

    expected = _pycocotools_stats(gt_file, det_file)
    metrics = coco_metrics(ground_truth, detections)
    assert 0.1 < metrics["AP50"] < 0.99  # a non-trivial case
    for name, value in zip(COCO_STAT_NAMES, expected):
        if value == -1:
            assert math.isnan(metrics[name]), name
        else:
            assert metrics[name] == pytest.approx(value, abs=1e-12), name
    # Every class has ground truth, so AP50 is the mean of the per-class AP50s.
    per_class = [metrics[f"AP50/{name}"] for name in ("cat", "dog", "cow")]
    assert np.mean(per_class) == pytest.approx(metrics["AP50"], abs=1e-12)


def test_inputs_are_not_modified():
    images, batch = _random_scene(np.random.default_rng(1), num_images=2)
    ground_truth = coco_ground_truth(images, ["a", "b", "c"])
    detections = detections_to_coco(*batch)
    before = json.dumps([ground_truth, detections])
    coco_metrics(ground_truth, detections)
    voc_ap50(ground_truth, detections, use_07_metric=True)
    assert json.dumps([ground_truth, detections]) == before


# ------------------------------------------------------------------------------------------
# Ids, thresholds, conversion
# ------------------------------------------------------------------------------------------


def test_detections_to_coco_maps_ids_and_types():
    boxes = np.array([[[1, 2, 11, 22], [5, 5, 6, 9], [0, 0, 4, 4]]], dtype=np.float32)
    scores = np.array([[0.9, 0.3, 0.2]], dtype=np.float32)
    classes = np.array([[2, 0, 1]], dtype=np.int32)
    detections = detections_to_coco(np.array([42], dtype=np.int64), boxes, scores, classes,
                                    category_ids=[1, 3, 7], score_threshold=0.25)
    assert detections == [
        {"image_id": 42, "category_id": 7, "bbox": [1.0, 2.0, 10.0, 20.0],
         "score": float(np.float32(0.9))},
        {"image_id": 42, "category_id": 1, "bbox": [5.0, 5.0, 1.0, 4.0],
         "score": float(np.float32(0.3))},
    ]
    first = detections[0]
    assert type(first["image_id"]) is int and type(first["category_id"]) is int
    assert all(type(v) is float for v in first["bbox"]) and type(first["score"]) is float
    json.dumps(detections)  # plain Python numbers


def test_score_threshold_keeps_equal_scores_and_drops_non_finite():
    boxes = np.tile(np.array([0.0, 0.0, 10.0, 10.0]), (1, 6, 1))
    scores = np.array([[0.5, 0.25, 0.2499, np.nan, np.inf, -np.inf]])
    classes = np.zeros((1, 6), dtype=np.int64)
    kept = detections_to_coco([3], boxes, scores, classes, score_threshold=0.25)
    assert [d["score"] for d in kept] == [0.5, 0.25]
    assert len(detections_to_coco([3], boxes, scores, classes)) == 3  # default 0.0


def test_zero_width_kept_inverted_clamped():
    boxes = np.array([[[5.0, 5.0, 5.0, 9.0], [8.0, 1.0, 6.0, 4.0]]])
    detections = detections_to_coco([1], boxes, [[0.5, 0.4]], [[0, 0]])
    assert [d["bbox"] for d in detections] == [[5.0, 5.0, 0.0, 4.0], [8.0, 1.0, 0.0, 3.0]]


def test_original_category_ids_in_output_and_keys():
    images = [_image(1, [[0, 0, 30, 30], [40, 40, 90, 90]], [0, 2])]
    ground_truth = coco_ground_truth(images, ["cat", "dog", "cow"], category_ids=[1, 3, 7])
    assert ground_truth["categories"] == [
        {"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "cow"}]
    assert [a["category_id"] for a in ground_truth["annotations"]] == [1, 7]
    assert [a["id"] for a in ground_truth["annotations"]] == [1, 2]
    assert ground_truth["annotations"][1]["bbox"] == [40.0, 40.0, 50.0, 50.0]
    assert ground_truth["annotations"][1]["area"] == 2500.0

    evaluator = CocoEvaluator(ground_truth, voc_metrics=True)  # ids from the categories
    evaluator.process([1], [[[0, 0, 30, 30], [40, 40, 90, 90]]], [[0.9, 0.8]], [[0, 2]])
    assert [d["category_id"] for d in evaluator.detections] == [1, 7]
    metrics = evaluator.evaluate()
    assert metrics["AP50/cat"] == pytest.approx(1.0, abs=EXACT)
    assert metrics["AP50/cow"] == pytest.approx(1.0, abs=EXACT)
    assert math.isnan(metrics["AP50/dog"])
    assert metrics["VOC07_AP50"] == metrics["VOC_AP50"] == 1.0
    assert voc_ap50(ground_truth, evaluator.detections, False)["AP/cow"] == 1.0


def test_contiguous_ids_against_original_ground_truth_raise():
    ground_truth = coco_ground_truth([_image(1, [[0, 0, 9, 9]], [0])], ["a"], category_ids=[5])
    with pytest.raises(ValueError, match=r"category_id.*\[0\]"):
        coco_metrics(ground_truth, [_detection(1, [0, 0, 9, 9], 0.5, category_id=0)])
    with pytest.raises(ValueError, match=r"image_id.*\[2\]"):
        voc_ap50(ground_truth, [_detection(2, [0, 0, 9, 9], 0.5, category_id=5)], True)


# ------------------------------------------------------------------------------------------
# VOC
# ------------------------------------------------------------------------------------------


def test_voc_11_point_and_area_ap_by_hand():
    # 3 GT boxes; detections in score order: TP, FP, TP (the third GT is never found).
    #   cumulative TP = 1, 1, 2   FP = 0, 1, 1
    #   recall    = 1/3, 1/3, 2/3
    #   precision = 1,   1/2, 2/3
    # 11-point: t = 0, .1, .2, .3 -> max precision at recall >= t is 1      (4 points)
    #           t = .4, .5, .6    -> only recall 2/3 qualifies: 2/3          (3 points)
    #           t = .7 ... 1      -> recall never reaches t: 0               (4 points)
    #   AP07 = (4 * 1 + 3 * 2/3) / 11 = 6/11
    # Area: the envelope is 1 up to recall 1/3, then 2/3 up to recall 2/3, then 0:
    #   AP = 1/3 * 1 + (2/3 - 1/3) * 2/3 = 1/3 + 2/9 = 5/9
    gt_boxes = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
    ground_truth = coco_ground_truth([_image(1, gt_boxes, [0, 0, 0])], ["a"])
    detections = [
        _detection(1, [0, 0, 10, 10], 0.9),    # TP
        _detection(1, [70, 70, 80, 80], 0.8),  # FP: overlaps nothing
        _detection(1, [20, 20, 30, 30], 0.7),  # TP
    ]
    assert voc_ap50(ground_truth, detections, True)["mAP"] == pytest.approx(6 / 11, abs=1e-12)
    assert voc_ap50(ground_truth, detections, False)["mAP"] == pytest.approx(5 / 9, abs=1e-12)


def test_voc_duplicate_is_false_positive_and_iou_is_continuous():
    # GT [0,0,10,10]. A detection [0,0,10,20]: IoU 100/200 = 0.5 exactly (no +1 pixel widths;
    # with +1 it would be 121/231 = 0.524), which passes the devkit's >= 0.5.
    # A second, lower-scored exact detection of the same box is a duplicate: FP.
    #   TP, FP -> recall 1, 1; precision 1, 1/2 -> both APs 1 (the FP comes after full recall).
    # A detection at IoU 0.5 - e is an FP: [0,0,10,20.5] -> 100/205.
    ground_truth = coco_ground_truth([_image(1, [[0, 0, 10, 10]], [0])], ["a"])
    half = [_detection(1, [0, 0, 10, 20], 0.9), _detection(1, [0, 0, 10, 10], 0.8)]
    assert voc_ap50(ground_truth, half, True)["mAP"] == 1.0
    assert voc_ap50(ground_truth, half, False)["mAP"] == 1.0
    below = [_detection(1, [0, 0, 10, 20.5], 0.9)]
    assert voc_ap50(ground_truth, below, False)["mAP"] == 0.0


def test_voc_class_without_ground_truth_is_nan_and_excluded():
    ground_truth = coco_ground_truth([_image(1, [[0, 0, 10, 10]], [0])], ["a", "b"])
    detections = [_detection(1, [0, 0, 10, 10], 0.9), _detection(1, [50, 50, 60, 60], 0.9, 1)]
    result = voc_ap50(ground_truth, detections, False)
    assert result["AP/a"] == 1.0 and math.isnan(result["AP/b"]) and result["mAP"] == 1.0


# ------------------------------------------------------------------------------------------
# Evaluator
# ------------------------------------------------------------------------------------------


def test_evaluator_batches_subset_and_reset():
    images = [_image(1, [[0, 0, 10, 10]], [0]), _image(2, [[0, 0, 40, 40]], [0]),
              _image(3, [[5, 5, 50, 50]], [0])]
    ground_truth = coco_ground_truth(images, ["a"])
    evaluator = CocoEvaluator(ground_truth, voc_metrics=True, score_threshold=0.1)
    # Image 1 found exactly, image 2 missed (only a low score below the threshold).
    evaluator.process([1, 2], [[[0, 0, 10, 10]], [[0, 0, 40, 40]]], [[0.9], [0.05]], [[0], [0]])
    assert len(evaluator.detections) == 1
    # Image 3 not processed: it is not part of the evaluation. Recall 1/2 at precision 1.
    metrics = evaluator.evaluate()
    assert metrics["AR100"] == pytest.approx(0.5, abs=EXACT)
    # COCO: precision 1 for the 51 recall thresholds 0..0.5, 0 above: AP50 = 51/101.
    assert metrics["AP50"] == pytest.approx(51 / 101, abs=EXACT)
    # VOC07: thresholds 0 .. 0.5 (6 of 11) reach precision 1: 6/11. Area: 1/2.
    assert metrics["VOC07_AP50"] == pytest.approx(6 / 11, abs=1e-12)
    assert metrics["VOC_AP50"] == pytest.approx(0.5, abs=1e-12)

    evaluator.process([3], [[[5, 5, 50, 50]]], [[0.7]], [[0]])
    assert evaluator.evaluate()["AR100"] == pytest.approx(2 / 3, abs=EXACT)
    with pytest.raises(ValueError, match="more than once"):
        evaluator.process([3], [[[5, 5, 50, 50]]], [[0.7]], [[0]])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluator.process([99], [[[5, 5, 50, 50]]], [[0.7]], [[0]])

    evaluator.reset()
    assert evaluator.detections == []
    with pytest.raises(RuntimeError, match="no image processed"):
        evaluator.evaluate()


# ------------------------------------------------------------------------------------------
# Bad input, report, import cost
# ------------------------------------------------------------------------------------------


def test_label_outside_range_names_image_and_label():
    images = [_image(1, [[0, 0, 5, 5]], [0]), _image(42, [[0, 0, 5, 5], [1, 1, 2, 2]], [1, 3])]
    with pytest.raises(ValueError, match=r"image 42: label 3 is outside 0\.\.2"):
        coco_ground_truth(images, ["a", "b", "c"])


@pytest.mark.parametrize("box", [[5, 0, 4, 5], [0, 5, 5, 4], [0, 0, np.nan, 5], [0, 0, np.inf, 5]])
def test_bad_box_names_image(box):
    with pytest.raises(ValueError, match=r"image 7: box"):
        coco_ground_truth([_image(7, [box], [0])], ["a"])


def test_format_metrics_table():
    images = [_image(1, [[0, 0, 10, 10], [0, 0, 99, 99]], [0, 1])]  # small and large
    ground_truth = coco_ground_truth(images, ["person", "traffic light"])
    evaluator = CocoEvaluator(ground_truth, voc_metrics=True)
    evaluator.process([1], [[[0, 0, 10, 10]]], [[0.9]], [[0]])
    table = format_metrics_table(evaluator.evaluate())
    lines = table.splitlines()
    assert any(line.split() == ["AP50", "50.0"] for line in lines)
    assert any(line.split() == ["AP50/person", "100.0"] for line in lines)
    assert any(line.split() == ["AP50/traffic", "light", "0.0"] for line in lines)
    assert any(line.split() == ["APm", "-"] for line in lines)  # no medium GT: NaN
    assert any(line.startswith("VOC07_AP50") for line in lines)
    assert len({len(line.rstrip()) for line in lines}) == 1  # fixed width


def test_import_does_not_load_tensorflow():
    code = "import sys, centernet.evaluation.metrics; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
