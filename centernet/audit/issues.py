"""Score a split's labels against out-of-sample detections with cleanlab's object-detection
module (ObjectLab) and rank what looks wrong.

cleanlab scores three kinds of error per box (`cleanlab.object_detection.rank`): an object
the annotators overlooked (`compute_overlooked_box_scores`, one score per confident predicted
box that overlaps no label), a label of the wrong class (`compute_swap_box_scores`, per label)
and a badly placed label (`compute_badloc_box_scores`, per label); `get_label_quality_scores`
pools them per image and `find_label_issues` flags images. Lower is more likely an error.
A confident detection that overlaps labels but fits none (IoU < 0.5 with each) is a missing
box too: cleanlab only looks at detections that touch no label, and in crowded images nearly
every detection touches one. A fourth kind, a **box on nothing**, is one cleanlab scores as
clean; the audit adds it: a label that no detection above cleanlab's low probability covers
(IoU >= `NOTHING_IOU`).

Missing boxes rank by the detection's probability, one finding per object (the same cell
detected in two classes is one finding). A box on nothing is weighed by the split's own habits
(`annotation_habits`), per class and by whether the box is cut by the image's edge (partial
objects, which detectors find less surely): a label without a detection is a likely error
where the detector covers most such labels (score `1 - covered * (1 - support)`, `support` its
best probability times IoU among all detections). The habits also say how often the
annotators labelled what the detector finds confidently (BCCD's training split, two copies
with injected errors: 59-67% of the red cells inside the images, 37-46% of those cut by the
edge, 81-89% of the white cells).

CenterNet scores each class on its own, so one object often comes out in two classes at
the same place; cleanlab would count the weaker as evidence of a wrong class. The audit keeps
the likelier class of each place (`one_class_per_place`): on shapes with injected errors
this raised the wrong-class findings' top-N recall from 0.41 to 0.55 (docs/evaluation.md).

CenterNet's scores are heatmap peaks, not probabilities: cleanlab calls a prediction
confident at 0.95. The audit maps scores monotonically so that its `confident_score` (by
default the best-F1 threshold of the pooled held-out detections, `evaluation.curves`) lands
on 0.95, below it linearly from 0, above it linearly to 1; the order of detections is kept.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from centernet.audit.folds import pixel_boxes
from centernet.data.annotations import SplitIndex
from centernet.evaluation.error_analysis import pairwise_iou

CONFIDENT = 0.95  # cleanlab's HIGH_PROBABILITY_THRESHOLD: what it calls a confident prediction
LOW = 0.5  # cleanlab's LOW_PROBABILITY_THRESHOLD: detections below it are not evidence
MAX_SCORE = 0.5  # a label or a detection is a finding when its kind's score is at most this
NOTHING_IOU = 0.1  # a detection "covers" a label when their IoU is at least this
SAME_OBJECT_IOU = 0.5  # a detection "fits" a label (is on the same object) from this IoU
CROWD_IOU = 0.5  # detections on an ignore region (crowd, difficult) are not scored
SAME_PLACE_IOU = 0.7  # of two detections of different classes this close, the likelier stays
EDGE = 0.01  # a box this close to an image edge (a share of the side) is cut by it

MISSING, WRONG_CLASS, BADLY_PLACED, ON_NOTHING = (
    "missing box", "wrong class", "badly placed box", "box on nothing")
KINDS = (MISSING, WRONG_CLASS, BADLY_PLACED, ON_NOTHING)


def iou_matrix(first, second) -> np.ndarray:
    """float64 `[A, B]`: IoU of `x1, y1, x2, y2` boxes `first [A, 4]` and `second [B, 4]`
    (lists or arrays; `evaluation.error_analysis.pairwise_iou`)."""
    return pairwise_iou(np.asarray(first, np.float64).reshape(-1, 4),
                        np.asarray(second, np.float64).reshape(-1, 4))


def to_probability(scores: np.ndarray, confident_score: float) -> np.ndarray:
    """Detector scores -> cleanlab's probability scale: `confident_score` -> `CONFIDENT`,
    0 -> 0 and 1 -> 1, linear in between (monotone, so rankings are unchanged)."""
    scores = np.asarray(scores, np.float64)
    below = CONFIDENT * scores / confident_score
    above = CONFIDENT + (1 - CONFIDENT) * (scores - confident_score) / max(1 - confident_score,
                                                                          1e-12)
    return np.clip(np.where(scores <= confident_score, below, above), 0.0, 1.0)


def one_class_per_place(boxes: np.ndarray, classes: np.ndarray,
                        probabilities: np.ndarray) -> np.ndarray:
    """bool `[M]`: the detections `boxes [M, 4]` (x1 y1 x2 y2) to keep when each place holds
    one object: from the most probable down, a detection of another class than a kept one on
    the same place (IoU >= `SAME_PLACE_IOU`) is dropped (class-agnostic non-maximum
    suppression). CenterNet scores each class on its own, so a rectangle it is unsure of can
    also come out as a circle a little lower; cleanlab would read that second detection as a
    vote for another class."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")
    classes = np.asarray(classes)
    conflict = ((iou_matrix(boxes, boxes) >= SAME_PLACE_IOU)
                & (classes[:, None] != classes[None, :]))
    keep = np.ones(len(order), bool)
    for rank, m in enumerate(order):
        if keep[m]:
            later = order[rank + 1:]
            keep[later] &= ~conflict[m, later]
    return keep


def cleanlab_inputs(index: SplitIndex, detections: Dict[int, List[dict]], num_classes: int,
                    confident_score: float):
    """cleanlab's `labels` and `predictions` for every image of `index`, and per image the
    positions (into the index's objects) of the labels it scores.

    Returns:
        labels: per image `{"bboxes": [L, 4] x1 y1 x2 y2 px, "labels": [L], "image_name"}`
            (ignore regions left out);
        predictions: per image a list of `num_classes` arrays `[M_k, 5]` (box, probability),
            one class per place (`one_class_per_place`), none on an ignore region;
        positions: per image int64 `[L]`, each label's position in the index's objects.
    """
    boxes = pixel_boxes(index)
    labels, predictions, positions = [], [], []
    for i, image_id in enumerate(index.image_ids):
        rows = np.arange(index.row_splits[i], index.row_splits[i + 1])
        scored = rows[~index.is_crowd[rows]]
        crowd = boxes[rows[index.is_crowd[rows]]]
        labels.append({"bboxes": boxes[scored], "labels": index.labels[scored].astype(np.int64),
                       "image_name": index.paths[i]})
        positions.append(scored)
        found = detections.get(int(image_id), [])
        xyxy = np.array([[d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2],
                          d["bbox"][1] + d["bbox"][3]] for d in found], np.float64).reshape(-1, 4)
        classes = np.array([int(d["category_id"]) - 1 for d in found], np.int64)
        probability = to_probability([d["score"] for d in found], confident_score)
        keep = one_class_per_place(xyxy, classes, probability)
        if len(crowd):
            keep &= iou_matrix(xyxy, crowd).max(axis=1) < CROWD_IOU
        xyxy, classes, probability = xyxy[keep], classes[keep], probability[keep]
        predictions.append([np.concatenate([xyxy[classes == c], probability[classes == c, None]],
                                           axis=1) for c in range(num_classes)])
    return labels, predictions, positions


def cut_by_edge(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
    """bool `[N]`: which `x1, y1, x2, y2` pixel boxes `[N, 4]` reach within `EDGE` of the
    image's side from an edge (objects the image cuts off)."""
    x1, y1, x2, y2 = np.asarray(boxes, np.float64).reshape(-1, 4).T
    return ((x1 <= EDGE * width) | (y1 <= EDGE * height) | (x2 >= (1 - EDGE) * width)
            | (y2 >= (1 - EDGE) * height))


def annotation_habits(labels: Sequence[dict], predictions: Sequence[Sequence[np.ndarray]],
                      sizes: np.ndarray, num_classes: int) -> Dict[str, np.ndarray]:
    """How the split's annotators label and how well the detector covers their labels, per
    class and edge (`[C, 2]` arrays, column 1: boxes cut by the image's edge).

    `labelled`: the share of confident detections (probability >= `CONFIDENT`) that fit a
    label (IoU >= `SAME_OBJECT_IOU`); `covered`: the share of labels that a detection above
    `LOW` covers (IoU >= `NOTHING_IOU`). Both as `(k + 1) / (n + 2)` of `k` out of `n`
    (Laplace's rule: one half where nothing was seen); `detections`, `labels`: the `n`s.

    Args:
        labels, predictions: per image, as `cleanlab_inputs` returns them.
        sizes: int `[M, 2]` each image's `(height, width)` in pixels.
    """
    counts = {name: np.zeros((num_classes, 2), np.int64)
              for name in ("detections", "fitting", "labels", "covering")}
    for label, prediction, (height, width) in zip(labels, predictions, sizes):
        boxes, classes, probabilities = _flat(prediction)
        overlaps = iou_matrix(label["bboxes"], boxes)  # [L, M]
        confident = probabilities >= CONFIDENT
        fits = overlaps.max(axis=0, initial=0.0) >= SAME_OBJECT_IOU
        cut = cut_by_edge(boxes, height, width).astype(int)
        np.add.at(counts["detections"], (classes[confident], cut[confident]), 1)
        np.add.at(counts["fitting"], (classes[confident & fits], cut[confident & fits]), 1)
        given = label["labels"].astype(int)
        covered = ((overlaps >= NOTHING_IOU) & (probabilities > LOW)).any(axis=1)
        cut = cut_by_edge(label["bboxes"], height, width).astype(int)
        np.add.at(counts["labels"], (given, cut), 1)
        np.add.at(counts["covering"], (given[covered], cut[covered]), 1)
    return {"labelled": (counts["fitting"] + 1) / (counts["detections"] + 2),
            "covered": (counts["covering"] + 1) / (counts["labels"] + 2),
            "detections": counts["detections"], "labels": counts["labels"]}


def _flat(prediction: Sequence[np.ndarray]):
    """One image's predictions as `(boxes [M, 4], classes [M], probabilities [M])`, in the
    order cleanlab numbers them (class by class)."""
    boxes = np.concatenate([p[:, :4] for p in prediction]).reshape(-1, 4)
    classes = np.concatenate([np.full(len(p), c) for c, p in enumerate(prediction)]).astype(int)
    probabilities = np.concatenate([p[:, 4] for p in prediction])
    return boxes, classes, probabilities


def score_labels(index: SplitIndex, detections: Dict[int, List[dict]],
                 class_names: Sequence[str], confident_score: float) -> dict:
    """The audit's findings and per-image scores.

    Args:
        index: the audited split (cleaned objects, as training reads them).
        detections: image id -> its out-of-sample detections (COCO results, `category_id`
            = class + 1, `score` the detector's).
        class_names: the `C` classes.
        confident_score: the detector score mapped to cleanlab's confident probability.

    Returns:
        `issues` (findings of every kind, most likely an error first: `score` ascending),
        `images` (each image's `label_quality` from `get_label_quality_scores` and cleanlab's
        `flagged` from `find_label_issues`, worst first), `objects` (every label's `swap`
        and `badloc` scores from cleanlab, in the split's order) and `habits` (per class and
        edge, the shares of `annotation_habits`: the boxes on nothing are weighed by
        `covered`).
    """
    from cleanlab.object_detection.filter import find_label_issues
    from cleanlab.object_detection.rank import (compute_badloc_box_scores,
                                                compute_overlooked_box_scores,
                                                compute_swap_box_scores, get_label_quality_scores)

    labels, predictions, positions = cleanlab_inputs(index, detections, len(class_names),
                                                     confident_score)
    kwargs = {"labels": labels, "predictions": predictions}
    overlooked = compute_overlooked_box_scores(**kwargs)
    swap = compute_swap_box_scores(**kwargs)
    badloc = compute_badloc_box_scores(**kwargs)
    quality = get_label_quality_scores(labels, predictions, verbose=False)
    flagged = find_label_issues(labels, predictions)
    habits = annotation_habits(labels, predictions, index.sizes, len(class_names))
    boxes = pixel_boxes(index)
    issues, objects = [], []
    for i, label in enumerate(labels):
        where = {"image": index.paths[i], "annotation": index.annotations[i],
                 "image_id": int(index.image_ids[i])}
        pred_boxes, pred_classes, pred_probs = _flat(predictions[i])
        overlaps = iou_matrix(label["bboxes"], pred_boxes)  # [L, M]
        height, width = index.sizes[i]
        label_cut = cut_by_edge(label["bboxes"], height, width).astype(int)
        suggested = set()  # predictions a label's finding already points at
        for j, position in enumerate(positions[i]):
            given = int(label["labels"][j])
            objects.append({"annotation": index.annotations[i],
                            "object_index": int(index.object_index[position]),
                            "class": class_names[given], "swap": float(swap[i][j]),
                            "badloc": float(badloc[i][j])})
            found = _label_finding(overlaps[j], given, float(swap[i][j]), float(badloc[i][j]),
                                   pred_boxes, pred_classes, pred_probs, class_names,
                                   habits["covered"][given, label_cut[j]])
            if found is not None:
                suggested.add(found.pop("prediction", None))
                issues.append({**where, **found, "object_index": int(index.object_index[position]),
                               "class": class_names[given],
                               "box": [round(float(v), 2) for v in boxes[position]]})
        candidates = [(float((1 - pred_probs[m]) / (1 - CONFIDENT)), m, evidence)
                      for m, evidence in _missing_scores(overlooked[i], overlaps, pred_probs)
                      if m not in suggested]
        # one finding per object: not its detections in other classes, nor the detection a
        # label's finding already suggests
        kept: List[int] = [m for m in suggested if m is not None]
        for score, m, evidence in sorted(candidates):
            if kept and iou_matrix(pred_boxes[m], pred_boxes[kept]).max() >= SAME_OBJECT_IOU:
                continue
            kept.append(m)
            issues.append({**where, "kind": MISSING, "score": score, "fit": evidence,
                           "object_index": None, "class": None, "box": None,
                           "suggestion": _suggest("add", pred_boxes[m], pred_classes[m],
                                                  pred_probs[m], class_names)})
    issues.sort(key=lambda issue: issue["score"])
    for rank, issue in enumerate(issues, start=1):
        issue["rank"] = rank
    images = [{"image": index.paths[i], "annotation": index.annotations[i],
               "image_id": int(index.image_ids[i]), "label_quality": float(quality[i]),
               "flagged": bool(flagged[i])} for i in np.argsort(quality, kind="stable")]
    return {"issues": issues, "images": images, "objects": objects,
            "habits": [{"class": name, "cut_by_edge": bool(cut),
                        "labelled": float(habits["labelled"][c, cut]),
                        "detections": int(habits["detections"][c, cut]),
                        "covered": float(habits["covered"][c, cut]),
                        "labels": int(habits["labels"][c, cut])}
                       for c, name in enumerate(class_names) for cut in (0, 1)]}


def _missing_scores(overlooked: np.ndarray, overlaps: np.ndarray, pred_probs: np.ndarray):
    """`(prediction, fit)` for each likely missing box of one image: a confident prediction
    that touches no label, with cleanlab's overlooked score (its similarity to the nearest
    label of its class); else a confident prediction that touches labels but fits none (IoU <
    `SAME_OBJECT_IOU` with every label, as an object beside its labelled neighbours in a
    crowd), with its best IoU. cleanlab skips the second case: in crowded images (BCCD's
    packed red cells) nearly every detection touches some label. The findings rank by the
    detection's probability (`score` = (1 - p) / (1 - `CONFIDENT`): 0 for a certain detection,
    1 at the confident threshold, the range of cleanlab's scores): measured on BCCD with injected
    errors, the similarity ranked removed boxes below the partial cells at the image borders
    that BCCD's annotators leave out; weighing the probability by how often the annotators
    label such detections (`annotation_habits`) measured no better (top-N recall 0.27 and 0.21
    on two injected copies against 0.24 and 0.22)."""
    best_fit = overlaps.max(axis=0, initial=0.0)
    for m in range(len(pred_probs)):
        if len(overlooked) and np.isfinite(overlooked[m]):
            yield m, float(overlooked[m])
        elif pred_probs[m] >= CONFIDENT and 0.0 < best_fit[m] < SAME_OBJECT_IOU:
            yield m, float(best_fit[m])


def _label_finding(overlaps: np.ndarray, given: int, swap: float, badloc: float,
                   pred_boxes: np.ndarray, pred_classes: np.ndarray, pred_probs: np.ndarray,
                   class_names: Sequence[str], covered: float) -> Optional[dict]:
    """The likeliest error of one label (its IoU with each prediction `overlaps [M]`), or None.

    A box on nothing when no detection above `LOW` covers it (IoU >= `NOTHING_IOU`), scored
    `1 - covered * (1 - support)`: `covered` the share of such labels (class, edge) that
    detections cover, `support` the best probability times IoU among all detections; else,
    when the lower of cleanlab's swap and bad-location scores is at most `MAX_SCORE`, that
    kind, except that a "badly placed" label which a detection of another class fits (IoU >=
    `SAME_OBJECT_IOU`) and none of its own class does is a wrong class: cleanlab's swap score
    only counts detections above its 0.95, so a less confident model's evidence of a wrong
    class shows up as a bad location. The suggestion is the covering detection that fits the
    label best among those of the suggested class."""
    covering = (overlaps >= NOTHING_IOU) & (pred_probs > LOW)
    if not covering.any():
        support = float(np.max(overlaps * pred_probs, initial=0.0))
        return {"kind": ON_NOTHING, "score": float(1 - covered * (1 - support)),
                "suggestion": {"action": "remove"}}
    kind, score = min(((WRONG_CLASS, swap), (BADLY_PLACED, badloc)), key=lambda pair: pair[1])
    if score > MAX_SCORE:
        return None
    same, other = covering & (pred_classes == given), covering & (pred_classes != given)
    fits = lambda chosen: float(np.max(np.where(chosen, overlaps, 0.0)))  # noqa: E731
    if kind == BADLY_PLACED and fits(other) >= SAME_OBJECT_IOU > fits(same):
        kind = WRONG_CLASS
    candidates = other if kind == WRONG_CLASS else same
    if not candidates.any():  # cleanlab's similarity also weighs distance, not IoU alone
        candidates = covering
    best = int(np.argmax(np.where(candidates, overlaps, -1.0)))
    return {"kind": kind, "score": score, "prediction": best,
            "suggestion": _suggest("relabel" if kind == WRONG_CLASS else "move",
                                   pred_boxes[best], pred_classes[best], pred_probs[best],
                                   class_names)}


def _suggest(action: str, box: np.ndarray, class_id: int, probability: float,
             class_names: Sequence[str]) -> dict:
    return {"action": action, "class": class_names[int(class_id)],
            "box": [round(float(v), 2) for v in box], "probability": float(probability)}


def summarize(issues: Sequence[dict]) -> Dict[str, int]:
    """Findings per kind (every kind listed, zero included)."""
    return {kind: sum(issue["kind"] == kind for issue in issues) for kind in KINDS}
