"""The scripts start quietly: no TensorFlow native log lines, no TFDS "Downloading and
preparing", no import-time Python warnings; `verbose=true` or a user's TF_CPP_MIN_LOG_LEVEL
brings TensorFlow's own logging back; genuine errors still show. The quiet start is the
commands' `main` (`configure_quiet_start`): importing a module changes nothing."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import warnings

import pytest

from centernet.cli import (QuietImportFinder, filter_native_log, pop_verbose,
                           quiet_native_stderr)
from conftest import ROOT

NOISE = re.compile(r"^[IWEF]\d{4} |cuInit|absl::InitializeLog|oneDNN|Downloading and preparing",
                   re.MULTILINE)
PREAMBLE = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR\n")
INFO = ("I0000 00:00:1795869514.115291    7238 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1795869514.115686    7238 cudart_stub.cc:31] Could not find cuda drivers "
        "on your machine, GPU will not be used.\n")
ERROR = ("E0000 00:00:1795869517.970305    7238 cuda_platform.cc:52] failed call to cuInit: "
         "INTERNAL: CUDA error\n")
FATAL = "F0000 00:00:1795869517.970305    7238 cpu_feature_guard.cc:1] no AVX on this CPU\n"


def test_native_log_lines_below_the_level_are_dropped_and_nothing_else():
    text = PREAMBLE + INFO + "a line of our own\n" + ERROR + FATAL + "another\n"
    assert filter_native_log(text, 3) == "a line of our own\n" + FATAL + "another\n"
    assert filter_native_log(text, 2) == "a line of our own\n" + ERROR + FATAL + "another\n"
    assert filter_native_log(text, 0) == text


def test_verbose_is_taken_off_the_command_line():
    argv = ["train.py", "experiment=smoke", "verbose=true", "train.max_steps=2"]
    assert pop_verbose(argv) is True
    assert argv == ["train.py", "experiment=smoke", "train.max_steps=2"]
    argv = ["train.py", "+verbose=False", "model.verbose_name=x"]
    assert pop_verbose(argv) is False
    assert argv == ["train.py", "model.verbose_name=x"]
    assert pop_verbose(["evaluate.py", "run_dir=x"]) is False


def test_captured_stderr_comes_back_filtered(capfd):
    with quiet_native_stderr(3):
        os.write(2, (PREAMBLE + INFO + "kept\n" + ERROR + FATAL).encode())
        os.write(2, b"more\n")
    assert capfd.readouterr().err == "kept\n" + FATAL + "more\n"


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Two importable modules that log like TensorFlow while loading; one then fails."""
    noise = (PREAMBLE + INFO + "kept line\n").encode()
    body = (f"import os, warnings\nos.write(2, {noise!r})\n"
            "warnings.warn('nothing a user can do about this')\n")
    (tmp_path / "noisy_lib.py").write_text(body + "VALUE = 1\n")
    (tmp_path / "broken_lib.py").write_text(body + "raise RuntimeError('genuine failure')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    finder = QuietImportFinder(3, hide_warnings=True, probe_devices=False,
                               modules=("noisy_lib", "broken_lib"))
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    yield
    for name in ("noisy_lib", "broken_lib"):
        sys.modules.pop(name, None)


def test_first_import_is_quiet_but_a_failing_one_keeps_its_output(fake_packages, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module("noisy_lib")
        with pytest.raises(RuntimeError, match="genuine failure"):
            importlib.import_module("broken_lib")
    assert module.VALUE == 1
    assert type(module.__loader__).__name__ == "SourceFileLoader"  # the wrapper stepped aside
    assert caught == []
    # The quiet import drops the noise; the failed one keeps every line, which may explain it.
    assert capfd.readouterr().err == "kept line\n" + PREAMBLE + INFO + "kept line\n"


def run_quietly(script: str, *args: str, env_extra: dict | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `scripts/<script>` as a user would: no TF_CPP_MIN_LOG_LEVEL in the environment."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(ROOT))


QUIET_START = "import sys, centernet.cli; centernet.cli.configure_quiet_start(sys.argv); "


def test_importing_the_package_and_its_commands_changes_nothing():
    """No quiet start, no `verbose=` taken off the command line, no TensorFlow: that is each
    command's `main`."""
    code = ("import importlib, os, sys; sys.argv[1:] = ['verbose=true', 'a=1']; "
            "import centernet.__main__, centernet.cli; from centernet.commands import COMMANDS; "
            "[importlib.import_module('centernet.commands.' + m) for m, _ in COMMANDS.values()]; "
            "print(sys.argv[1:], [type(f).__name__ for f in sys.meta_path "
            "if type(f).__name__ == 'QuietImportFinder'], os.environ.get('TF_CPP_MIN_LOG_LEVEL'),"
            " 'tensorflow' in sys.modules)")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120, cwd=str(ROOT))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['verbose=true', 'a=1'] [] None False"


def test_environment_is_set_before_tensorflow_loads():
    code = ("import os, sys; sys.argv[1:] = {argv!r}; import centernet.cli as cli; "
            "verbose = cli.configure_quiet_start(sys.argv); "
            "print(verbose, sys.argv[1:], os.environ.get('TF_CPP_MIN_LOG_LEVEL'))")

    def start(argv, **env_extra):
        env = {key: value for key, value in os.environ.items()
               if key != "TF_CPP_MIN_LOG_LEVEL"}
        result = subprocess.run([sys.executable, "-c", code.format(argv=argv)],
                                capture_output=True, text=True, env={**env, **env_extra},
                                timeout=120, cwd=str(ROOT))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert start(["a=1"]) == "False ['a=1'] 2"
    assert start(["verbose=true", "a=1"]) == "True ['a=1'] None"
    assert start(["a=1"], TF_CPP_MIN_LOG_LEVEL="0") == "False ['a=1'] 0"


def test_a_child_of_a_quiet_process_starts_quietly_too():
    """A parent's quiet start leaves TF_CPP_MIN_LOG_LEVEL=2 and its marker in the environment
    a child inherits; the child must not take that for the user's own level (which would skip
    the quiet import and let `cuInit` and the loading lines through)."""
    parent = subprocess.run(
        [sys.executable, "-c", QUIET_START + "import os; print(os.environ['TF_CPP_MIN_LOG_LEVEL'],"
         " os.environ['CENTERNET_QUIET_LOG_LEVEL'])"], capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}, timeout=120,
        cwd=str(ROOT))
    level, marker = parent.stdout.split()
    code = QUIET_START + "import tensorflow as tf; tf.config.list_physical_devices('GPU')"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": level,
                                "CENTERNET_QUIET_LOG_LEVEL": marker},
                           timeout=300, cwd=str(ROOT))
    assert child.returncode == 0, child.stderr
    assert not NOISE.search(child.stdout + child.stderr), child.stderr


@pytest.mark.slow
def test_train_and_evaluate_start_quietly(tmp_path):
    run_dir = tmp_path / "run"
    train = run_quietly("train.py", "experiment=smoke", f"dataset.data_dir={tmp_path / 'tfds'}",
                        "train.max_steps=2", "train.eval_every=0", "train.checkpoint_every=2",
                        "train.progress_bar=false", "train.jit_compile=false",
                        f"hydra.run.dir={run_dir}")
    output = train.stdout + train.stderr
    assert train.returncode == 0, output
    assert not NOISE.search(output), output
    assert "preparing the built-in shapes dataset once (80 images" in output

    evaluate = run_quietly("evaluate.py", f"run_dir={run_dir}")
    output = evaluate.stdout + evaluate.stderr
    assert evaluate.returncode == 0, output
    assert not NOISE.search(output), output
    assert "AP50" in output

    # verbose=true is accepted (not a Hydra key) and lets TensorFlow log as it likes.
    verbose = run_quietly("evaluate.py", f"run_dir={run_dir}", "verbose=true")
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "AP50" in verbose.stdout


@pytest.mark.slow
def test_a_bug_still_shows_its_traceback():
    code = QUIET_START + "import tensorflow as tf; tf.zeros(1); raise RuntimeError('a genuine bug')"
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300, cwd=str(ROOT))
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: a genuine bug" in result.stderr
    assert not NOISE.search(result.stdout + result.stderr), result.stderr


ALLOCATOR_PROBE = """
import centernet, tensorflow as tf
from tensorflow.python.util import _pywrap_util_port
x = tf.zeros([256, 256]) + 1
try:
    print("pooled", tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0)
except ValueError:
    print("system")
print("onednn" if _pywrap_util_port.IsMklEnabled() else "eigen")
"""


@pytest.mark.parametrize("user_setting, expected", [(None, "pooled"), ("false", "system"),
                                                    ("true", "pooled")])
def test_importing_the_package_selects_the_pooled_cpu_allocator(user_setting, expected):
    # TensorFlow reports memory statistics for CPU:0 only from its BFC (pooled) allocator,
    # so the probe tells which allocator the process really got; a user's own setting wins,
    # except where TensorFlow runs oneDNN (its default on CPUs with AVX-512 VNNI, BF16 or AMX):
    # its oneDNN CPU allocator pools whatever TF_CPU_ALLOCATOR_USE_BFC says.
    env = {key: value for key, value in os.environ.items()
           if key != "TF_CPU_ALLOCATOR_USE_BFC"}
    if user_setting is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = user_setting
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    allocator, kernels = done.stdout.split()[0], done.stdout.split()[-1]
    assert allocator == ("pooled" if kernels == "onednn" else expected), done.stdout
