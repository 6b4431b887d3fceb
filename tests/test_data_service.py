"""The tf.data service (`dataset.data_service`, `centernet data-service`): a dispatcher and
workers on localhost, each a real process of the installed command, make the training batches.
With one worker they are the batches this process makes without the service, byte for byte
and in order (mosaic or not); with two, the batches are among those this process would make,
none twice (each worker makes every other batch); a run trains through the service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest

from centernet.benchmark.scale import jpeg_folder
from centernet.config import validate
from centernet.data.pipeline import train_dataset
from centernet.data.sources import build_source
from centernet.engine.step import LOSS_PARTS
from centernet.errors import ConfigError
from centernet.training import train
from conftest import ROOT, compose_config

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _serve(*arguments: str) -> subprocess.Popen:
    """`centernet data-service ARGUMENTS` in a process of its own, once it says it serves."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "centernet", "data-service", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env)
    line = process.stdout.readline()
    assert "serving at" in line, line + process.stdout.read()
    return process


@pytest.fixture
def service():
    """Start a dispatcher and `workers` workers; returns the dispatcher's address."""
    processes: List[subprocess.Popen] = []

    def start(workers: int) -> str:
        dispatcher, ports = _free_port(), [_free_port() for _ in range(workers)]
        addresses = [f"localhost:{port}" for port in ports]
        processes.append(_serve("dispatcher", f"--port={dispatcher}",
                                f"--workers={','.join(addresses)}"))
        for port in ports:
            processes.append(_serve("worker", f"--dispatcher=localhost:{dispatcher}",
                                    f"--port={port}"))
        return f"grpc://localhost:{dispatcher}"

    yield start
    # the workers (SIGTERM) end before the dispatcher they report to (Ctrl-C): status 0 both
    dispatcher, workers = processes[:1], processes[1:]
    for group, stop in ((workers, signal.SIGTERM), (dispatcher, signal.SIGINT)):
        for process in group:
            process.send_signal(stop)
        for process in group:
            assert process.wait(timeout=30) == 0, process.stdout.read()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return jpeg_folder(tmp_path_factory.mktemp("coco"), 48, (160, 120), val_images=8)


def _config(folder: Path, *extra: str):
    return validate(compose_config([
        "experiment=smoke", "dataset=coco_json", f"dataset.root={folder}",
        "dataset.val_split=val", "train.seed=3", *extra]))


def _batches(cfg, count: int, start_step: int = 0) -> List[dict]:
    source = build_source(cfg.dataset)
    dataset = train_dataset(source, cfg, start_step=start_step).take(count)
    return [{key: np.asarray(value) for key, value in batch.items()}
            for batch in dataset.as_numpy_iterator()]


def _same(one: dict, other: dict) -> bool:
    return one.keys() == other.keys() and all(np.array_equal(one[k], other[k]) for k in one)


@pytest.mark.parametrize("mosaic", ["true", "false"])
def test_one_worker_makes_the_same_batches_in_the_same_order(folder, service, mosaic):
    address = service(1)
    local = _batches(_config(folder, f"augment.mosaic={mosaic}"), 4, start_step=2)
    served = _batches(_config(folder, f"augment.mosaic={mosaic}",
                              f"dataset.data_service={address}"), 4, start_step=2)
    assert len(served) == len(local) == 4
    for step, (mine, theirs) in enumerate(zip(local, served)):
        assert _same(mine, theirs), f"batch {step} differs"
    assert not _same(local[0], local[1])  # the comparison can tell batches apart


def test_two_workers_share_the_batches_none_twice(folder, service):
    address = service(2)
    local = _batches(_config(folder), 16)
    served = _batches(_config(folder, f"dataset.data_service={address}"), 8)
    found = [next((i for i, mine in enumerate(local) if _same(mine, batch)), None)
             for batch in served]
    assert None not in found, found  # every served batch is one this process would make
    assert len(set(found)) == len(found), found  # and none comes twice
    # (which worker delivers first is up to the service: one may deliver all 8)


def test_a_run_trains_through_the_service(folder, service, tmp_path):
    address = service(1)
    result = train(_config(folder, f"dataset.data_service={address}", "train.max_steps=3",
                           "train.eval_every=0", "train.log_every=1"), tmp_path / "run")
    assert result["step"] == 3
    assert all(np.isfinite(result[part]) for part in LOSS_PARTS)


@pytest.mark.parametrize("address", ["localhost", "grpc://", "http://host:1", "host:port"])
def test_a_malformed_address_names_the_key(address):
    with pytest.raises(ConfigError, match="dataset.data_service"):
        validate(compose_config(["experiment=smoke", f"dataset.data_service={address}"]))
