"""Turn CenterNet outputs into boxes: peaks, top K, and back into original image pixels.

Box conventions: `decode` returns `x1, y1, x2, y2` in output-grid pixels (stride 4);
`to_input_pixels` multiplies by the stride; `to_original_pixels` undoes the letterbox
(`centernet.data.letterbox`) into the original image's pixels.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, Tuple

import tensorflow as tf

from centernet.config import DOWN_RATIO


_FUSED_PEAKS = True  # see `portable_decoding`


@contextlib.contextmanager
def portable_decoding() -> Iterator[None]:
    """Trace decoding without XLA inside this block (for graphs saved to files).

    The peak search runs its one fused pass as an XLA-compiled function (`top_k_peaks`); a
    SavedModel holding such a function needs XLA wherever it is served (TensorFlow Serving
    refuses it unless started with `--xla_cpu_compilation_enabled`), so the export traces its
    serving function inside this block: the same operations, run one by one.
    """
    global _FUSED_PEAKS
    previous, _FUSED_PEAKS = _FUSED_PEAKS, False
    try:
        yield
    finally:
        _FUSED_PEAKS = previous


def _cell_best_peaks(scores: tf.Tensor, pooled: tf.Tensor, floor: float) -> tf.Tensor:
    """`[B, H * W]` each cell's largest 3x3 peak over classes (`floor` where it holds none)
    of `scores` `[B, H, W, C]` and their 3x3 maxima `pooled`."""
    peaks = tf.where(tf.equal(pooled, scores), scores, floor)
    return tf.reshape(tf.reduce_max(peaks, axis=3), [tf.shape(scores)[0], -1])


# One pass over the heatmap instead of three (compare, select, reduce): about 4.5 ms against
# 10 ms for a batch of 8 at 128 x 128 x 80 on a 2-core AVX2 EPYC (docs/benchmarks.md, Decoding);
# comparisons and maxima are exact, so the result is the same bit for bit.
_fused_cell_best_peaks = tf.function(_cell_best_peaks, jit_compile=True)


def top_k_peaks(scores: tf.Tensor, k: int, floor: float) -> Tuple[tf.Tensor, tf.Tensor]:
    """The `k` largest 3x3 peaks of each image's `scores`, sorted descending, and their flat
    indices `(y * W + x) * C + c`.

    A peak is a value equal to the maximum of its 3x3 neighbourhood in its class (the "NMS" of
    CenterNet; cells outside the grid do not count); every other value counts as `floor`
    (so when an image has fewer than `k` peaks, the rest of its list is `floor`).

    Exact without masking and sorting all `H * W * C` values: the k-th largest peak is at least
    the k-th largest of the cells' best peaks (those are k distinct peaks), so every winner
    lies in one of the k cells with the best peaks. Taking those k cells, then the top k of
    their `k * C` values (masked to peaks), gives the same values as one `top_k` over all
    masked values (among exactly equal values the pick may differ, as any order of ties is
    valid). Falls back to one `top_k` over everything when `H * W < k` or the shape is unknown.

    Args:
        scores: `[B, H, W, C]` float32 logits or probabilities.
        k: peaks per image.
        floor: the value of a non-peak (`-inf` for logits, 0 for probabilities).

    Returns:
        `([B, K] float32 values, [B, K] int32 flat indices)`.
    """
    scores = tf.cast(scores, tf.float32)
    pooled = tf.nn.max_pool2d(scores, ksize=3, strides=1, padding="SAME")
    height, width, channels = scores.shape[1], scores.shape[2], scores.shape[3]
    batch = tf.shape(scores)[0]
    if None in (height, width, channels) or height * width < k:
        peaks = tf.where(tf.equal(pooled, scores), scores, floor)
        return tf.math.top_k(tf.reshape(peaks, [batch, -1]), k=k, sorted=True)
    cell_best = (_fused_cell_best_peaks if _FUSED_PEAKS else _cell_best_peaks)(
        scores, pooled, floor)
    _, best_cells = tf.math.top_k(cell_best, k=k, sorted=False)

    def at_best_cells(values):  # [B, K, C]
        return tf.gather(tf.reshape(values, [batch, height * width, channels]), best_cells,
                         batch_dims=1)

    candidates = at_best_cells(scores)
    candidates = tf.where(tf.equal(at_best_cells(pooled), candidates), candidates, floor)
    values, pick = tf.math.top_k(tf.reshape(candidates, [batch, k * channels]), k=k, sorted=True)
    cell = tf.gather(best_cells, pick // channels, batch_dims=1)
    return values, cell * channels + pick % channels


def _detections(scores: tf.Tensor, flat_index: tf.Tensor, wh: tf.Tensor, reg: tf.Tensor,
                num_classes) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Boxes `[B, K, 4]`, scores `[B, K]` and classes `[B, K]` int32 of flat peak indices."""
    batch = tf.shape(wh)[0]
    width = tf.shape(wh)[2]
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


def decode_probs(heatmap_probs: tf.Tensor, wh: tf.Tensor, reg: tf.Tensor,
                 k: int = 100) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`decode` for heatmaps that are already probabilities (e.g. flip-test averages)."""
    scores, flat_index = top_k_peaks(heatmap_probs, k, floor=0.0)
    return _detections(scores, flat_index, wh, reg, tf.shape(heatmap_probs)[3])


def decode(heatmap_logits: tf.Tensor, wh: tf.Tensor, reg: tf.Tensor,
           k: int = 100) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Detections from raw CenterNet outputs.

    The 3x3 peaks and the top K are found on the logits and only the K winners go through the
    sigmoid: it is increasing, so peaks and order are those of the probabilities
    (docs/architecture.md, Decoding) without a sigmoid of every `[B, H, W, C]` value. (Two
    neighbouring logits so close that their float32 probabilities are equal form a plateau
    only in probability space; here the larger one wins.)

    Args:
        heatmap_logits: `[B, H, W, C]` class logits.
        wh: `[B, H, W, 2]` box width and height in output pixels.
        reg: `[B, H, W, 2]` sub-cell centre offset (x, y) in output pixels.
        k: detections per image (top K over all classes and positions).

    Returns:
        boxes `[B, K, 4]` float32 `x1, y1, x2, y2` in output-grid pixels, scores `[B, K]`
        float32 sigmoid scores sorted descending, classes `[B, K]` int32.
    """
    top_logits, flat_index = top_k_peaks(heatmap_logits, k, floor=float("-inf"))
    return _detections(tf.sigmoid(top_logits), flat_index, wh, reg, tf.shape(heatmap_logits)[3])


def box_iou_matrix(boxes: tf.Tensor) -> tf.Tensor:
    """IoU of every pair of each image's boxes.

    Args: boxes `[B, K, 4]` xyxy.
    Returns: `[B, K, K]` float32; 0 where both boxes have no area.
    """
    boxes = tf.cast(boxes, tf.float32)
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    area = tf.maximum(x2 - x1, 0.0) * tf.maximum(y2 - y1, 0.0)

    def overlap(low, high):
        return tf.maximum(tf.minimum(high[:, :, tf.newaxis], high[:, tf.newaxis, :])
                          - tf.maximum(low[:, :, tf.newaxis], low[:, tf.newaxis, :]), 0.0)

    intersection = overlap(x1, x2) * overlap(y1, y2)
    union = area[:, :, tf.newaxis] + area[:, tf.newaxis, :] - intersection
    return tf.math.divide_no_nan(intersection, union)


def decay_cross_class_twins(boxes: tf.Tensor, scores: tf.Tensor, classes: tf.Tensor,
                            iou_threshold: float, decay: float
                            ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Lower the score of every detection whose box overlaps a higher-scoring detection of
    another class by IoU > `iou_threshold` (its score times `decay`), then sort again.

    CenterNet's 3x3 peak "NMS" is per class, so an object the classifier has not settled
    comes out twice, once per class, with nearly the same box. Where objects of different
    classes seldom share a box, the lower twin is mostly a false positive; decaying it
    rather than dropping it keeps it for recall when the higher twin has the wrong class (a
    class-agnostic NMS, which drops it, measured worse on the shapes data: docs/results.md,
    "Time to a good detector"). Each detection is compared with the original scores of those
    above it (not the decayed ones), so the result does not depend on the order of equal
    scores.

    Args:
        boxes: `[B, K, 4]` xyxy; scores: `[B, K]`; classes: `[B, K]` int.
        iou_threshold: IoU above which two detections of different classes are twins.
        decay: factor in `[0, 1]` for the lower twin's score.

    Returns:
        `(boxes, scores, classes)` reordered by the new scores, descending.
    """
    scores = tf.cast(scores, tf.float32)
    higher = scores[:, :, tf.newaxis] > scores[:, tf.newaxis, :]  # [B, i, j]: i above j
    other_class = tf.not_equal(classes[:, :, tf.newaxis], classes[:, tf.newaxis, :])
    twin = higher & other_class & (box_iou_matrix(boxes) > iou_threshold)
    decayed = tf.where(tf.reduce_any(twin, axis=1), scores * decay, scores)
    order = tf.argsort(decayed, axis=1, direction="DESCENDING", stable=True)
    return (tf.gather(boxes, order, batch_dims=1), tf.gather(decayed, order, batch_dims=1),
            tf.gather(classes, order, batch_dims=1))


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
