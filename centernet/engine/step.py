"""The compiled train step and its guard: `make_train_step(model, optimizer, cfg)` and the
message a non-finite step stops a run with (`nonfinite_message`).

One `tf.function` computes the loss, its gradients and whether everything is finite, and
applies the update only then; under a distributed strategy every replica takes the same branch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from centernet.config import RunConfig
from centernet.engine.checkpointing import checkpoint_step
from centernet.engine.ema import WeightAverage
from centernet.engine.hardware import uses_xla
from centernet.engine.strategies import DEFAULT_STRATEGY, is_distributed
from centernet.losses import (CLAMP_EPS, centernet_loss, local_sum, replica_sum,
                              sigmoid_rounding_points)

LOSS_PARTS = ("loss", "heatmap", "wh", "offset", "giou")

# How each output of a replica's step combines over the replicas.
_SUM = tf.distribute.ReduceOp.SUM
_REDUCTIONS = {**{k: _SUM for k in LOSS_PARTS}, "sigmoid_zero": _SUM, "sigmoid_one": _SUM,
               "dropped_objects": _SUM, "zero_grad_share": tf.distribute.ReduceOp.MEAN}


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                    cfg: RunConfig, ema: Optional[WeightAverage] = None,
                    strategy: Optional[tf.distribute.Strategy] = None
                    ) -> Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]:
    """The compiled step, run on every replica of `strategy` (default: TensorFlow's default
    strategy, one device).

    Returns the loss parts, `finite`, `applied`, `grads_finite`, `dropped_objects` and what
    the loss study reads off the heatmap logits (in their own dtype): `logits_min`,
    `logits_max`, `sigmoid_zero` and `sigmoid_one` (how many logits have a sigmoid of exactly 0
    or 1) and `zero_grad_share` (the share of logits whose loss gradient is exactly 0), each
    over the global batch. A non-finite step changes nothing: no update, and the BatchNorm
    statistics its forward pass touched are put back.

    Under a distributed strategy every replica normalises its loss by the global counts
    (`centernet.losses.replica_sum`) and the optimizer sums the replicas' gradients, so the update
    equals one device's on the same global batch; whether a step is finite is decided for all
    replicas together. `hardware.uses_xla(cfg.train)` applies on the default strategy only: XLA
    cannot compile a step whose loss and BatchNorm all-reduce between replicas.
    """
    strategy = strategy or DEFAULT_STRATEGY
    distributed = is_distributed(strategy)
    loss_cfg = cfg.loss
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    weights = model.trainable_variables
    statistics = model.non_trainable_variables
    global_sum = replica_sum if distributed else local_sum

    def forward_backward(batch):
        saved_statistics = [tf.identity(v) for v in statistics]
        with tf.GradientTape() as tape:
            outputs = model(batch["image"], training=True)
            parts = centernet_loss(outputs, batch, loss_cfg.impl, loss_cfg.alpha, loss_cfg.beta,
                                   loss_cfg.heatmap_weight, loss_cfg.wh_weight,
                                   loss_cfg.offset_weight, loss_cfg.giou_weight, global_sum)
            objective = optimizer.scale_loss(parts["loss"]) if scaled else parts["loss"]
        *grads, logit_grads = tape.gradient(objective, [*weights, outputs["heatmap"]])
        probabilities = tf.sigmoid(outputs["heatmap"])  # in the logits' own dtype
        logits = tf.cast(outputs["heatmap"], tf.float32)

        def count(condition):
            return tf.reduce_sum(tf.cast(condition, tf.int64))

        report = {**parts, "logits_min": tf.reduce_min(logits),
                  "logits_max": tf.reduce_max(logits),
                  "sigmoid_zero": count(tf.equal(probabilities, 0)),
                  "sigmoid_one": count(tf.equal(probabilities, 1)),
                  "zero_grad_share": tf.reduce_mean(tf.cast(tf.equal(logit_grads, 0),
                                                            tf.float32)),
                  "dropped_objects": tf.reduce_sum(batch["num_dropped"])}
        return report, grads, saved_statistics

    def replica_step(batch):
        report, grads, saved_statistics = forward_backward(batch)
        context = tf.distribute.get_replica_context()
        loss_finite = tf.reduce_all([tf.math.is_finite(report[k]) for k in LOSS_PARTS])
        grads_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads
                                      if g is not None])
        # Under float16 loss scaling, overflowing gradients are the LossScaleOptimizer's
        # business (it lowers the scale and skips); the guard watches the loss.
        finite = loss_finite if scaled else tf.logical_and(loss_finite, grads_finite)
        # Every replica must take the same branch: finite only if finite everywhere.
        finite, grads_finite = (everywhere(flag, context) for flag in (finite, grads_finite))
        if distributed:  # the extremes over every replica, the same value on each
            for key, extreme in (("logits_min", tf.reduce_min), ("logits_max", tf.reduce_max)):
                report[key] = extreme(context.all_gather(report[key][tf.newaxis], axis=0))

        def apply(grads):
            optimizer.apply_gradients(zip(grads, weights))
            if ema is not None:
                ema.update()

        def discard(saved_statistics):
            for variable, value in zip(statistics, saved_statistics):
                variable.assign(value)

        def apply_or_discard(distribution, finite, grads, saved_statistics):
            # In cross-replica context, as a branch may not all-reduce inside a replica's
            # cond. Each replica's own values come in through the arguments: this function is
            # one replica's closure, run once for all of them.
            finite = distribution.experimental_local_results(finite)[0]
            return tf.cond(
                finite,
                lambda: _on_each_replica(distribution, apply, grads, True),
                lambda: _on_each_replica(distribution, discard, saved_statistics, False))

        applied = context.merge_call(apply_or_discard,
                                     args=(finite, grads, saved_statistics))
        return {**report, "finite": finite, "grads_finite": grads_finite, "applied": applied}

    @tf.function(jit_compile=uses_xla(cfg.train) and not distributed)
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=(batch,))
        if not distributed:
            return per_replica
        reduced = {k: strategy.reduce(op, per_replica[k], axis=None)
                   for k, op in _REDUCTIONS.items()}
        for key in ("finite", "grads_finite", "applied", "logits_min", "logits_max"):
            reduced[key] = strategy.experimental_local_results(per_replica[key])[0]  # agreed
        return reduced

    return train_step


def everywhere(flag: tf.Tensor, context: tf.distribute.ReplicaContext) -> tf.Tensor:
    """True on every replica when `flag` is true on every replica."""
    failures = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                  1 - tf.cast(flag, tf.int32))
    return tf.equal(failures, 0)


def _on_each_replica(distribution: tf.distribute.Strategy, fn: Callable[[list], None],
                     values: list, result: bool) -> tf.Tensor:
    """`fn(values)` on every replica with its own `values`; returns `result`."""
    distribution.extended.call_for_each_replica(fn, args=(values,))
    return tf.constant(result)


def nonfinite_message(step: int, values: Dict[str, np.ndarray], logits_dtype: str,
                      impl: str, kept: Path | None, checkpoints: Path) -> str:
    """Name the step, the non-finite loss parts, how many heatmap logits were past the points
    where the sigmoid rounds to exactly 0 or 1 in their dtype, the checkpoint kept from before,
    and, on the last line, why in one sentence."""
    bad = [k for k in LOSS_PARTS if not math.isfinite(float(values[k]))]
    parts = ", ".join(f"{k}={float(values[k]):.4g}" for k in LOSS_PARTS)
    what = (f"loss part(s) {', '.join(bad)} non-finite" if bad
            else "gradients non-finite (loss parts finite)")
    zero_below, one_from = sigmoid_rounding_points(logits_dtype)
    zeros, ones = int(values["sigmoid_zero"]), int(values["sigmoid_one"])
    low, high = float(values["logits_min"]), float(values["logits_max"])
    kept_text = (f"the last checkpoint kept from before is {kept} (step {checkpoint_step(kept)})"
                 if kept else f"no checkpoint was written before it (in {checkpoints})")
    if not (math.isfinite(low) and math.isfinite(high)):
        why = ("why: the heatmap logits themselves are not finite, so the weights diverged "
               "before any loss was taken: lower train.lr or add warm-up.")
    elif ones and impl == "clamped" and tf.cast(1 - CLAMP_EPS, logits_dtype).numpy() == 1:
        why = (f"why: loss=clamped clamps the sigmoid to [{CLAMP_EPS:g}, 1 - {CLAMP_EPS:g}], but "
               f"in {logits_dtype} 1 - {CLAMP_EPS:g} rounds to exactly 1, so where the sigmoid "
               f"rounds to 1, -log(1 - p) = -log(0) = inf, and inf times a mask of 0 is NaN.")
    elif zeros + ones and impl in ("naive", "clamped"):
        why = (f"why: loss={impl} computes -log(sigmoid(x)) and -log(1 - sigmoid(x)) at every "
               f"pixel and masks them afterwards; where the {logits_dtype} sigmoid rounds to "
               f"exactly 0 or 1, -log(0) = inf, and inf times a mask of 0 is NaN.")
    else:
        why = ("why: no heatmap logit saturated, so the cause lies elsewhere (the regression "
               "losses or gradients): lower train.lr or set optimizer.global_clipnorm.")
    return (f"non-finite training step {step}: {what} [{parts}].\n"
            f"heatmap logits ({logits_dtype}) range [{low:.4g}, {high:.4g}]: {zeros} at or "
            f"below {zero_below:.4g}, where the {logits_dtype} sigmoid rounds to exactly 0, and "
            f"{ones} at or above {one_from:.4g}, where it rounds to exactly 1.\n"
            f"The update was not applied and nothing non-finite was saved; {kept_text}. Use "
            f"loss=stable, a lower train.lr, or train.on_nonfinite=skip to drop such steps.\n"
            f"{why}")
