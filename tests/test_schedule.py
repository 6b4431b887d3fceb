"""Learning-rate schedules against the formulas, evaluated here in NumPy."""

import math

import numpy as np
import pytest

from centernet.engine.optim import WarmupSchedule


def reference(step, peak, total, name, warmup, milestones=(0.64, 0.86), gamma=0.1, floor=0.0):
    if step < warmup:
        return peak * (step + 1) / warmup
    if name == "constant":
        return peak
    if name == "step":
        return peak * gamma ** sum(step >= m * total for m in milestones)
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@pytest.mark.parametrize("name, warmup, floor", [("cosine", 10, 0.0), ("cosine", 0, 0.05),
                                                 ("step", 5, 0.0), ("constant", 3, 0.0)])
def test_schedule_matches_formula(name, warmup, floor):
    schedule = WarmupSchedule(2e-3, 100, name, warmup, (0.64, 0.86), 0.1, floor)
    for step in range(0, 120, 3):
        expected = reference(step, 2e-3, 100, name, warmup, floor=floor)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=2e-3 * 1e-6)


def test_warmup_reaches_the_peak_and_cosine_ends_at_the_floor():
    schedule = WarmupSchedule(1e-3, 50, "cosine", 10, min_lr_ratio=0.1)
    assert float(schedule(9)) == pytest.approx(1e-3)
    assert float(schedule(50)) == pytest.approx(1e-4)
    values = np.array([float(schedule(s)) for s in range(10, 51)])
    assert np.all(np.diff(values) <= 1e-12)
