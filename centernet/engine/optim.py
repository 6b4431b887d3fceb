"""Optimizers and learning-rate schedules (`optimizer=` and `schedule=` config groups)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from centernet.config import OptimizerConfig, PrecisionConfig, ScheduleConfig


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak_lr`, then `constant`, `step` or `cosine` decay over the rest of
    `total_steps`.

    Called with the optimizer's `iterations` (updates applied so far), so training step `s`
    (1-based) uses `schedule(s - 1)`, and the cosine reaches its end value
    (`min_lr_ratio * peak_lr`) at the last step, `schedule(total_steps - 1)`. The rate is computed in float64 and returned as float32.
    `total_steps` and `warmup_steps` are variables (`set_length`), so a time budget's plan can
    fix them after the step function was traced (checkpoints do not hold them: the plan and
    the config do).
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

    @property
    def total_steps(self) -> int:
        return int(self._total.numpy())

    @property
    def warmup_steps(self) -> int:
        return int(self._warmup.numpy())

    def set_length(self, total_steps: int, warmup_steps: int) -> None:
        """Span `total_steps`, the first `warmup_steps` of them warming up."""
        self._total.assign(float(total_steps))
        self._warmup.assign(float(warmup_steps))

    def _decayed(self, step: tf.Tensor) -> tf.Tensor:
        peak = tf.constant(self.peak_lr, tf.float64)
        if self.name == "constant":
            return peak
        if self.name == "step":
            passed = tf.add_n([tf.cast(step >= m * self._total, tf.float64)
                               for m in self.milestones] or [tf.constant(0.0, tf.float64)])
            return peak * tf.pow(tf.constant(self.gamma, tf.float64), passed)
        span = tf.maximum(self._total - 1.0 - self._warmup, 1.0)
        progress = tf.clip_by_value((step - self._warmup) / span, 0.0, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
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


def build_optimizer(cfg: OptimizerConfig, schedule: WarmupSchedule,
                    precision: PrecisionConfig) -> keras.optimizers.Optimizer:
    """Adam, AdamW or SGD on `schedule`; wrapped for dynamic loss scaling under float16."""
    common = {"learning_rate": schedule, "global_clipnorm": cfg.global_clipnorm}
    if cfg.weight_decay > 0:
        common["weight_decay"] = cfg.weight_decay
    if cfg.name == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif cfg.name == "adamw":
        optimizer = keras.optimizers.AdamW(**{**common, "weight_decay": cfg.weight_decay})
    else:
        optimizer = keras.optimizers.SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    if precision.resolved_policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
