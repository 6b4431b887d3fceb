"""Pascal VOC AP50 (the devkit's matching and its 07 and 2010+ AP) on COCO-format dicts
(`centernet.evaluation.coco_format`); `CocoEvaluator` reports it with `eval.voc_metrics`.
Pure NumPy; no TensorFlow."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from centernet.evaluation.coco_format import category_names, check_detection_ids

VOC_IOU_THRESHOLD = 0.5


def voc_ap50(ground_truth: dict, detections: list[dict], use_07_metric: bool) -> dict[str, float]:
    """Pascal VOC AP at IoU 0.5, per category and averaged, on COCO-format dicts.

    The VOC devkit's algorithm (VOCevaldet.m, py-faster-rcnn's voc_eval.py): per category,
    detections in descending score order (ties keep list order) are compared with every ground
    truth box of that category in their image; the one with the highest IoU is the candidate.
    If that IoU is >= 0.5 (the MATLAB devkit's test; py-faster-rcnn uses >) and the candidate is
    a crowd box (``iscrowd`` 1, playing VOC's "difficult"), the detection is ignored: neither
    true nor false positive. Otherwise it is a true positive if the candidate is still unmatched,
    and a false positive if it is already matched, if the IoU is below 0.5, or if its image has
    no box of that category. Crowd boxes do not count among the positives.

    Boxes are continuous pixels, so IoU uses plain widths ``x2 - x1`` (no devkit ``+ 1``).

    Args:
        ground_truth: COCO-format dict as :func:`coco_ground_truth` builds.
        detections: COCO results entries as :func:`detections_to_coco` builds.
        use_07_metric: ``True``: VOC2007 11-point AP, the mean over ``t = 0, 0.1, ..., 1`` of
            the highest precision at recall ``>= t`` (0 when recall never reaches ``t``).
            ``False``: VOC2010+ AP, the area under the monotone (non-increasing) precision
            envelope of the precision/recall curve.

    Returns:
        ``{"mAP": ..., "AP/<name>": ...}`` with one ``AP/`` entry per category, in
        ``ground_truth["categories"]`` order (names from the categories, or their ids when
        unnamed). A category without non-crowd ground truth gets NaN and is left out of
        ``mAP``, the mean over the others (NaN if there are none).

    Raises:
        ValueError: when a detection refers to an image or a category id that is not in the
            ground truth.
    """
    check_detection_ids(ground_truth, detections)
    names = category_names(ground_truth, None)
    gt_by_category = _voc_ground_truth(ground_truth)
    dets_by_category = _voc_detections(detections)
    per_category = {
        f"AP/{name}": _voc_category_ap(
            gt_by_category.get(category_id, {}), dets_by_category.get(category_id), use_07_metric
        )
        for category_id, name in names.items()
    }
    defined = [ap for ap in per_category.values() if not math.isnan(ap)]
    return {"mAP": float(np.mean(defined)) if defined else float("nan"), **per_category}


# (boxes [N, 4] xyxy pixels, is_crowd [N] bool) of one category in one image.
_VocImageTruth = tuple[np.ndarray, np.ndarray]
# (image ids [D], boxes [D, 4] xyxy pixels, scores [D]) of one category.
_VocDetections = tuple[np.ndarray, np.ndarray, np.ndarray]


def _voc_ground_truth(ground_truth: dict) -> dict[int, dict[int, _VocImageTruth]]:
    """``{category id: {image id: (boxes [N, 4] xyxy, is_crowd [N])}}``."""
    grouped = defaultdict(lambda: defaultdict(list))
    for annotation in ground_truth["annotations"]:
        grouped[int(annotation["category_id"])][int(annotation["image_id"])].append(annotation)
    return {
        category_id: {
            image_id: (
                _xyxy([a["bbox"] for a in anns]),
                np.array([bool(a.get("iscrowd", 0)) for a in anns]),
            )
            for image_id, anns in images.items()
        }
        for category_id, images in grouped.items()
    }


def _voc_detections(detections: list[dict]) -> dict[int, _VocDetections]:
    """``{category id: (image ids [D], boxes [D, 4] xyxy, scores [D])}``."""
    grouped = defaultdict(list)
    for detection in detections:
        grouped[int(detection["category_id"])].append(detection)
    return {
        category_id: (
            np.array([int(d["image_id"]) for d in dets], dtype=np.int64),
            _xyxy([d["bbox"] for d in dets]),
            np.array([float(d["score"]) for d in dets], dtype=np.float64),
        )
        for category_id, dets in grouped.items()
    }


def _xyxy(xywh: list) -> np.ndarray:
    """``[N, 4]`` xyxy float64 boxes from a list of ``[x, y, w, h]``."""
    boxes = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def _voc_category_ap(
    truth: dict[int, _VocImageTruth], detections: _VocDetections | None, use_07_metric: bool
) -> float:
    """VOC AP of one category; NaN when it has no non-crowd ground truth."""
    num_positives = sum(int((~is_crowd).sum()) for _, is_crowd in truth.values())
    if num_positives == 0:
        return float("nan")
    if detections is None:
        return 0.0
    is_tp = _voc_match(truth, *detections)
    true_positives = np.cumsum(is_tp)
    recall = true_positives / num_positives
    precision = true_positives / np.arange(1, len(is_tp) + 1)
    return _voc_ap_from_curve(recall, precision, use_07_metric)


def _voc_match(
    truth: dict[int, _VocImageTruth], image_ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Devkit matching; bool ``[D']`` true-positive flags in score order, ignored ones removed."""
    matched = {image_id: np.zeros(len(crowd), bool) for image_id, (_, crowd) in truth.items()}
    outcomes = []
    for index in np.argsort(-scores, kind="stable"):
        image_id = int(image_ids[index])
        if image_id not in truth:
            outcomes.append(False)
            continue
        gt_boxes, is_crowd = truth[image_id]
        overlaps = _iou(boxes[index], gt_boxes)
        best = int(np.argmax(overlaps))
        if overlaps[best] < VOC_IOU_THRESHOLD:
            outcomes.append(False)
        elif is_crowd[best]:
            continue
        elif matched[image_id][best]:
            outcomes.append(False)
        else:
            matched[image_id][best] = True
            outcomes.append(True)
    return np.array(outcomes, dtype=bool)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU ``[N]`` of one xyxy ``box [4]`` with ``boxes [N, 4]``; 0 where the union is empty."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    intersection = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


def _voc_ap_from_curve(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP from the ``[D]`` recall/precision points of the score-ordered detections."""
    if use_07_metric:
        # Thresholds i / 10 are exact decimals; the devkit's np.arange(0, 1.1, 0.1) makes 0.3
        # slightly larger than 3 / 10, so a recall of exactly 0.3 would miss it.
        points = [precision[recall >= t].max(initial=0.0) for t in np.arange(11) / 10]
        return float(np.mean(points))
    recall = np.concatenate([[0.0], recall, [1.0]])
    envelope = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))
