"""Shared fixtures: composed configs (as users compose them), a session TFDS folder (never the
user's ~/tensorflow_datasets), and a helper that runs the command-line scripts."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from hydra.core.global_hydra import GlobalHydra

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import centernet  # noqa: E402,F401  (before TensorFlow: the pooled CPU allocator, as in the scripts)
import tensorflow as tf  # noqa: E402

from centernet import cli  # noqa: E402

# Two logical CPU devices for the `distribute=mirrored` tests: they can only be made before
# TensorFlow initialises its devices. Everything else still runs on the first.
LOGICAL_CPUS = 2
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration() for _ in range(LOGICAL_CPUS)])

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


def compose_config(overrides: List[str], name: str = "train"):
    """Compose `configs/<name>.yaml` with overrides, exactly as the commands do
    (`centernet.cli.compose_config`), after clearing any Hydra state a test left behind."""
    GlobalHydra.instance().clear()
    return cli.compose_config(name, overrides)


@pytest.fixture(params=["native", "portable"])
def renderer(request, monkeypatch):
    """Runs a target test on both renderers: the native kernel (`centernet/data/targets_op.cc`)
    and the portable TensorFlow ops (`CENTERNET_NATIVE_TARGETS=0`)."""
    from centernet.data import native

    if request.param == "portable":
        monkeypatch.setenv(native.ENV_SWITCH, "0")
    elif native.targets_op() is None:
        pytest.skip("the native target renderer is unavailable here (see the log's warning)")
    return request.param


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> Path:
    """One TFDS data dir for the whole test session (shapes configs are prepared once)."""
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """The project's cache directory for this test alone (`$CENTERNET_CACHE_DIR`): the index
    and split caches, the native library."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CENTERNET_CACHE_DIR", str(path))
    return path


@pytest.fixture
def smoke_overrides(tfds_dir) -> List[str]:
    return ["experiment=smoke", f"dataset.data_dir={tfds_dir}"]


def run_script(script: str, *args: str, timeout: float = 900,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `scripts/<script>` with this interpreter; returns the finished process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(cwd or ROOT))


@pytest.fixture(scope="session")
def smoke_run(tfds_dir, tmp_path_factory, worker_id) -> Path:
    """One trained smoke run (`experiment=smoke`, 40 steps) shared by the tests of the tools
    that read a run: evaluate, predict, export and the export benchmark. Trained once per
    test session: under pytest-xdist the first worker to need it trains it in the session's
    common temporary folder while the others wait on a lock; each worker gets its own copy
    (evaluate.py writes into the run it evaluates, predict.py reads what it wrote)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base  # xdist: .../pytest-N/popen-gwK
    run_dir = shared / "smoke_run"
    with open(shared / "smoke_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (run_dir / "trained").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # a run a failed worker left half-done
            # float32 on every machine (`precision=auto` would train in bfloat16 on some): the
            # export tests compare the float32 files' AP with the AP this run logs
            result = run_script("train.py", "experiment=smoke", "precision=float32",
                                f"dataset.data_dir={tfds_dir}", f"hydra.run.dir={run_dir}")
            assert result.returncode == 0, result.stderr
            (run_dir / "trained").touch()
    copy = tmp_path_factory.mktemp("smoke_run")
    shutil.copytree(run_dir, copy, dirs_exist_ok=True)
    return copy


# Seconds each of the slowest files took (summed test durations, `--junitxml` of a full run on
# the 2-core CI machine, 2026-12-07, busy with other work: only the order matters). `make test`
# runs whole files on two workers (`--dist loadfile --no-loadscope-reorder`): started longest
# first, no long file is left to start last while the other worker idles. Files not listed
# (seconds each) follow in their usual order. Refresh it when a file becomes much slower.
FILE_SECONDS = {
    "test_distribute.py": 745, "test_preemption.py": 656, "test_training.py": 617,
    "test_loss_study.py": 510, "test_export_formats.py": 388, "test_budget.py": 357,
    "test_benchmark.py": 450, "test_search.py": 275, "test_run_tools.py": 227,
    "test_audit.py": 207, "test_time_to_accuracy.py": 176, "test_native_targets.py": 166,
    "test_data_choices.py": 159, "test_quiet_start.py": 158, "test_checkpoint_damage.py": 145,
    "test_installed.py": 116, "test_data_service.py": 150,
}


def pytest_collection_modifyitems(items):
    """The slowest files first (`FILE_SECONDS`); a file's tests keep their order."""
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))  # a stable sort
