"""Users' own annotated folders (`dataset=voc_xml`, `dataset=coco_json`) read into the common
example format, checked against hand-computed boxes and the decoded pixels of drawn boxes, the
real BCCD dataset, and COCO evaluation against pycocotools on the original file."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from centernet.config import DatasetConfig
from centernet.data.sources import build_source
from centernet.errors import DataError
from conftest import SHARED_DATASETS, run_script
from folders import (BACKGROUND, BLUE, GREEN, RED, WHITE, YELLOW, assert_pixels,
                           assert_ring, examples, parse_voc_independently, snapshot, voc_object,
                           write_coco, write_image, write_voc)

BCCD = SHARED_DATASETS / "bccd"
ATOL = 1e-3  # boxes travel as normalised float32: exact up to float32 rounding


def voc_config(root, **kwargs) -> DatasetConfig:
    return DatasetConfig(**{"source": "voc_xml", "root": str(root), "train_split": "train",
                            "val_split": "val", **kwargs})


def coco_config(root, **kwargs) -> DatasetConfig:
    return DatasetConfig(**{"source": "coco_json", "root": str(root) if root else None,
                            "train_split": "train", "val_split": "val", **kwargs})


# ------------------------------------------------------------------------------------------
# Pascal VOC, ImageSets layout
# ------------------------------------------------------------------------------------------


def _imagesets_folder(root: Path) -> None:
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("img_b\nimg_a\n")  # not sorted: ids are listing positions
    (main / "val.txt").write_text("img_c\n")
    # img_b: cat 11..30 x 6..25 (1-based inclusive) = [10, 30) x [5, 25); difficult dog.
    write_image(root / "JPEGImages" / "img_b.png", rects=[(10, 5, 30, 25, RED),
                                                         (34, 20, 60, 44, GREEN)])
    write_voc(root / "Annotations" / "img_b.xml", "img_b.png", (48, 64), [
        voc_object("cat", 11, 6, 30, 25), voc_object("dog", 35, 21, 60, 44, difficult=1)])
    # img_a: bird, and a dog touching the right and bottom edges.
    write_image(root / "JPEGImages" / "img_a.png", rects=[(1, 2, 17, 40, BLUE),
                                                         (40, 10, 64, 48, YELLOW)])
    write_voc(root / "Annotations" / "img_a.xml", "img_a.png", (48, 64), [
        voc_object("bird", 2, 3, 17, 40), voc_object("dog", 41, 11, 64, 48)])
    # val: a JPEG
    write_image(root / "JPEGImages" / "img_c.jpg", rects=[(20, 10, 44, 36, RED)])
    write_voc(root / "Annotations" / "img_c.xml", "img_c.jpg", (48, 64),
              [voc_object("cat", 21, 11, 44, 36)])


def test_voc_imagesets_layout(tmp_path):
    root = tmp_path / "voc"
    _imagesets_folder(root)
    before = snapshot(root)
    source = build_source(voc_config(root))
    assert source.class_names == ["bird", "cat", "dog"]  # sorted, from the training split
    assert source.category_ids == [0, 1, 2]
    assert source.num_examples("train") == 2 and source.num_examples("val") == 1

    train = examples(source, "train")
    assert [int(e["image_id"]) for e in train] == [0, 1]  # img_b, img_a: listing order
    img_b, img_a = train
    np.testing.assert_allclose(img_b["boxes"], [[10, 5, 30, 25], [34, 20, 60, 44]], atol=ATOL)
    np.testing.assert_array_equal(img_b["labels"], [1, 2])
    np.testing.assert_array_equal(img_b["is_crowd"], [False, True])  # difficult
    np.testing.assert_allclose(img_a["boxes"], [[1, 2, 17, 40], [40, 10, 64, 48]], atol=ATOL)
    np.testing.assert_array_equal(img_a["labels"], [0, 2])
    np.testing.assert_array_equal(img_a["is_crowd"], [False, False])
    for example, colours in ((img_b, (RED, GREEN)), (img_a, (BLUE, YELLOW))):
        assert example["image"].dtype == np.uint8 and example["image"].shape == (48, 64, 3)
        assert example["boxes"].dtype == np.float32 and example["labels"].dtype == np.int32
        assert example["is_crowd"].dtype == bool and example["image_id"].dtype == np.int64
        for box, colour in zip(example["boxes"], colours):
            assert_pixels(example["image"], box, colour)
            assert_ring(example["image"], box, BACKGROUND)

    (img_c,) = examples(source, "val")
    assert int(img_c["image_id"]) == 0
    np.testing.assert_allclose(img_c["boxes"], [[20, 10, 44, 36]], atol=ATOL)
    np.testing.assert_array_equal(img_c["labels"], [1])
    assert_pixels(img_c["image"], img_c["boxes"][0], RED, tolerance=32, margin=3)
    assert source.report.cases == []
    assert snapshot(root) == before


# ------------------------------------------------------------------------------------------
# Pascal VOC, one folder per split, mixed-case extensions
# ------------------------------------------------------------------------------------------


def test_voc_split_folders_with_mixed_case_extensions(tmp_path):
    root = tmp_path / "labelimg"
    train = root / "train"
    # (xml stem, <filename>, file on disk, drawn box [x1, y1, x2, y2), colour, class)
    entries = [
        ("a", "a.jpg", "a.JPG", (8, 6, 28, 30), RED, "cat"),
        ("b", "b.jpeg", "b.Jpeg", (30, 8, 58, 40), GREEN, "dog"),
        ("c", "c.png", "c.PNG", (3, 3, 21, 17), BLUE, "cat"),
        ("d", "d.jpg", "d.png", (11, 13, 40, 31), YELLOW, "dog"),   # extension differs
        ("e", "e.JPG", "e.jpg", (20, 4, 52, 44), WHITE, "cat"),     # case the other way round
        ("f", "photo_f.png", "photo_f.png", (5, 9, 33, 41), RED, "dog"),  # stem != xml's
    ]
    backgrounds = {}
    for index, (stem, filename, on_disk, (x1, y1, x2, y2), colour, name) in enumerate(entries):
        background = (10 * index, 90, 200 - 10 * index)
        backgrounds[stem] = background
        write_image(train / on_disk, rects=[(x1, y1, x2, y2, colour)], background=background)
        write_voc(train / f"{stem}.xml", filename, (48, 64),
                  [voc_object(name, x1 + 1, y1 + 1, x2, y2)])
    write_image(root / "val" / "v.Png", rects=[(10, 10, 20, 20, GREEN)])
    write_voc(root / "val" / "v.xml", "v.png", (48, 64), [voc_object("dog", 11, 11, 20, 20)])
    before = snapshot(root)

    source = build_source(voc_config(root))
    assert source.class_names == ["cat", "dog"]
    result = examples(source, "train")
    assert source.report.cases == []
    assert [int(e["image_id"]) for e in result] == list(range(len(entries)))  # sorted xml order
    for example, (stem, _, on_disk, box, colour, name) in zip(result, entries):
        np.testing.assert_allclose(example["boxes"], [box], atol=ATOL)
        np.testing.assert_array_equal(example["labels"], [["cat", "dog"].index(name)])
        jpeg = on_disk.lower().endswith((".jpg", ".jpeg"))
        # the image read is this file: its own background and rectangle
        corner = example["image"][0, 0].astype(int) if box[0] > 0 and box[1] > 0 else None
        if corner is not None:
            assert np.abs(corner - backgrounds[stem]).max() <= (32 if jpeg else 0), stem
        assert_pixels(example["image"], box, colour, tolerance=32 if jpeg else 0,
                      margin=3 if jpeg else 0)
        if not jpeg:
            assert_ring(example["image"], box, backgrounds[stem])
    (val,) = examples(source, "val")
    np.testing.assert_allclose(val["boxes"], [[10, 10, 20, 20]], atol=ATOL)
    assert_pixels(val["image"], val["boxes"][0], GREEN)
    assert snapshot(root) == before


def test_voc_classes_from_config_fix_order(tmp_path):
    root = tmp_path / "voc"
    write_image(root / "train" / "a.png", rects=[(10, 5, 30, 25, RED), (34, 20, 60, 44, GREEN)])
    write_voc(root / "train" / "a.xml", "a.png", (48, 64), [
        voc_object("cat", 11, 6, 30, 25), voc_object("dog", 35, 21, 60, 44)])
    source = build_source(voc_config(root, classes=["dog", "cat"]))
    assert source.class_names == ["dog", "cat"] and source.category_ids == [0, 1]
    (example,) = examples(source, "train")
    np.testing.assert_array_equal(example["labels"], [1, 0])
    np.testing.assert_allclose(example["boxes"], [[10, 5, 30, 25], [34, 20, 60, 44]], atol=ATOL)


def test_the_index_keeps_each_objects_own_number_and_file(tmp_path):
    """Objects the checks leave out (an unknown class, a box with no area) keep their places in
    the numbering, so the label audit can name an object as its file numbers it."""
    root = tmp_path / "voc"
    write_image(root / "train" / "a.png", rects=[(10, 5, 30, 25, RED), (34, 20, 60, 44, GREEN)])
    write_voc(root / "train" / "a.xml", "a.png", (48, 64), [
        voc_object("horse", 1, 1, 5, 5), voc_object("cat", 11, 6, 30, 25),
        voc_object("cat", 20, 20, 20, 30), voc_object("dog", 35, 21, 60, 44)])
    source = build_source(voc_config(root, classes=["dog", "cat"]))
    index = source.index("train")
    assert index.object_index.tolist() == [1, 3]
    assert index.labels.tolist() == [1, 0]
    assert index.annotations == [str(root / "train" / "a.xml")]


# ------------------------------------------------------------------------------------------
# COCO JSON
# ------------------------------------------------------------------------------------------

CATEGORIES = [{"id": 90, "name": "zebra"}, {"id": 3, "name": "car"}, {"id": 17, "name": "cat"}]


def _coco_split(annotation_file: Path, image_dir: Path) -> None:
    """Three images with file-own ids 101, 7, 55 (one in a sub-folder, one `.JPG` on disk for a
    `.jpg` name); categories 90, 3, 17 (file order not id order); one crowd box."""
    write_image(image_dir / "x1.png", rects=[(10, 5, 30, 25, RED), (41, 11, 52, 40, GREEN)])
    write_image(image_dir / "x2.JPG", rects=[(0, 0, 30, 48, BLUE), (32, 8, 56, 38, YELLOW)])
    write_image(image_dir / "sub" / "x3.png", height=60, width=80,
                rects=[(5, 6, 55, 42, GREEN)])
    images = [{"id": 101, "file_name": "x1.png", "height": 48, "width": 64},
              {"id": 7, "file_name": "x2.jpg", "height": 48, "width": 64},
              {"id": 55, "file_name": "sub/x3.png", "height": 60, "width": 80}]
    annotations = [
        {"image_id": 101, "category_id": 17, "bbox": [10, 5, 20, 20]},
        {"image_id": 101, "category_id": 90, "bbox": [40.5, 10.25, 12, 30.5]},
        {"image_id": 7, "category_id": 3, "bbox": [0, 0, 30, 48], "iscrowd": 1},
        {"image_id": 7, "category_id": 17, "bbox": [32, 8, 24, 30]},
        {"image_id": 55, "category_id": 90, "bbox": [5, 6, 50, 36]},
    ]
    write_coco(annotation_file, images, annotations, CATEGORIES)


def _check_coco_examples(source, split: str) -> None:
    assert source.class_names == ["car", "cat", "zebra"]  # id order
    assert source.category_ids == [3, 17, 90]
    result = examples(source, split)
    assert [int(e["image_id"]) for e in result] == [101, 7, 55]  # the file's own ids, file order
    x1, x2, x3 = result
    np.testing.assert_allclose(x1["boxes"], [[10, 5, 30, 25], [40.5, 10.25, 52.5, 40.75]],
                               atol=ATOL)
    np.testing.assert_array_equal(x1["labels"], [1, 2])
    np.testing.assert_array_equal(x1["is_crowd"], [False, False])
    assert_pixels(x1["image"], x1["boxes"][0], RED)
    assert_ring(x1["image"], x1["boxes"][0], BACKGROUND)
    assert_pixels(x1["image"], (41, 11, 52, 40), GREEN)
    np.testing.assert_allclose(x2["boxes"], [[0, 0, 30, 48], [32, 8, 56, 38]], atol=ATOL)
    np.testing.assert_array_equal(x2["labels"], [0, 1])
    np.testing.assert_array_equal(x2["is_crowd"], [True, False])
    assert_pixels(x2["image"], x2["boxes"][0], BLUE, tolerance=32, margin=3)
    assert_pixels(x2["image"], x2["boxes"][1], YELLOW, tolerance=32, margin=3)
    assert x3["image"].shape == (60, 80, 3)
    np.testing.assert_allclose(x3["boxes"], [[5, 6, 55, 42]], atol=ATOL)
    np.testing.assert_array_equal(x3["labels"], [2])
    assert_pixels(x3["image"], x3["boxes"][0], GREEN)
    assert_ring(x3["image"], x3["boxes"][0], BACKGROUND)
    assert source.report.cases == []


def test_coco_layout_noncontiguous_ids_and_crowd(tmp_path):
    root = tmp_path / "coco"
    _coco_split(root / "annotations" / "instances_train.json", root / "train")
    _coco_split(root / "annotations" / "instances_val.json", root / "val")
    before = snapshot(root)
    source = build_source(coco_config(root))
    assert source.num_examples("train") == 3
    _check_coco_examples(source, "train")
    _check_coco_examples(source, "val")
    assert source.annotation_file("val") == root / "annotations" / "instances_val.json"
    assert snapshot(root) == before


@pytest.mark.parametrize("with_root", [False, True])
def test_coco_override_paths(tmp_path, with_root):
    root = tmp_path / "elsewhere"
    for split in ("train", "val"):
        _coco_split(root / "labels" / f"{split}_boxes.json", root / "pictures" / split)
    (tmp_path / "unused_root").mkdir()
    before = snapshot(root)
    source = build_source(coco_config(
        tmp_path / "unused_root" if with_root else None,
        annotation_file=str(root / "labels" / "{split}_boxes.json"),
        image_dir=str(root / "pictures" / "{split}")))
    _check_coco_examples(source, "val")
    assert source.annotation_file("val") == root / "labels" / "val_boxes.json"
    assert snapshot(root) == before


def test_coco_classes_from_config_pick_categories(tmp_path):
    root = tmp_path / "coco"
    _coco_split(root / "annotations" / "instances_train.json", root / "train")
    source = build_source(coco_config(root, classes=["zebra", "car"]))
    assert source.class_names == ["zebra", "car"] and source.category_ids == [90, 3]
    x1, x2, x3 = examples(source, "train")
    np.testing.assert_array_equal(x1["labels"], [0])   # the cat (17) is not a run class
    np.testing.assert_array_equal(x2["labels"], [1])
    np.testing.assert_array_equal(x2["is_crowd"], [True])
    np.testing.assert_array_equal(x3["labels"], [0])
    with pytest.raises(DataError, match="horse"):
        build_source(coco_config(root, classes=["horse"]))


# ------------------------------------------------------------------------------------------
# BCCD (real data)
# ------------------------------------------------------------------------------------------

bccd = pytest.mark.skipif(not (BCCD / "Annotations").is_dir(),
                          reason=f"the shared BCCD dataset is not at {BCCD}")


@bccd
def test_bccd_splits_classes_sizes_and_known_defects():
    before = snapshot(BCCD)
    source = build_source(voc_config(BCCD, train_split="trainval", val_split="val"))
    assert source.class_names == ["Platelets", "RBC", "WBC"]
    sizes = {"train": 205, "val": 87, "trainval": 292, "test": 72}
    for split, size in sizes.items():
        assert source.num_examples(split) == size, split
        assert (source.index(split).sizes == [480, 640]).all()
    empty = {(case.split, Path(case.file).name) for case in source.report.cases
             if case.kind == "box_empty"}
    assert empty == {("train", "BloodImage_00343.xml"), ("val", "BloodImage_00338.xml"),
                     ("trainval", "BloodImage_00338.xml"), ("trainval", "BloodImage_00343.xml")}
    trainval_cases = [case for case in source.report.cases if case.split == "trainval"]
    assert [case.kind for case in trainval_cases] == ["box_empty", "box_empty"]
    assert {case.action for case in trainval_cases} == {"dropped"}
    assert {case.kind for case in source.report.cases} == {"box_empty"}

    # every image decodes to 480x640x3 (trainval + test cover all 364)
    seen = 0
    for split in ("trainval", "test"):
        for example in examples(source, split):
            assert example["image"].shape == (480, 640, 3)
            seen += 1
    assert seen == 364

    # a spot check against xml.etree: BloodImage_00338 (with its empty box) in val
    ids = (BCCD / "ImageSets" / "Main" / "val.txt").read_text().split()
    position = ids.index("BloodImage_00338")
    expected = parse_voc_independently(BCCD / "Annotations" / "BloodImage_00338.xml",
                                       source.class_names)
    example = examples(source, "val")[position]
    assert int(example["image_id"]) == position
    np.testing.assert_allclose(example["boxes"], expected["boxes"], atol=ATOL)
    np.testing.assert_array_equal(example["labels"], expected["labels"])
    np.testing.assert_array_equal(example["is_crowd"], expected["difficult"])
    root = ET.parse(BCCD / "Annotations" / "BloodImage_00338.xml").getroot()
    assert len(root.findall("object")) == len(expected["boxes"]) + 1  # the empty one dropped
    assert snapshot(BCCD) == before


# ------------------------------------------------------------------------------------------
# COCO evaluation on the original file equals pycocotools
# ------------------------------------------------------------------------------------------


def _eval_folder(root: Path) -> Path:
    """Four 160x120 images (one without annotations), categories 42, 7, 19 (file order), a crowd
    box, `area` fields differing from w*h (as segment areas do) so that small / medium / large
    membership differs from the box's."""
    images, annotations = [], []
    layout = {
        11: [(7, [10, 10, 40, 40], 900.0, 0), (42, [60, 20, 90, 80], 5200.0, 0),
             (19, [5, 60, 20, 30], 400.0, 0)],
        23: [(7, [20, 15, 30, 25], 600.0, 0), (7, [100, 10, 50, 100], 9000.0, 1),
             (19, [60, 60, 100, 55], 4900.0, 0)],
        5: [(42, [2, 2, 150, 110], 12000.0, 0), (19, [120, 90, 12, 10], 80.0, 0)],
        40: [],
    }
    for image_id, objects in layout.items():
        write_image(root / "val" / f"im{image_id}.png", height=120, width=160)
        images.append({"id": image_id, "file_name": f"im{image_id}.png", "height": 120,
                       "width": 160})
        for category, bbox, area, crowd in objects:
            annotations.append({"image_id": image_id, "category_id": category, "bbox": bbox,
                                "area": area, "iscrowd": crowd})
    categories = [{"id": 42, "name": "lorry"}, {"id": 7, "name": "ant"},
                  {"id": 19, "name": "moth"}]
    return write_coco(root / "annotations" / "instances_val.json", images, annotations,
                      categories)


def _fake_detections(truth: dict, category_ids, rng):
    """Per image, K=5 detections in pipeline terms (xyxy, contiguous classes): jittered true
    boxes (some with the wrong class), a detection on the crowd region, random false
    positives, and zero-padding detections with tiny scores."""
    by_image = {image["id"]: [] for image in truth["images"]}
    for annotation in truth["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    image_ids, boxes, scores, classes = [], [], [], []
    for image_id, annotations in by_image.items():
        rows = []
        for annotation in annotations:
            x, y, w, h = annotation["bbox"]
            jitter = rng.uniform(-0.15, 0.15, 4) * [w, h, w, h]
            label = category_ids.index(annotation["category_id"])
            if rng.uniform() < 0.25:
                label = (label + 1) % len(category_ids)
            rows.append(([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]],
                         rng.uniform(0.2, 0.95), label))
        while len(rows) < 5:
            x1, y1 = rng.uniform(0, 120), rng.uniform(0, 90)
            rows.append(([x1, y1, x1 + rng.uniform(5, 40), y1 + rng.uniform(5, 30)],
                         rng.uniform(0.01, 0.6), int(rng.integers(len(category_ids)))))
        image_ids.append(image_id)
        boxes.append([row[0] for row in rows[:5]])
        scores.append([row[1] for row in rows[:5]])
        classes.append([row[2] for row in rows[:5]])
    return (np.asarray(image_ids, np.int64), np.asarray(boxes, np.float32),
            np.asarray(scores, np.float32), np.asarray(classes, np.int32))


def _pycocotools(annotation_file: Path, detections: list) -> "COCOeval":
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotation_file))
        results = truth.loadRes(detections)
        evaluation = COCOeval(truth, results, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def _assert_stats_equal(metrics: dict, stats) -> None:
    from centernet.evaluation.metrics import COCO_STAT_NAMES

    for name, value in zip(COCO_STAT_NAMES, stats):
        if value == -1:
            assert math.isnan(metrics[name]), name
        else:
            assert metrics[name] == pytest.approx(value, abs=1e-9), name


def _assert_per_class_equal(metrics: dict, reference, categories: list) -> None:
    """`AP50/<name>` of each category (named as the file names its id) equals pycocotools'
    precision at IoU 0.5, all areas, 100 detections, averaged over recall thresholds."""
    names = {category["id"]: category["name"] for category in categories}
    precision = reference.eval["precision"][0, :, :, 0, 2]
    got, expected = {}, {}
    for k, category_id in enumerate(reference.params.catIds):
        values = precision[:, k]
        expected[names[category_id]] = (float(values[values > -1].mean())
                                        if (values > -1).any() else float("nan"))
        got[names[category_id]] = metrics[f"AP50/{names[category_id]}"]
    for name in expected:
        assert (math.isnan(got[name]) and math.isnan(expected[name])) or \
            got[name] == pytest.approx(expected[name], abs=1e-9), (got, expected)


def test_coco_evaluation_on_original_file_equals_pycocotools(tmp_path):
    from centernet.evaluation.metrics import CocoEvaluator
    from centernet.evaluation.inference import original_ground_truth

    root = tmp_path / "coco"
    annotation_file = _eval_folder(root)
    shutil.copytree(root / "val", root / "train")
    shutil.copy(annotation_file, root / "annotations" / "instances_train.json")
    source = build_source(coco_config(root))
    assert source.category_ids == [7, 19, 42]
    assert source.class_names == ["ant", "moth", "lorry"]
    truth = original_ground_truth(source, "val")
    image_ids, boxes, scores, classes = _fake_detections(
        json.loads(annotation_file.read_text()), source.category_ids, np.random.default_rng(3))
    evaluator = CocoEvaluator(truth, source.category_ids, source.class_names)
    evaluator.process(image_ids[:2], boxes[:2], scores[:2], classes[:2])
    evaluator.process(image_ids[2:], boxes[2:], scores[2:], classes[2:])
    metrics = evaluator.evaluate()

    # the same detections in COCO results format, built here independently
    mine = []
    for b, image_id in enumerate(image_ids):
        for k in range(boxes.shape[1]):
            x1, y1, x2, y2 = boxes[b, k].astype(np.float64)
            mine.append({"image_id": int(image_id), "category_id": [7, 19, 42][classes[b, k]],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[b, k])})
    theirs = evaluator.detections
    assert len(theirs) == len(mine)
    for a, b in zip(theirs, mine):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-4)
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)

    reference = _pycocotools(annotation_file, mine)
    assert all(value > 0 for value in reference.stats[:6])  # every statistic is exercised
    _assert_stats_equal(metrics, reference.stats)
    # the test can tell the file's own areas from w*h: with w*h areas the per-area stats differ
    boxy = json.loads(annotation_file.read_text())
    for annotation in boxy["annotations"]:
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    boxy_file = tmp_path / "boxy.json"
    boxy_file.write_text(json.dumps(boxy))
    assert list(_pycocotools(boxy_file, mine).stats[3:6]) != list(reference.stats[3:6])

    _assert_per_class_equal(metrics, reference, truth["categories"])


# ------------------------------------------------------------------------------------------
# End to end: train on a COCO folder, evaluate, compare with pycocotools
# ------------------------------------------------------------------------------------------

TINY = ["model.input_size=64", "model.neck_channels=[16,16,16]", "model.head_conv=8",
        "train.max_steps=3", "train.batch_size=2", "train.eval_every=0",
        "train.checkpoint_every=3", "eval.k=10", "augment=none",
        "train.jit_compile=false"]  # compiling with XLA would cost more than the 3 steps


@pytest.mark.slow
def test_train_then_evaluate_on_coco_folder_matches_pycocotools(tmp_path):
    root = tmp_path / "coco"
    annotation_file = _eval_folder(root)
    shutil.copytree(root / "val", root / "train")
    shutil.copy(annotation_file, root / "annotations" / "instances_train.json")
    before = snapshot(root)
    run_dir = tmp_path / "run"
    trained = run_script("train.py", "dataset=coco_json", f"dataset.root={root}", *TINY,
                         f"hydra.run.dir={run_dir}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    classes = json.loads((run_dir / "classes.json").read_text())
    assert classes == {"names": ["ant", "moth", "lorry"], "category_ids": [7, 19, 42]}
    report = json.loads((run_dir / "data_report.json").read_text())
    assert {(case["split"], case["kind"], case["action"]) for case in report["cases"]} == \
        {("train", "no_objects", "kept"), ("val", "no_objects", "kept")}  # image 40
    assert all("im40.png" in case["file"] for case in report["cases"])

    evaluated = run_script("evaluate.py", f"run_dir={run_dir}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    detections = json.loads((run_dir / "eval" / "detections.json").read_text())
    assert detections, "no detections written"
    assert {d["category_id"] for d in detections} <= {7, 19, 42}
    assert {d["image_id"] for d in detections} <= {5, 11, 23, 40}
    assert len(detections) == 4 * 10
    reference = _pycocotools(annotation_file, detections)
    _assert_stats_equal(metrics, reference.stats)
    assert snapshot(root) == before
    _assert_per_class_equal(metrics, reference, json.loads(annotation_file.read_text())[
        "categories"])
