"""Mosaic and mixup, the augmentations YOLO trainers use (`augment.mosaic`, `augment.mixup`),
as TensorFlow ops inside the tf.data map, with the per-example stateless seeds of `augment.py`.

Mosaic (YOLOv4): four training images in one `S x S` input. A centre `c ~ U(S/4, 3S/4)` in each
axis splits the input into four quadrants (top-left, top-right, bottom-left, bottom-right).
Image `k` is scaled as the random crop scales an image (its longer side to `S / U(min_scale,
max_scale)`, so objects keep the sizes the crop gives them) and placed with its opposite
corner at `c` (the top-left image's bottom-right corner, ...), so the part of it next to that
corner fills quadrant `k`; it is resampled with `augment.crop_image` (bilinear, black beyond
the image). A box is kept, clipped to its quadrant, when at least `MIN_KEPT_AREA` of its area
is inside the quadrant (a sliver of an object is not a target). Flip and colour jitter then
apply to the whole input as to any example.

Mixup (Zhang et al. 2018, as YOLOv5 applies it): with probability `augment.mixup` an example
is blended with a second one, `lam * a + (1 - lam) * b`, `lam ~ Beta(mixup_alpha,
mixup_alpha)` (32: near one half), and keeps both examples' boxes.

Each example of the stream takes a fixed number of records (4 with mosaic, twice that with
mixup), whether or not its draws use them all (a second example not blended in is never
decoded), so the record an example starts from is a function of the step alone and a resumed
run skips exactly what earlier steps took (`pipeline.train_dataset`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict

import tensorflow as tf

from centernet.config import AugmentConfig
from centernet.data.augment import augment, crop_image

MIN_KEPT_AREA = 0.2  # the share of a box's area that must stay in its quadrant
QUADRANTS = ((0, 0), (1, 0), (0, 1), (1, 1))  # (right?, bottom?) of top-left, ..., bottom-right

Example = Dict[str, tf.Tensor]


def quadrant_window(height: tf.Tensor, width: tf.Tensor, side: tf.Tensor, centre: tf.Tensor,
                    quadrant: tuple, input_size: int) -> tf.Tensor:
    """The `augment.crop_image` window `(x0, y0, side)` (image pixels) that places an image of
    `height x width` scaled by `input_size / side` with its corner opposite `quadrant` at
    `centre` (`[2]` x, y input pixels)."""
    right, bottom = quadrant
    size = tf.cast(tf.stack([width, height]), tf.float32)
    corner = tf.constant([0.0 if right else 1.0, 0.0 if bottom else 1.0]) * size
    origin = corner - centre * side / input_size
    return tf.concat([origin, side[None]], axis=0)


def quadrant_boxes(boxes: tf.Tensor, window: tf.Tensor, centre: tf.Tensor, quadrant: tuple,
                   input_size: int) -> tuple:
    """`[N, 4]` xyxy image-pixel boxes -> input pixels, clipped to the quadrant; returns them
    and `[N]` bool: at least `MIN_KEPT_AREA` of the box stays inside."""
    right, bottom = quadrant
    mapped = (tf.cast(boxes, tf.float32) - tf.tile(window[0:2], [2])) * (input_size / window[2])
    low = tf.stack([centre[0] if right else 0.0, centre[1] if bottom else 0.0])
    high = tf.stack([float(input_size) if right else centre[0],
                     float(input_size) if bottom else centre[1]])
    clipped = tf.clip_by_value(mapped, tf.tile(low, [2]), tf.tile(high, [2]))

    def area(b):
        return tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)

    kept = area(clipped)
    keep = tf.logical_and(kept > 0, kept >= MIN_KEPT_AREA * area(mapped))
    return clipped, keep


def quadrant_mask(centre: tf.Tensor, quadrant: tuple, input_size: int) -> tf.Tensor:
    """`[S, S, 1]` float32: 1 where the pixel centre lies in the quadrant."""
    right, bottom = quadrant
    centres = tf.range(input_size, dtype=tf.float32) + 0.5
    columns = centres >= centre[0] if right else centres < centre[0]
    rows = centres >= centre[1] if bottom else centres < centre[1]
    return tf.cast(tf.logical_and(rows[:, None], columns[None, :]), tf.float32)[..., None]


def mosaic(examples: list, cfg: AugmentConfig, seed: tf.Tensor, input_size: int) -> Example:
    """Four decoded examples (common format) -> one `S x S` example, before flip and colour.

    Args:
        examples: four dicts with `image` `[H, W, 3]` uint8, `boxes` `[N, 4]` xyxy pixels,
            `labels`, `is_crowd`, `image_id`.
        cfg: `min_scale`, `max_scale`.
        seed: `[2]` int64 stateless seed of this mosaic.
        input_size: `S`, pixels.

    Returns:
        `image` `[S, S, 3]` float32 in `[0, 255]`, `boxes` `[M, 4]` xyxy input pixels,
        `labels`, `is_crowd` `[M]`, and the first example's `image_id`.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    centre = input_size * tf.random.stateless_uniform([2], seed=seeds[0], minval=0.25,
                                                      maxval=0.75)
    canvas = tf.zeros([input_size, input_size, 3], tf.float32)
    boxes, labels, crowd = [], [], []
    for k, (example, quadrant) in enumerate(zip(examples, QUADRANTS)):
        shape = tf.shape(example["image"])
        side = tf.cast(tf.maximum(shape[0], shape[1]), tf.float32) * tf.random.stateless_uniform(
            [], seed=seeds[k + 1], minval=cfg.min_scale, maxval=cfg.max_scale)
        window = quadrant_window(shape[0], shape[1], side, centre, quadrant, input_size)
        canvas += quadrant_mask(centre, quadrant, input_size) * crop_image(
            example["image"], window, input_size)
        placed, keep = quadrant_boxes(example["boxes"], window, centre, quadrant, input_size)
        boxes.append(tf.boolean_mask(placed, keep))
        labels.append(tf.boolean_mask(example["labels"], keep))
        crowd.append(tf.boolean_mask(example["is_crowd"], keep))
    return {"image": canvas, "boxes": tf.concat(boxes, 0), "labels": tf.concat(labels, 0),
            "is_crowd": tf.concat(crowd, 0), "image_id": examples[0]["image_id"]}


def mosaic_augment(examples: list, cfg: AugmentConfig, seed: tf.Tensor,
                   input_size: int) -> Example:
    """`mosaic`, then flip and colour jitter (`augment.augment` without its crop): `image`
    `[S, S, 3]` uint8."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    tiled = mosaic(examples, cfg, seeds[0], input_size)
    return augment(tiled, dataclasses.replace(cfg, crop=False), seeds[1], input_size)


def maybe_mixup(first: Example, second: Callable[[], Example], cfg: AugmentConfig,
                seed: tf.Tensor) -> Example:
    """With probability `cfg.mixup`, `first` blended with `second()` (built only then).

    Both are training examples of the same `[S, S, 3]` uint8 image size with `boxes` `[N, 4]`
    and `labels` `[N]`; the blend is `lam * a + (1 - lam) * b` rounded to uint8, with both
    examples' boxes and labels."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    lam = beta_sample(cfg.mixup_alpha, seeds[1:])

    def blend() -> Example:
        other = second()
        image = (lam * tf.cast(first["image"], tf.float32)
                 + (1.0 - lam) * tf.cast(other["image"], tf.float32))
        return {"image": tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8),
                "boxes": tf.concat([first["boxes"], other["boxes"]], 0),
                "labels": tf.concat([first["labels"], other["labels"]], 0)}

    draw = tf.random.stateless_uniform([], seed=seeds[0])
    return tf.cond(draw < cfg.mixup, blend,
                   lambda: {key: first[key] for key in ("image", "boxes", "labels")})


def beta_sample(alpha: float, seeds: tf.Tensor) -> tf.Tensor:
    """`Beta(alpha, alpha)` from two `[2]` stateless seeds: `X / (X + Y)` with `X, Y ~
    Gamma(alpha)`."""
    x = tf.random.stateless_gamma([], seed=seeds[0], alpha=alpha)
    y = tf.random.stateless_gamma([], seed=seeds[1], alpha=alpha)
    return x / (x + y)
