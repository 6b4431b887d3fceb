"""The training loop behind `scripts/train.py`: `train(cfg, run_dir) -> metrics`.

One compiled `tf.function` step computes the loss, its gradients and whether everything is
finite, and applies the update only then. Around it the loop resumes from the latest checkpoint,
logs (`run_log`), evaluates COCO mAP every `train.eval_every` steps and at the end, keeps the
best checkpoint by AP, and saves the latest every `train.checkpoint_every` steps.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Dict

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

from centernet.engine.checkpointing import CheckpointStore, list_checkpoints, model_spec
from centernet.config import RunConfig, validate
from centernet.data.pipeline import train_dataset
from centernet.data.sources import ClassMap, build_source, check_splits
from centernet.errors import NonFiniteLossError
from centernet.evaluation.inference import SplitEvaluator
from centernet.losses import centernet_loss
from centernet.model import build_model
from centernet.engine.optim import build_optimizer, build_schedule
from centernet.engine.run_log import Progress, RunLog

LOSS_PARTS = ("loss", "heatmap", "wh", "offset", "giou")
SUMMARY_METRICS = ("AP", "AP50", "AP75")
DATA_REPORT = "data_report.json"


def configure_runtime(cfg: RunConfig) -> tf.distribute.Strategy:
    """Seeds, the mixed-precision policy and the distribution strategy, before any model."""
    if cfg.train.seed is not None:
        keras.utils.set_random_seed(cfg.train.seed)
    keras.mixed_precision.set_global_policy(cfg.precision.policy)
    return tf.distribute.get_strategy()


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                    cfg: RunConfig) -> Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]:
    """The compiled step. Returns the loss parts, `finite`, `grads_finite`, the heatmap logits'
    `logits_min`/`logits_max` and `dropped_objects`. A non-finite step changes nothing: no
    update, and the BatchNorm statistics its forward pass touched are put back."""
    loss_cfg = cfg.loss
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    weights = model.trainable_variables
    statistics = model.non_trainable_variables

    @tf.function(jit_compile=cfg.train.jit_compile)
    def train_step(batch):
        saved_statistics = [tf.identity(v) for v in statistics]
        with tf.GradientTape() as tape:
            outputs = model(batch["image"], training=True)
            parts = centernet_loss(outputs, batch, loss_cfg.impl, loss_cfg.alpha, loss_cfg.beta,
                                   loss_cfg.heatmap_weight, loss_cfg.wh_weight,
                                   loss_cfg.offset_weight, loss_cfg.giou_weight)
            objective = optimizer.scale_loss(parts["loss"]) if scaled else parts["loss"]
        grads = tape.gradient(objective, weights)
        loss_finite = tf.reduce_all([tf.math.is_finite(parts[k]) for k in LOSS_PARTS])
        grads_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads
                                      if g is not None])
        # Under float16 loss scaling, overflowing gradients are the LossScaleOptimizer's
        # business (it lowers the scale and skips); the guard watches the loss.
        finite = loss_finite if scaled else tf.logical_and(loss_finite, grads_finite)

        def apply():
            optimizer.apply_gradients(zip(grads, weights))
            return tf.constant(True)

        def discard():
            for variable, value in zip(statistics, saved_statistics):
                variable.assign(value)
            return tf.constant(False)

        applied = tf.cond(finite, apply, discard)
        logits = tf.cast(outputs["heatmap"], tf.float32)
        return {**parts, "finite": finite, "applied": applied, "grads_finite": grads_finite,
                "logits_min": tf.reduce_min(logits), "logits_max": tf.reduce_max(logits),
                "dropped_objects": tf.reduce_sum(batch["num_dropped"])}

    return train_step


def nonfinite_message(step: int, values: Dict[str, np.ndarray], checkpoints: Path) -> str:
    """Name the step, the non-finite loss parts and the heatmap logits' range."""
    bad = [k for k in LOSS_PARTS if not math.isfinite(float(values[k]))]
    parts = ", ".join(f"{k}={float(values[k]):.4g}" for k in LOSS_PARTS)
    what = (f"loss part(s) {', '.join(bad)} non-finite" if bad
            else "gradients non-finite (loss parts finite)")
    return (f"non-finite training step {step}: {what} [{parts}]; heatmap logits range "
            f"[{float(values['logits_min']):.4g}, {float(values['logits_max']):.4g}]. "
            f"The update was not applied and nothing non-finite was saved; checkpoints "
            f"written before it are in {checkpoints}. Use loss=stable, a lower train.lr, or "
            f"train.on_nonfinite=skip to drop such steps.")


def _save_config(cfg: RunConfig, run_dir: Path) -> None:
    """Write `.hydra/config.yaml` when `train` is called without Hydra, so tools that read a
    run's config (evaluate, predict, export) work on any run directory."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.structured(cfg), path)


class Trainer:
    """One run in one directory: everything built from the config, restored from the latest
    checkpoint, then `fit()` runs the loop. Periodic work (log, evaluate, checkpoint) happens
    in `after_step`, each at its own period.
    """

    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = run_dir
        strategy = configure_runtime(cfg)
        self.source = build_source(cfg.dataset, ClassMap.load(run_dir), cfg.targets.max_objects)
        check_splits(self.source, [cfg.dataset.train_split, cfg.dataset.val_split])
        self.source.classes.save(run_dir)
        if self.source.report.splits:
            self.source.report.write(run_dir / DATA_REPORT)
        self.total_steps = cfg.train.total_steps(
            self.source.num_examples(cfg.dataset.train_split))
        self.end_step = min(self.total_steps, cfg.train.stop_at_step or self.total_steps)

        with strategy.scope():
            # A resumed run takes every weight from its checkpoint: no download, no file.
            resuming = bool(list_checkpoints(run_dir / "checkpoints"))
            self.model = build_model(cfg.model, self.source.num_classes,
                                     initial_weights=not resuming)
            self.schedule = build_schedule(cfg.schedule, cfg.train.peak_lr, self.total_steps)
            self.optimizer = build_optimizer(cfg.optimizer, self.schedule, cfg.precision)
            self.optimizer.build(self.model.trainable_variables)
            self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")
            self.best_ap = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_ap")
        checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                         step=self.step_var, skipped=self.skipped,
                                         best_ap=self.best_ap)
        self.store = CheckpointStore(run_dir, checkpoint,
                                     model_spec(cfg, self.source.num_classes),
                                     cfg.train.keep_checkpoints)
        self.resumed_from = self.store.restore_latest()
        if resuming and self.resumed_from is None:
            # Checkpoints exist but none reads: start over from the configured initial weights.
            fresh = build_model(cfg.model, self.source.num_classes, initial_weights=True)
            self.model.set_weights(fresh.get_weights())
        self.step = int(self.step_var.numpy())
        self.log = RunLog(run_dir, self.step)
        last_eval = self.log.last("eval")
        self.last_eval_step = last_eval["step"] if last_eval else -1
        self.evaluate = SplitEvaluator(self.model, self.source, cfg)
        self.train_step = make_train_step(self.model, self.optimizer, cfg)
        self.window: list = []
        self.window_start = time.perf_counter()

    def fit(self) -> Dict[str, float]:
        """Train from the restored step to `end_step`; evaluate when the run is complete."""
        cfg = self.cfg
        progress = Progress(self.total_steps, self.step, cfg.train.progress_bar)
        self.progress = progress
        if self.resumed_from is not None:
            progress.message(f"resuming from {self.resumed_from} at step {self.step}")
        report = self.source.report
        if report.splits:
            for line in ["data:", *report.summary()]:
                progress.message(line)
            if report.cases:
                progress.message(f"  every case: {self.run_dir / DATA_REPORT}")
        progress.message(
            f"training {self.model.name} on {cfg.dataset.name} ({self.source.num_classes} "
            f"classes) for {self.total_steps} steps, batch {cfg.train.batch_size}, peak lr "
            f"{cfg.train.peak_lr:.3g}, loss={cfg.loss.impl}, run dir {self.run_dir}")
        batches = iter(train_dataset(self.source, cfg, self.step))
        try:
            while self.step < self.end_step:
                self.run_step(next(batches))
                progress.advance()
                self.after_step()
            if self.step == self.total_steps and self.last_eval_step != self.step:
                self.run_evaluation()  # resumed after training ended but before its evaluation
        finally:
            progress.close()
            self.log.close()
        last_train = self.log.last("train") or {}
        final_eval = self.log.last("eval") or {}
        return {"step": self.step, **{k: last_train[k] for k in LOSS_PARTS if k in last_train},
                **{k: v for k, v in final_eval.items() if k not in ("step", "kind")}}

    def run_step(self, batch: Dict[str, tf.Tensor]) -> None:
        """One compiled step; a non-finite one stops the run or is counted as skipped."""
        values = {k: v.numpy() for k, v in self.train_step(batch).items()}
        self.step += 1
        self.step_var.assign(self.step)
        if values["applied"]:
            self.window.append(values)
            return
        if self.cfg.train.on_nonfinite == "stop":
            raise NonFiniteLossError(nonfinite_message(self.step, values, self.store.directory))
        self.skipped.assign_add(1)
        self.progress.message(f"step {self.step}: non-finite, update skipped "
                              f"({int(self.skipped.numpy())} so far)")

    def after_step(self) -> None:
        """The periodic work due at this step, in order: log, evaluate, checkpoint."""
        train, step = self.cfg.train, self.step
        if step % train.log_every == 0 or step == self.end_step:
            self.write_train_record()
        if step == self.total_steps or (train.eval_every and step % train.eval_every == 0):
            self.run_evaluation()
        if step == self.end_step or step % train.checkpoint_every == 0:
            self.store.save(step, self.model.variables)

    def write_train_record(self) -> None:
        """Mean loss parts, the lr of the last step, images/s since the previous record."""
        elapsed = time.perf_counter() - self.window_start
        window = self.window
        applied_updates = int(self.optimizer.iterations.numpy())
        record = {k: float(np.mean([float(v[k]) for v in window])) for k in LOSS_PARTS
                  if window}
        record.update({
            "lr": float(self.schedule(max(applied_updates - 1, 0))),
            "images_per_sec": self.cfg.train.batch_size * max(len(window), 1) / max(elapsed,
                                                                                     1e-9),
            "skipped": int(self.skipped.numpy()),
            "dropped_objects": int(sum(int(v["dropped_objects"]) for v in window)),
        })
        self.log.write("train", self.step, record)
        self.progress.show(**{k: record[k] for k in ("loss", "lr", "images_per_sec")
                              if k in record})
        self.window, self.window_start = [], time.perf_counter()

    def run_evaluation(self) -> Dict[str, float]:
        """COCO-evaluate the validation split, log it, and keep the best checkpoint by AP."""
        metrics = self.evaluate()
        self.log.write("eval", self.step, metrics)
        self.last_eval_step = self.step
        self.progress.show(**{k: metrics[k] for k in SUMMARY_METRICS})
        self.progress.message(f"step {self.step}: " + "  ".join(
            f"{k} {metrics[k]:.4f}" for k in SUMMARY_METRICS))
        if metrics["AP"] > self.best_ap.numpy():
            self.best_ap.assign(metrics["AP"])
            self.store.save_best(self.step, metrics, self.model.variables)
        self.window_start = time.perf_counter()  # images/s measures training only
        return metrics


def train(cfg: DictConfig | RunConfig, run_dir: str | Path) -> Dict[str, float]:
    """Train (or resume) a run in `run_dir` and return its final metrics.

    Returns:
        `step`, the last logged loss parts, and the final evaluation's metrics (`AP`, ...).

    Raises:
        NonFiniteLossError: with `train.on_nonfinite=stop`, naming the step and the cause.
        DataError, CheckpointError, ConfigError: bad input, named in the message.
    """
    cfg = validate(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _save_config(cfg, run_dir)
    return Trainer(cfg, run_dir).fit()
