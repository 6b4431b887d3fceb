"""The training loop: real optimisation, the non-finite guard, resume, and surviving SIGKILL."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from centernet.engine.checkpointing import all_finite, list_checkpoints
from centernet.config import validate
from centernet.data.pipeline import train_dataset
from centernet.data.sources import build_source
from centernet.errors import NonFiniteLossError
from centernet.model import build_model
from centernet.engine.optim import build_optimizer, build_schedule
from centernet.engine.run_log import read_metrics
from centernet.engine.step import make_train_step
from centernet.training import train
from conftest import ROOT, compose_config, run_script


def _step_setup(overrides, tfds_dir):
    run = validate(compose_config(["experiment=smoke", f"dataset.data_dir={tfds_dir}",
                                   *overrides]))
    source = build_source(run.dataset)
    model = build_model(run.model, source.num_classes)
    optimizer = build_optimizer(run.optimizer, build_schedule(run.schedule, run.train.peak_lr,
                                                              run.train.max_steps), run.precision)
    optimizer.build(model.trainable_variables)
    batch = next(iter(train_dataset(source, run)))
    return model, optimizer, make_train_step(model, optimizer, run), batch


def test_loss_falls_on_a_fixed_batch(tfds_dir):
    """A real optimisation: 40 Adam steps on one batch cut the loss by more than half."""
    model, _, step, batch = _step_setup(
        ["train.lr=4e-3", "schedule=constant", "train.batch_size=8"], tfds_dir)
    losses = [float(step(batch)["loss"]) for _ in range(40)]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.5 * losses[0], losses


def test_nonfinite_step_changes_nothing(tfds_dir):
    """naive loss + a saturated heatmap (bias -200): non-finite at once (inf or NaN, as XLA
    fuses it); the step is not applied and the BatchNorm statistics its forward pass touched
    are restored."""
    model, optimizer, step, batch = _step_setup(["loss=naive", "model.heatmap_bias=-200"],
                                                tfds_dir)
    before = [v.numpy().copy() for v in model.variables]
    values = step(batch)
    assert not bool(values["finite"]) and not bool(values["applied"])
    assert not math.isfinite(float(values["heatmap"]))
    assert int(optimizer.iterations.numpy()) == 0
    for old, variable in zip(before, model.variables):
        np.testing.assert_array_equal(old, variable.numpy())


def test_stable_loss_trains_where_naive_fails(tfds_dir):
    _, optimizer, step, batch = _step_setup(["model.heatmap_bias=-200"], tfds_dir)
    values = step(batch)
    assert bool(values["applied"]) and math.isfinite(float(values["loss"]))
    assert int(optimizer.iterations.numpy()) == 1


def test_nonfinite_stop_names_step_part_and_logit_range(tfds_dir, tmp_path):
    cfg = compose_config(["experiment=smoke", f"dataset.data_dir={tfds_dir}", "loss=naive",
                          "model.heatmap_bias=-200", "train.progress_bar=false"])
    with pytest.raises(NonFiniteLossError) as error:
        train(cfg, tmp_path)
    message = str(error.value)
    assert "step 1" in message and "heatmap" in message and "(float32) range [-2" in message
    # a logit of -200 is far below -87.3: every heatmap logit's sigmoid rounds to exactly 0
    assert "at or below -87.34, where the float32 sigmoid rounds to exactly 0" in message
    assert message.splitlines()[-1].startswith("why: loss=naive")
    assert list_checkpoints(tmp_path / "checkpoints") == []  # nothing non-finite saved


def test_stop_keeps_earlier_checkpoints_and_skip_continues(tfds_dir, tmp_path):
    """Train 5 good steps (checkpoint at 5), resume with the naive loss and a learning rate that
    blows the logits up: the CLI exits non-zero naming the step, ckpt-5 survives and is
    finite. The same with on_nonfinite=skip runs to the end and counts the skipped steps.
    Resuming with another optimizer is refused, naming the checkpoint."""
    base = ["experiment=smoke", f"dataset.data_dir={tfds_dir}", f"hydra.run.dir={tmp_path}",
            "train.eval_every=0", "train.max_steps=14", "train.checkpoint_every=100"]
    first = run_script("train.py", *base, "train.stop_at_step=5")
    assert first.returncode == 0, first.stderr
    other_optimizer = run_script("train.py", *base, "optimizer=sgd")
    assert other_optimizer.returncode == 2, other_optimizer.stderr
    assert "ckpt-5 cannot be loaded into this run's model and optimizer" in other_optimizer.stderr
    blow_up = ["loss=naive", "train.lr=1e4", "train.scale_lr=false"]
    stopped = run_script("train.py", *base, *blow_up)
    assert stopped.returncode == 2, stopped.stderr
    assert "non-finite training step" in stopped.stderr and "Traceback" not in stopped.stderr
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["ckpt-5"]
    model = build_model(validate(compose_config(base[:2])).model, 3)
    tf.train.Checkpoint(model=model).read(str(tmp_path / "checkpoints" / "ckpt-5")).expect_partial()
    assert all_finite(model.variables)

    skipped = run_script("train.py", *base, *blow_up, "train.on_nonfinite=skip")
    assert skipped.returncode == 0, skipped.stderr
    records = [r for r in read_metrics(tmp_path) if r["kind"] == "train"]
    assert records[-1]["step"] == 14 and records[-1]["skipped"] > 0


@pytest.mark.slow
def test_sigkill_mid_run_resumes_to_completion(tfds_dir, tmp_path):
    """SIGKILL a training process once its first checkpoints exist; the next run restores the
    newest complete checkpoint, drops the log lines written after it, and finishes."""
    args = [sys.executable, str(ROOT / "scripts" / "train.py"), "experiment=smoke",
            f"dataset.data_dir={tfds_dir}", f"hydra.run.dir={tmp_path}", "train.max_steps=40",
            "train.checkpoint_every=2", "train.log_every=1", "train.eval_every=0"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.time() + 600
    while len(list_checkpoints(tmp_path / "checkpoints")) < 2 and time.time() < deadline:
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    time.sleep(0.7)  # land somewhere inside later steps or saves
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(r["step"] for r in read_metrics(tmp_path))
    assert killed_at < 40
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=900,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    records = [r for r in read_metrics(tmp_path) if r["kind"] == "train"]
    assert [r["step"] for r in records] == list(range(1, 41))  # no gap, no duplicate
    assert list_checkpoints(tmp_path / "checkpoints")[0].name == "ckpt-40"


def test_nonfinite_message_says_why_the_clamp_fails_in_float16():
    """In float16 1 - 1e-4 rounds to 1 (its spacing below 1 is 2^-11 = 4.9e-4), so the clamp
    no longer keeps log(1 - p) finite; in float32 it does, and the message says otherwise."""
    from centernet.engine.step import nonfinite_message

    values = {k: np.float32("nan") for k in ("loss", "heatmap", "wh", "offset", "giou")}
    values.update(sigmoid_zero=0, sigmoid_one=2, logits_min=-3.0, logits_max=8.5)
    half = nonfinite_message(10, values, "float16", "clamped", None, Path("ckpts"))
    assert half.splitlines()[-1].startswith("why: loss=clamped clamps the sigmoid")
    assert "in float16 1 - 0.0001 rounds to exactly 1" in half
    assert "no checkpoint was written before it (in ckpts)" in half
    full = nonfinite_message(10, values, "float32", "clamped", None, Path("ckpts"))
    assert "rounds to exactly 1, so" not in full


def test_patience_ends_the_run_and_a_resumed_run_stays_ended(tfds_dir, tmp_path):
    """train.patience=2 with validation APs 0.1, 0.3, 0.2, 0.25 at steps 4, 8, 12, 16: two
    evaluations without beating step 8's, so the run ends at step 16 with its checkpoint, the
    best one at step 8 and a `stop` record; the same command again trains nothing more.
    (A scripted evaluator: evaluation itself is tested against pycocotools elsewhere.)"""
    from centernet.engine import training

    aps = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])

    class ScriptedEvaluator:
        # an `engine.evaluations.Evaluator`: here no PR curves, no detections, no images
        detections: list = []
        ground_truth = {"images": [], "annotations": [], "categories": []}

        def __init__(self, *args):
            pass

        def __call__(self):
            ap = next(aps)
            return {"AP": ap, "AP50": ap, "AP75": ap}

        def threshold_counts(self):
            return None

    cfg = compose_config(["experiment=smoke", f"dataset.data_dir={tfds_dir}",
                          "train.max_steps=40", "train.eval_every=4", "train.patience=2",
                          "train.checkpoint_every=100", "train.progress_bar=false"])
    result = training.train(cfg, tmp_path, ScriptedEvaluator)
    assert result["step"] == 16 and result["AP"] == 0.25
    stops = [r for r in read_metrics(tmp_path) if r["kind"] == "stop"]
    assert stops == [{"step": 16, "kind": "stop", "patience": 2, "best_step": 8,
                      "best_AP": 0.3}]
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["ckpt-16"]
    best = json.loads((tmp_path / "checkpoints" / "best" / "best.json").read_text())
    assert best["step"] == 8

    again = training.train(cfg, tmp_path, ScriptedEvaluator)
    assert again["step"] == 16
    assert max(r["step"] for r in read_metrics(tmp_path)) == 16
    assert next(aps) == 0.9  # no evaluation ran
