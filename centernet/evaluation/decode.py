"""Turn CenterNet outputs into boxes: peaks, top K, and back into original image pixels.

Box conventions: `decode` returns `x1, y1, x2, y2` in output-grid pixels (stride 4);
`to_input_pixels` multiplies by the stride; `to_original_pixels` undoes the letterbox
(`centernet.data.letterbox`) into the original image's pixels.
"""

from __future__ import annotations

from typing import Mapping, Tuple

import tensorflow as tf

from centernet.config import DOWN_RATIO


def peak_scores(heatmap_probs: tf.Tensor) -> tf.Tensor:
    """Keep each score that is the maximum of its 3x3 neighbourhood, zero the others.

    Args: heatmap_probs `[B, H, W, C]` float scores in `[0, 1]`.
    Returns: `[B, H, W, C]` float32 (the "NMS" of CenterNet).
    """
    probs = tf.cast(heatmap_probs, tf.float32)
    pooled = tf.nn.max_pool2d(probs, ksize=3, strides=1, padding="SAME")
    return tf.where(tf.equal(pooled, probs), probs, tf.zeros_like(probs))


def decode_probs(heatmap_probs: tf.Tensor, wh: tf.Tensor, reg: tf.Tensor,
                 k: int = 100) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`decode` for heatmaps that are already probabilities (e.g. flip-test averages)."""
    peaks = peak_scores(heatmap_probs)
    batch = tf.shape(peaks)[0]
    width = tf.shape(peaks)[2]
    num_classes = tf.shape(peaks)[3]
    scores, flat_index = tf.math.top_k(tf.reshape(peaks, [batch, -1]), k=k, sorted=True)
    classes = flat_index % num_classes
    cell = flat_index // num_classes
    cell_x = tf.cast(cell % width, tf.float32)
    cell_y = tf.cast(cell // width, tf.float32)

    def at_peaks(dense: tf.Tensor) -> tf.Tensor:
        flat = tf.reshape(tf.cast(dense, tf.float32), [batch, -1, 2])
        return tf.gather(flat, cell, batch_dims=1)

    size = at_peaks(wh)
    offset = at_peaks(reg)
    centre_x = cell_x + offset[..., 0]
    centre_y = cell_y + offset[..., 1]
    half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
    boxes = tf.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w,
                      centre_y + half_h], axis=-1)
    return boxes, scores, tf.cast(classes, tf.int32)


def decode(heatmap_logits: tf.Tensor, wh: tf.Tensor, reg: tf.Tensor,
           k: int = 100) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Detections from raw CenterNet outputs.

    Args:
        heatmap_logits: `[B, H, W, C]` class logits.
        wh: `[B, H, W, 2]` box width and height in output pixels.
        reg: `[B, H, W, 2]` sub-cell centre offset (x, y) in output pixels.
        k: detections per image (top K over all classes and positions).

    Returns:
        boxes `[B, K, 4]` float32 `x1, y1, x2, y2` in output-grid pixels, scores `[B, K]`
        float32 sigmoid scores sorted descending, classes `[B, K]` int32.
    """
    return decode_probs(tf.sigmoid(tf.cast(heatmap_logits, tf.float32)), wh, reg, k)


def merge_flipped(outputs: Mapping[str, tf.Tensor],
                  flipped_outputs: Mapping[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor,
                                                                     tf.Tensor]:
    """Flip test: average an image's and its mirror's heatmap probabilities and sizes.

    Args:
        outputs: model outputs (`heatmap` logits, `wh`, `reg`) of the images.
        flipped_outputs: model outputs of the horizontally mirrored images.

    Returns:
        `(heatmap_probs, wh, reg)` for `decode_probs`; the offset comes from the unflipped
        image only, as in the original CenterNet.
    """
    unflip = lambda t: tf.reverse(tf.cast(t, tf.float32), axis=[2])  # noqa: E731
    probs = (tf.sigmoid(tf.cast(outputs["heatmap"], tf.float32))
             + unflip(tf.sigmoid(tf.cast(flipped_outputs["heatmap"], tf.float32)))) / 2
    wh = (tf.cast(outputs["wh"], tf.float32) + unflip(flipped_outputs["wh"])) / 2
    return probs, wh, tf.cast(outputs["reg"], tf.float32)


def to_original_pixels(boxes: tf.Tensor, letterbox: tf.Tensor, original_size: tf.Tensor,
                       down_ratio: int = DOWN_RATIO) -> tf.Tensor:
    """Map output-grid boxes back through the letterbox into original image pixels.

    Args:
        boxes: `[B, K, 4]` xyxy in output-grid pixels.
        letterbox: `[B, 4]` `(scale_x, scale_y, pad_x, pad_y)`: input = original * scale + pad.
        original_size: `[B, 2]` original `(height, width)`; boxes are clipped to it.
        down_ratio: output stride.

    Returns:
        `[B, K, 4]` float32 xyxy in original image pixels.
    """
    letterbox = tf.cast(letterbox, tf.float32)[:, tf.newaxis, :]
    scale = tf.tile(letterbox[..., 0:2], [1, 1, 2])
    pad = tf.tile(letterbox[..., 2:4], [1, 1, 2])
    original = (tf.cast(boxes, tf.float32) * down_ratio - pad) / scale
    size = tf.cast(original_size, tf.float32)[:, tf.newaxis, :]
    limit = tf.stack([size[..., 1], size[..., 0], size[..., 1], size[..., 0]], axis=-1)
    return tf.clip_by_value(original, 0.0, limit)
