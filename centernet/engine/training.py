"""The training loop behind `scripts/train.py`: `train(cfg, run_dir, make_evaluator) -> metrics`.

Around the compiled, guarded step (`step.py`) the loop fills in the settings the data decides
(`data_choices.py`), plans a time budget (`budget.py`) and keeps its pace (`pacing.py`),
resumes from the latest checkpoint, logs (`run_log`), evaluates every `train.eval_every`
steps and at the end, keeps the best checkpoint by AP, saves the latest every
`train.checkpoint_every` steps, and stops early after `train.patience` evaluations without a
better AP.

The loop does not know how a model is evaluated: the caller, a later stage, hands it a
`make_evaluator` (`evaluations.Evaluator`; docs/architecture.md, Stages). `centernet.training.train`
hands it the COCO evaluation of the validation split
(`centernet.evaluation.inference.SplitEvaluator`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

from centernet.engine.budget import (PLAN_FILE, Plan, format_duration, measure, plan_budget,
                                     process_start_time, write_plan_file)
from centernet.engine.checkpointing import CheckpointStore, list_checkpoints, model_spec
from centernet.config import RunConfig, validate
from centernet.data.pipeline import train_dataset
from centernet.data.sources import ClassMap, build_source, check_splits
from centernet.errors import ConfigError, NonFiniteLossError
from centernet.model import build_model
from centernet.engine.ema import WeightAverage, ema_objects
from centernet.engine.evaluations import (EvaluationPictures, MakeEvaluator,
                                          write_best_evaluation)
from centernet.engine.data_choices import learning_rate_line, resolve_open_settings
from centernet.engine.hardware import precision_policy, precision_warning, uses_xla
from centernet.engine.optim import build_optimizer, build_schedule
from centernet.engine.pacing import Pacer
from centernet.engine.preemption import PreemptionWatch
from centernet.engine.step import LOSS_PARTS, make_train_step, nonfinite_message
from centernet.engine.strategies import (configure_runtime, is_chief, is_distributed,
                                         per_replica_batch, runtime_line, runtime_record,
                                         seed_everything)
from centernet.engine.run_log import Progress, RunLog

SUMMARY_METRICS = ("AP", "AP50", "AP75")
DATA_REPORT = "data_report.json"
PROVISIONAL_STEPS = 1_000_000  # the schedule's length while a budgeted run measures itself


def _save_config(cfg: RunConfig, run_dir: Path) -> None:
    """Write the run's config as it trains (every data-aware choice and the time budget's
    plan filled in) to `.hydra/config.yaml`, over what Hydra composed, so tools that read a
    run's config (evaluate, predict, export) see the run as it was (also without Hydra)."""
    path = run_dir / ".hydra" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("config.yaml.tmp")
    OmegaConf.save(OmegaConf.structured(cfg), tmp)
    tmp.replace(path)


def with_plan(cfg: RunConfig, plan: Plan) -> RunConfig:
    """`cfg` with the length, schedule and periodic work a time budget's plan fixed."""
    settings = OmegaConf.structured(cfg)
    for key, value in (("train.max_steps", plan.steps), ("train.epochs", None),
                       ("train.eval_every", plan.eval_every),
                       ("train.checkpoint_every", plan.checkpoint_every),
                       ("schedule.warmup_steps", plan.warmup_steps)):
        OmegaConf.update(settings, key, value, merge=False)
    return validate(settings)


def start_line(times: Dict[str, float]) -> str:
    """The console line of a start's parts (`Trainer.start_times`, seconds)."""
    return (f"started in {sum(times.values()):.1f} s: imports {times['imports_s']:.1f} s, index "
            f"{times['index_s']:.1f} s, model and step {times['build_s']:.1f} s, first step "
            f"{times['first_step_s']:.1f} s (input pipeline and tracing)")


class Trainer:
    """One run in one directory: everything built from the config, restored from the latest
    checkpoint, then `fit()` runs the loop. Periodic work (log, evaluate, checkpoint) happens
    in `after_step`, each at its own period.
    """

    def __init__(self, cfg: RunConfig, run_dir: Path, make_evaluator: MakeEvaluator,
                 started_at: Optional[float] = None):
        self.run_dir = run_dir
        self.started_at = started_at  # None: when the process started
        clock = time.time()
        # Seconds of this start by part (`start_line`), the first step's added by `fit`.
        self.start_times = {"imports_s": clock - (started_at or process_start_time())}
        self.strategy = strategy = configure_runtime(cfg)
        # Only the chief writes the run directory; another worker of a cluster writes what it
        # must (its copy of each checkpoint save) into `distribute.worker_dir`, else into a
        # temporary directory removed at the end.
        self.chief = is_chief(strategy)
        self.write_dir = run_dir
        self.temporary_dir = None
        if not self.chief and cfg.distribute.worker_dir:
            self.write_dir = Path(cfg.distribute.worker_dir)
            self.write_dir.mkdir(parents=True, exist_ok=True)
        elif not self.chief:
            self.write_dir = self.temporary_dir = Path(tempfile.mkdtemp(prefix="centernet-"))
        self.source = build_source(cfg.dataset, ClassMap.load(run_dir), cfg.targets.max_objects)
        check_splits(self.source, [cfg.dataset.train_split, cfg.dataset.val_split])
        cfg, self.choices = resolve_open_settings(cfg, self.source, run_dir,
                                                  strategy.num_replicas_in_sync)
        self.start_times["index_s"] = time.time() - clock
        clock = time.time()
        keras.mixed_precision.set_global_policy(precision_policy(cfg.precision))
        self.replica_batch = per_replica_batch(cfg.train.batch_size, strategy)
        self.source.classes.save(self.write_dir)
        if self.source.report.splits:
            self.source.report.write(self.write_dir / DATA_REPORT)
        plan = Plan.load(run_dir)
        needs_plan = plan is None and cfg.train.budget_seconds is not None
        if needs_plan and is_distributed(strategy) and cfg.distribute.strategy == "multi_worker":
            raise ConfigError("train.time_budget is not supported with distribute=multi_worker "
                              "(each worker would plan alone): set train.max_steps")
        if plan is not None:
            cfg = with_plan(cfg, plan)
        self.cfg = cfg
        if plan is not None:
            self.total_steps = plan.steps
        elif needs_plan:  # a provisional length until the run has measured itself
            self.total_steps = PROVISIONAL_STEPS
        else:
            self.total_steps = cfg.train.total_steps(
                self.source.num_examples(cfg.dataset.train_split))

        seed_everything(cfg)
        with strategy.scope():
            # A resumed run takes every weight from its checkpoint: no download, no file.
            resuming = bool(list_checkpoints(run_dir / "checkpoints"))
            self.model = build_model(cfg.model, self.source.num_classes,
                                     initial_weights=not resuming,
                                     head_dtype=cfg.precision.head_dtype)
            self.schedule = build_schedule(cfg.schedule, cfg.train.peak_lr, self.total_steps)
            if plan is not None and plan.repaces:  # the decay as the run left it
                last = plan.repaces[-1]
                self.schedule.set_anchor(last["iterations"], last["progress"])
            self.optimizer = build_optimizer(cfg.optimizer, self.schedule, cfg.precision)
            self.optimizer.build(self.model.trainable_variables)
            self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")
            self.best_ap = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_ap")
            self.ema = (WeightAverage(self.model, cfg.train.ema_decay)
                        if cfg.train.ema_decay else None)
        self.checkpoint = checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step_var, skipped=self.skipped,
            best_ap=self.best_ap, **ema_objects(self.ema))
        spec = model_spec(cfg, self.source.num_classes)
        self.store = CheckpointStore(run_dir, checkpoint, spec, cfg.train.keep_checkpoints)
        self.resumed_from = self.store.restore_latest(move_damaged=self.chief)
        if not self.chief:
            self.store = CheckpointStore(self.write_dir, checkpoint, spec, 1)
        if resuming and self.resumed_from is None:
            # Checkpoints exist but none reads: start over from the configured initial weights.
            fresh = build_model(cfg.model, self.source.num_classes, initial_weights=True,
                                head_dtype=cfg.precision.head_dtype)
            self.model.set_weights(fresh.get_weights())
            if self.ema is not None:
                self.ema.restart()
            self.store.damaged_messages.append(
                "warning: no checkpoint of this run reads: training starts from step 0")
        self.step = int(self.step_var.numpy())
        self.log = RunLog(self.write_dir, self.step)
        last_eval = self.log.last("eval")
        self.last_eval_step = last_eval["step"] if last_eval else -1
        # Training wall-clock seconds (input pipeline included, evaluation excluded) so far,
        # carried over a resume from the last evaluation: the time axis of time-to-accuracy.
        self.train_seconds = float((last_eval or {}).get("train_seconds", 0.0))
        self.evaluate = make_evaluator(self.model, self.source, cfg)
        self.pictures = EvaluationPictures(self.source, cfg)
        self.train_step = make_train_step(self.model, self.optimizer, cfg, self.ema, strategy)
        if needs_plan:
            if resuming:
                raise ConfigError(
                    f"train.time_budget={cfg.train.time_budget}: {run_dir} holds checkpoints of "
                    f"a run that started without a time budget (no {PLAN_FILE}); resume it with "
                    f"train.time_budget=null, or start a new run")
            plan = self.make_plan(cfg.train.budget_seconds)
            self.cfg = cfg = with_plan(cfg, plan)
            self.total_steps = plan.steps
            self.schedule.set_length(plan.steps, plan.warmup_steps)
        # a budget's pace checks (a fresh run's chief refits and repaces; a resumed one keeps
        # its plan)
        self.pacer = (None if plan is None else
                      Pacer(plan, self.schedule, self.resumed_from is None and self.chief))
        self.end_step = min(self.total_steps, cfg.train.stop_at_step or self.total_steps)
        self.runtime = runtime_record(cfg, strategy)
        if self.chief:
            write_plan_file(run_dir, {"runtime": self.runtime},
                            [c.to_json() for c in self.choices])
            if plan is not None:
                plan.save(run_dir)
        _save_config(cfg, self.write_dir)
        self.stopped_early = self.log.last("stop") is not None
        self.deadline: Optional[float] = None
        self.logits_dtype = keras.backend.standardize_dtype(
            self.model.get_layer("heatmap_out").compute_dtype)
        self.window: list = []
        self.window_start = time.perf_counter()
        self.start_times["build_s"] = time.time() - clock

    @property
    def plan(self) -> Optional[Plan]:
        """The budget's current plan (None: a run without `train.time_budget`)."""
        return None if self.pacer is None else self.pacer.plan

    def make_plan(self, budget_s: float) -> Plan:
        """Measure this run's step, checkpoint and evaluation (`budget.measure`, which puts
        every variable back), then plan the steps that fit `budget_s`."""
        cfg = self.cfg
        print(f"train.time_budget={cfg.train.time_budget}: measuring a step and an evaluation "
              f"to plan the run", file=sys.stderr, flush=True)
        started_at = self.started_at or process_start_time()

        def step(batch):
            return {k: v.numpy() for k, v in self.train_step(batch).items()}

        measured = measure(self.checkpoint, lambda: iter(self.batches()), step, self.evaluate,
                           budget_s)
        return plan_budget(budget_s, started_at, time.time(), measured, cfg.train.evaluations,
                           cfg.schedule.warmup_steps, cfg.train.batch_size, cfg.model.input_size)

    def fit(self) -> Dict[str, float]:
        """Train from the restored step to `end_step`; evaluate when the run is complete."""
        cfg = self.cfg
        progress = Progress(self.total_steps, self.step, cfg.train.progress_bar)
        self.progress = progress
        for line in self.store.damaged_messages:
            progress.message(line)
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
        if self.choices:
            progress.message("chosen for this data and machine (each one key=value away):")
            for line in [c.line() for c in self.choices] + [learning_rate_line(cfg)]:
                progress.message(line)
        if self.plan is not None:
            for line in self.plan.lines():
                progress.message(line)
            if self.step:
                progress.message(f"  (kept from {self.run_dir / PLAN_FILE}, as planned when the "
                                 f"run started)")
            self.deadline = self.pacer.projected_end(self.step, self.end_step)
        progress.message(runtime_line(self.runtime))
        slow_precision = precision_warning(precision_policy(cfg.precision))
        if slow_precision:
            progress.message(slow_precision)
        if is_distributed(self.strategy):
            progress.message(
                f"distribute={cfg.distribute.strategy}: {self.strategy.num_replicas_in_sync} "
                f"replica(s), {self.replica_batch} images each per step"
                + ("; XLA off (it cannot compile the replicas' all-reduces)"
                   if uses_xla(cfg.train) else ""))
        index_line = self.source.index_line()
        if index_line:
            progress.message(index_line)
        first_step_from = time.time()
        self.batch_stream = iter(self.batches())
        self.step_started = time.perf_counter()
        preemption = PreemptionWatch(self.strategy, str(self.store.directory), self.save_now,
                                     progress.message)
        try:
            while self.step < self.end_step and not self.stopped_early:
                self.run_step(next(self.batch_stream))
                if first_step_from is not None:
                    self.start_times["first_step_s"] = time.time() - first_step_from
                    first_step_from = None
                    progress.message(start_line(self.start_times))
                    if self.chief:
                        self.log.write("start", self.step,
                                       {**self.start_times, **self.source.index_counts()})
                progress.advance()
                self.after_step()
                preemption.check()
            if (self.chief and self.step == self.total_steps
                    and self.last_eval_step != self.step):
                self.run_evaluation()  # resumed after training ended but before its evaluation
            if (self.plan is not None and self.step == self.total_steps
                    and self.resumed_from is None):
                took = time.time() - self.plan.started_at
                progress.message(
                    f"ended {format_duration(took)} after the start: planned "
                    f"{format_duration(self.plan.expected_end - self.plan.started_at)}, budget "
                    f"{format_duration(self.plan.budget_s)} ({took / self.plan.budget_s:.1%})")
        finally:
            preemption.close()
            progress.close()
            self.log.close()
            if self.temporary_dir is not None:
                shutil.rmtree(self.temporary_dir, ignore_errors=True)
        last_train = self.log.last("train") or {}
        final_eval = self.log.last("eval") or {}
        return {"step": self.step, **{k: last_train[k] for k in LOSS_PARTS if k in last_train},
                **{k: v for k, v in final_eval.items() if k not in ("step", "kind")},
                "best_AP": float(self.best_ap.numpy()) if final_eval else float("nan")}

    def batches(self) -> tf.data.Dataset | tf.distribute.DistributedDataset:
        """The training batches from the current step on: one dataset on the default
        strategy; otherwise each worker's own shard, batched per replica. With
        `augment.mosaic`, the last `augment.mosaic_off` of the run's steps go without it."""
        cfg, step = self.cfg, self.step
        mosaic_until = round((1.0 - cfg.augment.mosaic_off) * self.total_steps)
        if not is_distributed(self.strategy):
            return train_dataset(self.source, cfg, step, mosaic_until=mosaic_until)

        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            return train_dataset(self.source, cfg, step, self.replica_batch,
                                 context.num_input_pipelines, context.input_pipeline_id,
                                 mosaic_until=mosaic_until)

        return self.strategy.distribute_datasets_from_function(per_worker)

    def run_step(self, batch: Dict[str, tf.Tensor]) -> None:
        """One compiled step; a non-finite one stops the run or is counted as skipped."""
        values = {k: v.numpy() for k, v in self.train_step(batch).items()}
        now = time.perf_counter()
        self.train_seconds += now - self.step_started
        self.step_started = now
        self.step += 1
        self.step_var.assign(self.step)
        if values["applied"]:
            self.window.append(values)
            return
        if self.cfg.train.on_nonfinite == "stop":
            self.log.write("nonfinite", self.step, {
                **{k: float(values[k]) for k in LOSS_PARTS},
                **{k: float(values[k]) for k in ("logits_min", "logits_max", "sigmoid_zero",
                                                 "sigmoid_one")}})
            kept = list_checkpoints(self.store.directory)
            raise NonFiniteLossError(nonfinite_message(
                self.step, values, self.logits_dtype,
                self.cfg.loss.impl, kept[0] if kept else None, self.store.directory))
        self.skipped.assign_add(1)
        self.progress.message(f"step {self.step}: non-finite, update skipped "
                              f"({int(self.skipped.numpy())} so far)")

    def follow_plan(self, change: Optional[str]) -> None:
        """After the pacer changed the plan (`change`: its line, None when it did not), train
        to the new length: the config, the end, mosaic's end (a share of the length), the plan
        file and the progress bar."""
        if change is None:
            return
        plan = self.plan
        self.cfg = with_plan(self.cfg, plan)
        self.total_steps = self.end_step = plan.steps
        if self.cfg.train.stop_at_step:
            self.end_step = min(plan.steps, self.cfg.train.stop_at_step)
        if self.cfg.augment.mosaic:  # mosaic ends at a share of the new length
            self.batch_stream = iter(self.batches())
        plan.save(self.run_dir)
        _save_config(self.cfg, self.write_dir)
        self.progress.set_total(plan.steps)
        self.progress.message(change)

    def after_step(self) -> None:
        """The periodic work due at this step, in order: refit a budget's plan, log,
        evaluate (and keep a budget's pace), checkpoint."""
        if self.pacer is not None:
            self.follow_plan(self.pacer.after_step(self.step, self.train_seconds))
        train, step = self.cfg.train, self.step
        if step % train.log_every == 0 or step == self.end_step or self.stopped_early:
            self.write_train_record()
        if self.chief and (step == self.total_steps
                           or (train.eval_every and step % train.eval_every == 0)):
            self.run_evaluation()
        if step == self.end_step or step % train.checkpoint_every == 0 or self.stopped_early:
            self.store.save(step, self.model.variables)

    def save_now(self) -> str:
        """Checkpoint the current step now (preemption); returns what was written."""
        saved = self.store.save(self.step, self.model.variables)
        return (f"checkpoint {saved} at step {self.step}" if saved else
                f"no checkpoint at step {self.step} (the weights are not finite)")

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
            "logits_absmax": max((max(-float(v["logits_min"]), float(v["logits_max"]))
                                  for v in window), default=float("nan")),
            "zero_grad_share": float(np.mean([float(v["zero_grad_share"]) for v in window]))
                               if window else float("nan"),
        })
        self.log.write("train", self.step, record)
        self.progress.show(**{k: record[k] for k in ("loss", "lr", "images_per_sec")
                              if k in record})
        if self.deadline is not None:
            self.progress.show(left=format_duration(max(self.deadline - time.time(), 0)))
        self.window, self.window_start = [], time.perf_counter()

    def run_evaluation(self) -> Dict[str, float]:
        """Evaluate (with the averaged weights under `train.ema_decay`), log it, and keep the
        best checkpoint by AP."""
        started = time.perf_counter()
        if self.ema is None:
            metrics = self.evaluate()
        else:
            with self.ema.applied():
                metrics = self.evaluate()
        self.log.write("eval", self.step, {
            **metrics, "train_seconds": self.train_seconds,
            "images_seen": self.step * self.cfg.train.batch_size})
        self.pictures.write(self.log, self.step, self.evaluate)
        self.last_eval_step = self.step
        self.progress.show(**{k: metrics[k] for k in SUMMARY_METRICS})
        self.progress.message(f"step {self.step}: " + "  ".join(
            f"{k} {metrics[k]:.4f}" for k in SUMMARY_METRICS))
        if metrics["AP"] > self.best_ap.numpy():
            self.best_ap.assign(metrics["AP"])
            self.store.save_best(self.step, metrics, self.model.variables)
            write_best_evaluation(self.run_dir, self.step, self.cfg.dataset.val_split,
                                  metrics, self.evaluate)
        self.check_patience()
        # images/s and train_seconds measure training only: the window's clock skips the
        # evaluation (resetting it instead counted the window's earlier steps in no time).
        self.window_start += time.perf_counter() - started
        self.step_started = time.perf_counter()
        if self.pacer is not None:
            self.follow_plan(self.pacer.after_evaluation(
                self.step, self.step_started - started, self.train_seconds,
                int(self.optimizer.iterations.numpy())))
        return metrics

    def check_patience(self) -> None:
        """Early stopping: after `train.patience` evaluations in a row without a better AP
        than the best, end the run (checkpointed, and a `stop` record in the log so that a
        resumed run ends too)."""
        patience = self.cfg.train.patience
        evaluations = [r for r in self.log.records if r.get("kind") == "eval"]
        if patience is None or self.step >= self.end_step or not evaluations:
            return
        best = max(range(len(evaluations)), key=lambda i: evaluations[i]["AP"])
        if len(evaluations) - 1 - best < patience:
            return
        best_record = evaluations[best]
        self.log.write("stop", self.step, {"patience": patience,
                                           "best_step": best_record["step"],
                                           "best_AP": best_record["AP"]})
        self.stopped_early = True  # after_step saves this step's checkpoint
        self.progress.message(
            f"step {self.step}: early stop, no better validation AP in {patience} "
            f"evaluation(s) (train.patience={patience}); the best, AP "
            f"{best_record['AP']:.4f} at step {best_record['step']}, is in "
            f"{self.store.best_directory}")


def train(cfg: DictConfig | RunConfig, run_dir: str | Path, make_evaluator: MakeEvaluator,
          started_at: Optional[float] = None) -> Dict[str, float]:
    """Train (or resume) a run in `run_dir`, evaluating with what `make_evaluator(model,
    source, cfg)` builds, and return its final metrics. A time budget
    counts from `started_at` (seconds since the epoch; None: when the process started, so
    imports and data checks count), for callers that train several runs in one process.

    Returns:
        `step`, the last logged loss parts, the final evaluation's metrics (`AP`, ...) and
        `best_AP`, the best checkpoint's validation AP (NaN before any evaluation).

    Raises:
        NonFiniteLossError: with `train.on_nonfinite=stop`, naming the step and the cause.
        DataError, CheckpointError, ConfigError: bad input, named in the message.
    """
    cfg = validate(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, run_dir, make_evaluator, started_at).fit()
