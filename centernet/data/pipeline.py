"""tf.data input pipelines: shuffled, augmented training batches with rendered targets, and
letterboxed evaluation batches with what is needed to map detections back.

Per-example work (decoding, augmentation, letterboxing) runs in one parallel `map` with
AUTOTUNE; the examples' boxes are padded into batches and each batch's targets are rendered in
one parallel `map` (the heatmaps written once, in place, rather than per example and then
copied by `batch()`); batches are prefetched. With `train.seed` set the stream is deterministic,
and `start_step` skips exactly the examples earlier steps consumed, so a resumed run continues
the same stream. What is shuffled, repeated and skipped is the source's `stream` (a folder's
image positions), and records are read after the skip: a resumed run reads no file of the
examples it skips. With mosaic or mixup (`mosaic.py`) each example takes a fixed group of records
(4 for a mosaic, twice as many with mixup), so the records a step starts from still follow
from the step alone.
"""

from __future__ import annotations

import random
from typing import Callable, Dict, List, Optional

import tensorflow as tf

from centernet.config import DOWN_RATIO, RunConfig
from centernet.data.augment import augment
from centernet.data.letterbox import letterbox_boxes, letterbox_image
from centernet.data.mosaic import maybe_mixup, mosaic_augment
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
    return _training_example(example, cfg)


def _training_example(example: Dict[str, tf.Tensor], cfg: RunConfig) -> Dict[str, tf.Tensor]:
    """An augmented common-format example -> `augmented_example`'s format: letterboxed,
    boxes at the output grid's scale, crowd boxes left out."""
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


def mosaic_example(records: List[Dict[str, tf.Tensor]], seed: tf.Tensor,
                   cfg: RunConfig) -> Dict[str, tf.Tensor]:
    """Four records -> one training example before its targets (`mosaic.mosaic_augment`),
    in `augmented_example`'s format."""
    example = mosaic_augment([decode_record(r) for r in records], cfg.augment, seed,
                             cfg.model.input_size)
    return _training_example(example, cfg)


def grouped_example(records: List[Dict[str, tf.Tensor]], seed: tf.Tensor, cfg: RunConfig,
                    use_mosaic: bool) -> Dict[str, tf.Tensor]:
    """One training example from its group of records (see the module docstring): a mosaic
    of the first four (or the first record alone), blended with the rest with probability
    `augment.mixup`."""
    per_example = 4 if use_mosaic else 1
    seeds = tf.random.experimental.stateless_split(seed, num=3)

    def make(offset: int, example_seed: tf.Tensor) -> Dict[str, tf.Tensor]:
        records_used = records[offset:offset + per_example]
        if use_mosaic:
            return mosaic_example(records_used, example_seed, cfg)
        return augmented_example(records_used[0], example_seed, cfg)

    first = make(0, seeds[0])
    if cfg.augment.mixup == 0:
        return first
    return maybe_mixup(first, lambda: make(per_example, seeds[1]), cfg.augment, seeds[2])


def _element(elements, k: int):
    """Element `k` of a `ragged_batch` of the source's stream elements (positions or
    records)."""
    return tf.nest.map_structure(lambda value: value[k], elements)


def _worker_share(examples: tf.data.Dataset, batch_size: int,
                  data_service: Optional[str]) -> tf.data.Dataset:
    """With `dataset.data_service`, the whole batches of `examples` (before their files are
    read) that this tf.data service worker makes: every n-th from its own index on, where the
    dispatcher replaces `SHARD_HINT` by its n workers and the worker's index. Without it,
    `examples` as they are."""
    if not data_service:
        return examples
    hint = tf.data.experimental.SHARD_HINT
    return examples.batch(batch_size, drop_remainder=True).shard(hint, hint).unbatch()


def _grouped_examples(stream: Callable[[], tf.data.Dataset],
                      to_record: Callable[[tf.Tensor], Dict[str, tf.Tensor]], cfg: RunConfig,
                      seed: int, start_step: int, per_step: int, batch_size: int,
                      mosaic_until: Optional[int]) -> tf.data.Dataset:
    """Training examples (before targets) from `start_step` on, with mosaic for the steps
    before `mosaic_until` (None: every step; only with `augment.mosaic`) and mixup.

    `stream` makes the shuffled, repeated stream of the source's elements, which `to_record`
    reads after the skip (and after `_worker_share`, in units of `batch_size` examples); each
    phase iterates a new one (a seeded shuffle's order depends on how often its dataset was
    iterated before, so phases sharing one would not give a resumed run the same records)."""
    mixes = 2 if cfg.augment.mixup > 0 else 1
    if not cfg.augment.mosaic:
        mosaic_until = 0
    inf = float("inf")
    switch = inf if mosaic_until is None else mosaic_until

    def phase(first_step: int, use_mosaic: bool, steps: Optional[int]) -> tf.data.Dataset:
        before = per_step * mixes * (4 * min(first_step, switch) + max(first_step - switch, 0))
        group = (4 if use_mosaic else 1) * mixes
        examples = (stream().skip(int(before))
                    .ragged_batch(group, drop_remainder=True)
                    .enumerate(start=first_step * per_step))
        if steps is not None:
            examples = examples.take(steps * per_step)
        examples = _worker_share(examples, batch_size, cfg.dataset.data_service)
        return examples.map(
            lambda index, elements: grouped_example(
                [to_record(_element(elements, k)) for k in range(group)],
                tf.stack([tf.constant(seed, tf.int64), index]), cfg, use_mosaic),
            num_parallel_calls=AUTOTUNE)

    if switch == inf:
        return phase(start_step, True, None)
    if start_step >= switch:
        return phase(start_step, False, None)
    return phase(start_step, True, int(switch) - start_step).concatenate(
        phase(int(switch), False, None))


def train_dataset(source: Source, cfg: RunConfig, start_step: int = 0,
                  batch_size: int | None = None, num_shards: int = 1,
                  shard: int = 0, mosaic_until: Optional[int] = None) -> tf.data.Dataset:
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
        mosaic_until: with `augment.mosaic`, the first step without it (None: mosaic
            throughout).
    """
    seed = cfg.train.seed if cfg.train.seed is not None else random.randrange(2 ** 31)
    batch_size = batch_size or cfg.train.batch_size
    elements, to_record = source.stream(cfg.dataset.train_split, num_shards, shard)

    def shuffled() -> tf.data.Dataset:
        return elements.shuffle(cfg.dataset.shuffle_buffer, seed=seed,
                                reshuffle_each_iteration=True).repeat()

    # Each worker (shard) takes 1 / num_shards of every global batch.
    per_step = cfg.train.batch_size // num_shards
    if cfg.augment.mosaic or cfg.augment.mixup > 0:
        examples = _grouped_examples(shuffled, to_record, cfg, seed, start_step, per_step,
                                     batch_size, mosaic_until)
    else:
        def to_example(index: tf.Tensor, element: tf.Tensor) -> Dict[str, tf.Tensor]:
            example_seed = tf.stack([tf.constant(seed, tf.int64), index])
            return augmented_example(to_record(element), example_seed, cfg)

        examples = _worker_share(shuffled().enumerate().skip(start_step * per_step),
                                 batch_size, cfg.dataset.data_service)
        examples = examples.map(to_example, num_parallel_calls=AUTOTUNE)

    batches = (examples
               .padded_batch(batch_size, drop_remainder=True)  # boxes padded with zero rows
               .map(lambda batch: batch_targets(batch, cfg, source.num_classes),
                    num_parallel_calls=AUTOTUNE)
               .prefetch(AUTOTUNE))
    batches = batches.with_options(_options(deterministic=cfg.train.seed is not None))
    if cfg.dataset.data_service:
        batches = batches.apply(tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.HINT,
            service=cfg.dataset.data_service)).prefetch(AUTOTUNE)
    return batches


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
