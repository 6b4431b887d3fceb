"""Detection metrics: COCO AP through pycocotools, Pascal VOC AP50.

Pure NumPy and pycocotools: importing this module does not import TensorFlow, so scripts and
tests can use it cheaply. pycocotools' progress messages are silenced.

Conventions
-----------
* Boxes handed in are ``xyxy`` float pixels of the original image; the COCO dicts this module
  writes and reads hold ``bbox = [x, y, w, h]`` in the same pixels.
* Class ids inside the project are contiguous ``0..C-1``; ``category_ids[c]`` is the original
  dataset category id of class ``c`` (COCO: 1..90 with gaps). Everything this module returns,
  detections and metric keys alike, uses the original ids (and the names of the categories).
* Metrics are fractions in ``[0, 1]``, not percent. A metric that is undefined, because there is
  no ground truth to measure it on (pycocotools reports ``-1``: no object in that area range, or
  a class without objects), is returned as ``float("nan")`` rather than ``-1``, so that neither
  an average over classes or runs nor a "best checkpoint" comparison can take it for a score.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

COCO_STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
"""Names of the 12 standard COCOeval statistics, in pycocotools' ``stats`` order."""

VOC_METRIC_NAMES = ("VOC07_AP50", "VOC_AP50")
"""Keys :meth:`CocoEvaluator.evaluate` adds when asked for VOC metrics."""

PER_CLASS_PREFIX = "AP50/"
"""Prefix of the per-class COCO AP50 keys, followed by the category name."""

VOC_IOU_THRESHOLD = 0.5


@dataclass
class GroundTruthImage:
    """The annotations of one image, as a source yields them.

    Attributes:
        image_id: original image id (the one detections refer to).
        height: original image height in pixels.
        width: original image width in pixels.
        boxes: float ``[N, 4]``, ``x1, y1, x2, y2`` in original-image pixels.
        labels: int ``[N]``, contiguous class ids ``0..C-1``.
        is_crowd: bool ``[N]``; crowd boxes are COCO ignore regions (VOC: "difficult").
            ``None`` (the default) means no box is a crowd.
    """

    image_id: int
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    is_crowd: np.ndarray | None = None


# --------------------------------------------------------------------------------------------
# COCO-format ground truth and detections
# --------------------------------------------------------------------------------------------


def coco_ground_truth(
    images: Iterable[GroundTruthImage],
    class_names: Sequence[str],
    category_ids: Sequence[int] | None = None,
) -> dict:
    """Build a COCO-format ground-truth dict (JSON-serialisable) from per-image annotations.

    Args:
        images: the annotated images; their ``image_id`` must be unique.
        class_names: ``C`` names, indexed by contiguous class id.
        category_ids: ``C`` original category ids, indexed by contiguous class id; defaults to
            ``range(C)``.

    Returns:
        ``{"images": [{id, height, width}], "annotations": [{id, image_id, category_id, bbox,
        area, iscrowd}], "categories": [{id, name}]}``. Annotation ids run from 1, ``bbox`` is
        ``[x, y, w, h]`` in pixels, ``area = w * h`` (pixels²), ``iscrowd`` is 0 or 1; the
        categories are listed in contiguous-id order.

    Raises:
        ValueError: naming the image id and the offending value, when a label is outside
            ``0..C-1``, a box is not finite or has ``x2 < x1`` or ``y2 < y1``, array shapes
            disagree, or an image id repeats.
    """
    category_ids = _checked_category_ids(category_ids, len(class_names))
    coco_images, annotations, seen = [], [], set()
    for image in images:
        image_id = int(image.image_id)
        if image_id in seen:
            raise ValueError(f"image {image_id}: image id appears more than once")
        seen.add(image_id)
        boxes, labels, is_crowd = _checked_annotations(image, len(class_names))
        coco_images.append({"id": image_id, "height": int(image.height), "width": int(image.width)})
        for box, label, crowd in zip(boxes.tolist(), labels.tolist(), is_crowd.tolist()):
            annotations.append(
                _annotation(len(annotations) + 1, image_id, category_ids[label], box, crowd)
            )
    categories = [{"id": cid, "name": str(name)} for cid, name in zip(category_ids, class_names)]
    return {"images": coco_images, "annotations": annotations, "categories": categories}


def _checked_category_ids(category_ids: Sequence[int] | None, num_classes: int) -> list[int]:
    """``category_ids`` as a list of ``num_classes`` unique Python ints (default ``range(C)``)."""
    if category_ids is None:
        return list(range(num_classes))
    ids = [int(cid) for cid in category_ids]
    if len(ids) != num_classes:
        raise ValueError(f"category_ids has {len(ids)} entries but there are {num_classes} classes")
    if len(set(ids)) != len(ids):
        raise ValueError(f"category_ids are not unique: {ids}")
    return ids


def _checked_annotations(
    image: GroundTruthImage, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``boxes [N, 4]`` float64, ``labels [N]`` int64, ``is_crowd [N]`` bool."""
    image_id = int(image.image_id)
    boxes = np.asarray(image.boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    labels = np.asarray(image.labels).reshape(-1)
    crowd = np.zeros(len(labels), bool) if image.is_crowd is None else np.asarray(image.is_crowd)
    crowd = crowd.reshape(-1).astype(bool)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not len(boxes) == len(labels) == len(crowd):
        raise ValueError(
            f"image {image_id}: boxes {boxes.shape}, labels {labels.shape} and is_crowd "
            f"{crowd.shape} do not describe the same [N, 4] / [N] objects"
        )
    for box, label in zip(boxes, labels):
        if not 0 <= label < num_classes:
            raise ValueError(f"image {image_id}: label {label} is outside 0..{num_classes - 1}")
        if not np.isfinite(box).all():
            raise ValueError(f"image {image_id}: box {box.tolist()} has non-finite coordinates")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"image {image_id}: box {box.tolist()} has x2 < x1 or y2 < y1")
    return boxes, labels.astype(np.int64), crowd


def _annotation(ann_id: int, image_id: int, category_id: int, box: list, crowd: bool) -> dict:
    """One COCO annotation for an ``xyxy`` pixel box."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id,
        "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": int(crowd),
    }


def detections_to_coco(
    image_ids,
    boxes,
    scores,
    classes,
    category_ids: Sequence[int] | None = None,
    score_threshold: float = 0.0,
) -> list[dict]:
    """Convert a batch of decoded detections to COCO results entries.

    Args:
        image_ids: int ``[B]``, original image ids.
        boxes: float ``[B, K, 4]``, ``x1, y1, x2, y2`` in original-image pixels.
        scores: float ``[B, K]``, confidences.
        classes: int ``[B, K]``, contiguous class ids ``0..C-1``.
        category_ids: ``C`` original category ids indexed by contiguous id; ``None`` writes the
            contiguous ids unchanged.
        score_threshold: entries with ``score < score_threshold`` are dropped; a score equal to
            the threshold is kept (so the default 0.0 keeps every non-negative score).

    Returns:
        ``[{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}]``, all
        Python numbers, in batch-then-rank order. Entries whose score or box is not finite are
        dropped (they can be neither matched nor written as JSON). Zero-width boxes are kept;
        an inverted box (``x2 < x1`` or ``y2 < y1``) is written with that side 0, so it counts
        as the false positive it is instead of getting the negative area pycocotools would
        leave out of every area range.

    Raises:
        ValueError: when the shapes disagree, or a kept entry's class is outside ``0..C-1``.
    """
    image_ids = np.asarray(image_ids).reshape(-1).astype(np.int64)
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes)
    batch = (len(image_ids),)
    if boxes.shape[:1] != batch or boxes.ndim != 3 or boxes.shape[2] != 4 \
            or scores.shape != boxes.shape[:2] or classes.shape != boxes.shape[:2]:
        raise ValueError(
            f"expected image_ids [B], boxes [B, K, 4], scores [B, K], classes [B, K]; got "
            f"{image_ids.shape}, {boxes.shape}, {scores.shape}, {classes.shape}"
        )
    keep = np.isfinite(scores) & (scores >= score_threshold) & np.isfinite(boxes).all(axis=-1)
    rows, ranks = np.nonzero(keep)
    categories = _original_category_ids(classes[rows, ranks].astype(np.int64), category_ids)
    x1, y1, x2, y2 = boxes[rows, ranks].T
    xywh = np.stack([x1, y1, np.maximum(x2 - x1, 0.0), np.maximum(y2 - y1, 0.0)], axis=1)
    return [
        {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}
        for image_id, category_id, bbox, score in zip(
            image_ids[rows].tolist(), categories.tolist(), xywh.tolist(),
            scores[rows, ranks].tolist(),
        )
    ]


def _original_category_ids(labels: np.ndarray, category_ids: Sequence[int] | None) -> np.ndarray:
    """Map contiguous ``labels [D]`` to original category ids ``[D]`` (identity for ``None``)."""
    if category_ids is None:
        return labels
    lookup = np.asarray(category_ids, dtype=np.int64)
    bad = (labels < 0) | (labels >= len(lookup))
    if bad.any():
        raise ValueError(
            f"detection class {int(labels[bad][0])} is outside 0..{len(lookup) - 1} "
            f"(category_ids has {len(lookup)} entries)"
        )
    return lookup[labels]


# --------------------------------------------------------------------------------------------
# COCO metrics (pycocotools)
# --------------------------------------------------------------------------------------------


def coco_metrics(
    ground_truth: dict,
    detections: list[dict],
    class_names: Sequence[str] | None = None,
    *,
    print_summary: bool = False,
) -> dict[str, float]:
    """COCO box metrics of ``detections`` against ``ground_truth``, via pycocotools' COCOeval.

    Args:
        ground_truth: COCO-format dict as :func:`coco_ground_truth` builds (not modified).
        detections: COCO results entries as :func:`detections_to_coco` builds (not modified);
            may be empty.
        class_names: names for the per-class keys, one per entry of
            ``ground_truth["categories"]`` in that order; defaults to the categories' names.
        print_summary: print pycocotools' own 12-line summary to stdout (silent otherwise).

    Returns:
        Fractions in ``[0, 1]``: the 12 COCO statistics under :data:`COCO_STAT_NAMES`
        (``"AP"``, ``"AP50"``, ..., ``"ARl"``), then ``"AP50/<name>"`` for every category: the
        mean over COCO's 101 recall thresholds of the interpolated precision at IoU 0.5, area
        "all", 100 detections per image. A statistic pycocotools reports as ``-1`` (no ground
        truth in that area range) and the AP50 of a category without (non-crowd) ground truth
        are ``float("nan")``. With no detections every defined metric is 0.0.

    Raises:
        ValueError: when a detection refers to an image or a category id that is not in the
            ground truth (a contiguous-versus-original id mix-up would otherwise score 0).
    """
    names = _category_names(ground_truth, class_names)
    _check_detection_ids(ground_truth, detections)
    return cocoeval_metrics(run_cocoeval(ground_truth, detections, print_summary), names)


def cocoeval_metrics(evaluation: COCOeval, names: dict[int, str]) -> dict[str, float]:
    """:func:`coco_metrics`' dict from a summarised COCOeval and ``{category id: name}``."""
    metrics = {
        name: _nan_if_undefined(value) for name, value in zip(COCO_STAT_NAMES, evaluation.stats)
    }
    metrics.update(_per_class_ap50(evaluation, names))
    return metrics


def _category_names(ground_truth: dict, class_names: Sequence[str] | None) -> dict[int, str]:
    """``{category id: name}`` in ``ground_truth["categories"]`` order; names must be unique."""
    ids = [int(category["id"]) for category in ground_truth["categories"]]
    if class_names is None:
        names = [str(c.get("name", c["id"])) for c in ground_truth["categories"]]
    else:
        names = [str(name) for name in class_names]
    if len(names) != len(ids):
        raise ValueError(f"{len(names)} class names for {len(ids)} categories")
    if len(set(names)) != len(names):
        raise ValueError(f"class names are not unique: {names}")
    return dict(zip(ids, names))


def _check_detection_ids(ground_truth: dict, detections: list[dict]) -> None:
    """Raise ValueError when a detection's image or category id is not in the ground truth."""
    for key, field in (("images", "image_id"), ("categories", "category_id")):
        known = {int(entry["id"]) for entry in ground_truth[key]}
        unknown = sorted({int(d[field]) for d in detections} - known)
        if unknown:
            raise ValueError(
                f"detections refer to {field} values not in the ground truth: {unknown[:10]}"
                + (" ..." if len(unknown) > 10 else "")
            )


def run_cocoeval(ground_truth: dict, detections: list[dict], print_summary: bool) -> COCOeval:
    """Evaluate, accumulate and summarise ``detections`` with COCOeval(iouType="bbox")."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco_api(_annotation_copies(ground_truth))
        coco_dt = _load_results(coco_gt, detections)
        evaluation = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluation.summarize()
    if print_summary:
        print(summary.getvalue(), end="")
    return evaluation


def _annotation_copies(dataset: dict) -> dict:
    """``dataset`` with its annotations copied (COCOeval writes an "ignore" key into them)."""
    return {**dataset, "annotations": [dict(annotation) for annotation in dataset["annotations"]]}


def _coco_api(dataset: dict) -> COCO:
    """A pycocotools COCO object over an in-memory dataset dict."""
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _load_results(coco_gt: COCO, detections: list[dict]) -> COCO:
    """Results as a COCO object; ``loadRes`` itself fails on an empty list, so build that one."""
    if detections:
        return coco_gt.loadRes([dict(detection) for detection in detections])
    return _coco_api({
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": [],
    })


def _nan_if_undefined(value: float) -> float:
    """pycocotools' ``-1`` ("no ground truth") as NaN; any other value as a Python float."""
    return float("nan") if value == -1 else float(value)


def _per_class_ap50(evaluation: COCOeval, names: dict[int, str]) -> dict[str, float]:
    """``{"AP50/<name>": AP}`` from COCOeval's precision at IoU 0.5, area all, 100 dets."""
    params = evaluation.params
    iou_index = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    precision = evaluation.eval["precision"][
        iou_index, :, :, params.areaRngLbl.index("all"), params.maxDets.index(100)
    ]  # [R recall thresholds, K categories]
    column = {category_id: k for k, category_id in enumerate(params.catIds)}
    metrics = {}
    for category_id, name in names.items():
        values = precision[:, column[category_id]]
        values = values[values > -1]
        metrics[PER_CLASS_PREFIX + name] = float(values.mean()) if values.size else float("nan")
    return metrics


# --------------------------------------------------------------------------------------------
# Pascal VOC AP50
# --------------------------------------------------------------------------------------------


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
    _check_detection_ids(ground_truth, detections)
    names = _category_names(ground_truth, None)
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


# --------------------------------------------------------------------------------------------
# Evaluator and report
# --------------------------------------------------------------------------------------------


class CocoEvaluator:
    """detectron2-style evaluator: :meth:`reset`, :meth:`process` per batch, :meth:`evaluate`.

    Only the images passed to :meth:`process` since the last :meth:`reset` are evaluated (with
    or without detections), so a periodic evaluation on the first batches of a validation set is
    measured on those images alone, not penalised for the ones it skipped.
    """

    def __init__(
        self,
        ground_truth: dict,
        category_ids: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        voc_metrics: bool = False,
        score_threshold: float = 0.0,
    ):
        """Args:
            ground_truth: COCO-format dict as :func:`coco_ground_truth` builds.
            category_ids: ``C`` original category ids indexed by contiguous class id; defaults
                to the ids of ``ground_truth["categories"]`` in their order, which is the
                mapping :func:`coco_ground_truth` wrote.
            class_names: names for the per-class keys (see :func:`coco_metrics`).
            voc_metrics: also report VOC AP50 (:data:`VOC_METRIC_NAMES`).
            score_threshold: detections scoring below it are dropped (see
                :func:`detections_to_coco`).
        """
        self._ground_truth = ground_truth
        if category_ids is None:
            category_ids = [category["id"] for category in ground_truth["categories"]]
        self._category_ids = [int(category_id) for category_id in category_ids]
        self._class_names = class_names
        self._voc_metrics = voc_metrics
        self._score_threshold = score_threshold
        self._known_image_ids = {int(image["id"]) for image in ground_truth["images"]}
        self._detections: list[dict] = []
        self._image_ids: set[int] = set()
        self.last_evaluation: COCOeval | None = None  # the last evaluate()'s, for its curves

    def reset(self) -> None:
        """Forget every processed image and detection."""
        self._detections = []
        self._image_ids = set()

    def process(self, image_ids, boxes, scores, classes) -> None:
        """Add one batch: ``image_ids [B]``, ``boxes [B, K, 4]`` xyxy original-image pixels,
        ``scores [B, K]``, ``classes [B, K]`` contiguous ids (NumPy arrays or tensors).

        Raises:
            ValueError: when an image id is not in the ground truth or was already processed
                (a repeated dataset would count its detections twice); the batch is not added.
        """
        ids = np.asarray(image_ids).reshape(-1).astype(np.int64).tolist()
        unknown = sorted(set(ids) - self._known_image_ids)
        if unknown:
            raise ValueError(f"image ids not in the ground truth: {unknown[:10]}")
        repeated = sorted(
            {i for i, n in Counter(ids).items() if n > 1 or i in self._image_ids}
        )
        if repeated:
            raise ValueError(f"image ids processed more than once since reset(): {repeated[:10]}")
        detections = detections_to_coco(
            ids, boxes, scores, classes, self._category_ids, self._score_threshold
        )
        self._detections.extend(detections)
        self._image_ids.update(ids)

    @property
    def detections(self) -> list[dict]:
        """The COCO results entries gathered so far (original category ids); a copy."""
        return list(self._detections)

    @property
    def ground_truth(self) -> dict:
        """The COCO-format ground truth of the images processed since the last reset."""
        return _ground_truth_subset(self._ground_truth, self._image_ids)

    def evaluate(self) -> dict[str, float]:
        """:func:`coco_metrics` on the processed images, plus ``"VOC07_AP50"`` (11-point mAP)
        and ``"VOC_AP50"`` (area mAP) when ``voc_metrics``.

        Raises:
            RuntimeError: when no image has been processed.
        """
        if not self._image_ids:
            raise RuntimeError("CocoEvaluator.evaluate(): no image processed since reset()")
        ground_truth = self.ground_truth
        names = _category_names(ground_truth, self._class_names)
        _check_detection_ids(ground_truth, self._detections)
        self.last_evaluation = run_cocoeval(ground_truth, self._detections, print_summary=False)
        metrics = cocoeval_metrics(self.last_evaluation, names)
        if self._voc_metrics:
            for name, use_07_metric in zip(VOC_METRIC_NAMES, (True, False)):
                metrics[name] = voc_ap50(ground_truth, self._detections, use_07_metric)["mAP"]
        return metrics


def _ground_truth_subset(ground_truth: dict, image_ids: set[int]) -> dict:
    """``ground_truth`` restricted to the images in ``image_ids`` and their annotations."""
    return {
        **ground_truth,
        "images": [image for image in ground_truth["images"] if int(image["id"]) in image_ids],
        "annotations": [
            annotation for annotation in ground_truth["annotations"]
            if int(annotation["image_id"]) in image_ids
        ],
    }


def format_metrics_table(metrics: dict[str, float]) -> str:
    """A fixed-width two-column table of ``metrics`` in percent with one decimal.

    Rows: the 12 COCO statistics (in :data:`COCO_STAT_NAMES` order), the VOC numbers, the
    per-class ``AP50/<name>`` rows, then any other key in the dict's order. NaN shows as ``-``.
    Example row: ``AP          71.3``.
    """
    known = [*COCO_STAT_NAMES, *VOC_METRIC_NAMES]
    keys = [key for key in known if key in metrics]
    keys += [key for key in metrics if key.startswith(PER_CLASS_PREFIX)]
    keys += [key for key in metrics if key not in keys]
    width = max([len("metric"), *map(len, keys)])
    lines = [f"{'metric':<{width}}  {'%':>6}", f"{'-' * width}  {'-' * 6}"]
    lines += [f"{key:<{width}}  {_percent(metrics[key]):>6}" for key in keys]
    return "\n".join(lines)


def _percent(value: float) -> str:
    """``value`` as a percentage with one decimal, ``-`` for NaN."""
    return "-" if math.isnan(value) else f"{100.0 * value:.1f}"
