"""A budgeted run kept on its printed end while it trains (`train.time_budget`): the refit at
the end of warm-up and the pace checks at evaluations (`budget.py` has the plans and the
reasons), for `Trainer` (`training.py`).

A `Pacer` holds the run's `Plan` and its learning-rate schedule. When it changes the plan's
length it sets the schedule's length with it and returns a line to print; the trainer then
applies the new length to the rest of the run (its config, its end, mosaic's end and the
progress bar). Only a fresh run's chief paces: a resumed run keeps the plan it started with.
"""

from __future__ import annotations

import time
from typing import List, Optional, Tuple

import numpy as np

from centernet.engine import budget
from centernet.engine.budget import Plan, evaluations_after, format_duration
from centernet.engine.optim import WarmupSchedule


class Pacer:
    """The pace checks of one budgeted run; `plan` is always the current plan."""

    def __init__(self, plan: Plan, schedule: WarmupSchedule, paces: bool):
        """`paces`: whether this process refits and repaces (a fresh run's chief)."""
        self.plan = plan
        self.schedule = schedule
        self.paces = paces
        self.pace_from: Optional[float] = None  # when step PACE_FROM ended (the refit's clock)
        # (step, training seconds) a repace times from: the refit's step, else the first check
        self.pace_mark: Optional[Tuple[int, float]] = None
        self.evaluation_seconds: List[float] = []  # each evaluation this process ran

    def projected_end(self, step: int, end_step: int) -> float:
        """When the planned run should end (seconds since the epoch): its budget's end for a
        run that starts now, else now plus the planned time of what is left up to `end_step`."""
        plan = self.plan
        if step == 0:
            return plan.started_at + plan.budget_s
        measured = plan.measured
        evaluations_left = max(plan.evaluations - step // plan.eval_every, 1)
        return time.time() + ((end_step - step) * measured["step_s"]
                              + evaluations_left * (measured["eval_s"] + measured["save_s"]))

    def after_step(self, step: int, train_seconds: float) -> Optional[str]:
        """After training step `step`: start the refit's clock at `budget.PACE_FROM`, and at
        the end of a fresh run's warm-up (when it is long enough and ends before the first
        evaluation) refit the plan to the steps' own pace since then (`budget.refit_plan`).
        Returns the line to print when the plan changed, else None."""
        plan = self.plan
        if step == budget.PACE_FROM:
            self.pace_from = time.time()
        if not (self.paces and plan.refitted_at is None and self.pace_from is not None
                and plan.warmup_steps >= budget.MIN_REFIT_STEPS
                and step == plan.warmup_steps < plan.eval_every):
            return None
        now = time.time()
        pace = (now - self.pace_from) / (step - budget.PACE_FROM)
        self.plan = new = budget.refit_plan(plan, step, now, pace)
        self.schedule.set_length(new.steps, new.warmup_steps)
        self.pace_mark = (step, train_seconds)
        return (f"step {step}: warm-up done at {pace:.3f} s a step (measured "
                f"{plan.measured['step_s']:.3f}): refitted to {new.steps} steps (was "
                f"{plan.steps}), {new.evaluations} evaluation(s) every {new.eval_every} steps, "
                f"same end")

    def after_evaluation(self, step: int, seconds: float, train_seconds: float,
                         iterations: int) -> Optional[str]:
        """After an evaluation at `step` that took `seconds`: within the first
        `budget.REPACE_UNTIL` of the steps, on a schedule that can change length, fit the
        steps to the printed end again when the pace since the last mark and the evaluations
        to come would miss it by more than `budget.REPACE_TOLERANCE` of the budget
        (`budget.repace_plan`); the decay goes on from its progress at `iterations` (the
        optimizer's updates so far). Returns the line to print when the plan changed."""
        self.evaluation_seconds.append(seconds)
        plan = self.plan
        if not (self.paces and step <= budget.REPACE_UNTIL * plan.steps
                and self.schedule.repaceable):
            return None
        if self.pace_mark is None:  # no refit: the pace is timed from the first evaluation
            self.pace_mark = (step, train_seconds)
            return None
        marked_step, marked_seconds = self.pace_mark
        pace = (train_seconds - marked_seconds) / (step - marked_step)
        per_evaluation = float(np.mean(self.evaluation_seconds)) + plan.measured["save_s"]
        now = time.time()
        projected = now + ((plan.steps - step) * pace + per_evaluation
                           * evaluations_after(step, plan.steps, plan.eval_every))
        self.pace_mark = (step, train_seconds)
        if abs(projected - plan.expected_end) <= budget.REPACE_TOLERANCE * plan.budget_s:
            return None
        progress = self.schedule.progress_at(iterations)
        self.plan = new = budget.repace_plan(plan, step, now, pace, per_evaluation, iterations,
                                             progress)
        self.schedule.repace(new.steps, iterations)
        return (f"step {step}: {pace:.3f} s a step since step {marked_step} would end "
                f"{format_duration(abs(projected - plan.expected_end))} "
                f"{'late' if projected > plan.expected_end else 'early'}: {new.steps} steps "
                f"(was {plan.steps}), the decay going on from {progress:.1%}, same end")
