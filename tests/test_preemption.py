"""Preemption and exact resume: SIGTERM mid-run writes a checkpoint at the step reached and
exits with status 143, and the same command resumes from it; with `train.deterministic=true` a
run stopped at step 6 and resumed to 12 ends with exactly the variables of one run to 12, every
step logged once at its place on the 12-step schedule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from centernet.config import validate
from centernet.engine.checkpointing import list_checkpoints
from centernet.engine.preemption import PREEMPTED_EXIT_CODE
from centernet.engine.run_log import read_metrics
from centernet.training import train
from conftest import ROOT, compose_config
from test_schedule import reference

OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_exits_143_and_resumes(tfds_dir, tmp_path):
    args = [sys.executable, str(ROOT / "scripts" / "train.py"), "experiment=smoke",
            f"dataset.data_dir={tfds_dir}", f"hydra.run.dir={tmp_path}", "train.max_steps=400",
            "train.checkpoint_every=1000", "train.log_every=1", "train.eval_every=0",
            "train.jit_compile=false", "train.progress_bar=false"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    deadline = time.time() + 600
    while time.time() < deadline and not [r for r in read_metrics(tmp_path)
                                          if r["kind"] == "train" and r["step"] >= 3]:
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == PREEMPTED_EXIT_CODE == 143, output
    reached = max(r["step"] for r in read_metrics(tmp_path))
    assert 3 <= reached < 400
    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    # Its step is the last one trained (a step in flight when the signal came is finished and
    # logged first), well before the first periodic checkpoint at 1000.
    assert [p.name for p in checkpoints] == [f"ckpt-{reached}"], output
    assert f"preempted (SIGTERM): saved checkpoint {checkpoints[0]} at step {reached}" in output
    saved = tf.train.load_checkpoint(str(checkpoints[0]))
    assert saved.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == reached

    resumed = subprocess.run([*args[:5], f"train.max_steps={reached + 2}", *args[6:]],
                             capture_output=True, text=True, timeout=900, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {checkpoints[0]} at step {reached}" in resumed.stderr
    steps = [r["step"] for r in read_metrics(tmp_path) if r["kind"] == "train"]
    assert steps == list(range(1, reached + 3))  # no gap, no duplicate


def _variables(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != OBJECT_GRAPH}


@pytest.mark.slow
def test_deterministic_run_resumed_at_step_6_ends_bit_for_bit_as_one_run(tfds_dir, tmp_path):
    """12 steps of 8 of the smoke set's 64 images: the stop at 6 is mid-epoch and past the
    2-step warm-up, and the resumed part crosses the epoch boundary at step 8 (a reshuffle), so
    the data position, the shuffle's state and the schedule must all come back exactly (40
    steps stopped at 20 only repeated these events). Checkpoints every 6 steps, so that both
    runs save equally often: `save_counter` is compared too. The resumed run starts at step 7
    and every logged rate is the 12-step schedule's (computed here from its formula)."""
    overrides = ["experiment=smoke", f"dataset.data_dir={tfds_dir}", "train.deterministic=true",
                 "train.jit_compile=true",  # the smoke experiment turns XLA off
                 "train.max_steps=12", "train.checkpoint_every=6", "train.eval_every=0",
                 "train.log_every=1", "train.progress_bar=false"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(compose_config(overrides), whole)
    train(compose_config([*overrides, "train.stop_at_step=6"]), split)
    assert list_checkpoints(split / "checkpoints")[0].name == "ckpt-6"
    train(compose_config(overrides), split)
    expected = _variables(whole / "checkpoints" / "ckpt-12")
    actual = _variables(split / "checkpoints" / "ckpt-12")
    assert expected.keys() == actual.keys() and len(expected) > 300
    different = [name for name in expected if not np.array_equal(expected[name], actual[name])]
    assert not different, different[:5]
    # The runs did train: the weights moved from the step-6 checkpoint.
    middle = _variables(split / "checkpoints" / "ckpt-6")
    assert any(not np.array_equal(middle[name], actual[name]) for name in actual
               if name.startswith("model/"))
    records = [r for r in read_metrics(split) if r["kind"] == "train"]
    assert [r["step"] for r in records] == list(range(1, 13))  # no gap, no duplicate
    run = validate(compose_config(overrides))
    for record in records:
        expected = reference(record["step"] - 1, run.train.peak_lr, 12, run.schedule.name,
                             run.schedule.warmup_steps, floor=run.schedule.min_lr_ratio)
        assert record["lr"] == pytest.approx(expected, rel=1e-5, abs=run.train.peak_lr * 1e-6)
