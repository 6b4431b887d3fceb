"""tf.data input pipelines: shuffled, augmented training batches with rendered targets, and
letterboxed evaluation batches with what is needed to map detections back.

Per-example work (decoding, augmentation, letterboxing, target rendering) runs in one parallel
`map` with AUTOTUNE; batches are prefetched. With `train.seed` set the stream is deterministic,
and `start_step` skips exactly the examples earlier steps consumed, so a resumed run continues
the same stream.
"""

from __future__ import annotations

import random
from typing import Dict

import tensorflow as tf

from centernet.config import DOWN_RATIO, RunConfig
from centernet.data.augment import augment
from centernet.data.letterbox import letterbox_boxes, letterbox_image
from centernet.data.sources import Source, decode_record
from centernet.data.targets import render_targets, render_ttf_targets

AUTOTUNE = tf.data.AUTOTUNE


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    return options


def train_example(record: Dict[str, tf.Tensor], seed: tf.Tensor, cfg: RunConfig,
                  num_classes: int) -> Dict[str, tf.Tensor]:
    """One training example: decode, augment, letterbox, render the stride-4 targets.

    With `augment.crop` the augmented image is already `S x S`, so letterboxing is the identity
    (no resize, no padding, boxes unchanged).

    Returns:
        `image` `[S, S, 3]` uint8 and the `render_targets` (or, with `targets.kind=ttfnet`,
        `render_ttf_targets`) outputs at `S / 4`.
    """
    example = augment(decode_record(record), cfg.augment, seed, cfg.model.input_size)
    image, params = letterbox_image(example["image"], cfg.model.input_size)
    boxes = letterbox_boxes(example["boxes"], params) / DOWN_RATIO
    trained = tf.logical_not(example["is_crowd"])
    boxes, labels = tf.boolean_mask(boxes, trained), tf.boolean_mask(example["labels"], trained)
    output_size, t = cfg.model.input_size // DOWN_RATIO, cfg.targets
    if t.kind == "ttfnet":
        targets = render_ttf_targets(boxes, labels, output_size, num_classes, t.max_objects,
                                     t.ttf_alpha, t.ttf_beta, DOWN_RATIO, t.clip_to_edge)
    else:
        targets = render_targets(boxes, labels, output_size, num_classes, t.max_objects,
                                 t.min_overlap, t.dense_wh, t.dense_reg, t.clip_to_edge)
    return {"image": image, **targets}


def train_dataset(source: Source, cfg: RunConfig, start_step: int = 0,
                  batch_size: int | None = None, num_shards: int = 1,
                  shard: int = 0) -> tf.data.Dataset:
    """Endless batches of `train_example`s from `cfg.dataset.train_split`.

    Args:
        source: the dataset.
        cfg: the run config (dataset, augment, model.input_size, targets, train).
        start_step: steps already trained; their examples are skipped.
        batch_size: examples per batch (default `train.batch_size`); a distributed run passes
            the per-replica batch, and its replicas on one worker take consecutive batches, so
            one step sees the same examples as on one device.
        num_shards, shard: a worker of a cluster reads every `num_shards`-th record from
            `shard` on (its own share of the split).
    """
    seed = cfg.train.seed if cfg.train.seed is not None else random.randrange(2 ** 31)
    batch_size = batch_size or cfg.train.batch_size
    records = source.read(cfg.dataset.train_split)
    if num_shards > 1:
        records = records.shard(num_shards, shard)
    if cfg.dataset.cache:
        records = records.cache()
    records = records.shuffle(cfg.dataset.shuffle_buffer, seed=seed,
                              reshuffle_each_iteration=True).repeat()
    # Each worker (shard) takes 1 / num_shards of every global batch.
    records = records.enumerate().skip(start_step * cfg.train.batch_size // num_shards)

    def to_example(index: tf.Tensor, record: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        example_seed = tf.stack([tf.constant(seed, tf.int64), index])
        return train_example(record, example_seed, cfg, source.num_classes)

    batches = (records.map(to_example, num_parallel_calls=AUTOTUNE)
               .batch(batch_size, drop_remainder=True)
               .prefetch(AUTOTUNE))
    return batches.with_options(_options(deterministic=cfg.train.seed is not None))


def eval_example(record: Dict[str, tf.Tensor], input_size: int) -> Dict[str, tf.Tensor]:
    """Letterboxed image plus `image_id`, `letterbox` `[4]` params and `original_size`
    `[2]` (height, width) to map detections back to original pixels."""
    example = decode_record(record)
    image, params = letterbox_image(example["image"], input_size)
    return {"image": image, "image_id": example["image_id"], "letterbox": params,
            "original_size": tf.shape(example["image"])[:2]}


def eval_dataset(source: Source, split: str, input_size: int, batch_size: int) -> tf.data.Dataset:
    """Batches of `eval_example`s of `split`, in file order, the last batch possibly smaller."""
    return (source.read(split)
            .map(lambda record: eval_example(record, input_size), num_parallel_calls=AUTOTUNE)
            .batch(batch_size)
            .prefetch(AUTOTUNE))
