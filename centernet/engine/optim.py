"""Optimizers and learning-rate schedules (`optimizer=` and `schedule=` config groups)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from centernet.config import OptimizerConfig, PrecisionConfig, ScheduleConfig


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak_lr`, then `constant`, `step` or `cosine` decay to `total_steps`.

    Called with the optimizer's `iterations` (updates applied so far), so training step `s`
    (1-based) uses `schedule(s - 1)`.
    """

    def __init__(self, peak_lr: float, total_steps: int, name: str = "cosine",
                 warmup_steps: int = 0, milestones=(0.64, 0.86), gamma: float = 0.1,
                 min_lr_ratio: float = 0.0):
        super().__init__()
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.name = name
        self.warmup_steps = int(warmup_steps)
        self.milestones = [float(m) for m in milestones]
        self.gamma = float(gamma)
        self.min_lr_ratio = float(min_lr_ratio)

    def _decayed(self, step: tf.Tensor) -> tf.Tensor:
        if self.name == "constant":
            return tf.constant(self.peak_lr, tf.float32)
        if self.name == "step":
            passed = tf.add_n([tf.cast(step >= m * self.total_steps, tf.float32)
                               for m in self.milestones] or [tf.constant(0.0)])
            return self.peak_lr * tf.pow(self.gamma, passed)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        return self.peak_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if self.warmup_steps == 0:
            return self._decayed(step)
        warm = self.peak_lr * (step + 1.0) / self.warmup_steps
        return tf.where(step < self.warmup_steps, warm, self._decayed(step))

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
