"""Learning-rate schedules against the formulas, evaluated here in NumPy."""

import math

import numpy as np
import pytest
import tensorflow as tf

from centernet.engine.optim import WarmupSchedule


def decay_progress(step, total, warmup, repaces=()):
    """The cosine's progress at `step`: linear from the warm-up's end (0) to the last step (1)
    of `total`; each repace `(iteration, new_total)` keeps the progress reached at its
    iteration and runs it on linearly to 1 at the new last step."""
    clip = lambda value: min(max(value, 0.0), 1.0)  # noqa: E731
    start, reached = warmup, 0.0
    for at, new_total in repaces:
        if step < at:
            break
        reached = clip(reached + (1 - reached) * (at - start) / max(total - 1 - start, 1))
        start, total = at, new_total
    return clip(reached + (1 - reached) * (step - start) / max(total - 1 - start, 1))


def reference(step, peak, total, name, warmup, milestones=(0.64, 0.86), gamma=0.1, floor=0.0,
              repaces=()):
    if step < warmup:
        return peak * (step + 1) / warmup
    if name == "constant":
        return peak
    if name == "step":
        return peak * gamma ** sum(step >= m * total for m in milestones)
    progress = decay_progress(step, total, warmup, repaces)
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


def test_repace_goes_on_from_the_progress_reached_and_ends_at_the_floor():
    """Two repaces mid-decay (longer, then shorter) of a traced schedule: every rate is the
    formula's (float64 reference), the rate at a repace's step is the one the old length gave
    (no jump), and the last step of the final length trains at the floor."""
    schedule = WarmupSchedule(2e-3, 300, "cosine", 30, min_lr_ratio=0.05)
    rate = tf.function(lambda step: schedule(step))
    repaces = [(90, 400), (150, 250)]
    trained = {}  # the rate each step trains at, read while its length is the current one
    segments = [(0, 90), (90, 150), (150, 250)]
    for (first, end), repace in zip(segments, [*repaces, None]):
        for step in range(first, end):
            trained[step] = float(rate(tf.constant(step, tf.int64)))
        if repace is not None:
            old = float(rate(tf.constant(repace[0], tf.int64)))
            reached = schedule.repace(repace[1], repace[0])
            assert reached == pytest.approx(
                decay_progress(repace[0], 300, 30, repaces[:repaces.index(repace)]), rel=1e-12)
            assert float(rate(tf.constant(repace[0], tf.int64))) == old  # no jump
    for step, value in trained.items():
        assert value == pytest.approx(
            reference(step, 2e-3, 300, "cosine", 30, floor=0.05, repaces=repaces),
            rel=1e-6, abs=1e-12), step
    assert trained[149] < trained[90] and trained[249] == pytest.approx(1e-4, rel=1e-6)
    values = np.array([trained[s] for s in range(30, 250)])
    assert np.all(np.diff(values) <= 1e-12) and rate.experimental_get_tracing_count() == 1


def test_a_schedule_rebuilt_from_its_anchor_gives_the_same_rates_bit_for_bit():
    """A resumed run builds its schedule anew at the final length and puts the last repace's
    anchor back (`set_anchor`): every later rate is the repaced schedule's, bit for bit."""
    repaced = WarmupSchedule(1e-3, 500, "cosine", 20)
    repaced.repace(640, 123)
    rebuilt = WarmupSchedule(1e-3, 640, "cosine", 20)
    rebuilt.set_anchor(*repaced.anchor)
    for step in range(123, 640, 7):
        assert float(rebuilt(step)) == float(repaced(step))
    assert repaced.anchor[0] == 123.0 and 0.0 < repaced.anchor[1] < 1.0


def test_set_length_clears_the_anchor_and_the_step_schedule_is_never_repaced():
    schedule = WarmupSchedule(1e-3, 500, "cosine", 20)
    schedule.repace(600, 100)
    schedule.set_length(300, 30)
    assert schedule.anchor == (-1.0, 0.0)
    assert float(schedule(100)) == pytest.approx(reference(100, 1e-3, 300, "cosine", 30),
                                                 rel=1e-6)
    stepped = WarmupSchedule(1e-3, 500, "step", 20)
    assert not stepped.repaceable
    with pytest.raises(ValueError, match="never repaced"):
        stepped.repace(600, 100)
