"""Letterboxing: resize keeping the aspect ratio, then pad to a square network input.

Coordinates are continuous pixels (pixel column `c` spans `[c, c + 1)`), so a resize by `s`
maps `x` to `x * s` exactly (TensorFlow resizes with half-pixel centres). The image is centred;
the padding is black. Every box and every decoded detection goes through the same parameters
`(scale_x, scale_y, pad_x, pad_y)`: `input = original * scale + pad`.
"""

from __future__ import annotations

from typing import Tuple

import tensorflow as tf


def _resized_size(height: tf.Tensor, width: tf.Tensor, input_size: int) -> Tuple[tf.Tensor, ...]:
    """float32 `(height, width, resized_height, resized_width)`: longer side -> `input_size`."""
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    scale = input_size / tf.maximum(height, width)
    return (height, width, tf.maximum(tf.round(height * scale), 1.0),
            tf.maximum(tf.round(width * scale), 1.0))


def letterbox_params(height: tf.Tensor, width: tf.Tensor, input_size: int) -> tf.Tensor:
    """`[4]` float32 `(scale_x, scale_y, pad_x, pad_y)` for an image of `height x width`.

    The longer side becomes `input_size`; the resized size is rounded to whole pixels, so each
    axis has its own exact scale.
    """
    height, width, new_h, new_w = _resized_size(height, width, input_size)
    pad_y = tf.floor((input_size - new_h) / 2)
    pad_x = tf.floor((input_size - new_w) / 2)
    return tf.stack([new_w / width, new_h / height, pad_x, pad_y])


def letterbox_image(image: tf.Tensor, input_size: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Resize and pad one image, or a batch of images of one size.

    Args:
        image: `[H, W, 3]` or `[B, H, W, 3]` uint8 (or float) RGB.
        input_size: side of the square network input, pixels.

    Returns:
        (`[..., input_size, input_size, 3]` uint8 image, `[4]` letterbox params).
    """
    shape = tf.shape(image)
    params = letterbox_params(shape[-3], shape[-2], input_size)
    height, width, new_h, new_w = _resized_size(shape[-3], shape[-2], input_size)

    def resize() -> tf.Tensor:
        resized = tf.image.resize(image, tf.cast(tf.stack([new_h, new_w]), tf.int32),
                                  method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    unchanged = tf.logical_and(tf.equal(new_h, height), tf.equal(new_w, width))
    resized = tf.cond(unchanged, lambda: tf.cast(image, tf.uint8), resize)
    padded = tf.image.pad_to_bounding_box(resized, tf.cast(params[3], tf.int32),
                                          tf.cast(params[2], tf.int32), input_size, input_size)
    return tf.ensure_shape(padded, image.shape[:-3] + [input_size, input_size, 3]), params


def letterbox_boxes(boxes: tf.Tensor, params: tf.Tensor) -> tf.Tensor:
    """`[N, 4]` xyxy original pixels -> `[N, 4]` xyxy network-input pixels."""
    scale = tf.tile(params[0:2], [2])
    pad = tf.tile(params[2:4], [2])
    return tf.cast(boxes, tf.float32) * scale + pad
