"""Precision, recall and F1 curves of a COCO evaluation, from pycocotools' own numbers.

- `pr_curves`: each class's interpolated precision at COCO's 101 recall thresholds at one
  IoU (area all, 100 detections per image), read from COCOeval's accumulated `precision`
  array: the mean of a curve is that class's AP, the number the metrics table shows.
- `threshold_counts`: per class, true and false positives and missed objects as the score
  threshold rises, from COCOeval's own matches (its greedy matching visits detections by
  falling score, so a detection's match does not depend on those scoring below it, and a
  threshold only removes detections); `f1_by_threshold` turns them into precision, recall
  and F1 and finds the threshold that maximises the classes' mean F1.

`evaluation` is a `pycocotools.cocoeval.COCOeval` after `evaluate()` and `accumulate()`
(`centernet.evaluation.metrics.run_cocoeval`).
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)  # score thresholds of the F1 curves


def pr_curves(evaluation, iou: float) -> Dict[str, object]:
    """`{"recall": [R], "precision": {category id: [R] or None}}` at IoU `iou` (one of
    COCOeval's thresholds) from an accumulated COCOeval; None for a class without ground
    truth (pycocotools' -1)."""
    params = evaluation.params
    iou_index = int(np.argmin(np.abs(np.asarray(params.iouThrs) - iou)))
    precision = evaluation.eval["precision"][
        iou_index, :, :, params.areaRngLbl.index("all"), params.maxDets.index(100)]
    curves = {}
    for column, category_id in enumerate(params.catIds):
        values = precision[:, column]
        curves[int(category_id)] = None if (values == -1).all() else values.tolist()
    return {"recall": np.asarray(params.recThrs).tolist(), "precision": curves}


def threshold_counts(evaluation, iou: float = 0.5) -> Dict[int, Dict[str, np.ndarray]]:
    """Per category id with ground truth, `{"true_positives", "false_positives",
    "missed"}`: int arrays over `THRESHOLDS` (a detection counts when its score is >= the
    threshold), from COCOeval's matches at `iou`, area all, 100 detections per image;
    detections matched to crowd regions and crowd objects count as neither."""
    params = evaluation.params
    iou_index = int(np.argmin(np.abs(np.asarray(params.iouThrs) - iou)))
    all_area = params.areaRng[params.areaRngLbl.index("all")]
    scores: Dict[int, List[np.ndarray]] = {int(c): [] for c in params.catIds}
    matched: Dict[int, List[np.ndarray]] = {int(c): [] for c in params.catIds}
    positives = {int(c): 0 for c in params.catIds}
    for entry in evaluation.evalImgs:
        if entry is None or list(entry["aRng"]) != list(all_area):
            continue
        category = int(entry["category_id"])
        keep = ~np.asarray(entry["dtIgnore"][iou_index], bool)
        scores[category].append(np.asarray(entry["dtScores"], np.float64)[keep])
        matched[category].append(np.asarray(entry["dtMatches"][iou_index])[keep] > 0)
        positives[category] += int((~np.asarray(entry["gtIgnore"], bool)).sum())
    counts = {}
    for category in scores:
        if positives[category] == 0:
            continue
        score = np.concatenate(scores[category]) if scores[category] else np.zeros(0)
        hit = np.concatenate(matched[category]) if matched[category] else np.zeros(0, bool)
        above = score[None, :] >= THRESHOLDS[:, None]  # [thresholds, detections]
        true_positives = (above & hit[None, :]).sum(axis=1)
        counts[category] = {"true_positives": true_positives,
                            "false_positives": above.sum(axis=1) - true_positives,
                            "missed": positives[category] - true_positives}
    return counts


def f1_by_threshold(evaluation, iou: float = 0.5) -> Dict[str, object]:
    """Per class, precision, recall and F1 at each of `THRESHOLDS` (`threshold_counts`;
    precision is 1 where nothing is detected). `best_threshold` maximises `mean_f1`, the
    mean over the classes that have ground truth; ties go to the lower threshold."""
    per_class = {}
    for category, count in threshold_counts(evaluation, iou).items():
        true_positives = count["true_positives"]
        detected = true_positives + count["false_positives"]
        precision = np.where(detected > 0, true_positives / np.maximum(detected, 1), 1.0)
        recall = true_positives / (true_positives + count["missed"])
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        per_class[category] = {"precision": precision.tolist(), "recall": recall.tolist(),
                               "f1": f1.tolist(),
                               "positives": int(true_positives[0] + count["missed"][0])}
    mean_f1 = (np.mean([c["f1"] for c in per_class.values()], axis=0) if per_class
               else np.zeros(len(THRESHOLDS)))
    best = int(np.argmax(mean_f1))
    return {"thresholds": THRESHOLDS.tolist(), "per_class": per_class,
            "mean_f1": mean_f1.tolist(), "best_threshold": float(THRESHOLDS[best]),
            "best_mean_f1": float(mean_f1[best])}
