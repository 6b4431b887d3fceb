"""Optimizers and learning-rate schedules (`optimizer=` and `schedule=` config groups)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from centernet.config import OptimizerConfig, PrecisionConfig, ScheduleConfig
from centernet.engine.hardware import precision_policy


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak_lr`, then `constant`, `step` or `cosine` decay over the rest of
    `total_steps`.

    Called with the optimizer's `iterations` (updates applied so far), so training step `s`
    (1-based) uses `schedule(s - 1)`, and the cosine reaches its end value (`min_lr_ratio *
    peak_lr`) at the last step, `schedule(total_steps - 1)`. The rate is computed in float64 and
    returned as float32. `total_steps` and `warmup_steps` are variables (`set_length`), so a time
    budget's plan can fix them after the step function was traced (checkpoints do not hold them: the
    plan and the config do).

    A budgeted run that keeps its pace changes its length mid-decay (`repace`): the decay's
    progress then runs on from the value it had at that step (the anchor) to 1 at the new last
    step, so the rate goes on without a jump and still ends at its end value. Before any
    repace the anchor is (warm-up end, 0) and the progress is `(s - warmup) / (total - 1 -
    warmup)`, bit for bit. The `step` schedule's milestones are shares of the whole run and
    cannot move without a jump: it is never repaced.
    """

    def __init__(self, peak_lr: float, total_steps: int, name: str = "cosine",
                 warmup_steps: int = 0, milestones=(0.64, 0.86), gamma: float = 0.1,
                 min_lr_ratio: float = 0.0):
        super().__init__()
        self.peak_lr = float(peak_lr)
        self.name = name
        self.milestones = [float(m) for m in milestones]
        self.gamma = float(gamma)
        self.min_lr_ratio = float(min_lr_ratio)
        self._total = tf.Variable(float(total_steps), dtype=tf.float64, trainable=False,
                                  name="schedule_total_steps")
        self._warmup = tf.Variable(float(warmup_steps), dtype=tf.float64, trainable=False,
                                   name="schedule_warmup_steps")
        # the decay's progress is anchor_progress at anchor_step (`repace`); -1: the warm-up end
        self._anchor_step = tf.Variable(-1.0, dtype=tf.float64, trainable=False,
                                        name="schedule_anchor_step")
        self._anchor_progress = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                            name="schedule_anchor_progress")

    @property
    def total_steps(self) -> int:
        return int(self._total.numpy())

    @property
    def warmup_steps(self) -> int:
        return int(self._warmup.numpy())

    @property
    def anchor(self) -> tuple:
        """`(step, progress)`: the decay's progress at a repace's step; `(-1, 0)` before any."""
        return float(self._anchor_step.numpy()), float(self._anchor_progress.numpy())

    @property
    def repaceable(self) -> bool:
        """Whether the length can change mid-decay without a jump (not the `step` schedule)."""
        return self.name != "step"

    def set_length(self, total_steps: int, warmup_steps: int) -> None:
        """Span `total_steps`, the first `warmup_steps` of them warming up (no anchor)."""
        self._total.assign(float(total_steps))
        self._warmup.assign(float(warmup_steps))
        self.set_anchor(-1.0, 0.0)

    def set_anchor(self, step: float, progress: float) -> None:
        """Put back the anchor a repace set (`anchor`), as a resumed run does."""
        self._anchor_step.assign(float(step))
        self._anchor_progress.assign(float(progress))

    def repace(self, total_steps: int, at_step: int) -> float:
        """Span `total_steps` from `at_step` (the optimizer's `iterations` when the next step
        runs) on, the decay going on from its progress there; returns that progress."""
        if not self.repaceable:
            raise ValueError("the step schedule's milestones cannot move: it is never repaced")
        progress = self.progress_at(at_step)
        self._total.assign(float(total_steps))
        self.set_anchor(float(at_step), progress)
        return progress

    def progress_at(self, step: int) -> float:
        """`progress` at one step, as a Python float."""
        return float(self.progress(tf.constant(float(step), tf.float64)).numpy())

    def progress(self, step: tf.Tensor) -> tf.Tensor:
        """The decay's progress in [0, 1] at float64 `step`: 0 at the warm-up's end (or the
        anchor's progress at its step), 1 at the last step."""
        anchored = self._anchor_step >= 0.0
        start = tf.where(anchored, self._anchor_step, self._warmup)
        span = tf.maximum(self._total - 1.0 - start, 1.0)
        return tf.clip_by_value(self._anchor_progress
                                + (1.0 - self._anchor_progress) * ((step - start) / span),
                                0.0, 1.0)

    def _decayed(self, step: tf.Tensor) -> tf.Tensor:
        peak = tf.constant(self.peak_lr, tf.float64)
        if self.name == "constant":
            return peak
        if self.name == "step":
            passed = tf.add_n([tf.cast(step >= m * self._total, tf.float64)
                               for m in self.milestones] or [tf.constant(0.0, tf.float64)])
            return peak * tf.pow(tf.constant(self.gamma, tf.float64), passed)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * self.progress(step)))
        return peak * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)

    def __call__(self, step):
        step = tf.cast(step, tf.float64)
        warm = self.peak_lr * (step + 1.0) / tf.maximum(self._warmup, 1.0)
        rate = tf.where(step < self._warmup, warm, self._decayed(step))
        return tf.cast(rate, tf.float32)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps, "name": self.name,
                "warmup_steps": self.warmup_steps, "milestones": self.milestones,
                "gamma": self.gamma, "min_lr_ratio": self.min_lr_ratio}


def build_schedule(cfg: ScheduleConfig, peak_lr: float, total_steps: int) -> WarmupSchedule:
    return WarmupSchedule(peak_lr, total_steps, cfg.name, cfg.warmup_steps, cfg.milestones,
                          cfg.gamma, cfg.min_lr_ratio)


class FusedAdamUpdate:
    """Mixin for `keras.optimizers.Adam` and `AdamW`: each variable's update is one
    `ResourceApplyAdam` op instead of Keras' dozen elementwise ops and assignments.

    The op computes Keras' own formula in the same order (m += (g - m)(1 - beta_1);
    v += (g^2 - v)(1 - beta_2); var -= m alpha / (sqrt(v) + epsilon) with alpha = lr
    sqrt(1 - beta_2^t) / (1 - beta_1^t)), reading and writing each variable and its two
    moments once. Profiled on a 2-core AMX Xeon, Keras' update held 14% of a ResNet-18 step's
    op time. AdamW's decoupled weight decay is applied before, by Keras' base class, as
    always; `amsgrad` and backends other than TensorFlow take Keras' own update."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or keras.backend.backend() != "tensorflow":
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


class FusedAdam(FusedAdamUpdate, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with a fused update (`FusedAdamUpdate`)."""


class FusedAdamW(FusedAdamUpdate, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with a fused update (`FusedAdamUpdate`)."""


def build_optimizer(cfg: OptimizerConfig, schedule: WarmupSchedule | float,
                    precision: PrecisionConfig) -> keras.optimizers.Optimizer:
    """Adam, AdamW (both fused, `FusedAdamUpdate`) or SGD on `schedule` (or a constant
    learning rate); wrapped for dynamic loss scaling under float16."""
    common = {"learning_rate": schedule, "global_clipnorm": cfg.global_clipnorm}
    if cfg.weight_decay > 0:
        common["weight_decay"] = cfg.weight_decay
    # named as Keras names its own Adam and AdamW, the prefix of their variables' paths
    if cfg.name == "adam":
        optimizer = FusedAdam(name="adam", **common)
    elif cfg.name == "adamw":
        optimizer = FusedAdamW(name="adam_w", **{**common, "weight_decay": cfg.weight_decay})
    else:
        optimizer = keras.optimizers.SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    if precision_policy(precision) == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
