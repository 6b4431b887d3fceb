"""CenterNet losses: the penalty-reduced focal loss on heatmaps and L1 on size and offset.

Four focal-loss forms share one formula (docs/architecture.md, Losses). Three differ only in how
they get `-log p`, `-log(1 - p)`, `p` and `1 - p` from the logits, and divide the batch's sum by
the batch's positives:

- `stable` (default): in logit space and float32 whatever the input dtype,
  `-log sigmoid(x) = softplus(-x)`, `-log(1 - sigmoid(x)) = softplus(x)`,
  `1 - sigmoid(x) = sigmoid(-x)`: finite loss and gradients for every finite logit. All four
  come from one `exp(-|x|)`, and the gradient is the closed form (`_stable_focal_terms`)
  rather than autodiff through each op, so it costs about what `naive` does.
- `naive`: the textbook `log(sigmoid(x))`, `log(1 - sigmoid(x))` in the input dtype with the
  positive and negative masks multiplied in, as the original CenterNet code does; once a sigmoid
  rounds to exactly 0 or 1 a masked-out `-inf` meets a 0 and the loss is NaN. It exists to show
  that failure (`loss=naive`).
- `clamped`: the original CenterNet's sigmoid clamped to `[1e-4, 1 - 1e-4]` before the logs:
  no NaN in float32, but no gradient once `|logit|` exceeds about 9.2.

The fourth, `per_image`, takes the `stable` terms and normalises per image instead: each image's
sum divided by its own positives with `div_no_nan`, then the mean over the batch (the TensorFlow
snippet this project started from). An image without objects gets loss 0 and no gradient: its
negatives teach nothing.
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, Mapping, Tuple

import numpy as np
import tensorflow as tf

FOCAL_IMPLS = ("stable", "naive", "clamped", "per_image")
CLAMP_EPS = 1e-4

# Every loss divides a sum over the batch by a count (positives, used slots, weights, images).
# In a distributed step each replica sees a share of the global batch; passing
# `global_sum=replica_sum` makes every count the global one, so the replicas' losses (and
# gradients) add up to exactly those of one device on the whole batch.
GlobalSum = Callable[[tf.Tensor], tf.Tensor]


def local_sum(count: tf.Tensor) -> tf.Tensor:
    """One device: the batch's own count."""
    return count


def replica_sum(count: tf.Tensor) -> tf.Tensor:
    """The count summed over all replicas (inside `strategy.run`); no gradient flows."""
    context = tf.distribute.get_replica_context()
    return tf.stop_gradient(context.all_reduce(tf.distribute.ReduceOp.SUM, count))


@functools.lru_cache(maxsize=None)
def sigmoid_rounding_points(dtype: str) -> Tuple[float, float]:
    """Where `tf.sigmoid` in `dtype` rounds to exactly 0 and to exactly 1, measured.

    Every value of `dtype` in [-200, 40] is passed through `tf.sigmoid` in that dtype.

    Returns:
        `(zero_below, one_from)`: the largest logit whose sigmoid is exactly 0 (every logit at
        or below it gives 0, in float32 a flushed denormal) and the smallest whose sigmoid is
        exactly 1, e.g. about (-87.3, 16.6) in float32, (-17.3, 7.6) in float16.
    """
    grid = np.arange(-200.0, 40.0, 1 / 1024)
    values = np.unique(tf.cast(tf.constant(grid), dtype).numpy().astype(np.float64))
    p = tf.sigmoid(tf.constant(values, dtype)).numpy().astype(np.float64)
    zero = values[p == 0]
    one = values[p == 1]
    return (float(zero.max()) if zero.size else float("-inf"),
            float(one.min()) if one.size else float("inf"))


def _stable_focal_terms(logits: tf.Tensor, positive: tf.Tensor, neg_weight: tf.Tensor,
                        alpha: float) -> Tuple[tf.Tensor, tf.Tensor]:
    """The `stable` positive and negative terms, float32, with their closed-form gradient.

    With `s = sigmoid(x)`, `t = sigmoid(-x) = 1 - s`, `softplus(-x) = -log s` and
    `softplus(x) = -log t`, all from `e = exp(-|x|)` (`softplus(+-x) = max(+-x, 0) +
    log1p(e)`, `s, t = 1/(1 + e), e/(1 + e)` in the order the sign of `x` says):

        pos = softplus(-x) t^alpha P        d pos/dx = -P t^alpha (t + alpha s softplus(-x))
        neg = softplus(x) s^alpha W         d neg/dx =  W s^alpha (s + alpha t softplus(x))

    `P` is the positives' mask and `W = (1 - z)^beta` times the negatives' mask; neither is
    differentiated (they are targets). Every factor is finite and in range for every finite
    `x`, so the gradient is too; autodiff through the same ops gives the same values with
    about twice the passes over the `[B, H, W, C]` tensors.
    """
    power = (lambda v: v * v) if alpha == 2 else (lambda v: tf.pow(v, alpha))

    @tf.custom_gradient
    def terms(x):
        e = tf.exp(-tf.abs(x))
        log1p_e = tf.math.log1p(e)
        softplus_x = tf.maximum(x, 0.0) + log1p_e  # -log(1 - p)
        softplus_neg_x = tf.maximum(-x, 0.0) + log1p_e  # -log p
        r = 1.0 / (1.0 + e)
        nonneg = x >= 0
        p = tf.where(nonneg, r, e * r)
        not_p = tf.where(nonneg, e * r, r)
        pos_factor = power(not_p) * positive
        neg_factor = power(p) * neg_weight

        def gradient(d_pos, d_neg):
            return (d_neg * neg_factor * (p + alpha * not_p * softplus_x)
                    - d_pos * pos_factor * (not_p + alpha * p * softplus_neg_x))

        return (softplus_neg_x * pos_factor, softplus_x * neg_factor), gradient

    return terms(tf.cast(logits, tf.float32))


def _naive_terms(logits: tf.Tensor) -> Tuple[tf.Tensor, ...]:
    p = tf.sigmoid(logits)
    return -tf.math.log(p), -tf.math.log(1 - p), p, 1 - p


def _clamped_terms(logits: tf.Tensor) -> Tuple[tf.Tensor, ...]:
    p = tf.clip_by_value(tf.sigmoid(logits), CLAMP_EPS, 1 - CLAMP_EPS)
    return -tf.math.log(p), -tf.math.log(1 - p), p, 1 - p


_TERMS = {"naive": _naive_terms, "clamped": _clamped_terms}


def focal_terms(logits: tf.Tensor, heatmap: tf.Tensor, impl: str = "stable", alpha: float = 2.0,
                beta: float = 4.0) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The focal loss element by element, before any sum or normalisation.

    Args:
        logits, heatmap, impl, alpha, beta: as `focal_loss`.

    Returns:
        `(pos_loss, neg_loss, positive)`, each `[B, H, W, C]`: `-log p (1 - p)^alpha` at the
        positives (0 elsewhere), `-log(1 - p) p^alpha (1 - z)^beta` at the negatives (0
        elsewhere), and the positives' mask; in float32 for `stable` and `per_image`, else in
        the logits' dtype. The masks multiply the terms, as the original code does: a
        non-finite term is NaN even where it is masked out.
    """
    if impl not in FOCAL_IMPLS:
        raise ValueError(f"focal loss impl={impl!r} is invalid: choose one of "
                         + ", ".join(FOCAL_IMPLS))
    if impl in ("stable", "per_image"):
        z = tf.cast(heatmap, tf.float32)
        positive = tf.cast(tf.equal(z, 1), tf.float32)
        pos_loss, neg_loss = _stable_focal_terms(logits, positive,
                                                 tf.pow(1 - z, beta) * (1 - positive), alpha)
        return pos_loss, neg_loss, positive
    neg_log_p, neg_log_not_p, p, not_p = _TERMS[impl](logits)
    dtype = p.dtype
    z = tf.cast(heatmap, dtype)
    positive = tf.cast(tf.equal(z, 1), dtype)
    negative = 1 - positive
    pos_loss = neg_log_p * tf.pow(not_p, alpha) * positive
    neg_loss = neg_log_not_p * tf.pow(p, alpha) * tf.pow(1 - z, beta) * negative
    return pos_loss, neg_loss, positive


def focal_loss(logits: tf.Tensor, heatmap: tf.Tensor, impl: str = "stable", alpha: float = 2.0,
               beta: float = 4.0, global_sum: GlobalSum = local_sum) -> tf.Tensor:
    """Penalty-reduced pixel-wise focal loss, summed and divided by the number of positives.

    Args:
        logits: `[B, H, W, C]` heatmap logits, any float dtype.
        heatmap: `[B, H, W, C]` targets in `[0, 1]`; positives are exactly 1.
        impl: `stable`, `naive`, `clamped` or `per_image` (module docstring).
        alpha, beta: focal exponents (2 and 4 in CenterNet).
        global_sum: how counts become the batch's counts (`local_sum`; `replica_sum` in a
            distributed step, where the batch is every replica's share together): the
            positives, or for `per_image` the number of images.

    Returns:
        scalar: the sum over the batch divided by the number of positives, or the sum alone
        when there are none (negatives always count); for `per_image` the batch mean of
        `div_no_nan(image sum, image positives)`. float32 for `stable` and `per_image`, the
        logits' dtype for `naive` and `clamped`.
    """
    pos_loss, neg_loss, positive = focal_terms(logits, heatmap, impl, alpha, beta)
    if impl == "per_image":
        per_image = tf.reduce_sum(pos_loss + neg_loss, axis=[1, 2, 3])
        positives = tf.reduce_sum(positive, axis=[1, 2, 3])
        images = global_sum(tf.cast(tf.shape(per_image)[0], per_image.dtype))
        return tf.reduce_sum(tf.math.divide_no_nan(per_image, positives)) / images
    total = tf.reduce_sum(pos_loss + neg_loss)
    num_positives = global_sum(tf.reduce_sum(positive))
    return total / tf.maximum(tf.cast(num_positives, pos_loss.dtype), 1)


def reg_l1_loss(pred: tf.Tensor, ind: tf.Tensor, mask: tf.Tensor, target: tf.Tensor,
                global_sum: GlobalSum = local_sum) -> tf.Tensor:
    """L1 between a dense regression map and targets at the objects' centre cells.

    Args:
        pred: `[B, H, W, 2]` predicted map (size or offset, output pixels).
        ind: `[B, K]` int32 flattened centre cell `y * W + x`.
        mask: `[B, K]` 1 for used slots, 0 for padding.
        target: `[B, K, 2]` target values.

    Returns:
        float32 scalar `sum(|pred[ind] - target| * mask) / (2 * sum(mask) + 1e-4)`: the mean over
        the used entries, normalised like the original CenterNet's RegL1Loss.
    """
    pred = tf.cast(pred, tf.float32)
    batch = tf.shape(pred)[0]
    flat = tf.reshape(pred, [batch, -1, tf.shape(pred)[-1]])
    picked = tf.gather(flat, ind, batch_dims=1)
    weights = tf.cast(mask, tf.float32)[..., tf.newaxis]
    error = tf.reduce_sum(tf.abs(picked - tf.cast(target, tf.float32)) * weights)
    return error / (global_sum(tf.reduce_sum(weights)) * 2 + 1e-4)


def dense_l1_loss(pred: tf.Tensor, target: tf.Tensor, weight: tf.Tensor,
                  global_sum: GlobalSum = local_sum) -> tf.Tensor:
    """Heatmap-weighted L1 over every cell (the original CenterNet's `--dense_wh` loss).

    Args:
        pred, target: `[B, H, W, 2]` sizes or offsets in output pixels.
        weight: `[B, H, W]` per-cell weight (the target heatmap's maximum over classes).

    Returns:
        float32 scalar `sum(|pred - target| * weight) / (2 * sum(weight) + 1e-4)`.
    """
    weights = tf.cast(weight, tf.float32)[..., tf.newaxis]
    error = tf.reduce_sum(tf.abs(tf.cast(pred, tf.float32) - tf.cast(target, tf.float32))
                          * weights)
    return error / (global_sum(tf.reduce_sum(weights)) * 2 + 1e-4)


def giou_loss(wh: tf.Tensor, reg: tf.Tensor, ind: tf.Tensor, mask: tf.Tensor,
              wh_target: tf.Tensor, reg_target: tf.Tensor,
              global_sum: GlobalSum = local_sum) -> tf.Tensor:
    """Generalised-IoU loss of the boxes predicted at the objects' centre cells.

    The box at a centre cell is `(offset - size / 2, offset + size / 2)` relative to the cell's
    corner, exactly what `decode` returns; the target box is built the same way from the
    targets. Unlike L1 on pixel sizes it is scale-invariant, so small objects count as much as
    large ones (TTFNet, Liu et al. 2020, trains CenterNet-style heads with it). Negative
    predicted sizes count as 0 in the box; the L1 size loss pulls them back.

    Args:
        wh, reg: `[B, H, W, 2]` predicted sizes and offsets (output pixels).
        ind: `[B, K]` int32 flattened centre cells; mask: `[B, K]` 1 for used slots.
        wh_target, reg_target: `[B, K, 2]` target sizes and offsets.

    Returns:
        float32 scalar `sum((1 - GIoU) * mask) / (sum(mask) + 1e-4)`, in `[0, 2]`.
    """
    batch = tf.shape(wh)[0]

    def at_centres(dense: tf.Tensor) -> tf.Tensor:
        flat = tf.reshape(tf.cast(dense, tf.float32), [batch, -1, 2])
        return tf.gather(flat, ind, batch_dims=1)

    low, high = _corners(at_centres(wh), at_centres(reg))
    t_low, t_high = _corners(tf.cast(wh_target, tf.float32), tf.cast(reg_target, tf.float32))
    weights = tf.cast(mask, tf.float32)
    giou = _giou(low, high, t_low, t_high)
    return tf.reduce_sum((1 - giou) * weights) / (global_sum(tf.reduce_sum(weights)) + 1e-4)


def _corners(size: tf.Tensor, offset: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """`(offset - size / 2, offset + size / 2)`, negative sizes counted as 0."""
    half = tf.maximum(size, 0.0) / 2
    return offset - half, offset + half


def _giou(low: tf.Tensor, high: tf.Tensor, t_low: tf.Tensor, t_high: tf.Tensor) -> tf.Tensor:
    """Generalised IoU (Rezatofighi et al. 2019) of boxes `[..., 2]` corners (x, y)."""
    area = tf.reduce_prod(high - low, axis=-1)
    t_area = tf.reduce_prod(t_high - t_low, axis=-1)
    inter = tf.reduce_prod(tf.maximum(tf.minimum(high, t_high) - tf.maximum(low, t_low), 0.0),
                           axis=-1)
    union = area + t_area - inter
    hull = tf.reduce_prod(tf.maximum(high, t_high) - tf.minimum(low, t_low), axis=-1)
    eps = 1e-7
    return inter / (union + eps) - (hull - union) / (hull + eps)


def dense_giou_loss(wh: tf.Tensor, reg: tf.Tensor, box_target: tf.Tensor,
                    box_weight: tf.Tensor, global_sum: GlobalSum = local_sum) -> tf.Tensor:
    """TTFNet's box loss: GIoU of the box predicted at every weighted cell (`targets.kind=
    ttfnet`, `render_ttf_targets`).

    The box predicted at cell `(x, y)` is centred at `(x + reg_x, y + reg_y)` with size `wh`,
    exactly what `decode` returns for a peak there.

    Args:
        wh, reg: `[B, H, W, 2]` predicted sizes and centre offsets (output pixels).
        box_target: `[B, H, W, 4]` `x1, y1, x2, y2` each cell regresses (output pixels).
        box_weight: `[B, H, W]` per-cell weight, 0 where a cell regresses nothing.

    Returns:
        float32 scalar `sum(w (1 - GIoU)) / (sum(w) + 1e-4)`, in `[0, 2]`.
    """
    shape = tf.shape(wh)
    cells = tf.stack(tf.meshgrid(tf.range(shape[2], dtype=tf.float32),
                                 tf.range(shape[1], dtype=tf.float32)), axis=-1)  # [H, W, 2]
    low, high = _corners(tf.cast(wh, tf.float32), cells + tf.cast(reg, tf.float32))
    box_target = tf.cast(box_target, tf.float32)
    weights = tf.cast(box_weight, tf.float32)
    # Cells with no box get their own prediction as target: GIoU 1, no loss, finite gradients.
    covered = (weights > 0)[..., tf.newaxis]
    t_low = tf.where(covered, box_target[..., :2], low)
    t_high = tf.where(covered, box_target[..., 2:], high)
    giou = _giou(low, high, t_low, t_high)
    return tf.reduce_sum((1 - giou) * weights) / (global_sum(tf.reduce_sum(weights)) + 1e-4)


def _regression_loss(outputs: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor],
                     key: str, global_sum: GlobalSum) -> tf.Tensor:
    """Dense L1 when the targets have `dense_<key>`, else L1 at the centre cells."""
    if f"dense_{key}" in targets:
        return dense_l1_loss(outputs[key], targets[f"dense_{key}"], targets["dense_mask"],
                             global_sum)
    return reg_l1_loss(outputs[key], targets["ind"], targets["mask"], targets[key], global_sum)


def centernet_loss(outputs: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor],
                   impl: str = "stable", alpha: float = 2.0, beta: float = 4.0,
                   heatmap_weight: float = 1.0, wh_weight: float = 0.1,
                   offset_weight: float = 1.0, giou_weight: float = 0.0,
                   global_sum: GlobalSum = local_sum) -> Dict[str, tf.Tensor]:
    """The weighted CenterNet loss and its parts.

    Args:
        outputs: model outputs `heatmap` `[B, H, W, C]` logits, `wh` and `reg` `[B, H, W, 2]`.
        targets: batched `render_targets` output (`heatmap`, `wh`, `reg`, `ind`, `mask`); when
            it holds `dense_wh` / `dense_reg` (`targets.dense_wh=true`, `targets.dense_reg=true`)
            the size / offset loss is `dense_l1_loss` weighted by `dense_mask`.
        giou_weight: weight of the GIoU loss in the total: `dense_giou_loss` when the targets
            hold `box_target` (`targets.kind=ttfnet`), else `giou_loss` at the centre cells;
            0 (the original CenterNet) still reports it, as a measure of how well boxes fit.
        global_sum: `replica_sum` in a distributed step (see `GlobalSum`); the parts are then
            this replica's share, and the replicas' parts add up to the global batch's.

    Returns:
        dict of float32 scalars `loss` (weighted total), `heatmap`, `wh`, `offset`, `giou`.
    """
    heatmap = tf.cast(focal_loss(outputs["heatmap"], targets["heatmap"], impl, alpha, beta,
                                 global_sum), tf.float32)
    wh = _regression_loss(outputs, targets, "wh", global_sum)
    offset = _regression_loss(outputs, targets, "reg", global_sum)
    if "box_target" in targets:
        giou = dense_giou_loss(outputs["wh"], outputs["reg"], targets["box_target"],
                               targets["box_weight"], global_sum)
    else:
        giou = giou_loss(outputs["wh"], outputs["reg"], targets["ind"], targets["mask"],
                         targets["wh"], targets["reg"], global_sum)
    total = (heatmap_weight * heatmap + wh_weight * wh + offset_weight * offset
             + giou_weight * giou)
    return {"loss": total, "heatmap": heatmap, "wh": wh, "offset": offset, "giou": giou}
