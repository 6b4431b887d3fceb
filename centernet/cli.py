"""Shared behaviour of the command-line entry points (`centernet.commands`, run as `centernet
COMMAND` or `python scripts/COMMAND.py`): where their configs are, a quiet start, and user errors
that become one clear line and a non-zero exit code instead of a traceback (anything else is a bug
and keeps its traceback).

Configs. `config_dir()` is the Hydra config folder every command composes from: `configs/` at the
repository's root in a source checkout (editable install or not), `centernet/configs` inside an
installed wheel (pyproject.toml maps one onto the other at build time). `hydra_command(name)`
makes a command's `main` from a function of the composed config, as `@hydra.main` does, so
Hydra's own options (`--config-dir DIR` adds a user's config folder, `--cfg job`, `--help`, `-m`)
work in every command.

Quiet start. `configure_quiet_start(sys.argv)`, which each command's `main` calls first (before
TensorFlow is imported; importing this module does nothing of the kind), arranges that the first
import of TensorFlow, Keras or TFDS prints nothing a user cannot act on:

* TensorFlow's native libraries log while they load, before its log level applies (absl's
  "WARNING: All log messages before absl::InitializeLog() ...", oneDNN and CUDA-driver notes),
  and its first look for GPUs logs `failed call to cuInit` on machines without one. The import
  and that look run with the process's stderr (file descriptor 2) sent to a temporary file;
  afterwards its lines are written to stderr again, minus the native log lines below the level
  (all of them when the import fails, so nothing that explains a failure is lost).
* `TF_CPP_MIN_LOG_LEVEL` is set to 2, so later native INFO and WARNING lines are hidden while
  ERROR and FATAL ones still show.
* Python warnings raised while these libraries import are hidden, and the `absl` and
  `tensorflow` loggers show warnings and above only.

`verbose=true` on the command line (removed from `argv` there, before Hydra parses it) turns
all of this off. A `TF_CPP_MIN_LOG_LEVEL` set by the user is kept and decides which native
lines show, also those written while loading.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.abc
import logging
import os
import re
import shlex
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterator, List, Sequence, TypeVar

import hydra
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from centernet.config.commands import SCHEMAS
from centernet.config.help import command_help
from centernet.errors import USER_ERRORS

T = TypeVar("T")

EXIT_USER_ERROR = 2
VERBOSE_KEY = "verbose"
QUIET_LOG_LEVEL = "2"  # TF_CPP_MIN_LOG_LEVEL after loading: ERROR and FATAL lines show
QUIET_MODULES = ("tensorflow", "keras", "tensorflow_datasets")
QUIET_MARKER = "CENTERNET_QUIET_LOG_LEVEL"  # the TF_CPP_MIN_LOG_LEVEL this module set

# A native (glog/absl) log line: severity, MMDD, time (before absl::InitializeLog
# "00:00:<epoch seconds>"), thread id, file:line], e.g. "I0000 00:00:1795869514.115291    7238
# port.cc:153] oneDNN custom operations are on. ...".
NATIVE_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+ +\d+ [^\s\]]+:\d+\] ")
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

HYDRA_VERSION = "1.3"  # the `version_base` every command composes with


def config_dir() -> Path:
    """The folder of the commands' Hydra configs (`train.yaml`, `evaluate.yaml`, the groups):
    the wheel's `centernet/configs`, else the source checkout's `configs/` beside the package."""
    package = Path(__file__).resolve().parent
    packaged = package / "configs"
    return packaged if packaged.is_dir() else package.parent / "configs"


def compose_config(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """`<config_dir()>/<name>.yaml` composed with `overrides` as a command would compose it
    (not validated: `centernet.config.validate` does that). The one place the project composes
    a config outside a command's `@hydra.main` (the tests' `compose_config` too); called
    outside a running Hydra app, whose global state it sets up and leaves as it was."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base=HYDRA_VERSION):
        return compose(name, overrides=list(overrides))


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig], T]], Callable[[], None]]:
    """Decorator: `@hydra_command("train") def main(cfg): ...` makes `main()` a command, as
    `@hydra.main` would with the commands' configs: it starts quietly (reading `verbose=` off
    `sys.argv`), then Hydra parses the rest of `sys.argv`, composes `<config_name>.yaml` and
    calls the function (whose return value is what a sweeper optimises)."""

    def decorate(task: Callable[[DictConfig], T]) -> Callable[[], None]:
        def main() -> None:
            configure_quiet_start(sys.argv)
            install_help(config_name, sys.modules[task.__module__].__doc__ or "")
            hydra.main(version_base=HYDRA_VERSION, config_path=str(config_dir()),
                       config_name=config_name)(task)()

        return main

    return decorate


HELP_RESOLVER = "centernet_help"  # each command's YAML: hydra.help.template: ${centernet_help:}


def install_help(config_name: str, about: str) -> None:
    """Make `--help` the command's own page (`centernet.config.help.command_help`: its groups
    and keys from the configs and the schema, `about` (its module docstring) first, Hydra's
    options last), through the resolver its `hydra.help.template` names."""

    def render(*, _root_: DictConfig) -> str:
        choices = dict(_root_.hydra.runtime.choices) if "hydra" in _root_ else {}
        task = OmegaConf.masked_copy(_root_, [key for key in _root_ if key != "hydra"])
        page = command_help(config_name, about, SCHEMAS[config_name], task, config_dir(),
                            choices)
        # Hydra fills the template with string.Template: `$` is its own
        return page.replace("$", "$$") + "\n\nHydra's options (--hydra-help: more):\n$FLAGS_HELP"

    OmegaConf.register_new_resolver(HELP_RESOLVER, render, replace=True)


def command_line(argv: Sequence[str]) -> str:
    """The command that started this process, to record beside what it wrote: `centernet
    benchmark suite --quick` (`argv[0]` as `centernet.commands` sets it) or `python
    scripts/benchmark.py suite --quick`."""
    program = f"python {argv[0]}" if argv[0].endswith(".py") else argv[0]
    return " ".join([program, *map(shlex.quote, argv[1:])])


def run_command(command: Callable[[], T], exit_on_user_error: bool = True) -> T:
    """Run `command`; on a config, data, checkpoint or non-finite-loss error print
    `error: <message>` to stderr and exit with status 2 (or, without `exit_on_user_error`,
    raise it on after printing: a sweep's trial fails alone)."""
    try:
        return command()
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        if not exit_on_user_error:
            raise
        sys.exit(EXIT_USER_ERROR)


class _LineCopy:
    """A text stream that writes through to `stream` and copies each finished line to `log`;
    a write that holds a carriage return (a progress bar redrawing itself) stays on the
    terminal only. Everything else (`isatty`, `fileno`, `encoding`) is `stream`'s."""

    def __init__(self, stream, log) -> None:
        self._stream, self._log, self._pending = stream, log, ""

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        # A logging handler made inside the block may keep this stream after the log closed
        # (a sweep's next trial): it then writes through only.
        if "\r" not in text and not self._log.closed:
            *lines, self._pending = (self._pending + text).split("\n")
            if lines:
                self._log.write("".join(line + "\n" for line in lines))
                self._log.flush()
        return written

    def close(self) -> None:
        """Flush only: the stream is the process's, not this copy's (a library that closes
        the `sys.stderr` it was given must not close the real one)."""
        self._stream.flush()

    def finish(self) -> None:
        """Copy an unfinished last line too."""
        if self._pending and not self._log.closed:
            self._log.write(self._pending + "\n")
            self._pending = ""

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def output_copied_to(path: Path) -> Iterator[None]:
    """Within the block, everything printed to stdout and stderr (choices, evaluations,
    warnings, errors; the progress bar aside) is also appended to `path` (a run's
    `train.log`, where Hydra's file handler appends Python `logging` records too)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        streams = sys.stdout, sys.stderr
        copies = _LineCopy(sys.stdout, log), _LineCopy(sys.stderr, log)
        sys.stdout, sys.stderr = copies
        try:
            yield
        finally:
            sys.stdout, sys.stderr = streams
            for copy in copies:
                copy.finish()


def pop_verbose(argv: List[str]) -> bool:
    """Remove `verbose=BOOL` (or `+verbose=BOOL`) from `argv[1:]`; the last one wins."""
    verbose = False
    for arg in list(argv[1:]):
        key, sep, value = arg.partition("=")
        if not sep or key.lstrip("+") != VERBOSE_KEY:
            continue
        if value.lower() not in _TRUE + _FALSE:
            print(f"error: {arg} is invalid: use verbose=true or verbose=false", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        verbose = value.lower() in _TRUE
        argv.remove(arg)
    return verbose


def filter_native_log(text: str, min_level: int) -> str:
    """`text` without the native log lines of severity below `min_level` (0 INFO, 1 WARNING,
    2 ERROR, 3 FATAL) and, when `min_level` >= 1, absl's preamble. Every other line is kept,
    also the rare second line of a dropped message: it cannot be told from other output."""
    kept = []
    for line in text.splitlines(keepends=True):
        match = NATIVE_LOG_LINE.match(line)
        if match and SEVERITY[match.group(1)] < min_level:
            continue
        if line.startswith(ABSL_PREAMBLE) and min_level >= 1:
            continue
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def quiet_native_stderr(min_level: int) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file inside the block, then write what was
    captured to stderr through `filter_native_log`. A crash inside the block still reports
    to the real stderr (faulthandler), though the captured lines are lost with the process."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = os.dup(2)
    was_enabled = faulthandler.is_enabled()
    failed = False
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        if not was_enabled:  # an enabled handler (e.g. pytest's) writes to its own file
            faulthandler.enable(file=saved)
        try:
            yield
        except BaseException:
            failed = True  # then every captured line may explain it: keep them all
            raise
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            if not was_enabled:
                faulthandler.disable()
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            text = text if failed else filter_native_log(text, min_level)
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


@contextlib.contextmanager
def hidden_warnings() -> Iterator[None]:
    """Python warnings raised inside the block are not shown (filters set in it are kept, and
    warnings turned into errors still raise)."""
    show = warnings.showwarning
    warnings.showwarning = lambda *args, **kwargs: None
    try:
        yield
    finally:
        warnings.showwarning = show


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's `exec_module` inside the quiet start, then steps aside."""

    def __init__(self, loader, finder: "QuietImportFinder"):
        self._loader = loader
        self._finder = finder

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._finder.run_quietly(lambda: self._loader.exec_module(module))


class QuietImportFinder(importlib.abc.MetaPathFinder):
    """A `sys.meta_path` entry that runs the first import of each of `modules` quietly
    (module docstring): native log lines below `min_level` (0: all kept) are dropped,
    Python warnings hidden when `hide_warnings`, and with `probe_devices` TensorFlow looks for
    GPUs before the quiet part ends, so that its `cuInit` line is dropped too."""

    def __init__(self, min_level: int, hide_warnings: bool, probe_devices: bool,
                 modules: Sequence[str] = QUIET_MODULES):
        self.min_level = min_level
        self.hide_warnings = hide_warnings
        self.probe_devices = probe_devices
        self.modules = tuple(modules)
        self._active = False

    def find_spec(self, name, path=None, target=None):
        if self._active or name not in self.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                    return spec
                spec.loader = _QuietLoader(spec.loader, self)
                return spec
        return None

    def run_quietly(self, load: Callable[[], None]) -> None:
        self._active = True
        try:
            with contextlib.ExitStack() as stack:
                if self.min_level:
                    stack.enter_context(quiet_native_stderr(self.min_level))
                if self.hide_warnings:
                    stack.enter_context(hidden_warnings())
                load()
                if self.probe_devices and "tensorflow" in sys.modules:
                    with contextlib.suppress(Exception):
                        sys.modules["tensorflow"].config.list_physical_devices("GPU")
        finally:
            self._active = False


def _native_level(value: str) -> int:
    try:
        return min(max(int(value), 0), 3)
    except ValueError:
        return 0


def configure_quiet_start(argv: List[str]) -> bool:
    """Read `verbose=` from `argv` (removing it), set up the quiet start unless verbose, and
    return whether verbose. A command's `main` calls it first, before TensorFlow is imported."""
    verbose = pop_verbose(argv)
    if not verbose:
        logging.getLogger("absl").setLevel(logging.WARNING)  # TFDS reports every dataset it opens
        logging.getLogger("tensorflow").setLevel(logging.WARNING)  # "Assets written to: ..."
    user_level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    if os.environ.get(QUIET_MARKER) == user_level:
        user_level = None  # set by this module in a parent process, not by the user
    if user_level is not None:
        finder = QuietImportFinder(_native_level(user_level), not verbose, probe_devices=False)
    elif verbose:
        return True
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LOG_LEVEL
        os.environ[QUIET_MARKER] = QUIET_LOG_LEVEL  # child processes know it is ours
        finder = QuietImportFinder(3, hide_warnings=True, probe_devices=True)
    if not any(name in sys.modules for name in QUIET_MODULES) and not any(
            isinstance(entry, QuietImportFinder) for entry in sys.meta_path):
        sys.meta_path.insert(0, finder)
    return verbose
