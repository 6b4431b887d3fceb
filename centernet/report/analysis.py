"""The numbers behind a run's report, from a split's COCO ground truth and detections.

- the precision-recall and F1 curves (`centernet.evaluation.curves`, from pycocotools' own
  evaluation), and the score threshold with the best mean F1;
- `image_outcomes`: per image, which object was found, confused or missed and which
  detection is a false box, at IoU 0.5 and a score threshold; from it `confusion_matrix`
  (ground-truth class or background against detected class or background) and
  `worst_images` (the gallery's).

Inputs are COCO-format dicts as `centernet.evaluation.metrics` builds them: ground truth
`{"images", "annotations", "categories"}` with `bbox` `[x, y, w, h]` in pixels, detections
`[{"image_id", "category_id", "bbox", "score"}]`.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from centernet.evaluation.curves import f1_by_threshold, pr_curves
from centernet.evaluation.metrics import run_cocoeval

def _iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of every `[x, y, w, h]` box of `first` `[N, 4]` with every one of `second` `[M, 4]`."""
    if len(first) == 0 or len(second) == 0:
        return np.zeros((len(first), len(second)))
    a, b = first[:, None, :], second[None, :, :]
    width = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0],
                                                                                b[..., 0])
    height = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1],
                                                                                 b[..., 1])
    intersection = np.clip(width, 0, None) * np.clip(height, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def image_outcomes(ground_truth: dict, detections: Sequence[dict], score_threshold: float,
                   iou: float = 0.5) -> Dict[int, Dict[str, list]]:
    """Per image id, `{"truths": [(annotation, detection or None)], "false": [detection]}`:
    the detections scoring >= `score_threshold` paired with the (non-crowd) ground-truth
    boxes greedily by falling IoU, each box at most once and never under `iou`: first within
    each class, then what is left across classes (so a right detection is not counted wrong
    because a wrong one overlaps a little more). A truth paired with a detection of its class
    was found, of another class confused; unpaired, missed; an unpaired detection is a false
    box."""
    truths: Dict[int, list] = {int(image["id"]): [] for image in ground_truth["images"]}
    for annotation in ground_truth["annotations"]:
        if not annotation.get("iscrowd", 0):
            truths[int(annotation["image_id"])].append(annotation)
    found: Dict[int, list] = {image_id: [] for image_id in truths}
    for detection in detections:
        if detection["score"] >= score_threshold:
            found[int(detection["image_id"])].append(detection)
    outcomes = {}
    for image_id, boxes in truths.items():
        kept = sorted(found[image_id], key=lambda d: -d["score"])
        overlap = _iou_matrix(np.asarray([b["bbox"] for b in boxes], np.float64).reshape(-1, 4),
                              np.asarray([d["bbox"] for d in kept], np.float64).reshape(-1, 4))
        same = np.asarray([[b["category_id"] == d["category_id"] for d in kept]
                           for b in boxes], bool).reshape(overlap.shape)
        pairs: Dict[int, int] = {}  # ground truth index -> detection index
        for allowed in (same, ~same):
            candidates = np.nonzero((overlap >= iou) & allowed)
            for _, i, j in sorted(zip(-overlap[candidates], *candidates)):
                if i not in pairs and j not in pairs.values():
                    pairs[i] = j
        outcomes[image_id] = {
            "truths": [(box, kept[pairs[i]] if i in pairs else None)
                       for i, box in enumerate(boxes)],
            "false": [d for j, d in enumerate(kept) if j not in pairs.values()]}
    return outcomes


def confusion_matrix(ground_truth: dict, detections: Sequence[dict], score_threshold: float,
                     iou: float = 0.5) -> Dict[str, object]:
    """Counts `[C + 1, C + 1]` of the pairing `image_outcomes` makes: row = the true class
    in `ground_truth["categories"]` order, then background; column = the detected class,
    then background. A pair adds to [true, detected] (a wrong class off the diagonal), a
    missed truth to [true, background], a false box to [background, detected]."""
    return confusion_counts(ground_truth["categories"],
                            image_outcomes(ground_truth, detections, score_threshold, iou),
                            score_threshold, iou)


def confusion_counts(categories: Sequence[dict], outcomes: Dict[int, Dict[str, list]],
                     score_threshold: float, iou: float = 0.5) -> Dict[str, object]:
    """`confusion_matrix` from outcomes `image_outcomes` already made at `score_threshold`
    and `iou` (`categories`: the ground truth's, in its order)."""
    order = {int(c["id"]): index for index, c in enumerate(categories)}
    background = len(order)
    counts = np.zeros((background + 1, background + 1), np.int64)
    for outcome in outcomes.values():
        for truth, detection in outcome["truths"]:
            column = background if detection is None else order[int(detection["category_id"])]
            counts[order[int(truth["category_id"])], column] += 1
        for detection in outcome["false"]:
            counts[background, order[int(detection["category_id"])]] += 1
    names = [str(c.get("name", c["id"])) for c in categories]
    return {"labels": names + ["background"], "counts": counts.tolist(),
            "score_threshold": float(score_threshold), "iou": float(iou)}


def worst_images(outcomes: Dict[int, Dict[str, list]], count: int) -> List[Dict[str, int]]:
    """The `count` images with the most errors (misses + confused + false boxes; ties by
    image id), each `{"image_id", "missed", "confused", "false"}`; images without errors
    are left out."""
    rows = []
    for image_id, outcome in outcomes.items():
        missed = sum(detection is None for _, detection in outcome["truths"])
        confused = sum(detection is not None and detection["category_id"] != truth["category_id"]
                       for truth, detection in outcome["truths"])
        rows.append({"image_id": int(image_id), "missed": missed, "confused": confused,
                     "false": len(outcome["false"])})
    rows = [r for r in rows if r["missed"] + r["confused"] + r["false"]]
    rows.sort(key=lambda r: (-(r["missed"] + r["confused"] + r["false"]), r["image_id"]))
    return rows[:count]


def analyze(ground_truth: dict, detections: Sequence[dict],
            gallery: int = 8) -> Dict[str, object]:
    """Everything `report` draws, JSON-serialisable: `pr50`, `pr75` (`pr_curves`), `f1`
    (`f1_by_threshold`), and at the best F1 threshold `confusion` (`confusion_matrix`) and
    `worst_images` (the `gallery` images with the most errors)."""
    evaluation = run_cocoeval(ground_truth, list(detections), print_summary=False)
    f1 = f1_by_threshold(evaluation)
    outcomes = image_outcomes(ground_truth, detections, f1["best_threshold"])
    return {"pr50": pr_curves(evaluation, 0.5), "pr75": pr_curves(evaluation, 0.75), "f1": f1,
            "confusion": confusion_counts(ground_truth["categories"], outcomes,
                                          f1["best_threshold"]),
            "worst_images": worst_images(outcomes, gallery)}
