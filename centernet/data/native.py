"""The native target renderer (`targets_op.cc`): built once per machine, loaded on demand.

`targets_op()` returns the loaded op library, compiling `targets_op.cc` on first use with the
C++ compiler (`$CXX`, else `g++`) against the installed TensorFlow's headers, the way
TensorFlow documents custom ops (`tf.sysconfig` flags, no `-march`, so the library runs on any
CPU of the architecture). The library is cached under `~/.cache/centernet/ops` (or
`$CENTERNET_CACHE_DIR/ops`) in a file named after a hash of the source, the TensorFlow
version, the flags and the compiler, so a change to any of them builds it again; a file lock
lets concurrent processes (test workers, a training and an evaluation) build it once.

Where it cannot be built or loaded (no compiler, a TensorFlow without headers), a warning
says why, once, and `targets_op()` returns None: targets.py then renders with its portable
TensorFlow ops, the same targets a little slower. `CENTERNET_NATIVE_TARGETS=0` chooses the
portable path without trying.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

import tensorflow as tf

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("targets_op.cc")
ENV_SWITCH = "CENTERNET_NATIVE_TARGETS"
_lock = threading.Lock()
_loaded: dict = {}  # "library": the module, or None once it failed


def cache_dir() -> Path:
    """Where built libraries live: `$CENTERNET_CACHE_DIR/ops`, else `~/.cache/centernet/ops`."""
    root = os.environ.get("CENTERNET_CACHE_DIR") or Path.home() / ".cache" / "centernet"
    return Path(root) / "ops"


def native_targets_enabled() -> bool:
    """False when `CENTERNET_NATIVE_TARGETS` is `0`, `false` or `no`."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no")


def _compiler() -> Optional[str]:
    return shutil.which(os.environ.get("CXX", "g++"))


def _build_command(compiler: str, output: Path) -> list:
    return ([compiler, "-shared", "-fPIC", "-O2", "-ffp-contract=off",
             "-Wno-deprecated-declarations", str(SOURCE), "-o", str(output)]
            + tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags())


def library_path(compiler: str) -> Path:
    """The cached library's path for this source, TensorFlow, compiler and flags."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__.encode(), version.encode(),
                 " ".join(_build_command(compiler, Path("out"))).encode()):
        key.update(part)
    return cache_dir() / f"centernet_targets_{key.hexdigest()[:16]}.so"


def build(compiler: str) -> Path:
    """Compile `targets_op.cc` into the cache unless it is there; returns the library's path.

    Raises RuntimeError with the compiler's output when compiling fails."""
    path = library_path(compiler)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; the others then find it
        if path.exists():
            return path
        log.info("building the native target renderer once (about 5 s) into %s", path)
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            partial = Path(scratch) / path.name
            result = subprocess.run(_build_command(compiler, partial), capture_output=True,
                                    text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{compiler} failed on {SOURCE} (exit {result.returncode}):"
                                   f"\n{result.stderr[-2000:]}")
            os.replace(partial, path)  # atomic: a reader never sees a half-written library
    return path


@tf.autograph.experimental.do_not_convert  # called while tf.data traces a map: plain Python
def targets_op():
    """The loaded `CenternetTargets` op library, or None where the portable path is used."""
    if not native_targets_enabled():
        return None
    with _lock:
        if "library" not in _loaded:
            _loaded["library"] = _load()
        return _loaded["library"]


def _load():
    compiler = _compiler()
    if compiler is None:
        log.warning("no C++ compiler (%s): rendering targets with the portable TensorFlow ops "
                    "(the same targets, slower); install g++ or set CXX for the native "
                    "renderer", os.environ.get("CXX", "g++"))
        return None
    try:
        return tf.load_op_library(str(build(compiler)))
    except (RuntimeError, OSError, tf.errors.NotFoundError) as error:
        log.warning("the native target renderer is unavailable, rendering targets with the "
                    "portable TensorFlow ops (the same targets, slower): %s", error)
        return None
