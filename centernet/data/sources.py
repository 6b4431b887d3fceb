"""Dataset sources: every dataset behind one interface that yields the common example format.

A `Source` reads one split as records (image still encoded, so shuffle buffers and caches stay
small) and `decode_record` turns a record into the common example format of DESIGN.md:

    image     uint8   [H, W, 3] RGB
    boxes     float32 [N, 4] x1, y1, x2, y2 in pixels of that image
    labels    int32   [N] contiguous class ids 0..C-1
    is_crowd  bool    [N] boxes that training ignores and COCO evaluation treats as ignore regions
    image_id  int64   the dataset's own image id

`source=shapes` is the built-in synthetic TFDS dataset (prepared on first use) and
`source=tfds` any prepared TFDS detection dataset with `objects/bbox` and `objects/label`
(`voc/2007`, `coco/2017`, ...). VOC's `is_difficult` boxes are treated as ignore regions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds

from centernet.config import DatasetConfig
from centernet.data import shapes
from centernet.errors import DataError

Record = Dict[str, tf.Tensor]


@dataclass
class Source:
    """A TFDS detection dataset read as records.

    Attributes:
        builder: the prepared TFDS builder.
        class_names: `C` names, index = contiguous class id.
        category_ids: `C` original category ids written into evaluation results.
    """

    builder: tfds.core.DatasetBuilder
    class_names: List[str]
    category_ids: List[int]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def num_examples(self, split: str) -> int:
        return self._split_info(split).num_examples

    def _split_info(self, split: str):
        splits = self.builder.info.splits
        if split not in splits:
            raise DataError(f"split {split!r} does not exist in dataset "
                            f"{self.builder.info.full_name}; it has: {', '.join(sorted(splits))}")
        return splits[split]

    def read(self, split: str) -> tf.data.Dataset:
        """Records of `split` in file order: `image` (encoded bytes), `image_id` int64,
        `boxes` float32 `[N, 4]` normalised `ymin, xmin, ymax, xmax`, `labels` int32 `[N]`,
        `is_crowd` bool `[N]`. Entry points check the split first (`check_splits`)."""
        dataset = self.builder.as_dataset(split=split, shuffle_files=False,
                                          decoders={"image": tfds.decode.SkipDecoding()})
        has_id, ignore_key = record_layout(self.builder.info.features)
        return dataset.enumerate().map(
            lambda index, example: to_record(example, index, has_id, ignore_key),
            num_parallel_calls=tf.data.AUTOTUNE)


def record_layout(features) -> Tuple[bool, Optional[str]]:
    """Whether a TFDS feature dict has `image/id`, and its ignore flag in `objects`
    (`is_crowd` for COCO, `is_difficult` for VOC, None when there is none)."""
    ignore_key = next((key for key in ("is_crowd", "is_difficult") if key in features["objects"]),
                      None)
    return "image/id" in features, ignore_key


def to_record(example: Record, index: tf.Tensor, has_id: bool,
              ignore_key: str | None) -> Record:
    """A TFDS detection example -> a record (see `Source.read`).

    Args:
        example: TFDS features with `image`, `objects/bbox`, `objects/label` (and `image/id`).
        index: the example's position in its split, its id when it has no `image/id`.
        has_id: whether `image/id` exists.
        ignore_key: the `objects` flag marking boxes to ignore (`is_crowd`, `is_difficult`).
    """
    objects = example["objects"]
    labels = tf.cast(objects["label"], tf.int32)
    is_crowd = (tf.cast(objects[ignore_key], tf.bool) if ignore_key
                else tf.zeros_like(labels, dtype=tf.bool))
    return {
        "image": example["image"],
        "image_id": tf.cast(example["image/id"] if has_id else index, tf.int64),
        "boxes": tf.cast(objects["bbox"], tf.float32),
        "labels": labels,
        "is_crowd": is_crowd,
    }


def decode_record(record: Record) -> Record:
    """A record from `Source.read` -> the common example format (module docstring)."""
    image = tf.io.decode_image(record["image"], channels=3, expand_animations=False)
    shape = tf.cast(tf.shape(image), tf.float32)
    scale = tf.stack([shape[1], shape[0], shape[1], shape[0]])
    ymin_xmin_ymax_xmax = record["boxes"]
    boxes = tf.gather(ymin_xmin_ymax_xmax, [1, 0, 3, 2], axis=1) * scale
    return {
        "image": tf.ensure_shape(image, [None, None, 3]),
        "boxes": tf.reshape(boxes, [-1, 4]),
        "labels": record["labels"],
        "is_crowd": record["is_crowd"],
        "image_id": record["image_id"],
    }


def _class_names(builder: tfds.core.DatasetBuilder) -> List[str]:
    label = builder.info.features["objects"]["label"]
    return list(label.names)


def _shapes_builder(cfg: DatasetConfig, data_dir: str | None) -> tfds.core.DatasetBuilder:
    config = shapes.shapes_config(
        image_size=cfg.image_size, num_train=cfg.num_train, num_val=cfg.num_val,
        max_shapes=cfg.max_shapes, min_size=cfg.min_size, max_size=cfg.max_size,
        max_overlap=cfg.max_overlap, seed=cfg.seed)
    return shapes.load_builder(config, data_dir)


def _tfds_builder(cfg: DatasetConfig, data_dir: str | None) -> tfds.core.DatasetBuilder:
    try:
        builder = tfds.builder(cfg.name, data_dir=data_dir)
    except Exception as error:  # TFDS raises several types for unknown names
        raise DataError(f"dataset.name={cfg.name!r} is not a TFDS dataset this installation "
                        f"knows: {error}") from error
    if not builder.is_prepared():
        where = data_dir or "the TFDS default data dir (~/tensorflow_datasets)"
        raise DataError(f"dataset.name={cfg.name!r} has no prepared data in {where}. This project "
                        f"never downloads: prepare it first (e.g. `tfds build {cfg.name} "
                        f"--data_dir DIR`) and pass dataset.data_dir=DIR.")
    features = builder.info.features
    if "objects" not in features or "bbox" not in features["objects"] or \
            "label" not in features["objects"]:
        raise DataError(f"dataset.name={cfg.name!r} is not a detection dataset: it has no "
                        f"objects/bbox and objects/label features")
    return builder


def build_source(cfg: DatasetConfig) -> Source:
    """The source `cfg.source` names, with its class names and original category ids."""
    data_dir = os.path.expanduser(cfg.data_dir) if cfg.data_dir else None
    if cfg.source == "shapes":
        builder = _shapes_builder(cfg, data_dir)
    else:
        builder = _tfds_builder(cfg, data_dir)
    names = _class_names(builder)
    return Source(builder=builder, class_names=names, category_ids=list(range(len(names))))


def check_splits(source: Source, splits: Sequence[str]) -> None:
    """Fail early, naming the split and the splits that exist, before any training work."""
    for split in splits:
        source.num_examples(split)
