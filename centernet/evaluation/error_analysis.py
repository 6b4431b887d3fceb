"""Where the AP goes: recall at several IoUs, class confusion and a breakdown of false positives.

COCO AP says how good a detector is, not why. :func:`analyze_errors` answers the next question
from the same files (COCO-format ground truth and COCO results), in the spirit of the TIDE
toolbox (Bolya et al. 2020), with a fixed score threshold instead of TIDE's oracle re-runs:

- ``recall@0.5``, ``recall@0.75``, ``recall@0.9``: the fraction of objects that have a detection
  of their own class at that IoU or more (any detection, not a one-to-one matching): how precise
  the boxes are;
- ``top_is_other_class``: the fraction of objects whose highest-scoring detection at IoU >=
  ``iou_threshold`` (any class) has another class, and ``no_detection`` those with none: how
  well the classifier ranks;
- the detections scoring at least ``score_threshold``, matched greedily in score order per
  image as COCO does, split into ``true_positive``, ``duplicate`` (its object is already
  matched), ``wrong_class`` (an object of another class at IoU >= ``iou_threshold``),
  ``localisation`` (an object of its class at ``0.1 <= IoU < iou_threshold``) and
  ``background``; detections that fall inside a crowd region are ``ignored``.

All boxes are COCO ``[x, y, width, height]`` in original-image pixels; crowd objects are not
counted as objects.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List

import numpy as np

RECALL_IOUS = (0.5, 0.75, 0.9)
LOCALISATION_MIN_IOU = 0.1
DETECTION_KINDS = ("true_positive", "duplicate", "wrong_class", "localisation", "background",
                   "ignored")


def analyze_errors(ground_truth: dict, detections: List[dict], iou_threshold: float = 0.5,
                   score_threshold: float = 0.3) -> Dict[str, float]:
    """Recall, class confusion and the false-positive breakdown (module docstring).

    Args:
        ground_truth: COCO-format dict (``images``, ``annotations`` with ``bbox``,
            ``category_id``, ``iscrowd``), as
            :func:`centernet.evaluation.coco_format.coco_ground_truth` builds.
        detections: COCO results (``image_id``, ``category_id``, ``bbox``, ``score``).
        iou_threshold: the IoU that counts as a hit for matching and class confusion.
        score_threshold: detections below it are left out of every figure.

    Returns:
        ``objects`` and the detection counts (``detections`` and one per
        :data:`DETECTION_KINDS`) as integers-valued floats; ``recall@<iou>``,
        ``top_is_other_class`` and ``no_detection`` as fractions of the objects, and
        ``recall@0.5/<name>`` and ``recall@0.75/<name>`` per category (its ``name`` in
        ``ground_truth["categories"]``, else its id).
    """
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in ground_truth.get("categories", [])}
    truth_by_image = defaultdict(list)
    for annotation in ground_truth["annotations"]:
        truth_by_image[int(annotation["image_id"])].append(annotation)
    detections_by_image = defaultdict(list)
    for detection in detections:
        if detection["score"] >= score_threshold:
            detections_by_image[int(detection["image_id"])].append(detection)

    best_same_class_iou: List[float] = []
    categories: List[int] = []
    top_class: Dict[str, int] = {"right": 0, "other": 0, "none": 0}
    kinds = dict.fromkeys(DETECTION_KINDS, 0)
    for image in ground_truth["images"]:
        image_id = int(image["id"])
        annotations = truth_by_image.get(image_id, [])
        found = sorted(detections_by_image.get(image_id, []), key=lambda d: -d["score"])
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], bool)
        truth_boxes = _xyxy([a["bbox"] for a in annotations])
        truth_classes = np.array([int(a["category_id"]) for a in annotations], int)
        found_boxes = _xyxy([d["bbox"] for d in found])
        found_classes = np.array([int(d["category_id"]) for d in found], int)
        ious = pairwise_iou(truth_boxes, found_boxes)  # [objects, detections]

        same_class = truth_classes[:, None] == found_classes[None, :]
        for row in np.flatnonzero(~crowd):
            best_same_class_iou.append(float(np.max(ious[row], where=same_class[row],
                                                    initial=0.0)))
            categories.append(int(truth_classes[row]))
            hits = np.flatnonzero(ious[row] >= iou_threshold)
            if hits.size == 0:
                top_class["none"] += 1
            else:  # `found` is sorted by score, so the first hit is the highest-scoring one
                top_class["right" if same_class[row, hits[0]] else "other"] += 1

        matched = np.zeros(len(annotations), bool)
        crowd_cover = _intersection_over_second(truth_boxes[crowd], found_boxes)
        for column in range(len(found)):
            kind, row = _classify(ious[:, column], same_class[:, column], crowd, matched,
                                  iou_threshold, crowd_cover[:, column])
            if kind == "true_positive":
                matched[row] = True
            kinds[kind] += 1

    best = np.array(best_same_class_iou, float)
    classes = np.array(categories, int)
    objects = max(len(best), 1)
    result: Dict[str, float] = {"objects": float(len(best))}
    for threshold in RECALL_IOUS:
        result[f"recall@{threshold:g}"] = float(np.sum(best >= threshold)) / objects
    result["top_is_other_class"] = top_class["other"] / objects
    result["no_detection"] = top_class["none"] / objects
    result["detections"] = float(sum(kinds.values()))
    result.update({kind: float(count) for kind, count in kinds.items()})
    for category in sorted(set(categories)):
        of_class = best[classes == category]
        for threshold in RECALL_IOUS[:2]:
            name = names.get(category, str(category))
            result[f"recall@{threshold:g}/{name}"] = float(np.mean(of_class >= threshold))
    return result


def _classify(ious: np.ndarray, same_class: np.ndarray, crowd: np.ndarray, matched: np.ndarray,
              iou_threshold: float, crowd_cover: np.ndarray) -> tuple[str, int]:
    """The kind of one detection given its IoU with every object of its image, and the object
    it matches (-1 when none)."""
    candidates = same_class & ~crowd
    free = candidates & ~matched & (ious >= iou_threshold)
    if free.any():
        row = int(np.argmax(np.where(free, ious, -1.0)))
        return "true_positive", row
    if (candidates & matched & (ious >= iou_threshold)).any():
        return "duplicate", -1
    if (~same_class & ~crowd & (ious >= iou_threshold)).any():
        return "wrong_class", -1
    if (candidates & (ious >= LOCALISATION_MIN_IOU)).any():
        return "localisation", -1
    if (crowd_cover >= iou_threshold).any():
        return "ignored", -1
    return "background", -1


def _xyxy(boxes: List[list]) -> np.ndarray:
    """``[N, 4]`` x1, y1, x2, y2 from COCO ``[x, y, width, height]`` boxes."""
    xywh = np.asarray(boxes, float).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def _intersections(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``[N, M]`` intersection areas of xyxy boxes."""
    low = np.maximum(first[:, None, :2], second[None, :, :2])
    high = np.minimum(first[:, None, 2:], second[None, :, 2:])
    return np.prod(np.clip(high - low, 0.0, None), axis=-1)


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.prod(boxes[:, 2:] - boxes[:, :2], axis=-1)


def pairwise_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU of xyxy boxes (0 where both are empty)."""
    inter = _intersections(first, second)
    union = _areas(first)[:, None] + _areas(second)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _intersection_over_second(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``[N, M]`` intersection over the area of ``second``'s box (COCO's crowd overlap)."""
    inter = _intersections(first, second)
    area = _areas(second)[None, :]
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def format_error_table(analysis: Dict[str, float]) -> str:
    """A short text report of :func:`analyze_errors`' result."""
    objects = int(analysis["objects"])
    detections = int(analysis["detections"])
    lines = [f"objects {objects}: " + ", ".join(
        f"recall@{t:g} {100 * analysis[f'recall@{t:g}']:.1f}%" for t in RECALL_IOUS)]
    lines.append(f"highest-scoring hit has another class "
                 f"{100 * analysis['top_is_other_class']:.1f}%"
                 f", no hit {100 * analysis['no_detection']:.1f}%")
    for threshold in RECALL_IOUS[:2]:
        prefix = f"recall@{threshold:g}/"
        per_class = [f"{key[len(prefix):]} {100 * value:.1f}%" for key, value in analysis.items()
                     if key.startswith(prefix)]
        lines.append(f"{prefix[:-1]} per class: " + ", ".join(per_class))
    parts = ", ".join(f"{kind} {int(analysis[kind])}" for kind in DETECTION_KINDS)
    lines.append(f"detections scored above the threshold {detections}: {parts}")
    return "\n".join(lines)
