"""`tf.distribute`: the mirrored step equals one device's on the same global batch (loss parts,
gradients, BatchNorm statistics), also when the positives fall unevenly between the replicas
and one replica has none; mixed precision trains under `mirrored`; a two-worker
`multi_worker` run on localhost writes one run directory and ends with the same weights on
both workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from centernet.config import validate
from centernet.errors import ConfigError
from centernet.data.pipeline import train_dataset
from centernet.data.sources import build_source
from centernet.engine.hardware import precision_policy
from centernet.engine.optim import build_optimizer, build_schedule
from centernet.engine.strategies import DEFAULT_STRATEGY, build_strategy
from centernet.engine.step import LOSS_PARTS, make_train_step
from centernet.training import train
from centernet.model import build_model
from conftest import LOGICAL_CPUS, ROOT, compose_config, run_script

REPLICAS = LOGICAL_CPUS
# Plain gradient descent at rate 1: a step moves every weight by exactly minus its gradient.
SGD = ["optimizer=sgd", "optimizer.momentum=0", "optimizer.nesterov=false",
       "optimizer.weight_decay=0", "schedule=constant", "train.lr=1.0", "train.scale_lr=false",
       "train.jit_compile=false", "model.sync_bn=true",
       "precision=float32"]  # not auto: bfloat16 would round 4 + 4 images unlike 8


def _config(tfds_dir, *extra):
    return validate(compose_config(["experiment=smoke", f"dataset.data_dir={tfds_dir}",
                                    "distribute=mirrored", f"distribute.cpu_devices={REPLICAS}",
                                    "train.progress_bar=false", *extra]))


def _uneven(batch):
    """Objects only in the first replica's images, unevenly (all of image 0's, one of image
    1's, ...); the second replica's images keep their pixels but have no objects at all."""
    batch = {k: v.numpy().copy() for k, v in batch.items()}
    half = len(batch["image"]) // REPLICAS
    for key in ("heatmap", "box_weight", "mask", "dense_mask"):
        if key in batch:
            batch[key][half:] = 0
    if "mask" in batch:
        batch["mask"][1, 1:] = 0
    return {k: tf.constant(v) for k, v in batch.items()}


def _one_step(cfg, batch, strategy):
    """Loss parts, gradients (from the SGD update) and BatchNorm statistics after one step,
    in the config's precision (not whatever policy an earlier test in this worker left)."""
    keras.mixed_precision.set_global_policy(precision_policy(cfg.precision))
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(cfg.model, 3, head_dtype=cfg.precision.head_dtype)
        optimizer = build_optimizer(cfg.optimizer, build_schedule(cfg.schedule, 1.0, 10),
                                    cfg.precision)
        optimizer.build(model.trainable_variables)
    before = [v.numpy().copy() for v in model.trainable_variables]
    step = make_train_step(model, optimizer, cfg, None, strategy)
    if strategy is DEFAULT_STRATEGY:
        out = step(batch)
    else:  # the global batch, split between the replicas in order
        dataset = tf.data.Dataset.from_tensors(batch).unbatch().batch(len(batch["image"]))
        out = step(next(iter(strategy.experimental_distribute_dataset(dataset))))
    grads = [b - v.numpy() for b, v in zip(before, model.trainable_variables)]
    stats = [v.numpy() for v in model.non_trainable_variables]
    return {k: float(v) for k, v in out.items()}, grads, stats


@pytest.mark.parametrize("recipe, uneven", [("ttfnet", False), ("ttfnet", True),
                                            ("centernet", True)])
def test_mirrored_step_equals_one_device(tfds_dir, recipe, uneven):
    cfg = _config(tfds_dir, f"recipe={recipe}", *SGD)
    batch = next(iter(train_dataset(build_source(cfg.dataset), cfg, 0)))
    if uneven:
        batch = _uneven(batch)
    one, one_grads, one_stats = _one_step(cfg, batch, DEFAULT_STRATEGY)
    mirrored, grads, stats = _one_step(cfg, batch, build_strategy(cfg.distribute))
    # rel 1e-4: oneDNN (TensorFlow's CPU kernels on AVX-512 VNNI/BF16/AMX machines) picks its
    # float32 convolution by batch size, and 4 + 4 images sum in another order than 8 do
    # (logits_max 1.0949864 against 1.0949697 on an AMX Xeon); a distribution error (a loss
    # not averaged over the global batch, statistics of one replica) is off by far more
    for key in LOSS_PARTS + ("logits_min", "logits_max", "sigmoid_zero", "dropped_objects"):
        assert mirrored[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    assert mirrored["applied"] == one["applied"] == 1
    scale = max(float(np.max(np.abs(g))) for g in one_grads)
    assert scale > 0
    for expected, actual in zip(one_grads, grads):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)
    for expected, actual in zip(one_stats, stats):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_mirrored_step_that_is_nonfinite_on_one_replica_changes_nothing(tfds_dir):
    """A NaN target in the second replica's share only: both replicas skip the update, and
    the BatchNorm statistics both forward passes touched are put back."""
    cfg = _config(tfds_dir, "train.jit_compile=false")
    batch = next(iter(train_dataset(build_source(cfg.dataset), cfg, 0)))
    heatmap = batch["heatmap"].numpy()
    heatmap[-1, 0, 0, 0] = np.nan
    batch = {**batch, "heatmap": tf.constant(heatmap)}
    strategy = build_strategy(cfg.distribute)
    with strategy.scope():
        model = build_model(cfg.model, 3, head_dtype=cfg.precision.head_dtype)
        optimizer = build_optimizer(cfg.optimizer, build_schedule(cfg.schedule, 1e-3, 10),
                                    cfg.precision)
        optimizer.build(model.trainable_variables)
    before = [v.numpy().copy() for v in model.variables]
    dataset = tf.data.Dataset.from_tensors(batch).unbatch().batch(len(heatmap))
    values = make_train_step(model, optimizer, cfg, None, strategy)(
        next(iter(strategy.experimental_distribute_dataset(dataset))))
    assert not bool(values["finite"]) and not bool(values["applied"])
    assert not np.isfinite(float(values["heatmap"]))
    assert int(optimizer.iterations.numpy()) == 0
    for old, variable in zip(before, model.variables):
        for replica_value in strategy.experimental_local_results(variable):
            np.testing.assert_array_equal(old, replica_value.numpy(), err_msg=variable.name)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_finite_loss_under_mirrored(tfds_dir, tmp_path, precision):
    """The training command, as a user runs it (for float16 it turns TensorFlow's oneDNN CPU
    kernels off before importing TensorFlow: their float16 gradients are ~100x slower, 145 s
    for these steps inside a test process that imported TensorFlow with them on)."""
    result = run_script("train.py", "experiment=smoke", f"dataset.data_dir={tfds_dir}",
                        f"hydra.run.dir={tmp_path}", "distribute=mirrored",
                        f"distribute.cpu_devices={REPLICAS}", f"precision={precision}",
                        "train.max_steps=3", "train.log_every=1", "train.eval_every=0",
                        "train.checkpoint_every=3", "train.progress_bar=false")
    assert result.returncode == 0, result.stderr
    assert f"distribute=mirrored: {REPLICAS} replica(s)" in result.stderr
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    steps = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(np.isfinite(r[k]) for r in steps for k in LOSS_PARTS)
    assert all(r["skipped"] == 0 for r in steps)
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3]


def test_batch_size_must_divide_between_replicas(tfds_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"train.batch_size=9 does not divide between the 2"):
        train(_config(tfds_dir, "train.batch_size=9", "train.max_steps=1"), tmp_path / "run")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_write_one_run_and_agree(tfds_dir, tmp_path):
    """Two processes with their own TF_CONFIG train one run together: it completes, only the
    chief writes checkpoints, logs and TensorBoard, and both end with the same weights,
    optimizer state and (synchronised) BatchNorm statistics."""
    run_dir = tmp_path / "run"
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    args = [sys.executable, str(ROOT / "scripts" / "train.py"), "experiment=smoke",
            f"dataset.data_dir={tfds_dir}", f"hydra.run.dir={run_dir}", "distribute=multi_worker",
            "train.max_steps=12", "train.checkpoint_every=6", "train.eval_every=0",
            "train.progress_bar=false", "model.sync_bn=true",
            f"distribute.worker_dir={tmp_path / 'worker'}"]
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                        "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(args, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, env=env))
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("ckpt-*.index")) == ["ckpt-12.index",
                                                                        "ckpt-6.index"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 12  # written once
    assert [r["step"] for r in records if r["kind"] == "eval"] == [12]
    assert len(list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))) == 1
    assert "replica(s)" in outputs[0]
    # Nothing but what a one-device run writes (Hydra's own .hydra/ and train.log included),
    # the report once: by the chief, which evaluated
    assert {p.name for p in run_dir.iterdir()} == {".hydra", "checkpoints", "classes.json",
                                                   "metrics.jsonl", "tensorboard", "train.log",
                                                   "best_evaluation.json", "report",
                                                   "plan.json"}
    runtime = json.loads((run_dir / "plan.json").read_text())["runtime"]
    assert (runtime["strategy"], runtime["replicas"]) == ("multi_worker", 2)
    assert [("report: " in output) for output in outputs] == [True, False]
    # The other worker kept its own copy of the final checkpoint in distribute.worker_dir.
    chief = tf.train.load_checkpoint(str(checkpoints / "ckpt-12"))
    other = tf.train.load_checkpoint(str(tmp_path / "worker" / "checkpoints" / "ckpt-12"))
    names = [n for n in chief.get_variable_to_shape_map() if n.startswith(("model/",
                                                                             "optimizer/"))]
    assert any("moving_mean" in n for n in names)
    assert len(names) > 300
    for name in names:
        np.testing.assert_array_equal(chief.get_tensor(name), other.get_tensor(name),
                                      err_msg=name)
