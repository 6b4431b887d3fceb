"""Learning-rate schedules against the formulas, evaluated here in NumPy."""

import math

import numpy as np
import pytest
import tensorflow as tf

from centernet.engine.optim import WarmupSchedule


def reference(step, peak, total, name, warmup, milestones=(0.64, 0.86), gamma=0.1, floor=0.0):
    if step < warmup:
        return peak * (step + 1) / warmup
    if name == "constant":
        return peak
    if name == "step":
        return peak * gamma ** sum(step >= m * total for m in milestones)
    progress = min(max((step - warmup) / max(total - 1 - warmup, 1), 0.0), 1.0)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@pytest.mark.parametrize("name, warmup, floor", [("cosine", 10, 0.0), ("cosine", 0, 0.05),
                                                 ("step", 5, 0.0), ("constant", 3, 0.0)])
def test_schedule_matches_formula(name, warmup, floor):
    schedule = WarmupSchedule(2e-3, 100, name, warmup, (0.64, 0.86), 0.1, floor)
    for step in range(0, 120, 3):
        expected = reference(step, 2e-3, 100, name, warmup, floor=floor)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=2e-3 * 1e-6)


def test_warmup_reaches_the_peak_and_cosine_ends_at_the_floor_at_the_last_step():
    """Step 50 of 50 (the optimizer's iterations = 49) trains at the floor itself."""
    schedule = WarmupSchedule(1e-3, 50, "cosine", 10, min_lr_ratio=0.1)
    assert float(schedule(9)) == pytest.approx(1e-3)
    assert float(schedule(49)) == pytest.approx(1e-4, rel=1e-6)
    assert float(schedule(48)) > 1e-4 * (1 + 1e-4)
    values = np.array([float(schedule(s)) for s in range(10, 51)])
    assert np.all(np.diff(values) <= 1e-12)


def test_set_length_refits_a_traced_schedule():
    """A time budget's plan fixes the length after the step was traced: the traced function
    reads the new length and warm-up (no retrace), and matches the formula for them."""
    schedule = WarmupSchedule(2e-3, 1_000_000, "cosine", 100)
    rate = tf.function(lambda step: schedule(step))
    before = float(rate(tf.constant(60, tf.int64)))
    assert before == pytest.approx(reference(60, 2e-3, 1_000_000, "cosine", 100), rel=1e-6)
    schedule.set_length(300, 30)
    for step in (0, 29, 30, 150, 298, 299):
        assert float(rate(tf.constant(step, tf.int64))) == pytest.approx(
            reference(step, 2e-3, 300, "cosine", 30), rel=1e-6, abs=1e-12)
    assert rate.experimental_get_tracing_count() == 1
    assert (schedule.total_steps, schedule.warmup_steps) == (300, 30)
    assert float(rate(tf.constant(299, tf.int64))) == pytest.approx(0.0, abs=1e-12)
