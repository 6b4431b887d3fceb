"""The training loop behind `scripts/train.py`: `train(cfg, run_dir, make_evaluator) -> metrics`.

Around the compiled, guarded step (`step.py`) the loop fills in the settings the data decides
(`data_choices.py`), plans a time budget (`budget.py`), resumes from the latest checkpoint,
logs (`run_log`), evaluates every `train.eval_every` steps and at the end, keeps the best
checkpoint by AP, saves the latest every `train.checkpoint_every` steps, and stops early after
`train.patience` evaluations without a better AP.

The loop does not know how a model is evaluated: the caller, a later stage, hands it a
`make_evaluator` (docs/architecture.md, Stages). `centernet.training.train` hands it the
COCO evaluation of the validation split (`centernet.evaluation.inference.SplitEvaluator`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Protocol

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

from centernet.engine.budget import (MIN_REFIT_STEPS, PACE_FROM, PLAN_FILE, REPACE_TOLERANCE,
                                     REPACE_UNTIL, Plan, evaluations_after, format_duration,
                                     measure, plan_budget, process_start_time, refit_plan,
                                     repace_plan, write_plan_file)
from centernet.engine.checkpointing import CheckpointStore, list_checkpoints, model_spec
from centernet.config import RunConfig, validate
from centernet.data.pipeline import train_dataset
from centernet.data.sources import ClassMap, Source, build_source, check_splits
from centernet.errors import ConfigError, NonFiniteLossError
from centernet.model import build_model
from centernet.engine.ema import WeightAverage, ema_objects
from centernet.engine.data_choices import learning_rate_line, resolve_open_settings
from centernet.engine.hardware import precision_policy, precision_warning, uses_xla
from centernet.engine.optim import build_optimizer, build_schedule
from centernet.engine.preemption import PreemptionWatch
from centernet.engine.step import LOSS_PARTS, make_train_step, nonfinite_message
from centernet.engine.strategies import (build_strategy, is_chief, is_distributed,
                                         per_replica_batch)
from centernet.engine.run_log import Progress, RunLog
from centernet.visualize import draw_coco_detections

SUMMARY_METRICS = ("AP", "AP50", "AP75")
DATA_REPORT = "data_report.json"
# the best evaluation's split, step, metrics, ground truth and detections (COCO dicts): what
# the run's report (`centernet.report`) is drawn from without evaluating again
BEST_EVALUATION = "best_evaluation.json"
TENSORBOARD_SCORE_THRESHOLD = 0.3  # detections drawn in TensorBoard's pictures
PROVISIONAL_STEPS = 1_000_000  # the schedule's length while a budgeted run measures itself


class Evaluator(Protocol):
    """What the loop needs of an evaluation: called with the model's current weights, it
    returns the metrics (at least `AP`, `AP50`, `AP75`, as fractions); afterwards it holds the
    COCO ground truth and that call's COCO detections (for the best evaluation's file and the
    TensorBoard pictures) and, when it has them, the per-class counts of the PR curves."""

    detections: List[dict]
    ground_truth: dict

    def __call__(self) -> Dict[str, float]: ...

    def threshold_counts(self) -> Optional[Dict[int, Dict[str, np.ndarray]]]: ...


# builds a run's evaluator once the model and the source exist: (model, source, cfg)
MakeEvaluator = Callable[[keras.Model, Source, RunConfig], Evaluator]


def configure_runtime(cfg: RunConfig) -> tf.distribute.Strategy:
    """The distribution strategy (first: logical CPU devices must precede any TensorFlow
    work), determinism and seeds, before any model (the precision policy is set once the run's
    recorded or new choices resolve `precision=auto`).

    `train.deterministic`: on one device the step compiles with XLA (`hardware.uses_xla`),
    which measured bit-exact; a distributed step cannot, and turns on op determinism."""
    strategy = build_strategy(cfg.distribute)
    if cfg.train.deterministic and is_distributed(strategy):
        tf.config.experimental.enable_op_determinism()
    seed_everything(cfg)
    return strategy


def runtime_record(cfg: RunConfig, strategy: tf.distribute.Strategy) -> dict:
    """What the run runs on, for `plan.json`: the strategy, its replicas and their devices,
    and the CPU allocator (`TF_CPU_ALLOCATOR_USE_BFC`, see `centernet/__init__.py`)."""
    pooled = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "").lower() in ("1", "true")
    if is_distributed(strategy):
        devices = list(strategy.extended.worker_devices)
    else:  # the default strategy places ops on the first GPU, else the CPU
        devices = [(tf.config.list_logical_devices("GPU") or
                    tf.config.list_logical_devices("CPU"))[0].name]
    return {"strategy": cfg.distribute.strategy, "replicas": strategy.num_replicas_in_sync,
            "devices": devices,
            "cpu_allocator": "pooled (BFC)" if pooled else "TensorFlow's default"}


def runtime_line(record: dict) -> str:
    """`runtime_record` as the run prints it."""
    return (f"runtime: distribute={record['strategy']}, {record['replicas']} replica(s) on "
            f"{', '.join(record['devices'])}; CPU allocator {record['cpu_allocator']}")


def seed_everything(cfg: RunConfig) -> None:
    """Python, NumPy and TensorFlow seeds from `train.seed` (no-op without one). Called again
    right before the model is built, so its initial weights do not depend on what ran before
    (such as generating the dataset on a first run)."""
    if cfg.train.seed is not None:
        keras.utils.set_random_seed(cfg.train.seed)


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
        self.plan = Plan.load(run_dir)
        needs_plan = self.plan is None and cfg.train.budget_seconds is not None
        if needs_plan and is_distributed(strategy) and cfg.distribute.strategy == "multi_worker":
            raise ConfigError("train.time_budget is not supported with distribute=multi_worker "
                              "(each worker would plan alone): set train.max_steps")
        if self.plan is not None:
            cfg = with_plan(cfg, self.plan)
        self.cfg = cfg
        if self.plan is not None:
            self.total_steps = self.plan.steps
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
            if self.plan is not None and self.plan.repaces:  # the decay as the run left it
                last = self.plan.repaces[-1]
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
        self.sample_images: Optional[list] = None  # (image id, RGB) for TensorBoard, read once
        self.train_step = make_train_step(self.model, self.optimizer, cfg, self.ema, strategy)
        if needs_plan:
            if resuming:
                raise ConfigError(
                    f"train.time_budget={cfg.train.time_budget}: {run_dir} holds checkpoints of "
                    f"a run that started without a time budget (no {PLAN_FILE}); resume it with "
                    f"train.time_budget=null, or start a new run")
            self.plan = self.make_plan(cfg.train.budget_seconds)
            self.cfg = cfg = with_plan(cfg, self.plan)
            self.total_steps = self.plan.steps
            self.schedule.set_length(self.plan.steps, self.plan.warmup_steps)
        self.end_step = min(self.total_steps, cfg.train.stop_at_step or self.total_steps)
        self.runtime = runtime_record(cfg, strategy)
        if self.chief:
            write_plan_file(run_dir, {"runtime": self.runtime},
                            [c.to_json() for c in self.choices])
            if self.plan is not None:
                self.plan.save(run_dir)
        _save_config(cfg, self.write_dir)
        self.stopped_early = self.log.last("stop") is not None
        self.deadline: Optional[float] = None
        self.pace_from: Optional[float] = None  # when step PACE_FROM ended (a refit's clock)
        self.pace_mark: Optional[tuple] = None  # (step, train_seconds) a repace times from
        self.evaluation_seconds: List[float] = []  # each evaluation this process ran
        self.logits_dtype = keras.backend.standardize_dtype(
            self.model.get_layer("heatmap_out").compute_dtype)
        self.window: list = []
        self.window_start = time.perf_counter()
        self.start_times["build_s"] = time.time() - clock

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
            self.deadline = self.projected_end()
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
            if self.plan is not None and self.step == self.total_steps and self.resumed_from is None:
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

    def projected_end(self) -> float:
        """When the planned run should end (seconds since the epoch): its budget's end for a
        run that starts now, else now plus the planned time of what is left."""
        plan = self.plan
        if self.step == 0:
            return plan.started_at + plan.budget_s
        measured = plan.measured
        evaluations_left = max(plan.evaluations - self.step // plan.eval_every, 1)
        return time.time() + ((self.end_step - self.step) * measured["step_s"]
                              + evaluations_left * (measured["eval_s"] + measured["save_s"]))

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

    def refit_due(self) -> bool:
        """Whether this step ends the warm-up of a fresh budgeted run that refits its plan."""
        plan = self.plan
        return (plan is not None and plan.refitted_at is None and self.resumed_from is None
                and self.chief and plan.warmup_steps >= MIN_REFIT_STEPS
                and self.step == plan.warmup_steps < plan.eval_every
                and self.pace_from is not None)

    def refit(self) -> None:
        """Refit the plan to the steps' own pace since step PACE_FROM (`budget.refit_plan`)."""
        pace = (time.time() - self.pace_from) / (self.step - PACE_FROM)
        before = self.plan
        self.plan = plan = refit_plan(before, self.step, time.time(), pace)
        self.schedule.set_length(plan.steps, plan.warmup_steps)
        self.apply_length(plan)
        self.pace_mark = (self.step, self.train_seconds)
        self.progress.message(
            f"step {self.step}: warm-up done at {pace:.3f} s a step (measured "
            f"{before.measured['step_s']:.3f}): refitted to {plan.steps} steps (was "
            f"{before.steps}), {plan.evaluations} evaluation(s) every {plan.eval_every} steps, "
            f"same end")

    def apply_length(self, plan: Plan) -> None:
        """Train to `plan`'s new length: the config, the end, mosaic's end (a share of the
        length), the plan file and the progress bar."""
        self.cfg = with_plan(self.cfg, plan)
        self.total_steps = self.end_step = plan.steps
        if self.cfg.train.stop_at_step:
            self.end_step = min(plan.steps, self.cfg.train.stop_at_step)
        if self.cfg.augment.mosaic:  # mosaic ends at a share of the new length
            self.batch_stream = iter(self.batches())
        plan.save(self.run_dir)
        _save_config(self.cfg, self.write_dir)
        self.progress.set_total(plan.steps)

    def pace_check_due(self) -> bool:
        """Whether a fresh budgeted run checks its pace after this step: an evaluation ran at
        it, within the first `REPACE_UNTIL` of the steps, on a schedule that can change
        length."""
        return (self.plan is not None and self.resumed_from is None and self.chief
                and self.last_eval_step == self.step
                and self.step <= REPACE_UNTIL * self.total_steps
                and self.schedule.repaceable)

    def repace(self) -> None:
        """Fit the steps to the printed end again when the pace since the last mark and the
        evaluations to come would miss it by more than `REPACE_TOLERANCE` of the budget
        (`budget.repace_plan`); the schedule's decay goes on from where it stands."""
        plan, (marked_step, marked_seconds) = self.plan, self.pace_mark
        pace = (self.train_seconds - marked_seconds) / (self.step - marked_step)
        per_evaluation = (float(np.mean(self.evaluation_seconds))
                          + plan.measured["save_s"])
        projected = time.time() + ((plan.steps - self.step) * pace + per_evaluation
                                   * evaluations_after(self.step, plan.steps, plan.eval_every))
        self.pace_mark = (self.step, self.train_seconds)
        if abs(projected - plan.expected_end) <= REPACE_TOLERANCE * plan.budget_s:
            return
        iterations = int(self.optimizer.iterations.numpy())
        progress = float(self.schedule.progress(tf.constant(float(iterations),
                                                            tf.float64)).numpy())
        self.plan = new = repace_plan(plan, self.step, time.time(), pace, per_evaluation,
                                      iterations, progress)
        self.schedule.repace(new.steps, iterations)
        self.apply_length(new)
        self.progress.message(
            f"step {self.step}: {pace:.3f} s a step since step {marked_step} would end "
            f"{format_duration(abs(projected - plan.expected_end))} "
            f"{'late' if projected > plan.expected_end else 'early'}: {new.steps} steps (was "
            f"{plan.steps}), the decay going on from {progress:.1%}, same end")

    def after_step(self) -> None:
        """The periodic work due at this step, in order: refit a budget's plan, log,
        evaluate, checkpoint, keep a budget's pace."""
        if self.step == PACE_FROM:
            self.pace_from = time.time()
        if self.refit_due():
            self.refit()
        train, step = self.cfg.train, self.step
        if step % train.log_every == 0 or step == self.end_step or self.stopped_early:
            self.write_train_record()
        if self.chief and (step == self.total_steps
                           or (train.eval_every and step % train.eval_every == 0)):
            self.run_evaluation()
        if step == self.end_step or step % train.checkpoint_every == 0 or self.stopped_early:
            self.store.save(step, self.model.variables)
        if self.pace_check_due():
            if self.pace_mark is None:  # no refit: the pace is timed from the first evaluation
                self.pace_mark = (step, self.train_seconds)
            else:
                self.repace()

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
        self.write_evaluation_pictures()
        self.last_eval_step = self.step
        self.progress.show(**{k: metrics[k] for k in SUMMARY_METRICS})
        self.progress.message(f"step {self.step}: " + "  ".join(
            f"{k} {metrics[k]:.4f}" for k in SUMMARY_METRICS))
        if metrics["AP"] > self.best_ap.numpy():
            self.best_ap.assign(metrics["AP"])
            self.store.save_best(self.step, metrics, self.model.variables)
            self.write_best_evaluation(metrics)
        self.check_patience()
        # images/s and train_seconds measure training only: the window's clock skips the
        # evaluation (resetting it instead counted the window's earlier steps in no time).
        self.window_start += time.perf_counter() - started
        self.step_started = time.perf_counter()
        self.evaluation_seconds.append(self.step_started - started)
        return metrics

    def write_evaluation_pictures(self) -> None:
        """TensorBoard's PR curve of each class and the detections (score >= 0.3) drawn on
        the first `train.tensorboard_images` validation images, read once."""
        evaluator = self.evaluate
        source = self.source
        counts = evaluator.threshold_counts()
        if counts is not None:
            self.log.write_pr_curves(self.step, counts,
                                     dict(zip(source.category_ids, source.class_names)))
        if self.sample_images is None:
            records = source.read(self.cfg.dataset.val_split).take(
                self.cfg.train.tensorboard_images)
            self.sample_images = [
                (int(r["image_id"]), tf.io.decode_image(r["image"], channels=3,
                                                        expand_animations=False).numpy())
                for r in records]
        found: Dict[int, list] = {image_id: [] for image_id, _ in self.sample_images}
        for detection in evaluator.detections:
            found.get(int(detection["image_id"]), []).append(detection)
        self.log.write_images(self.step, "detections", [
            draw_coco_detections(image, found[image_id], source.category_ids,
                                 source.class_names, TENSORBOARD_SCORE_THRESHOLD)
            for image_id, image in self.sample_images])

    def write_best_evaluation(self, metrics: Dict[str, float]) -> None:
        """`BEST_EVALUATION` for the evaluation that just made the best checkpoint (compact
        JSON through a temporary file and a rename)."""
        evaluator = self.evaluate
        payload = {"step": self.step, "split": self.cfg.dataset.val_split,
                   "metrics": {k: float(v) for k, v in metrics.items()},
                   "ground_truth": evaluator.ground_truth, "detections": evaluator.detections}
        path = self.run_dir / BEST_EVALUATION
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(payload))
        os.replace(temporary, path)

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
