"""tf.data input pipelines: shuffled, augmented training batches with rendered targets, and
letterboxed evaluation batches with what is needed to map detections back.

Per-example work (decoding, augmentation, letterboxing) runs in one parallel `map` with
AUTOTUNE; the examples' boxes are padded into batches and each batch's targets are rendered in
one parallel `map` (the heatmaps written once, in place, rather than per example and then
copied by `batch()`); batches are prefetched. With `train.seed` set the stream is deterministic,
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
from centernet.data.targets import render_targets_batch, render_ttf_targets_batch

AUTOTUNE = tf.data.AUTOTUNE


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    return options


def augmented_example(record: Dict[str, tf.Tensor], seed: tf.Tensor,
                      cfg: RunConfig) -> Dict[str, tf.Tensor]:
    """One training example before its targets: decode, augment, letterbox.

    With `augment.crop` the augmented image is already `S x S`, so letterboxing is the identity
    (no resize, no padding, boxes unchanged).

    Returns:
        `image` `[S, S, 3]` uint8, `boxes` `[N, 4]` float32 in output-grid pixels (`S / 4`)
        and `labels` `[N]` int32 of the boxes trained on (crowd boxes left out).
    """
    example = augment(decode_record(record), cfg.augment, seed, cfg.model.input_size)
    image, params = letterbox_image(example["image"], cfg.model.input_size)
    boxes = letterbox_boxes(example["boxes"], params) / DOWN_RATIO
    trained = tf.logical_not(example["is_crowd"])
    return {"image": image, "boxes": tf.cast(tf.boolean_mask(boxes, trained), tf.float32),
            "labels": tf.cast(tf.boolean_mask(example["labels"], trained), tf.int32)}


def batch_targets(batch: Dict[str, tf.Tensor], cfg: RunConfig,
                  num_classes: int) -> Dict[str, tf.Tensor]:
    """A batch of `augmented_example`s (`boxes` `[B, N, 4]` and `labels` `[B, N]` padded with
    zero rows) -> `image` and the `render_targets_batch` (or, with `targets.kind=ttfnet`,
    `render_ttf_targets_batch`) outputs at `S / 4`."""
    output_size, t = cfg.model.input_size // DOWN_RATIO, cfg.targets
    boxes, labels = batch["boxes"], batch["labels"]
    if t.kind == "ttfnet":
        targets = render_ttf_targets_batch(boxes, labels, output_size, num_classes,
                                           t.max_objects, t.ttf_alpha, t.ttf_beta, DOWN_RATIO,
                                           t.clip_to_edge)
    else:
        targets = render_targets_batch(boxes, labels, output_size, num_classes, t.max_objects,
                                       t.min_overlap, t.dense_wh, t.dense_reg, t.clip_to_edge)
    return {"image": batch["image"], **targets}


def train_example(record: Dict[str, tf.Tensor], seed: tf.Tensor, cfg: RunConfig,
                  num_classes: int) -> Dict[str, tf.Tensor]:
    """One training example with its targets, as `train_dataset` makes it within a batch:
    `image` `[S, S, 3]` uint8 and the targets of `batch_targets` without the batch axis."""
    example = augmented_example(record, seed, cfg)
    batch = batch_targets({key: value[tf.newaxis] for key, value in example.items()}, cfg,
                          num_classes)
    return {key: value[0] for key, value in batch.items()}


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
        return augmented_example(record, example_seed, cfg)

    batches = (records.map(to_example, num_parallel_calls=AUTOTUNE)
               .padded_batch(batch_size, drop_remainder=True)  # boxes padded with zero rows
               .map(lambda batch: batch_targets(batch, cfg, source.num_classes),
                    num_parallel_calls=AUTOTUNE)
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
