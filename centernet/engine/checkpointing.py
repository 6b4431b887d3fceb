"""Checkpoints of a run: the latest few for resuming and the best by validation AP.

Layout under `<run_dir>/checkpoints/`:

    ckpt-<step>.index / .data-*   latest checkpoints (tf.train.Checkpoint), `keep` of them
    checkpoint                    TensorFlow's state file (written atomically by TensorFlow)
    model_spec.json               backbone, classes and sizes the checkpoints were trained with
    best/ckpt-<step>.*            the checkpoint with the best validation AP so far
    best/best.json                its step and metrics

A checkpoint's `.index` file is written last, so a run killed mid-save leaves at worst an
incomplete newer checkpoint that restoring skips; the ones before it stay intact. Nothing
non-finite is ever saved.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from centernet.config import RunConfig
from centernet.errors import CheckpointError

SPEC_FILE = "model_spec.json"
SPEC_DEFAULTS = {"model.neck": "deconv"}  # what spec files written before a key existed meant
BEST_FILE = "best.json"
_CKPT_NAME = re.compile(r"^ckpt-(\d+)\.index$")


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
    """
    check_spec(prefix, spec)
    try:
        status = checkpoint.restore(str(prefix))
        if full:
            status.assert_consumed()
        else:
            status.expect_partial().assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as error:
        raise CheckpointError(f"checkpoint {prefix} cannot be loaded into this model: "
                              f"{str(error).splitlines()[0]}") from error


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
        self._latest = tf.train.CheckpointManager(checkpoint, str(self.directory),
                                                  max_to_keep=keep)
        self._best = tf.train.CheckpointManager(checkpoint, str(self.best_directory),
                                                max_to_keep=1)

    def restore_latest(self) -> Optional[Path]:
        """Load the newest complete checkpoint; None when the run has none yet."""
        for prefix in list_checkpoints(self.directory):
            try:
                restore(self.checkpoint, prefix, self.spec)
                return prefix
            except CheckpointError as error:
                if "does not match the model config" in str(error):
                    raise
                print(f"warning: skipping unreadable checkpoint {prefix}: {error}")
        return None

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
