"""One split of a folder dataset: annotations as parsed, checked against the images, as records.

The VOC and COCO parsers (`voc.py`, `coco.py`) turn their files into `RawImage`s and know
nothing about defects beyond their own syntax. `clean_split` checks every image and box the same
way for both (see `report.py` for the kinds of defect and what is done about each) and returns a
`SplitIndex`, whose `records()` is the `tf.data` stream of the `Source.read` record format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

from centernet.data import report as defects
from centernet.data.images import ImageInfo, probe_images
from centernet.data.report import DataReport, SplitCounts
from centernet.errors import DataError


@dataclass
class RawObject:
    """An object as annotated. `box` is `(x1, y1, x2, y2)` in image pixels (continuous
    coordinates: pixel column c spans [c, c + 1)), or None with `problem` saying which
    coordinate is missing or not a number. `class_key` is the class name (VOC) or category id
    (COCO). `ignore`: VOC difficult or COCO crowd."""

    index: int
    class_key: Hashable
    box: Optional[Tuple[float, float, float, float]]
    ignore: bool = False
    problem: str = ""


@dataclass
class RawImage:
    """An annotated image as parsed: its annotation file (for messages), the image file it
    names (None: not found), its id, the annotated `(height, width)` (None: absent), and its
    objects. `unparsable` holds the parser's error for an annotation that could not be read
    (or, with `duplicate`, says where it was listed again)."""

    annotation: str
    image_path: Optional[Path]
    image_id: int
    size: Optional[Tuple[int, int]]
    objects: List[RawObject] = field(default_factory=list)
    unparsable: str = ""
    duplicate: bool = False


@dataclass
class SplitIndex:
    """The usable images of a split and their objects, flat.

    Attributes:
        paths: `M` image files.
        image_ids: int64 `[M]`.
        sizes: int64 `[M, 2]` real `(height, width)`.
        boxes: float32 `[T, 4]` normalised `ymin, xmin, ymax, xmax` (the TFDS layout).
        labels: int32 `[T]`; is_crowd: bool `[T]` (ignored by training, ignore regions in
            evaluation).
        row_splits: int64 `[M + 1]`: image `i` owns objects `row_splits[i]:row_splits[i + 1]`.
        annotations: `M` annotation locations as the parser names them (the XML file; the
            COCO file with the image's id), for messages that send a user to a label.
        object_index: int64 `[T]`: each object's index among its image's annotated objects
            (objects left out by the checks keep their numbers: no renumbering).
    """

    paths: List[str]
    image_ids: np.ndarray
    sizes: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    is_crowd: np.ndarray
    row_splits: np.ndarray
    annotations: List[str]
    object_index: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def reader(self) -> Callable:
        """The function from an image's position in the index (int64 scalar tensor) to its
        record: `image` (encoded bytes, read from its file then), `image_id`, `boxes`,
        `labels`, `is_crowd` (see `Source.read`). Mapped over positions after a skip, it
        reads no file of the skipped ones."""
        import tensorflow as tf

        paths = tf.constant(self.paths, tf.string)
        image_ids = tf.constant(self.image_ids, tf.int64)
        starts = tf.constant(self.row_splits[:-1], tf.int64)
        ends = tf.constant(self.row_splits[1:], tf.int64)
        boxes = tf.constant(self.boxes.reshape(-1, 4), tf.float32)
        labels = tf.constant(self.labels, tf.int32)
        is_crowd = tf.constant(self.is_crowd, tf.bool)

        def record(position):
            start, end = starts[position], ends[position]
            return {"image": tf.io.read_file(paths[position]), "image_id": image_ids[position],
                    "boxes": boxes[start:end], "labels": labels[start:end],
                    "is_crowd": is_crowd[start:end]}

        return record

    def records(self):
        """`tf.data.Dataset` of the records (`reader`) in index order."""
        import tensorflow as tf

        return tf.data.Dataset.range(len(self)).map(self.reader(),
                                                     num_parallel_calls=tf.data.AUTOTUNE)


def clean_box(box: Sequence[float], height: int,
              width: int) -> Tuple[Optional[np.ndarray], List[str]]:
    """Repair one `x1, y1, x2, y2` pixel box for an image of `height x width`.

    Returns:
        the repaired float64 `[4]` box (None when it must be dropped) and the defect kinds
        found, in order: `box_inverted` (corners swapped), then `box_empty` (no area: dropped),
        `box_outside` (no area left inside the image: dropped) or `box_clipped`.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    kinds = []
    if x2 < x1 or y2 < y1:
        kinds.append(defects.BOX_INVERTED)
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None, kinds + [defects.BOX_EMPTY]
    clipped = np.clip([x1, y1, x2, y2], 0.0, [width, height, width, height])
    if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
        return None, kinds + [defects.BOX_OUTSIDE]
    if not np.array_equal(clipped, [x1, y1, x2, y2]):
        kinds.append(defects.BOX_CLIPPED)
    return clipped, kinds


def _check_image(split: str, raw: RawImage, info: ImageInfo | ValueError | None,
                 report: DataReport) -> Optional[ImageInfo]:
    """The image's real size and format, or None (reported) when the image is unusable."""
    if raw.unparsable:
        kind = defects.DUPLICATE_IMAGE if raw.duplicate else defects.ANNOTATION_UNPARSABLE
        report.add(split, raw.annotation, kind, raw.unparsable)
        return None
    if raw.image_path is None or info is None:
        report.add(split, raw.annotation, defects.IMAGE_MISSING,
                   "no image file for this annotation")
        return None
    if isinstance(info, ValueError):
        report.add(split, raw.image_path, defects.IMAGE_UNREADABLE, str(info))
        return None
    if info.converted:
        report.add(split, raw.image_path, defects.IMAGE_CONVERTED,
                   f"{info.converted} read as 8-bit RGB")
    if raw.size is None:
        report.add(split, raw.annotation, defects.SIZE_MISSING,
                   f"the image's own size {info.height}x{info.width} (HxW) is used")
    elif tuple(raw.size) != (info.height, info.width):
        report.add(split, raw.annotation, defects.SIZE_MISMATCH,
                   f"annotated {raw.size[0]}x{raw.size[1]}, image {info.height}x{info.width} "
                   f"(HxW): the image's size is used")
    return info


def clean_split(split: str, images: Sequence[RawImage], class_index: Dict[Hashable, int],
                report: DataReport, max_objects: Optional[int] = None,
                probe: Callable[[Sequence[Path]], list] = probe_images,
                location: str = "", classes_chosen: bool = False) -> SplitIndex:
    """Check a parsed split against its images and repair or leave out what is wrong.

    Args:
        split: the split's name (for the report).
        images: the parsed annotations.
        class_index: class key (name or category id) -> contiguous class id; objects of other
            classes are dropped as `class_unknown`.
        report: receives every case (and raises on the first skip when strict).
        max_objects: `targets.max_objects`, to report images with more trainable objects.
        probe: image paths -> `ImageInfo` or `ValueError` each (`images.probe_images`).
        location: where the split's annotations are (the split list, folder or file), for the
            error when nothing is usable.
        classes_chosen: the user chose the classes (`dataset.classes`), so objects of other
            classes are `class_excluded` (not used, never a strict error), not `class_unknown`.

    Raises:
        DataError: the split has no usable image (naming the first reasons), or `strict`.
    """
    infos = probe([raw.image_path for raw in images if raw.image_path and
                          not raw.unparsable])
    found = iter(infos)
    paths, ids, sizes, boxes, labels, crowd, splits = [], [], [], [], [], [], [0]
    annotations, object_index = [], []
    counts = SplitCounts(images=len(images))
    for raw in images:
        info = next(found) if raw.image_path and not raw.unparsable else None
        counts.objects += len(raw.objects)
        info = _check_image(split, raw, info, report)
        if info is None:
            continue
        kept = 0
        for obj in raw.objects:
            where = raw.annotation
            if obj.box is None:
                report.add(split, where, defects.COORDINATE_INVALID, obj.problem, obj.index)
                continue
            if obj.class_key not in class_index:
                if classes_chosen:
                    report.add(split, where, defects.CLASS_EXCLUDED,
                               f"class {obj.class_key!r} is not in dataset.classes", obj.index)
                else:
                    report.add(split, where, defects.CLASS_UNKNOWN, f"class {obj.class_key!r} "
                               f"is not one of the run's classes", obj.index)
                continue
            box, kinds = clean_box(obj.box, info.height, info.width)
            for kind in kinds:
                report.add(split, where, kind, f"box {list(obj.box)} in a {info.height}x"
                           f"{info.width} (HxW) image", obj.index)
            if box is None:
                continue
            boxes.append(box / [info.width, info.height, info.width, info.height])
            labels.append(class_index[obj.class_key])
            crowd.append(obj.ignore)
            object_index.append(obj.index)
            kept += 1
            counts.objects_used += 1
        trainable = sum(not flag for flag in crowd[len(crowd) - kept:])
        if kept == 0:
            report.add(split, raw.annotation, defects.NO_OBJECTS, "used as a background image")
        elif max_objects is not None and trainable > max_objects:
            report.add(split, raw.annotation, defects.TOO_MANY_OBJECTS,
                       f"{trainable} objects; targets keep the first {max_objects} "
                       f"(targets.max_objects)")
        paths.append(str(raw.image_path))
        annotations.append(raw.annotation)
        ids.append(raw.image_id)
        sizes.append((info.height, info.width))
        splits.append(splits[-1] + kept)
    counts.images_used = len(paths)
    report.splits[split] = counts
    if not paths:
        reasons = sorted({case.kind for case in report.cases if case.split == split})
        raise DataError(f"split {split!r} ({location or 'no location given'}) has no usable "
                        f"image ({len(images)} annotated; defects: "
                        f"{', '.join(reasons) or 'none listed'})")
    xyxy = np.asarray(boxes, np.float64).reshape(-1, 4)
    return SplitIndex(paths=paths, image_ids=np.asarray(ids, np.int64),
                      sizes=np.asarray(sizes, np.int64).reshape(-1, 2),
                      boxes=xyxy[:, [1, 0, 3, 2]].astype(np.float32),
                      labels=np.asarray(labels, np.int32),
                      is_crowd=np.asarray(crowd, bool), row_splits=np.asarray(splits, np.int64),
                      annotations=annotations,
                      object_index=np.asarray(object_index, np.int64))
