"""COCO-format dicts, the common currency of the metrics: the ground truth of a split
(`coco_ground_truth`), detections as COCO results (`detections_to_coco`), and the checks that
they refer to each other's ids. Conventions: `centernet.evaluation.metrics`' docstring.
Pure NumPy; no TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


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


def category_names(ground_truth: dict, class_names: Sequence[str] | None) -> dict[int, str]:
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


def check_detection_ids(ground_truth: dict, detections: list[dict]) -> None:
    """Raise ValueError when a detection's image or category id is not in the ground truth."""
    for key, field in (("images", "image_id"), ("categories", "category_id")):
        known = {int(entry["id"]) for entry in ground_truth[key]}
        unknown = sorted({int(d[field]) for d in detections} - known)
        if unknown:
            raise ValueError(
                f"detections refer to {field} values not in the ground truth: {unknown[:10]}"
                + (" ..." if len(unknown) > 10 else "")
            )


def ground_truth_subset(ground_truth: dict, image_ids: set[int]) -> dict:
    """``ground_truth`` restricted to the images in ``image_ids`` and their annotations."""
    return {
        **ground_truth,
        "images": [image for image in ground_truth["images"] if int(image["id"]) in image_ids],
        "annotations": [
            annotation for annotation in ground_truth["annotations"]
            if int(annotation["image_id"]) in image_ids
        ],
    }
