"""The loss study: the numerics sweep against facts derived by hand, the NaN demonstration
through the real CLI, and the comparison script's outputs."""

import math
import re

import numpy as np
import pytest
from omegaconf import OmegaConf

from centernet.config import validate
from centernet.engine.hardware import precision_policy
from centernet.engine.run_log import read_metrics
from centernet.study.comparison import SHORT
from conftest import compose_config, run_script


def _ref_negative_pixel(x):
    """float64 loss at a background pixel (z = 0): softplus(x) * sigmoid(x)^2."""
    x = np.asarray(x, np.float64)
    return np.logaddexp(0, x) * np.exp(-2 * np.logaddexp(0, -x))


def test_stable_float32_matches_float64_over_moderate_logits():
    from centernet.study.numerics import evaluate_form

    x = np.linspace(-20, 20, 4001)
    held, loss, grad = evaluate_form(x, "negative", "stable", "float32")
    np.testing.assert_allclose(loss, _ref_negative_pixel(held), rtol=1e-5)
    numeric = (_ref_negative_pixel(held + 1e-6) - _ref_negative_pixel(held - 1e-6)) / 2e-6
    big = np.abs(numeric) > 1e-6
    np.testing.assert_allclose(grad[big], numeric[big], rtol=1e-4)


def test_where_each_form_breaks_is_where_the_formulas_say():
    """clamped: no gradient past logit(1 - 1e-4) = ln(9999) = 9.2102; naive: NaN at a
    background pixel once its float32 sigmoid underflows to 0 (x ~ -87.3: e^-87.3 is below
    float32's smallest normal), in float16 once below 2^-24 (x ~ -17.3 + rounding)."""
    from centernet.study.numerics import evaluate_form, sweep

    edge = math.log(9999)
    _, _, grad = evaluate_form(np.array([-edge - 0.01, -edge + 0.01, edge - 0.01, edge + 0.01]),
                               "positive", "clamped", "float32")
    assert grad[0] == 0 and grad[3] == 0 and grad[1] != 0 and grad[2] != 0
    _, loss32, _ = evaluate_form(np.array([-80.0, -90.0]), "negative", "naive", "float32")
    assert np.isfinite(loss32[0]) and np.isnan(loss32[1])
    _, loss16, _ = evaluate_form(np.array([-16.5, -18.0]), "negative", "naive", "float16")
    assert np.isfinite(loss16[0]) and np.isnan(loss16[1])
    rows = sweep()
    assert len(rows) == 18
    for row in rows:
        if row.form == "stable":
            assert row.loss_nonfinite == (None, None) and row.grad_nonfinite == (None, None)
            assert row.loss_rel_error < 1e-5
        if row.form == "naive" and row.dtype == "float16":
            assert -18 < row.loss_nonfinite[0] < -17


def test_loss_numerics_script_prints_the_thresholds_and_the_table(tmp_path):
    result = run_script("loss_numerics.py", "--out", str(tmp_path / "numerics.md"))
    assert result.returncode == 0, result.stderr
    assert "| float16 | -17.34 | 7.625 |" in result.stdout
    assert result.stdout.count("| naive |") == 6
    assert (tmp_path / "numerics.md").read_text().strip() == result.stdout.strip()


def _load_checkpoint(run_dir, prefix):
    from centernet.config import validate
    from centernet.engine.checkpointing import all_finite
    from centernet.engine.runs import load_model

    run = validate(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    return all_finite(load_model(run, prefix, 3).variables)


@pytest.mark.slow
def test_nan_demo_naive_stops_with_the_reason_and_stable_trains(tfds_dir, tmp_path):
    """experiment=nan_demo: loss=naive exits 2 naming the step, the loss part, the logits past
    the float16 sigmoid's rounding points, the checkpoint kept from before (which loads and is
    finite) and, on the last line, why; loss=stable trains one step past it with finite
    metrics (the full run is in docs/losses.md, "Every form side by side")."""
    naive_dir = tmp_path / "naive"
    result = run_script("train.py", "experiment=nan_demo", "loss=naive",
                        f"dataset.data_dir={tfds_dir}", f"hydra.run.dir={naive_dir}")
    message = result.stderr
    assert result.returncode == 2, message
    assert "Traceback" not in message
    step = int(re.search(r"non-finite training step (\d+): loss part\(s\) ([\w, ]+) non-finite",
                         message).group(1))
    assert "heatmap" in re.search(r"loss part\(s\) ([\w, ]+) non-finite", message).group(1)
    counts = re.search(r"heatmap logits \(float16\) range \[\S+, \S+\]: (\d+) at or below "
                       r"(-[\d.]+), where the float16 sigmoid rounds to exactly 0, and (\d+) at "
                       r"or above ([\d.]+), where it rounds to exactly 1", message)
    assert counts, message
    assert int(counts.group(1)) + int(counts.group(3)) > 0
    assert float(counts.group(2)) == pytest.approx(-17.34, abs=0.01)
    kept = re.search(r"last checkpoint kept from before is (\S+) \(step (\d+)\)", message)
    assert kept and int(kept.group(2)) < step
    assert _load_checkpoint(naive_dir, kept.group(1))
    last = message.strip().splitlines()[-1]
    assert last.startswith("why:") and "-log(0) = inf" in last and "mask of 0 is NaN" in last
    assert read_metrics(naive_dir)[-1]["kind"] == "nonfinite"

    # one step past the one the naive run failed at, not more: float16 convolution gradients
    # are slow on CPUs (11-14 s per step on an AMX Xeon; hardware.precision_warning)
    stable_dir, steps = tmp_path / "stable", step + 1
    result = run_script("train.py", "experiment=nan_demo", "loss=stable",
                        f"train.max_steps={steps}", f"dataset.data_dir={tfds_dir}",
                        f"hydra.run.dir={stable_dir}")
    assert result.returncode == 0, result.stderr
    records = read_metrics(stable_dir)
    final = [r for r in records if r["kind"] == "eval"][-1]
    assert final["step"] == steps and math.isfinite(final["AP"]) and math.isfinite(final["AP50"])
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "train")


@pytest.mark.slow
def test_compare_losses_writes_a_row_per_run_and_the_figure(tfds_dir, tmp_path):
    result = run_script("compare_losses.py", "experiment=smoke", "train.max_steps=3",
                        "train.eval_every=0", "compare.losses=stable,per_image,naive",
                        "compare.precisions=none", f"dataset.data_dir={tfds_dir}",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "comparison.md").read_text()
    losses = ["stable", "per_image", "naive"]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in losses]
    assert [cells[0] for cells in rows] == losses
    # the experiment's own precision: precision=auto's choice for this machine
    own = precision_policy(validate(compose_config(["experiment=smoke"])).precision)
    assert {cells[1] for cells in rows} == {own}
    for cells in rows:
        assert cells[2] == "3" and cells[3] == "none" and float(cells[4]) > 0
    assert (tmp_path / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for loss in losses:
        name = f"{loss}_{SHORT[rows[0][1]]}"
        assert (tmp_path / "runs" / name / "metrics.jsonl").exists()


def test_compare_losses_refuses_to_override_the_loss(tmp_path):
    result = run_script("compare_losses.py", "loss=naive", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and "compare.losses" in result.stderr
    assert "Traceback" not in result.stderr
