"""The native target renderers (`targets_op.cc`): built once per machine, loaded on demand.

`targets_op()` returns the loaded op library. The library is cached under
`~/.cache/centernet/ops` (or `$CENTERNET_CACHE_DIR/ops`) in a file named after a hash of the
source, the TensorFlow version and the build flags, so a change to any of them builds it again;
loading a library that is there needs no compiler. Where it is missing, the first use compiles
`targets_op.cc` with the C++ compiler (`$CXX`, a program with its arguments such as
`ccache g++`; else `g++`) against the installed TensorFlow's headers, the way TensorFlow
documents custom ops (`tf.sysconfig` flags, no `-march`, so the library runs on any CPU of the
architecture). A file lock lets concurrent processes (test workers, a training and an
evaluation) build it once; waiting for the lock and compiling together take at most
`$CENTERNET_NATIVE_BUILD_TIMEOUT` seconds (120 by default), then the compiler is stopped.

Where it cannot be built or loaded in time (no compiler, a TensorFlow without headers, a slow
compile), a warning says why, once, and `targets_op()` returns None: targets.py then renders
with its portable TensorFlow ops, the same targets a little slower. `CENTERNET_NATIVE_TARGETS=0`
chooses the portable path without trying.

Ahead of time, for machines whose users cannot wait at first start or have no compiler when
they train: `python -m centernet.data.native build` (or `build_ahead_of_time()`) compiles it
into the cache without a time limit; point `CENTERNET_CACHE_DIR` at the same folder at run
time when the build runs as another user or in an image.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence

import tensorflow as tf

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("targets_op.cc")
ENV_SWITCH = "CENTERNET_NATIVE_TARGETS"
ENV_TIMEOUT = "CENTERNET_NATIVE_BUILD_TIMEOUT"
DEFAULT_TIMEOUT = 120.0  # seconds; the compile takes about 7 s on a 2-core Xeon
AHEAD_OF_TIME = "python -m centernet.data.native build"
_lock = threading.Lock()
_loaded: dict = {}  # "library": the module, or None once it failed


class BuildError(RuntimeError):
    """The library could not be built (no compiler, a failed or too slow compile)."""


def cache_dir() -> Path:
    """Where built libraries live: `$CENTERNET_CACHE_DIR/ops`, else `~/.cache/centernet/ops`."""
    from centernet.data.index_cache import cache_root

    return cache_root() / "ops"


def native_targets_enabled() -> bool:
    """False when `CENTERNET_NATIVE_TARGETS` is `0`, `false` or `no`."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no")


def compiler_command() -> List[str]:
    """`$CXX` (default `g++`) split as a shell would: a program and its arguments, e.g.
    `["ccache", "g++"]`. Raises BuildError when the program is not found."""
    given = os.environ.get("CXX", "").strip() or "g++"
    try:
        words = shlex.split(given)
    except ValueError as error:  # an unclosed quote
        raise BuildError(f"CXX={given!r} is not a command: {error}") from None
    if shutil.which(words[0]) is None:
        raise BuildError(f"no C++ compiler ({given}): install g++ or set CXX")
    return words


def _build_command(compiler: Sequence[str], output: Path) -> List[str]:
    return ([*compiler, "-shared", "-fPIC", "-O2", "-ffp-contract=off",
             "-Wno-deprecated-declarations", str(SOURCE), "-o", str(output)]
            + tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags())


def library_path() -> Path:
    """The cached library's path for this source, TensorFlow and build flags. The compiler is
    not part of it: the library's interface is TensorFlow's, and a library built ahead of
    time must be found on a machine without one."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__.encode(),
                 " ".join(_build_command([], Path("out"))).encode()):
        key.update(part)
    return cache_dir() / f"centernet_targets_{key.hexdigest()[:16]}.so"


def build(compiler: Sequence[str], timeout: Optional[float] = None,
          force: bool = False) -> Path:
    """Compile `targets_op.cc` with `compiler` into the cache unless it is there (or with
    `force`); returns the library's path.

    `timeout`: seconds for waiting on another process's build and compiling together (None:
    no limit); when they run out the compiler and its children are stopped.
    Raises BuildError with the compiler's output or the reason."""
    path = library_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    with open(path.with_suffix(".lock"), "w") as lock:
        _acquire(lock, deadline, timeout)  # one build at a time; the others then find it
        if path.exists() and not force:
            return path
        log.info("building the native target renderer once (about 7 s) into %s", path)
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            partial = Path(scratch) / path.name
            _compile(_build_command(compiler, partial), deadline, timeout)
            os.replace(partial, path)  # atomic: a reader never sees a half-written library
    return path


def _acquire(lock, deadline: Optional[float], timeout: Optional[float]) -> None:
    """Take the build lock, waiting until `deadline` (`time.monotonic()`) at the most."""
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                raise BuildError(f"another process has been building it for more than "
                                 f"{timeout:g} s ({ENV_TIMEOUT}); build it ahead of time "
                                 f"with `{AHEAD_OF_TIME}`") from None
            time.sleep(0.05)


def _compile(command: List[str], deadline: Optional[float], timeout: Optional[float]) -> None:
    """Run the compiler in its own process group, stopped with all its children (cc1plus, ld)
    at `deadline`."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        _, stderr = process.communicate(timeout=remaining)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise BuildError(f"compiling it took longer than {timeout:g} s ({ENV_TIMEOUT}); "
                         f"build it ahead of time with `{AHEAD_OF_TIME}`") from None
    if process.returncode != 0:
        raise BuildError(f"{shlex.join(command[:1])} failed on {SOURCE} "
                         f"(exit {process.returncode}):\n{stderr[-2000:]}")


def build_timeout() -> float:
    """`$CENTERNET_NATIVE_BUILD_TIMEOUT` seconds, 120 by default. Raises BuildError when it
    is not a positive number."""
    value = os.environ.get(ENV_TIMEOUT, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise BuildError(f"{ENV_TIMEOUT}={value!r} is not a positive number of seconds")
    return seconds


@tf.autograph.experimental.do_not_convert  # called while tf.data traces a map: plain Python
def targets_op():
    """The loaded op library (`CenternetTargets`, `TtfnetTargets`), or None where the portable
    path is used."""
    if not native_targets_enabled():
        return None
    with _lock:
        if "library" not in _loaded:
            _loaded["library"] = _load()
        return _loaded["library"]


def _load():
    path = library_path()
    try:
        if not path.exists():
            path = build(compiler_command(), build_timeout())
        return tf.load_op_library(str(path))
    except (BuildError, OSError, tf.errors.NotFoundError) as error:
        log.warning("the native target renderer is unavailable, rendering targets with the "
                    "portable TensorFlow ops (the same targets, slower): %s", error)
        return None


def build_ahead_of_time(force: bool = False) -> Path:
    """Compile the library into the cache now, without a time limit, and check that it loads:
    what `centernet build-ops` and `python -m centernet.data.native build` run. A library
    that is there is only loaded (no compiler needed), unless `force` compiles it again.
    Returns its path; raises BuildError."""
    path = library_path()
    if force or not path.exists():
        path = build(compiler_command(), timeout=None, force=force)
    try:
        tf.load_op_library(str(path))
    except (OSError, tf.errors.NotFoundError) as error:
        raise BuildError(f"{path} was built but does not load: {error}") from None
    return path


def build_command(argv: Optional[Sequence[str]] = None,
                  prog: str = "python -m centernet.data.native build") -> int:
    """The ahead-of-time build as a command, `[--force]` (`argv`, default `sys.argv[1:]`;
    `prog` names it in its help, e.g. `centernet build-ops`): prints the library's path and
    the seconds it took; exit status 2 with `error: ...` when it cannot be built."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Compile the native target renderers now, without a time limit, into "
                    "$CENTERNET_CACHE_DIR/ops (else ~/.cache/centernet/ops) with $CXX (default "
                    "g++), for machines without a compiler at run time or users who cannot "
                    "wait for the first start.")
    parser.add_argument("--force", action="store_true",
                        help="compile again even if the library is there")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = build_ahead_of_time(force=args.force)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"native target renderer ready: {path} ({time.perf_counter() - start:.1f} s)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m centernet.data.native build [--force]` (`argv`, default `sys.argv[1:]`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] != ["build"]:
        print("usage: python -m centernet.data.native build [--force]", file=sys.stderr)
        return 2
    return build_command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
