"""A run that ends within its time budget: `train.time_budget=45m`.

Before its first step the run measures itself (`Trainer.make_plan`, with `measure`): the first step
(which traces the step function), the steady step time, one checkpoint save, the time to the first
batch, and one evaluation; then `plan_budget` fixes the number of steps so that training, its
evaluations and its checkpoints end within the budget, counted from the moment the process started
(imports and data checks included). The weights and the optimizer are put back after the
measurement, so the planned run starts from step 0 with its own schedule: warm-up at most
`MAX_WARMUP_SHARE` of the steps, and the decay ending at the last step.

The measurement cannot see everything a long run meets: the input pipeline had a head start
while the first step traced, and machines drift. So at the end of warm-up (when it is at least
`MIN_REFIT_STEPS` steps and no evaluation has run), the run refits its plan once to the pace its
own steps kept since step `PACE_FROM` (`refit_plan`): the same end, warm-up and number of
evaluations, more or fewer steps. The decay has not begun then, so the schedule still spans
the run exactly and ends at its end value at the last step.

Machines drift after warm-up too (a run measured 1.02 s a step at its refit and 1.13 s ten
minutes later), so at each evaluation up to `REPACE_UNTIL` of the run the run also keeps its
pace (`repace_plan`): when the steps since the last evaluation, at their own pace, and the
evaluations still to come would end more than `REPACE_TOLERANCE` of the budget away from the
printed end, the number of steps is fitted to that end again; the schedule's decay goes on
from where it stands (`WarmupSchedule.repace`), without a jump, to its end value at the new
last step. Each repace is recorded in the plan (`repaces`), the schedule's anchor with it.

The plan is written to `plan.json` in the run directory before the first step (and again when
refitted); a resumed run reads it back and keeps it (steps, schedule, evaluations), whatever
the budget on its command line.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

from centernet.errors import ConfigError

PLAN_FILE = "plan.json"
MAX_WARMUP_SHARE = 0.1  # warm-up is at most a tenth of the planned steps
MARGIN_SHARE = 0.005  # kept free at the end for closing the run: 0.5% of the budget ...
MARGIN_SECONDS = 4.0  # ... plus four (closing the run and TensorFlow: about 4 s measured)
MIN_STEPS = 10
PACE_FROM = 3  # the refit times the steps after this one (tracing and first batches done)
MIN_REFIT_STEPS = 10  # a warm-up shorter than this is not worth a refit
MEASURE_SHARE = 0.005  # steady steps are timed for 0.5% of the budget, at least ...
MIN_MEASURE_SECONDS = 2.0  # ... two seconds
MIN_TIMED_STEPS, MAX_TIMED_STEPS = 5, 500  # ... and at least 5, at most 500 steps
SECOND_EVALUATION_SHARE = 0.05  # a first evaluation under 5% of the budget is timed again
REPACE_TOLERANCE = 0.01  # keep pace when the projected end is off by more than 1% of the budget
REPACE_UNTIL = 0.8  # ... at the evaluations within the first 80% of the steps
_IMPORTED_AT = time.time()


def process_start_time() -> float:
    """When this process started (seconds since the epoch): from `/proc` on Linux, else when
    this module was imported."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        fields_after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields_after_name[19])  # field 22 of stat(5): starttime
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + started_ticks / ticks
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


@dataclass(frozen=True)
class Measurement:
    """What calibration measured, in seconds: `first_step_s` (tracing included),
    `step_s` (steady mean), `steps_timed`, `save_s` (one checkpoint), `startup_s` (a new input
    pipeline to its first batch), `eval_s` (one evaluation of the validation split after its
    first, which traces) and `eval_first_s`."""

    first_step_s: float
    step_s: float
    steps_timed: int
    save_s: float
    startup_s: float
    eval_s: float
    eval_first_s: float


@dataclass
class Plan:
    """A budgeted run's length and its periodic work, as fixed before its first step.

    Times are seconds; `started_at`, `planned_at` and `expected_end` are seconds since the
    epoch (`started_at`: when the process that planned started)."""

    budget_s: float
    steps: int
    warmup_steps: int
    eval_every: int
    evaluations: int
    checkpoint_every: int
    images_per_step: int
    input_size: int
    started_at: float
    planned_at: float
    expected_end: float
    measured: dict = field(default_factory=dict)
    refitted_at: Optional[int] = None
    # each time the run kept its pace: step, steps before, pace (s a step), decay progress
    repaces: List[dict] = field(default_factory=list)

    def save(self, run_dir: Path, choices: Optional[List[dict]] = None) -> None:
        write_plan_file(run_dir, {"budget": asdict(self)}, choices)

    @classmethod
    def load(cls, run_dir: Path) -> Optional["Plan"]:
        record = read_plan_file(run_dir).get("budget")
        return cls(**record) if record else None

    def lines(self) -> List[str]:
        """The plan as the run prints it."""
        m = self.measured
        end = datetime.fromtimestamp(self.expected_end).strftime("%H:%M:%S")
        return [
            f"plan for train.time_budget={format_duration(self.budget_s)}: {self.steps} steps "
            f"of {self.images_per_step} images at {self.input_size} px "
            f"({self.steps * self.images_per_step} images), warm-up {self.warmup_steps} steps, "
            f"{self.evaluations} evaluation(s) every {self.eval_every} steps, ending about "
            f"{end} ({format_duration(self.expected_end - self.started_at)} after the start)",
            f"  measured: {m['step_s']:.3f} s a step ({m['steps_timed']} steps), "
            f"{m['eval_s']:.1f} s an evaluation, {m['save_s']:.2f} s a checkpoint, "
            f"{m['first_step_s']:.1f} s the first step (tracing), "
            f"{self.planned_at - self.started_at:.0f} s spent before planning"]


def refit_plan(plan: Plan, step: int, now: float, step_s: float) -> Plan:
    """`plan` refitted at `step` (the end of warm-up, before any evaluation) to a pace of
    `step_s` seconds a step: as many steps as end by the printed end (`expected_end`) with
    all the planned evaluations still to come; warm-up unchanged, never fewer steps than
    already done plus one."""
    measured = plan.measured
    per_evaluation = measured["eval_s"] + measured["save_s"]
    left = plan.expected_end - now - plan.evaluations * per_evaluation
    steps = max(step + int(left // step_s), step + 1)
    eval_every = math.ceil(steps / plan.evaluations)
    evaluations = math.ceil(steps / eval_every)
    return Plan(budget_s=plan.budget_s, steps=steps, warmup_steps=plan.warmup_steps,
                eval_every=eval_every, evaluations=evaluations, checkpoint_every=eval_every,
                images_per_step=plan.images_per_step, input_size=plan.input_size,
                started_at=plan.started_at, planned_at=plan.planned_at,
                expected_end=now + (steps - step) * step_s + evaluations * per_evaluation,
                measured={**measured, "refit_step_s": step_s}, refitted_at=step)


def evaluations_after(step: int, steps: int, eval_every: int) -> int:
    """The evaluations a run of `steps` steps makes after `step`: one at every multiple of
    `eval_every` and one at the last step."""
    return steps // eval_every - step // eval_every + (steps % eval_every != 0)


def repace_plan(plan: Plan, step: int, now: float, step_s: float, per_evaluation: float,
                iterations: int, progress: float) -> Plan:
    """`plan` at `step` (after its evaluation there), its steps fitted again so that the
    rest, at `step_s` seconds a step and `per_evaluation` seconds an evaluation and its
    checkpoint, ends at the printed end (`expected_end`); the evaluations keep their spacing.
    `iterations` (the optimizer's updates so far: `step` less the skipped ones) and
    `progress` (the schedule's decay there) are recorded with the repace: the schedule's
    anchor, which a resumed run puts back."""
    every = plan.eval_every
    evaluations = evaluations_after(step, plan.steps, every)
    while True:  # the evaluations left depend on the length: never count fewer than it makes
        left = plan.expected_end - now - evaluations * per_evaluation
        steps = max(step + int(left // step_s), step + 1)
        needed = evaluations_after(step, steps, every)
        if needed <= evaluations:
            break
        evaluations = needed
    record = {"step": step, "steps_before": plan.steps, "step_s": step_s,
              "iterations": iterations, "progress": progress}
    return Plan(budget_s=plan.budget_s, steps=steps, warmup_steps=plan.warmup_steps,
                eval_every=every, evaluations=math.ceil(steps / every),
                checkpoint_every=plan.checkpoint_every, images_per_step=plan.images_per_step,
                input_size=plan.input_size, started_at=plan.started_at,
                planned_at=plan.planned_at, expected_end=plan.expected_end,
                measured=plan.measured, refitted_at=plan.refitted_at,
                repaces=[*plan.repaces, record])


def write_plan_file(run_dir: Path, record: dict, choices: Optional[List[dict]]) -> None:
    """Merge `record` (and the data-aware `choices`) into the run's `plan.json`, atomically."""
    path = Path(run_dir) / PLAN_FILE
    content = read_plan_file(run_dir)
    content.update(record)
    if choices is not None:
        content["choices"] = choices
    tmp = path.with_name(PLAN_FILE + ".tmp")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, path)


def read_plan_file(run_dir: Path) -> dict:
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not a plan written by training ({error}); remove it to "
                          f"plan the run again") from error


def format_duration(seconds: float) -> str:
    """`1h02m`, `4m05s`, `37s`."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _seconds(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def measure(checkpoint: Any, batches: Callable[[], Iterator], step: Callable[[Any], Any],
            evaluate: Callable[[], Any], budget_s: float) -> Measurement:
    """Time the run's own work, then put every variable of `checkpoint` back.

    Args:
        checkpoint: a `tf.train.Checkpoint` of everything a step or an evaluation changes
            (weights, BatchNorm statistics, optimizer, averages, counters); it is written to
            a scratch folder first (that write is the timed save) and read back at the end.
        batches: makes a new iterator of training batches from step 0.
        step: runs one train step on a batch and waits for its result.
        evaluate: one evaluation of the validation split.
        budget_s: the budget, which sets how long steady steps are timed.
    """
    with tempfile.TemporaryDirectory(prefix="centernet-plan-") as scratch:
        started = time.perf_counter()
        saved = checkpoint.write(os.path.join(scratch, "before"))
        save_s = time.perf_counter() - started
        started = time.perf_counter()
        iterator = batches()
        first_batch = next(iterator)
        startup_s = time.perf_counter() - started
        first_step_s = _seconds(lambda: step(first_batch))
        step(next(iterator))  # one more untimed: the first steady step may still warm caches
        timed, started = 0, time.perf_counter()
        measure_for = max(MEASURE_SHARE * budget_s, MIN_MEASURE_SECONDS)
        while timed < MIN_TIMED_STEPS or (time.perf_counter() - started < measure_for
                                          and timed < MAX_TIMED_STEPS):
            step(next(iterator))
            timed += 1
        step_s = (time.perf_counter() - started) / timed
        del iterator
        eval_first_s = _seconds(evaluate)
        # The first evaluation traces its function; the planned ones will not.
        eval_s = (_seconds(evaluate) if eval_first_s < SECOND_EVALUATION_SHARE * budget_s
                  else eval_first_s)
        checkpoint.read(saved).assert_existing_objects_matched()
    return Measurement(first_step_s=first_step_s, step_s=step_s, steps_timed=timed,
                       save_s=save_s, startup_s=startup_s, eval_s=eval_s,
                       eval_first_s=eval_first_s)


def plan_budget(budget_s: float, started_at: float, now: float, measured: Measurement,
                evaluations: int, warmup_steps: int, images_per_step: int,
                input_size: int) -> Plan:
    """The longest run that ends within the budget.

    Left after what was spent (`now - started_at`) and a closing margin, the budget pays for
    a new input pipeline, then per step `step_s` (the step function stays traced: the schedule
    reads its length from variables), and `evaluations` evaluations each followed by a
    checkpoint save. Warm-up is
    `warmup_steps` capped at `MAX_WARMUP_SHARE` of the steps.

    Raises:
        ConfigError: the budget does not leave `MIN_STEPS` steps (says what it would take).
    """
    margin = MARGIN_SHARE * budget_s + MARGIN_SECONDS
    start_up = measured.startup_s
    per_evaluation = measured.eval_s + measured.save_s
    fixed = start_up + evaluations * per_evaluation + margin
    left = budget_s - (now - started_at) - fixed
    steps = int(left // measured.step_s) if left > 0 else 0
    if steps < MIN_STEPS:
        needed = (now - started_at) + fixed + MIN_STEPS * measured.step_s
        raise ConfigError(
            f"train.time_budget={format_duration(budget_s)} is too short: "
            f"{now - started_at:.0f} s went on starting and measuring, an evaluation takes "
            f"{measured.eval_s:.1f} s and a step {measured.step_s:.2f} s; {MIN_STEPS} steps "
            f"and {evaluations} evaluation(s) need about {format_duration(needed)} (or lower "
            f"train.evaluations)")
    evaluations = min(evaluations, steps)
    eval_every = math.ceil(steps / evaluations)
    evaluations = math.ceil(steps / eval_every)  # the last one at the end
    spent = start_up + evaluations * per_evaluation + steps * measured.step_s
    return Plan(budget_s=budget_s, steps=steps,
                warmup_steps=min(warmup_steps, int(MAX_WARMUP_SHARE * steps)),
                eval_every=eval_every, evaluations=evaluations, checkpoint_every=eval_every,
                images_per_step=images_per_step, input_size=input_size, started_at=started_at,
                planned_at=now, expected_end=now + spent, measured=asdict(measured))
