"""Checkpoints of a run: the latest few for resuming and the best by validation AP.

Layout under `<run_dir>/checkpoints/`:

    ckpt-<step>.index / .data-*   latest checkpoints (tf.train.Checkpoint), `keep` of them
    checkpoint                    TensorFlow's state file (written atomically by TensorFlow)
    model_spec.json               backbone, classes and sizes the checkpoints were trained with
    best/ckpt-<step>.*            the checkpoint with the best validation AP so far
    best/best.json                its step and metrics
    damaged/ckpt-<step>.*         checkpoints found damaged when resuming, moved aside (kept)

A checkpoint's `.index` file is written last, so a run killed mid-save leaves at worst an
incomplete newer checkpoint that restoring skips; the ones before it stay intact. Nothing
non-finite is ever saved. Every restore first reads the whole checkpoint back
(`verify_checkpoint`: index, every data shard, every tensor's checksum), so a truncated or
corrupt file is named before any value is loaded from it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from centernet.config import RunConfig
from centernet.errors import CheckpointError, DamagedCheckpointError

SPEC_FILE = "model_spec.json"
SPEC_DEFAULTS = {"model.neck": "deconv"}  # what spec files written before a key existed meant
BEST_FILE = "best.json"
DAMAGED_DIR = "damaged"
_CKPT_NAME = re.compile(r"^ckpt-(\d+)\.index$")
_SHARD_NAME = re.compile(r"\.data-(\d+)-of-(\d+)$")
# What TensorFlow raises reading a damaged bundle: an OpError (checksum or format errors come
# as DataLoss or plain OpError, a missing shard as NotFound), or IndexError for a short read.
_READ_ERRORS = (tf.errors.OpError, IndexError)


def model_spec(cfg: RunConfig, num_classes: int) -> Dict[str, object]:
    """What a checkpoint must agree on to be loaded into a model built from `cfg`."""
    return {"model.name": cfg.model.name, "num_classes": num_classes,
            "model.neck": cfg.model.neck,
            "model.neck_channels": list(cfg.model.neck_channels),
            "model.head_conv": cfg.model.head_conv}


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON to `path` through a temporary file and a rename (never half-written)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def list_checkpoints(directory: Path) -> List[Path]:
    """Checkpoint prefixes in `directory` with a complete `.index`, newest step first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), directory / f"ckpt-{m.group(1)}")
             for m in (_CKPT_NAME.match(name) for name in os.listdir(directory)) if m]
    return [prefix for _, prefix in sorted(found, reverse=True)]


def checkpoint_step(prefix: Path) -> int:
    """The step a `ckpt-<step>` prefix was saved at."""
    return int(Path(prefix).name.split("-")[-1])


def data_files(prefix: Path) -> List[Path]:
    """The `.data-<i>-of-<n>` shard files a checkpoint should have, present or not (the count
    from the shards found; one when none is)."""
    prefix = Path(prefix)
    found = [m for m in (_SHARD_NAME.search(p.name) for p in prefix.parent.glob(
        f"{prefix.name}.data-*-of-*")) if m]
    shards = max((int(m.group(2)) for m in found), default=1)
    return [prefix.parent / f"{prefix.name}.data-{i:05d}-of-{shards:05d}" for i in range(shards)]


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def verify_checkpoint(prefix: Path) -> None:
    """Read the whole checkpoint `prefix` back: its index, every data shard and every tensor
    (TensorFlow checks each tensor's CRC32C as it reads).

    Raises:
        DamagedCheckpointError: naming the unreadable or missing file and what is wrong.
    """
    prefix = Path(prefix)
    index = Path(f"{prefix}.index")
    if not index.is_file():
        raise DamagedCheckpointError(f"checkpoint {prefix} is damaged: {index} is missing")
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except _READ_ERRORS as error:
        raise DamagedCheckpointError(f"checkpoint {prefix} is damaged: {index} cannot be read "
                                     f"({_first_line(error)})") from error
    shards = data_files(prefix)
    missing = [str(path) for path in shards if not path.is_file()]
    if missing:
        raise DamagedCheckpointError(f"checkpoint {prefix} is damaged: data file "
                                     f"{', '.join(missing)} is missing")
    for name in reader.get_variable_to_shape_map():
        try:
            reader.get_tensor(name)
        except _READ_ERRORS as error:
            files = " or ".join(str(path) for path in shards)
            raise DamagedCheckpointError(
                f"checkpoint {prefix} is damaged: {files} is truncated or corrupt (reading "
                f"{name}: {_first_line(error)})") from error


def move_aside(prefix: Path) -> Path:
    """Move a damaged checkpoint's files into `damaged/` beside it (kept for inspection, out
    of the rotation that deletes old checkpoints); returns the new prefix."""
    prefix = Path(prefix)
    target = prefix.parent / DAMAGED_DIR
    target.mkdir(exist_ok=True)
    for path in prefix.parent.glob(f"{prefix.name}.*"):
        shutil.move(str(path), str(target / path.name))
    return target / prefix.name


def _spec_path(prefix: Path) -> Optional[Path]:
    for directory in (Path(prefix).parent, Path(prefix).parent.parent):
        if (directory / SPEC_FILE).is_file():
            return directory / SPEC_FILE
    return None


def check_spec(prefix: Path, expected: Dict[str, object]) -> None:
    """Fail with the differences when a checkpoint was trained for another model.

    Args:
        prefix: checkpoint prefix (`.../ckpt-<step>`).
        expected: the `model_spec` of the model it is about to be loaded into.
    """
    spec_path = _spec_path(prefix)
    if spec_path is None:
        return
    saved = {**SPEC_DEFAULTS, **json.loads(spec_path.read_text())}
    differences = [f"{key}: checkpoint has {saved.get(key)!r}, config has {value!r}"
                   for key, value in expected.items() if saved.get(key) != value]
    if differences:
        raise CheckpointError(f"checkpoint {prefix} does not match the model config ("
                              + "; ".join(differences) + ")")


def restore(checkpoint: tf.train.Checkpoint, prefix: Path, spec: Dict[str, object],
            full: bool = True) -> None:
    """Load `prefix` into `checkpoint`'s objects, or fail saying why.

    Args:
        full: every saved value must be used (resuming); False loads just the objects
            `checkpoint` holds (e.g. the model alone for evaluation).

    Raises:
        DamagedCheckpointError: a file of the checkpoint is missing or unreadable (named);
            nothing was loaded.
        CheckpointError: the checkpoint holds another model, or (resuming) the state of
            another optimizer.
    """
    check_spec(prefix, spec)
    verify_checkpoint(prefix)
    status = None
    try:
        status = checkpoint.restore(str(prefix))
        if full:
            status.assert_consumed()
        else:
            status.expect_partial().assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as error:
        if status is not None:
            status.expect_partial()  # no second report of the same values as warnings
        what = ("this run's model and optimizer (resuming needs the optimizer it was trained "
                "with; to start a new run from its weights, use another run directory)"
                if full else "this model")
        raise CheckpointError(f"checkpoint {prefix} cannot be loaded into {what}: "
                              f"{_first_line(error)}") from error


def all_finite(variables) -> bool:
    """True when every floating-point value of `variables` is finite."""
    values = (np.asarray(v.numpy()) for v in variables)
    return all(bool(np.all(np.isfinite(a))) for a in values if np.issubdtype(a.dtype, np.floating))


class CheckpointStore:
    """Saves and restores the latest and best checkpoints of one run directory.

    Args:
        run_dir: the run directory.
        checkpoint: the objects to save (model, optimizer, step counters).
        spec: `model_spec` of the model, written beside the checkpoints and checked on load.
        keep: how many latest checkpoints to keep (>= 1).
    """

    def __init__(self, run_dir: Path, checkpoint: tf.train.Checkpoint, spec: Dict[str, object],
                 keep: int):
        self.directory = Path(run_dir) / "checkpoints"
        self.best_directory = self.directory / "best"
        self.checkpoint = checkpoint
        self.spec = spec
        self.keep = keep
        self.damaged_messages: List[str] = []  # what `restore_latest` skipped, to report
        self._latest = tf.train.CheckpointManager(checkpoint, str(self.directory),
                                                  max_to_keep=keep)
        self._best = tf.train.CheckpointManager(checkpoint, str(self.best_directory),
                                                max_to_keep=1)

    def restore_latest(self, move_damaged: bool = True) -> Optional[Path]:
        """Load the newest checkpoint that reads; None when there is none.

        A damaged one is reported (in `damaged_messages`), moved into `damaged/` (never
        deleted) and skipped, and the TensorFlow state file is rewritten without it, so the
        rotation of old checkpoints never deletes a good checkpoint to keep a damaged one.
        `move_damaged=False` (a worker that does not own the directory) only skips it.
        """
        damaged = []
        restored = None
        for prefix in list_checkpoints(self.directory):
            try:
                restore(self.checkpoint, prefix, self.spec)
                restored = prefix
                break
            except DamagedCheckpointError as error:
                if not move_damaged:
                    self.damaged_messages.append(f"warning: {error}; skipped it")
                    continue
                moved = move_aside(prefix)
                damaged.append(prefix)
                self.damaged_messages.append(
                    f"warning: {error}; moved it to {moved.parent}{os.sep} and skipped it")
        if damaged:
            self._forget(damaged)
        return restored

    def _forget(self, removed: List[Path]) -> None:
        """Drop `removed` from TensorFlow's `checkpoint` state file (keeping the others' save
        times, which decide what the rotation deletes) and rebuild the manager from it."""
        state = tf.train.get_checkpoint_state(str(self.directory))
        if state is None:
            return
        gone = {Path(p).name for p in removed}
        entries = list(zip(state.all_model_checkpoint_paths,
                           state.all_model_checkpoint_timestamps))
        kept = [(p, t) for p, t in entries if Path(p).name not in gone]
        if not kept:
            (self.directory / "checkpoint").unlink(missing_ok=True)
        else:
            tf_logger = logging.getLogger("tensorflow")
            level = tf_logger.level
            tf_logger.setLevel(logging.ERROR)  # its deprecation notice: nothing a user can do
            try:
                tf.compat.v1.train.update_checkpoint_state(
                    str(self.directory), kept[-1][0], [p for p, _ in kept],
                    all_model_checkpoint_timestamps=[t for _, t in kept],
                    last_preserved_timestamp=state.last_preserved_timestamp)
            finally:
                tf_logger.setLevel(level)
        self._latest = tf.train.CheckpointManager(self.checkpoint, str(self.directory),
                                                  max_to_keep=self.keep)

    def _write_spec(self) -> None:
        if not (self.directory / SPEC_FILE).exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.directory / SPEC_FILE, self.spec)

    def save(self, step: int, variables) -> Optional[Path]:
        """Save the latest checkpoint at `step`; refuse (return None) when anything is
        non-finite, so a resumable state is never replaced by a broken one."""
        if not all_finite(variables):
            return None
        self._write_spec()
        return Path(self._latest.save(checkpoint_number=step))

    def save_best(self, step: int, metrics: Dict[str, float], variables) -> Optional[Path]:
        """Save the best checkpoint and `best.json` (`step`, `checkpoint`, metrics)."""
        if not all_finite(variables):
            return None
        self._write_spec()
        prefix = Path(self._best.save(checkpoint_number=step))
        write_json_atomic(self.best_directory / BEST_FILE,
                          {"step": step, "checkpoint": prefix.name, "metrics": metrics})
        return prefix
