"""The focal-loss forms over the whole logit range, against float64 references.

For one pixel with logit `x`: at a positive (`z = 1`) the loss is `-log(p) (1 - p)^2`, at a
negative far from any object (`z = 0`) it is `-log(1 - p) p^2`, with `p = sigmoid(x)`
(alpha 2, beta 4; docs/architecture.md, Losses). `evaluate_form` computes loss and gradient
with the project's own `focal_terms` and `tf.GradientTape` in a given dtype; `reference`
computes both in float64 NumPy from the formulas (softplus and sigmoid written in their
overflow-free forms), and `sweep` reports where each form first turns non-finite or exactly
zero, and its largest relative error elsewhere (where the float64 value is a normal number of
that dtype). A pixel's loss is both terms, the masked-out one included, as training computes
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import ml_dtypes
import numpy as np
import tensorflow as tf

from centernet.losses import CLAMP_EPS, focal_terms

FORMS = ("stable", "clamped", "naive")  # per_image's per-pixel terms are stable's
DTYPES = ("float32", "bfloat16", "float16")
KINDS = ("positive", "negative")


def logit_grid(limit: float = 1e4, linear_step: float = 1 / 64) -> np.ndarray:
    """Logits from `-limit` to `limit`: every `linear_step` within |x| <= 100, then 2,000
    log-spaced points per side out to `limit`."""
    linear = np.arange(-100.0, 100.0 + linear_step, linear_step)
    outer = np.logspace(2, np.log10(limit), 2000)
    return np.unique(np.concatenate([-outer, linear, outer]))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-_softplus(-x))


def reference(x: np.ndarray, kind: str, form: str = "stable") -> Tuple[np.ndarray, np.ndarray]:
    """float64 loss and d loss / d x of one pixel, from the formulas.

    `stable` and `naive` share the exact function; `clamped` uses `p` clipped to
    `[1e-4, 1 - 1e-4]` (zero gradient outside)."""
    x = np.asarray(x, np.float64)
    if form == "clamped":
        p = np.clip(_sigmoid(x), CLAMP_EPS, 1 - CLAMP_EPS)
        inside = (_sigmoid(x) > CLAMP_EPS) & (_sigmoid(x) < 1 - CLAMP_EPS)
        dp = np.where(inside, p * (1 - p), 0.0)
        if kind == "positive":
            return -np.log(p) * (1 - p) ** 2, (-(1 - p) ** 2 / p - 2 * (1 - p) * -np.log(p)) * dp
        return -np.log(1 - p) * p ** 2, ((p ** 2) / (1 - p) + 2 * p * -np.log(1 - p)) * dp
    s_pos, s_neg = _sigmoid(x), _sigmoid(-x)
    if kind == "positive":
        loss = _softplus(-x) * s_neg ** 2
        grad = -s_neg ** 3 - 2 * _softplus(-x) * s_neg ** 2 * s_pos
    else:
        loss = _softplus(x) * s_pos ** 2
        grad = s_pos ** 3 + 2 * _softplus(x) * s_pos ** 2 * s_neg
    return loss, grad


def evaluate_form(x: np.ndarray, kind: str, form: str, dtype: str
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The project's loss and gradient at each logit (independent pixels) in `dtype`.

    Returns:
        `(x_in_dtype, loss, grad)`, float64 arrays: the logits as the dtype holds them, and
        each pixel's loss term and its gradient, as `focal_terms` computes them.
    """
    logits = tf.constant(np.asarray(x, np.float64), tf.float64)
    logits = tf.cast(logits, dtype)
    heatmap = tf.fill(tf.shape(logits), 1.0 if kind == "positive" else 0.0)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        pos_loss, neg_loss, _ = focal_terms(logits[None, None, None, :],
                                            heatmap[None, None, None, :], form)
        loss = pos_loss + neg_loss  # the masked-out term is still computed, as in training
    grad = tape.gradient(loss, logits)
    return (tf.cast(logits, tf.float64).numpy(), tf.cast(loss, tf.float64).numpy().ravel(),
            tf.cast(grad, tf.float64).numpy())


def _first(x: np.ndarray, bad: np.ndarray) -> Tuple[Optional[float], Optional[float]]:
    """The bad logits nearest 0 on each side: (largest negative, smallest positive)."""
    below = x[bad & (x < 0)]
    above = x[bad & (x > 0)]
    return (float(below.max()) if below.size else None,
            float(above.min()) if above.size else None)


@dataclass
class SweepRow:
    form: str
    dtype: str
    kind: str
    loss_nonfinite: Tuple[Optional[float], Optional[float]]
    loss_zero: Tuple[Optional[float], Optional[float]]
    grad_nonfinite: Tuple[Optional[float], Optional[float]]
    grad_zero: Tuple[Optional[float], Optional[float]]
    loss_rel_error: float
    grad_rel_error: float


def _max_relative_error(value: np.ndarray, ref: np.ndarray, dtype: str) -> float:
    """Largest |value - ref| / |ref| where the result is finite and non-zero and |ref| is a
    normal number of `dtype` (the other columns say where it is non-finite or 0)."""
    where = (np.abs(ref) >= float(ml_dtypes.finfo(dtype).tiny)) & np.isfinite(value) & (
        value != 0)
    if not where.any():
        return float("nan")
    return float((np.abs(value[where] - ref[where]) / np.abs(ref[where])).max())


def sweep(x: Optional[np.ndarray] = None) -> List[SweepRow]:
    """Every form x dtype x pixel kind over `x` (default `logit_grid()`)."""
    x = logit_grid() if x is None else x
    rows = []
    for form in FORMS:
        for dtype in DTYPES:
            for kind in KINDS:
                held, loss, grad = evaluate_form(x, kind, form, dtype)
                ref_loss, ref_grad = reference(held, kind, "clamped" if form == "clamped"
                                               else "stable")
                rows.append(SweepRow(
                    form, dtype, kind,
                    _first(held, ~np.isfinite(loss)), _first(held, loss == 0),
                    _first(held, ~np.isfinite(grad)), _first(held, grad == 0),
                    _max_relative_error(loss, ref_loss, dtype),
                    _max_relative_error(grad, ref_grad, dtype)))
    return rows


def _side(pair: Tuple[Optional[float], Optional[float]]) -> str:
    low, high = pair
    parts = ([f"x <= {low:.4g}"] if low is not None else []) + (
        [f"x >= {high:.4g}"] if high is not None else [])
    return ", ".join(parts) or "never"


def markdown_table(rows: List[SweepRow]) -> str:
    """The sweep as a Markdown table (the first logit, moving out from 0 on each side, at
    which each event happens)."""
    lines = ["| form | dtype | pixel | loss non-finite | loss exactly 0 | gradient non-finite | "
             "gradient exactly 0 | max rel. error loss | max rel. error gradient |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.form} | {r.dtype} | {r.kind} | {_side(r.loss_nonfinite)} | "
                     f"{_side(r.loss_zero)} | {_side(r.grad_nonfinite)} | "
                     f"{_side(r.grad_zero)} | {r.loss_rel_error:.2g} | "
                     f"{r.grad_rel_error:.2g} |")
    return "\n".join(lines)


def gradient_curves(limit: float = 30.0) -> Dict[str, Dict[str, tuple]]:
    """For the comparison figure: each form's gradient against the logit in float32, and the
    naive form's in float16 (NaN points are left out of a line plot), per pixel kind."""
    x = np.linspace(-limit, limit, 1201)
    curves: Dict[str, Dict[str, tuple]] = {}
    for kind in KINDS:
        curves[kind] = {}
        for form, dtype in (("stable", "float32"), ("clamped", "float32"), ("naive", "float32"),
                            ("naive", "float16")):
            held, _, grad = evaluate_form(x, kind, form, dtype)
            curves[kind][f"{form} ({dtype})"] = (held, grad)
    return curves
