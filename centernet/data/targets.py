"""CenterNet training targets: Gaussian class heatmaps and size/offset regression at centres.

Everything here is vectorised TensorFlow that runs inside `tf.data.Dataset.map` (graph mode):
one set of tensor ops for all objects of a whole batch of images (`render_targets_batch`,
`render_ttf_targets_batch`; the pipeline renders after batching, so each op's fixed cost is
paid once per batch and the batch's heatmaps are written once, in place, not copied by
`batch()`), no Python loop per object. `render_targets` and `render_ttf_targets` are the same
code on a batch of one, and each image of a batch gets exactly the targets it gets alone. The
maths is the original CenterNet's (docs/architecture.md, Targets); box geometry is computed in
float64 so that the integer centres and radii match a float64 reference exactly, the heatmap
in float32.

Two renderers give bit-identical targets (tests/test_native_targets.py): where a C++ compiler
is at hand (or the library was built ahead of time), `render_targets_batch` (without dense
targets) and `render_ttf_targets_batch` run as one native kernel each, `targets_op.cc`, built
by `native.py`: TensorFlow's fixed cost per op alone (about 170 ops) is more than the whole
kernel takes. Everywhere else, and for the dense targets, the TensorFlow ops below render
them; they are also the specification the kernels follow, with tables (`_window_tables`,
`_gaussian_table`) and TTFNet's `log(area)` (`_log_areas`) computed by TensorFlow.

Memory: the heatmaps and TTFNet's box regression are drawn from each object's window alone
(`_windows`: one entry per window cell, then a few `[B, H, W]` planes), so a crowded batch
does not hold a plane per object (4 images of 400 objects on a 128 x 128 grid: 3.6 MiB at
the peak, against 332 MiB with full planes); the optional dense targets still hold one
`[H, W]` float32 plane per object of the batch while rendering.
"""

from __future__ import annotations

import functools
import math
from typing import Dict, NamedTuple, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from centernet.data import native

OutputSize = Union[int, Sequence[int], Tuple[int, int]]


def gaussian_radius(h, w, min_overlap: float = 0.7) -> tf.Tensor:
    """The CornerNet radius `R = min(r1, r2, r3)` as CenterNet ships it (not truncated).

    Args:
        h, w: box height and width in output pixels, any broadcastable shape.
        min_overlap: the IoU a box shifted by the radius must keep with the original.

    Returns:
        float64 tensor of radii, the broadcast shape of `h` and `w`.
    """
    h = tf.cast(h, tf.float64)
    w = tf.cast(w, tf.float64)
    m = tf.constant(min_overlap, tf.float64)

    b1 = h + w
    c1 = w * h * (1 - m) / (1 + m)
    r1 = (b1 + tf.sqrt(b1 ** 2 - 4 * c1)) / 2

    b2 = 2 * (h + w)
    c2 = (1 - m) * w * h
    r2 = (b2 + tf.sqrt(b2 ** 2 - 16 * c2)) / 2

    b3 = -2 * m * (h + w)
    c3 = (m - 1) * w * h
    r3 = (b3 + tf.sqrt(b3 ** 2 - 16 * m * c3)) / 2
    return tf.minimum(r1, tf.minimum(r2, r3))


def _output_hw(output_size: OutputSize) -> Tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    height, width = output_size
    return int(height), int(width)


def _gaussian_1d(coords: tf.Tensor, centres: tf.Tensor, radii: tf.Tensor,
                 sigmas: tf.Tensor) -> tf.Tensor:
    """exp(-(coord - centre)^2 / (2 sigma^2)) inside the window |coord - centre| <= r, else 0.

    Args: coords [L] float64 grid coordinates; centres, radii, sigmas [N] float64.
    Returns: [N, L] float32, exactly 1.0 at each centre.
    """
    delta = coords[tf.newaxis, :] - centres[:, tf.newaxis]
    sigma = sigmas[:, tf.newaxis]
    values = tf.exp(-(delta * delta) / (2.0 * sigma * sigma))
    inside = tf.abs(delta) <= radii[:, tf.newaxis]
    return tf.cast(tf.where(inside, values, tf.zeros_like(values)), tf.float32)


class _Windows(NamedTuple):
    """The cells of each object's Gaussian window inside the grid, in one flat list of
    `M = sum of window areas` entries (not `N x H x W`), object by object, row by row:
    `owner` `[M]` int32 the object, `cell` `[M]` its flat position `(image * H + y) * W + x`
    (`_index_type`), `label` `[M]` int32 the object's class, `value` `[M]` float32 the window's
    Gaussian there, `factor_y * factor_x`; and per object the factors along each axis,
    `factor_x`, `factor_y` `[N, S]` float32 (S the widest window; entry `i` is the factor at
    the window's `i`-th column or row inside the grid, meaningful for `i < span`), and
    `span_x`, `span_y` `[N]` int32, the window's columns and rows inside the grid."""

    owner: tf.Tensor
    cell: tf.Tensor
    label: tf.Tensor
    value: tf.Tensor
    factor_x: tf.Tensor
    factor_y: tf.Tensor
    span_x: tf.Tensor
    span_y: tf.Tensor


def _index_type(objects: "_Objects", height: int, width: int, num_classes: int) -> tf.DType:
    """int32 for flat heatmap indices where `B * H * W * C` is known to fit (the pipeline's
    batches have a static size), int64 otherwise."""
    fits = (isinstance(objects.batch_size, int)
            and objects.batch_size * height * width * num_classes < 2 ** 31)
    return tf.int32 if fits else tf.int64


def _windows(objects: "_Objects", radii: Tuple[tf.Tensor, tf.Tensor],
             sigmas: Tuple[tf.Tensor, tf.Tensor], height: int, width: int,
             index_type: tf.DType) -> _Windows:
    """The cells of each object's window: `|x - int_x[n]| <= radius_x[n]`,
    `|y - int_y[n]| <= radius_y[n]`, inside the grid, with the value
    `exp(-dy^2 / 2 sigma_y^2) * exp(-dx^2 / 2 sigma_x^2)`: each factor in float64, cast to
    float32, multiplied in float32 (as `_gaussian_1d` draws full planes). The factors come from
    per-object tables `[N, S]`; the counters are int32 (M stays far below 2^31). The op count
    is kept low on purpose: at 10 objects each op's fixed cost, not the arithmetic, is most of
    the time.

    Args: objects: the kept objects (`int_x`, `int_y`, `labels`, `image` `[N]`); radii and
        sigmas `(x, y)` pairs of `[N]` float64 (the same tensor twice for a round Gaussian);
        index_type: the dtype of `cell`.
    """
    (radius_x, radius_y), (sigma_x, sigma_y) = radii, sigmas
    int_x, int_y = objects.int_x, objects.int_y
    cx, cy = tf.cast(int_x, tf.int32), tf.cast(int_y, tf.int32)
    rx, ry = tf.cast(radius_x, tf.int32), tf.cast(radius_y, tf.int32)
    x0, y0 = tf.maximum(cx - rx, 0), tf.maximum(cy - ry, 0)
    span_x = tf.maximum(tf.minimum(cx + rx, width - 1) - x0 + 1, 0)
    span_y = tf.maximum(tf.minimum(cy + ry, height - 1) - y0 + 1, 0)
    widest = tf.reduce_max(tf.concat([span_x, span_y, [0]], axis=0))
    offsets = tf.cast(tf.range(widest), tf.float64)[tf.newaxis, :]

    def factors(start, centre, sigma):  # [N, S] float32: the Gaussian along one window axis
        delta = tf.cast(start, tf.float64)[:, tf.newaxis] + offsets - centre[:, tf.newaxis]
        two_sigma_sq = (2.0 * sigma * sigma)[:, tf.newaxis]
        return tf.cast(tf.exp(-(delta * delta) / two_sigma_sq), tf.float32)

    factor_x, factor_y = factors(x0, int_x, sigma_x), factors(y0, int_y, sigma_y)
    cells = span_x * span_y
    ends = tf.cumsum(cells)
    entry = tf.range(tf.reduce_sum(cells))  # [M] one entry per window cell
    owner = tf.searchsorted(ends, entry, side="right")  # the object of each entry
    per_object = tf.gather(tf.stack([span_x, ends - cells, x0, y0, objects.labels,
                                     objects.image], axis=1), owner)
    row_length, first, left, top, label, image = tf.unstack(per_object, axis=1)
    position = entry - first  # >= 0 within the window, row by row
    row = tf.truncatediv(position, row_length)  # floor division: both are non-negative
    column = position - row * row_length
    table = owner * widest
    value = (tf.gather(tf.reshape(factor_y, [-1]), table + row)
             * tf.gather(tf.reshape(factor_x, [-1]), table + column))
    cell = (tf.cast(image * height + top + row, index_type) * width
            + tf.cast(left + column, index_type))
    return _Windows(owner, cell, label, value, factor_x, factor_y, span_x, span_y)


def _window_heatmap(windows: _Windows, batch_size: Union[int, tf.Tensor], height: int,
                    width: int, num_classes: int) -> tf.Tensor:
    """The batch's class heatmaps from the objects' windows alone: cells shared by windows of
    one class in one image keep their maximum (`unsorted_segment_max` over `tf.unique`), and
    the result is written into a zero `[B, H, W, C]` tensor in one pass (`SparseToDense`; a
    scatter-max into zeros measured 1.5-2x slower).

    Returns: `[B, H, W, C]` float32, per image the element-wise maximum of its objects'
        Gaussians per class.
    """
    index_type = windows.cell.dtype
    flat_index = windows.cell * num_classes + tf.cast(windows.label, index_type)
    cell, which = tf.unique(flat_index)  # overlapping windows of one class share cells
    peak = tf.math.unsorted_segment_max(windows.value, which, tf.size(cell))
    size = tf.cast(batch_size, index_type) * (height * width * num_classes)
    heatmap = tf.raw_ops.SparseToDense(sparse_indices=cell, output_shape=size[tf.newaxis],
                                       sparse_values=peak, default_value=0.0,
                                       validate_indices=False)
    return tf.reshape(heatmap, [-1, height, width, num_classes])


def render_targets(boxes, labels, output_size: OutputSize, num_classes: int, max_objects: int,
                   min_overlap: float = 0.7, dense_wh: bool = False,
                   dense_reg: bool = False, clip_to_edge: bool = False) -> Dict[str, tf.Tensor]:
    """Render one image's CenterNet targets.

    Boxes are clipped to `[0, W-1] x [0, H-1]` as the original CenterNet does (or, with
    `clip_to_edge`, to the grid's edge `[0, W] x [0, H]`); a box whose clipped width or height is
    not positive is skipped and takes no slot. The first `max_objects` remaining boxes (input order)
    fill slots `0..`; the rest are dropped and counted in `num_dropped`.

    Args:
        boxes: `[N, 4]` float `x1, y1, x2, y2` in output-grid pixels (image pixels / stride).
        labels: `[N]` int class ids in `0..num_classes-1`.
        output_size: output grid `H` (= `W`) or `(H, W)`.
        num_classes: number of heatmap channels `C`.
        max_objects: number of regression slots `K`.
        min_overlap: `min_overlap` of `gaussian_radius`.
        dense_wh: also render the original CenterNet's `--dense_wh` size targets (below).
        dense_reg: also render dense offset targets (below).
        clip_to_edge: clip to `W` and `H` instead of `W - 1` and `H - 1`. In continuous pixel
            coordinates the grid ends at `W`; the original's `W - 1` shortens every box that
            reaches the right or bottom border by up to one output pixel (a stride of input
            pixels), which costs AP at strict IoU thresholds.

    Returns:
        dict with `heatmap` `[H, W, C]` float32 (one exact 1.0 peak per kept centre),
        `wh` `[K, 2]` float32 clipped box size in output pixels, `reg` `[K, 2]` float32 centre
        minus integer centre, `ind` `[K]` int32 `py * W + px`, `mask` `[K]` float32 (1 = used
        slot), `num_dropped` int32 scalar. Dense targets are drawn in every cell of an
        object's Gaussian window where its Gaussian is the largest (a later object wins ties,
        as the original's `draw_dense_reg` overwrites): `dense_wh` `[H, W, 2]` that object's
        `wh`, `dense_reg` `[H, W, 2]` its centre minus the cell (`draw_dense_reg` with
        `is_offset`), and `dense_mask` `[H, W]` the heatmap's maximum over classes, the loss
        weight.
    """
    return _first_of(render_targets_batch(_one_image(boxes, 4), _one_image(labels),
                                          output_size, num_classes, max_objects, min_overlap,
                                          dense_wh, dense_reg, clip_to_edge))


def render_targets_batch(boxes, labels, output_size: OutputSize, num_classes: int,
                         max_objects: int, min_overlap: float = 0.7, dense_wh: bool = False,
                         dense_reg: bool = False, clip_to_edge: bool = False
                         ) -> Dict[str, tf.Tensor]:
    """`render_targets` of a batch of images in one set of ops.

    Args:
        boxes: `[B, N, 4]` float, each image's boxes padded to a common `N` with rows without
            area (`tf.data`'s `padded_batch` pads with zeros), which take no slot.
        labels: `[B, N]` int, padded likewise (any id in `0..C-1`).
        the others: as `render_targets`.

    Returns:
        `render_targets`'s dict with a leading batch axis: `heatmap` `[B, H, W, C]`, `wh` and
        `reg` `[B, K, 2]`, `ind` and `mask` `[B, K]`, `num_dropped` `[B]`, the dense targets
        `[B, H, W, ...]`.
    """
    height, width = _output_hw(output_size)
    library = None if (dense_wh or dense_reg) else native.targets_op()
    if library is not None:
        return _native_targets(library, boxes, labels, height, width, num_classes, max_objects,
                               min_overlap, clip_to_edge)
    objects = _kept_objects(_clip_boxes(boxes, height, width, clip_to_edge), labels,
                            num_classes, max_objects)
    box_w, box_h = objects.x2 - objects.x1, objects.y2 - objects.y1
    radii = tf.maximum(tf.floor(gaussian_radius(tf.math.ceil(box_h), tf.math.ceil(box_w),
                                                min_overlap)), 0.0)
    sigmas = (2 * radii + 1) / 6
    windows = _windows(objects, (radii, radii), (sigmas, sigmas), height, width,
                       _index_type(objects, height, width, num_classes))
    heatmap = _window_heatmap(windows, objects.batch_size, height, width, num_classes)
    centre = _centre_targets(objects, width, max_objects)
    dense = {}
    if dense_wh or dense_reg:
        gauss_x = _gaussian_1d(tf.range(width, dtype=tf.float64), objects.int_x, radii, sigmas)
        gauss_y = _gaussian_1d(tf.range(height, dtype=tf.float64), objects.int_y, radii, sigmas)
        per_object = gauss_y[:, :, tf.newaxis] * gauss_x[:, tf.newaxis, :]  # [N, H, W]
        wh = tf.cast(tf.stack([box_w, box_h], axis=1), tf.float32)
        dense = _dense_targets(per_object, objects, wh, dense_wh, dense_reg)
    return {"heatmap": tf.ensure_shape(heatmap, [None, height, width, num_classes]), **centre,
            **dense}


def _native_targets(library, boxes, labels, height: int, width: int, num_classes: int,
                    max_objects: int, min_overlap: float, clip_to_edge: bool
                    ) -> Dict[str, tf.Tensor]:
    """`render_targets_batch` without dense targets in one kernel (`targets_op.cc`)."""
    radius_table, gaussian_table = _window_tables(height, width, min_overlap, clip_to_edge)
    heatmap, wh, reg, ind, mask, num_dropped = library.centernet_targets(
        tf.cast(boxes, tf.float64), tf.cast(labels, tf.int32), radius_table, gaussian_table,
        height=height, width=width, num_classes=num_classes, max_objects=max_objects,
        clip_to_edge=clip_to_edge)
    return {"heatmap": heatmap, "wh": wh, "reg": reg, "ind": ind, "mask": mask,
            "num_dropped": num_dropped}


@functools.lru_cache(maxsize=32)
def _window_tables(height: int, width: int, min_overlap: float, clip_to_edge: bool
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """The native CenterNet renderer's tables, from this module's float64 formulas (computed
    eagerly once per grid):

    - radius `[max_y + 1, max_x + 1]` int32: `max(floor(gaussian_radius(h, w)), 0)` for every
      `h = ceil(box height)`, `w = ceil(box width)` a box clipped to the grid can have;
    - Gaussian: `_gaussian_table` up to the largest of those radii.
    """
    max_x, max_y = (width, height) if clip_to_edge else (width - 1, height - 1)
    with tf.init_scope():  # eager, also while a tf.data map or tf.function is traced
        box_h = tf.range(max_y + 1, dtype=tf.float64)[:, tf.newaxis]
        box_w = tf.range(max_x + 1, dtype=tf.float64)[tf.newaxis, :]
        radius = tf.maximum(tf.floor(gaussian_radius(box_h, box_w, min_overlap)), 0.0)
        radius = radius.numpy().astype(np.int32)
    return radius, _gaussian_table(int(radius.max()))


@functools.lru_cache(maxsize=32)
def _gaussian_table(largest: int) -> np.ndarray:
    """`[R + 1, R + 1]` float32 (R = `largest` radius): row `r`, column `d <= r` the window
    factor `exp(-d^2 / 2 sigma^2)`, `sigma = (2 r + 1) / 6`, computed in float64 by
    TensorFlow and cast, as `_windows` computes it (0 beyond the window, `d > r`). Computed
    eagerly, also while a tf.data map or tf.function is traced."""
    with tf.init_scope():
        radii = tf.range(largest + 1, dtype=tf.float64)[:, tf.newaxis]
        distance = tf.range(largest + 1, dtype=tf.float64)[tf.newaxis, :]
        sigma = (2 * radii + 1) / 6
        two_sigma_sq = 2.0 * sigma * sigma
        gaussian = tf.cast(tf.exp(-(distance * distance) / two_sigma_sq), tf.float32)
        return tf.where(distance <= radii, gaussian, 0.0).numpy()  # only d <= r is ever read


def _one_image(values, row_length: int = 0) -> tf.Tensor:
    """One image's `[N, row_length]` (or `[N]`) values as a batch of one."""
    shape = [1, -1, row_length] if row_length else [1, -1]
    return tf.reshape(tf.convert_to_tensor(values), shape)


def _first_of(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The first image's targets of a batch's."""
    return {key: value[0] for key, value in batch.items()}


class _Objects(NamedTuple):
    """The boxes of a batch that get targets, clipped, in float64 output pixels (`[N]` each,
    image by image, in input order), with their labels, image and slot in it (`[N]` int32),
    integer centres, their `position` `[N, 2]` int64 `(image, box)` in the padded batch, and
    per image `[B]` the count kept and dropped for want of a slot. `batch_size` is a Python
    int where the batch's size is static."""

    x1: tf.Tensor
    y1: tf.Tensor
    x2: tf.Tensor
    y2: tf.Tensor
    labels: tf.Tensor
    image: tf.Tensor
    slot: tf.Tensor
    centre_x: tf.Tensor
    centre_y: tf.Tensor
    int_x: tf.Tensor
    int_y: tf.Tensor
    position: tf.Tensor
    batch_size: Union[int, tf.Tensor]
    num_kept: tf.Tensor
    num_dropped: tf.Tensor


def _clip_boxes(boxes, height: int, width: int, clip_to_edge: bool) -> tf.Tensor:
    """A batch's boxes `[B, N, 4]` clipped to the grid (`W - 1`, or `W` with `clip_to_edge`),
    float64 output pixels."""
    max_x, max_y = (width, height) if clip_to_edge else (width - 1, height - 1)
    return tf.clip_by_value(tf.cast(boxes, tf.float64), 0.0,
                            tf.constant([max_x, max_y, max_x, max_y], tf.float64))


def _kept_objects(clipped: tf.Tensor, labels, num_classes: int, max_objects: int) -> _Objects:
    """From a batch's clipped boxes (`_clip_boxes`, `[B, N, 4]`) and labels `[B, N]`: skip
    the boxes without area, keep each image's first `max_objects` (see `render_targets`).
    Written with few ops: at 10 objects each op's fixed cost, not the arithmetic, is most of
    the time."""
    labels = tf.cast(labels, tf.int32)
    tf.debugging.Assert(tf.reduce_all((labels >= 0) & (labels < num_classes)),
                        [f"render_targets: labels must be in 0..{num_classes - 1}, got",
                         labels])
    valid = tf.cast(tf.reduce_all(clipped[..., 2:] - clipped[..., :2] > 0, axis=-1), tf.int32)
    slot = tf.cumsum(valid, axis=1, exclusive=True)  # [B, N]: each valid box's slot
    num_valid = tf.reduce_sum(valid, axis=1)
    kept = tf.where((valid > 0) & (slot < max_objects))  # [M, 2] (image, box), in input order
    boxes = tf.gather_nd(clipped, kept)
    x1, y1, x2, y2 = tf.unstack(boxes, num=4, axis=1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    int_centre = tf.floor(centre)
    return _Objects(x1, y1, x2, y2, tf.gather_nd(labels, kept), tf.cast(kept[:, 0], tf.int32),
                    tf.gather_nd(slot, kept), centre[:, 0], centre[:, 1], int_centre[:, 0],
                    int_centre[:, 1], kept, clipped.shape[0] or tf.shape(clipped)[0],
                    tf.minimum(num_valid, max_objects),
                    tf.maximum(num_valid - max_objects, 0))


def _centre_targets(objects: _Objects, width: int, max_objects: int) -> Dict[str, tf.Tensor]:
    """`wh`, `reg`, `ind`, `mask` (`[B, K, ...]`, each object in its image's slot) and
    `num_dropped` `[B]`."""
    slots = tf.stack([objects.image, objects.slot], axis=1)
    shape = tf.stack([objects.batch_size, max_objects])
    rows = tf.cast(tf.stack([objects.x2 - objects.x1, objects.y2 - objects.y1,
                             objects.centre_x - objects.int_x,
                             objects.centre_y - objects.int_y], axis=1), tf.float32)
    wh_reg = tf.ensure_shape(tf.scatter_nd(slots, rows, tf.concat([shape, [4]], 0)),
                             [None, max_objects, 4])
    ind = tf.cast(objects.int_y * width + objects.int_x, tf.int32)
    return {
        "wh": wh_reg[..., :2],
        "reg": wh_reg[..., 2:],
        "ind": tf.ensure_shape(tf.scatter_nd(slots, ind, shape), [None, max_objects]),
        "mask": tf.cast(tf.range(max_objects) < objects.num_kept[:, tf.newaxis], tf.float32),
        "num_dropped": objects.num_dropped,
    }


def render_ttf_targets(boxes, labels, output_size: OutputSize, num_classes: int,
                       max_objects: int, alpha: float = 0.54, beta: float = 0.54,
                       stride: int = 4, clip_to_edge: bool = True) -> Dict[str, tf.Tensor]:
    """One image's TTFNet targets (Liu et al., "Training-Time-Friendly Network for Real-Time
    Object Detection", AAAI 2020, section 3): an elliptical heatmap and box regression from
    every cell near each centre, Gaussian-weighted.

    Boxes are clipped and kept exactly as in `render_targets`. For object `n` with size
    `w x h` (output pixels) and integer centre `(cx, cy)`:

    - heatmap: `exp(-dx^2 / 2 sx^2 - dy^2 / 2 sy^2)` with `rx = floor(alpha * w / 2)`,
      `sx = (2 rx + 1) / 6` (likewise `ry`, `sy` from `h`), on `|dx| <= rx`, `|dy| <= ry`;
      the maximum per class where objects overlap, exactly 1.0 at each centre.
    - box regression: the same Gaussian with `beta` instead of `alpha` (`G_n`) marks the cells
      that regress the object's box; a cell covered by several objects regresses the smallest
      (a later object wins ties of area). Its weight is
      `log(area_n) * G_n(cell) / sum over the grid of G_n`, `area_n` in input pixels
      (`w h stride^2`, at least 2 so that the weight stays positive), so each object's
      weights sum to the log of its area. `G_n` is the product of float32 factors along
      each axis (as the heatmap's) and its sum over the grid the product of the factors'
      sums, in float64.

    Args:
        boxes, labels, output_size, num_classes, max_objects, clip_to_edge: as `render_targets`.
        alpha, beta: the heatmap's and the regression region's size as a fraction of the box
            (TTFNet's 0.54 for both).
        stride: input pixels per output pixel, for the area in `log(area)`.

    Returns:
        dict with `heatmap` `[H, W, C]` float32; `wh`, `reg`, `ind`, `mask`, `num_dropped` as
        `render_targets` returns them (the centre cells, for the centre losses and logs);
        `box_target` `[H, W, 4]` float32 `x1, y1, x2, y2` (output pixels) of the box each
        cell regresses, 0 where none; `box_weight` `[H, W]` float32, 0 where none.
    """
    return _first_of(render_ttf_targets_batch(_one_image(boxes, 4), _one_image(labels),
                                              output_size, num_classes, max_objects, alpha,
                                              beta, stride, clip_to_edge))


def render_ttf_targets_batch(boxes, labels, output_size: OutputSize, num_classes: int,
                             max_objects: int, alpha: float = 0.54, beta: float = 0.54,
                             stride: int = 4, clip_to_edge: bool = True
                             ) -> Dict[str, tf.Tensor]:
    """`render_ttf_targets` of a batch of images in one set of ops: `boxes` `[B, N, 4]` and
    `labels` `[B, N]` padded as for `render_targets_batch`; every output gains a leading
    batch axis (`box_target` `[B, H, W, 4]`, `box_weight` `[B, H, W]`)."""
    height, width = _output_hw(output_size)
    boxes = tf.cast(boxes, tf.float64)
    clipped = _clip_boxes(boxes, height, width, clip_to_edge)
    log_area = _log_areas(clipped, stride)
    library = native.targets_op()
    if library is not None:
        return _native_ttf_targets(library, boxes, labels, log_area, height, width,
                                   num_classes, max_objects, alpha, beta, stride, clip_to_edge)
    objects = _kept_objects(clipped, labels, num_classes, max_objects)
    box_w, box_h = objects.x2 - objects.x1, objects.y2 - objects.y1

    def axis_gaussian(fraction):  # radii and sigmas per axis, float64 [N]
        radius_x, radius_y = tf.floor(fraction * box_w / 2), tf.floor(fraction * box_h / 2)
        return (radius_x, radius_y), ((2 * radius_x + 1) / 6, (2 * radius_y + 1) / 6)

    index_type = _index_type(objects, height, width, num_classes)
    heatmap = _window_heatmap(_windows(objects, *axis_gaussian(alpha), height, width,
                                       index_type),
                              objects.batch_size, height, width, num_classes)
    regression = _box_regression(objects, _windows(objects, *axis_gaussian(beta), height,
                                                   width, index_type),
                                 tf.gather_nd(log_area, objects.position), stride, height,
                                 width)
    return {"heatmap": tf.ensure_shape(heatmap, [None, height, width, num_classes]),
            **_centre_targets(objects, width, max_objects), **regression}


def _native_ttf_targets(library, boxes, labels, log_area: tf.Tensor, height: int, width: int,
                        num_classes: int, max_objects: int, alpha: float, beta: float,
                        stride: int, clip_to_edge: bool) -> Dict[str, tf.Tensor]:
    """`render_ttf_targets_batch` in one kernel (`targets_op.cc`) from the float64 boxes
    `[B, N, 4]`, with this module's `log_area` `[B, N]` and Gaussian table. Its radii
    `floor(fraction * size / 2)` are at most the largest clipped size's, computed here with
    the same float64 arithmetic."""
    max_x, max_y = (width, height) if clip_to_edge else (width - 1, height - 1)
    largest = math.floor(max(alpha, beta) * max(max_x, max_y) / 2)
    (heatmap, wh, reg, ind, mask, num_dropped, box_target,
     box_weight) = library.ttfnet_targets(
        boxes, tf.cast(labels, tf.int32), log_area,
        tf.constant([alpha, beta], tf.float64), _gaussian_table(largest), height=height,
        width=width, num_classes=num_classes, max_objects=max_objects, stride=stride,
        clip_to_edge=clip_to_edge)
    return {"heatmap": heatmap, "wh": wh, "reg": reg, "ind": ind, "mask": mask,
            "num_dropped": num_dropped, "box_target": box_target, "box_weight": box_weight}


def _input_area(box_w, box_h, stride: int):
    """A box's area in input pixels from its float64 size in output pixels (any shape)."""
    return box_w * box_h * float(stride * stride)


def _log_areas(clipped: tf.Tensor, stride: int) -> tf.Tensor:
    """`log(max(area, 2))` of every clipped box `[B, N, 4]` (`_input_area`; at least 2 so that
    the log is positive): `[B, N]` float64. Both renderers take it from here (the kernel as an
    input), so that no logarithm is evaluated twice in different libraries."""
    box_w = clipped[..., 2] - clipped[..., 0]
    box_h = clipped[..., 3] - clipped[..., 1]
    return tf.math.log(tf.maximum(_input_area(box_w, box_h, stride), 2.0))


def _box_regression(objects: _Objects, windows: _Windows, log_area: tf.Tensor, stride: int,
                    height: int, width: int) -> Dict[str, tf.Tensor]:
    """TTFNet's `box_target` `[B, H, W, 4]` and `box_weight` `[B, H, W]` from the objects'
    regression windows (`_windows` with `beta`'s radii) and their `log_area` `[N]` float64.

    Memory: the windows' cells (`M` entries) and a few `[B, H, W]` planes, never a plane per
    object. A cell covered by several windows goes to the object of the highest rank
    (`unsorted_segment_max`), rank 1 the largest area in the batch (the earliest among
    equals): smaller objects win and a later one wins a tie; only ranks of one image meet in
    a cell, and their order is the image's own. The owner's weight at the cell is its window
    value times `log_area / ((sum of factor_y) (sum of factor_x))`, the sums in float64 over
    the window's rows and columns inside the grid (exact in any order: float32 factors of at
    least 2^-7 are multiples of 2^-30), the quotient cast to float32.
    """
    area = _input_area(objects.x2 - objects.x1, objects.y2 - objects.y1, stride)
    order = tf.argsort(-area, stable=True)
    rank = tf.math.invert_permutation(order) + 1  # [N] in 1..N
    entry_rank = tf.gather(rank, windows.owner)
    planes = tf.cast(objects.batch_size, windows.cell.dtype) * (height * width)
    # [B * H * W]: the rank owning each cell, 0 where none (an empty segment's maximum is
    # the lowest int32)
    owner_rank = tf.maximum(tf.math.unsorted_segment_max(entry_rank, windows.cell, planes), 0)
    won = tf.equal(entry_rank, tf.gather(owner_rank, windows.cell))

    def window_sum(factor, span):  # [N] float64: the factors inside the grid, summed
        inside = tf.range(tf.shape(factor)[1])[tf.newaxis, :] < span[:, tf.newaxis]
        return tf.reduce_sum(tf.where(inside, tf.cast(factor, tf.float64), 0.0), axis=1)

    scale = tf.cast(log_area / (window_sum(windows.factor_y, windows.span_y)
                                * window_sum(windows.factor_x, windows.span_x)), tf.float32)
    weights = tf.where(won, windows.value * tf.gather(scale, windows.owner), 0.0)
    # one owner per covered cell: its weight plus zeros, exactly
    box_weight = tf.math.unsorted_segment_sum(weights, windows.cell, planes)
    # 1 + the index of the object each cell regresses, 0 where none
    owner = tf.gather(tf.concat([[0], order + 1], axis=0), owner_rank)
    corners = tf.cast(tf.stack([objects.x1, objects.y1, objects.x2, objects.y2], 1), tf.float32)
    box_target = tf.gather(tf.concat([tf.zeros([1, 4]), corners], axis=0), owner)
    return {"box_target": tf.ensure_shape(tf.reshape(box_target, [-1, height, width, 4]),
                                          [None, height, width, 4]),
            "box_weight": tf.ensure_shape(tf.reshape(box_weight, [-1, height, width]),
                                          [None, height, width])}


def _per_image_max(per_object: tf.Tensor, objects: _Objects) -> tf.Tensor:
    """`[N, H, W]` values of the batch's objects -> `[B, H, W]`: per image the maximum over
    its objects, and at least 0 (an image without objects gets zeros)."""
    return tf.maximum(tf.math.unsorted_segment_max(per_object, objects.image,
                                                   objects.batch_size), 0)


def _dense_targets(per_object: tf.Tensor, objects: _Objects, wh: tf.Tensor, dense_wh: bool,
                   dense_reg: bool) -> Dict[str, tf.Tensor]:
    """Dense size and offset targets `[B, H, W, ...]` from the per-object Gaussians
    `[N, H, W]`, the objects (their images and float64 centres) and the sizes `[N, 2]`.

    In each image the last object whose Gaussian is a cell's maximum owns it: exactly what the
    original's sequential `draw_dense_reg` leaves behind (object k overwrites where its
    Gaussian is at least the maximum of objects 0..k).
    """
    height, width = per_object.shape[1], per_object.shape[2]
    strongest = _per_image_max(per_object, objects)  # [B, H, W], the heatmap's max over classes
    at_maximum = (per_object > 0) & (per_object == tf.gather(strongest, objects.image))
    index = tf.range(1, tf.shape(per_object)[0] + 1)[:, tf.newaxis, tf.newaxis]
    owner = _per_image_max(tf.where(at_maximum, index, 0), objects)  # 1 + index, 0 = none
    covered = (strongest > 0)[..., tf.newaxis]
    targets = {"dense_mask": tf.ensure_shape(strongest, [None, height, width])}

    def owned(per_object_values: tf.Tensor) -> tf.Tensor:
        """`[N, 2]` values -> `[B, H, W, 2]`: each covered cell gets its owner's."""
        values = tf.concat([tf.zeros([1, 2], per_object_values.dtype), per_object_values], 0)
        return tf.ensure_shape(tf.gather(values, owner), [None, height, width, 2])

    if dense_wh:
        targets["dense_wh"] = owned(wh)
    if dense_reg:
        cells = tf.stack(tf.meshgrid(tf.range(width, dtype=tf.float64),
                                     tf.range(height, dtype=tf.float64)), axis=-1)  # [H, W, 2]
        centres = owned(tf.stack([objects.centre_x, objects.centre_y], axis=1))
        targets["dense_reg"] = tf.cast(tf.where(covered, centres - cells, 0.0), tf.float32)
    return targets
