"""Damaged checkpoints: a truncated data file, a corrupt index and a missing shard are named
and skipped when training resumes (moved aside, never deleted, and no good checkpoint deleted
for them), and `evaluate.py` given one fails with one line naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from centernet.cli import NATIVE_LOG_LINE
from centernet.engine.checkpointing import list_checkpoints, verify_checkpoint
from centernet.training import train
from centernet.errors import DamagedCheckpointError
from conftest import compose_config, run_script

STEPS = 20  # checkpoints at 10 and 20


def _config(tfds_dir, *extra):
    return compose_config(["experiment=smoke", f"dataset.data_dir={tfds_dir}",
                           f"train.max_steps={STEPS}", "train.eval_every=0",
                           "train.progress_bar=false", "train.jit_compile=false", *extra])


@pytest.fixture(scope="module")
def finished_run(tfds_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("damage") / "run"
    train(_config(tfds_dir), run_dir)
    return run_dir


def truncate(prefix: Path) -> Path:
    data = Path(f"{prefix}.data-00000-of-00001")
    with open(data, "r+b") as handle:
        handle.truncate(data.stat().st_size // 3)
    return data


def corrupt_index(prefix: Path) -> Path:
    index = Path(f"{prefix}.index")
    raw = bytearray(index.read_bytes())
    for position in range(64, len(raw), 41):
        raw[position] ^= 0x5A
    index.write_bytes(bytes(raw))
    return index


def remove_shard(prefix: Path) -> Path:
    data = Path(f"{prefix}.data-00000-of-00001")
    data.unlink()
    return data


DAMAGE = {"truncated_data": truncate, "corrupt_index": corrupt_index,
          "missing_shard": remove_shard}


@pytest.fixture(params=sorted(DAMAGE))
def damaged_run(request, finished_run, tmp_path):
    """A copy of the finished run whose newest latest and best checkpoints (step 20) are
    damaged; returns (run_dir, the damaged file of the latest one)."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    damage = DAMAGE[request.param]
    damaged = damage(run_dir / "checkpoints" / f"ckpt-{STEPS}")
    damage(list_checkpoints(run_dir / "checkpoints" / "best")[0])
    return run_dir, damaged


def test_verify_names_the_damaged_file(damaged_run):
    run_dir, damaged = damaged_run
    with pytest.raises(DamagedCheckpointError) as error:
        verify_checkpoint(run_dir / "checkpoints" / f"ckpt-{STEPS}")
    assert str(damaged) in str(error.value)
    verify_checkpoint(run_dir / "checkpoints" / "ckpt-10")  # the older one reads


def test_training_skips_the_damaged_checkpoint_and_resumes_from_the_newest_good_one(
        damaged_run, tfds_dir, capsys):
    run_dir, damaged = damaged_run
    checkpoints = run_dir / "checkpoints"
    good = {p.name: p.read_bytes() for p in checkpoints.glob("ckpt-10.*")}
    expected = tf.train.load_checkpoint(str(checkpoints / "ckpt-10"))
    result = train(_config(tfds_dir, f"train.max_steps={STEPS + 2}", "train.stop_at_step=12",
                           "train.keep_checkpoints=2"), run_dir)
    output = capsys.readouterr()
    text = output.out + output.err
    assert str(damaged) in text and "skipped" in text
    assert f"resuming from {checkpoints / 'ckpt-10'} at step 10" in text
    assert result["step"] == 12
    # Moved aside, not deleted; the good step-10 checkpoint kept although keep=2 and step 12
    # was saved (the damaged one no longer counts in the rotation).
    assert (checkpoints / "damaged" / f"ckpt-{STEPS}.index").is_file()
    assert {p.name: p.read_bytes() for p in checkpoints.glob("ckpt-10.*")} == good
    assert [p.name for p in list_checkpoints(checkpoints)] == ["ckpt-12", "ckpt-10"]
    # Step 12 continued from step 10's weights: its step counter says so, and the
    # step-10 weights it started from are the ones the good checkpoint holds.
    resumed = tf.train.load_checkpoint(str(checkpoints / "ckpt-12"))
    assert resumed.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 12
    assert expected.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 10


def test_evaluate_names_the_damaged_file_in_one_line(damaged_run):
    run_dir, damaged = damaged_run
    result = run_script("evaluate.py", f"run_dir={run_dir}",
                        f"checkpoint={run_dir / 'checkpoints' / f'ckpt-{STEPS}'}")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines()  # minus TensorFlow's own log lines
             if line.strip() and not NATIVE_LOG_LINE.match(line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: checkpoint ") and str(damaged) in lines[0], lines
    assert "Traceback" not in result.stderr
