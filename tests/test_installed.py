"""The wheel as a user installs it: built from the repository, installed into a fresh virtual
environment outside it, and run as the `centernet` command from an empty folder.

The new environment sees this one's site-packages through a `.pth` file holding their path, so
TensorFlow and the other dependencies are not installed again; a plain path line does not run
the `.pth` files found there (this environment's editable install of the repository), so the
wheel's own `centernet` is the one imported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from test_commands import MINE
from test_quiet_start import NOISE

# what pyproject.toml builds the wheel from (the `readme`, the packages, `configs/`)
BUILD_INPUTS = ("pyproject.toml", "README.md", "centernet", "configs")
FEW_STEPS = ["train.max_steps=4", "train.eval_every=4", "train.checkpoint_every=4",
             "train.progress_bar=false"]


def run(command, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`command` from `cwd` without this session's PYTHONPATH (which points at the
    repository) and with TensorFlow's start as a user sees it."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    result = subprocess.run([str(part) for part in command], cwd=str(cwd), env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def missing_from(names) -> set:
    """The source files (modules, configs, the native source) not among a wheel's `names`."""
    files = {f"centernet/{p.relative_to(ROOT / 'centernet').as_posix()}"
             for pattern in ("*.py", "*.cc") for p in (ROOT / "centernet").rglob(pattern)}
    files |= {f"centernet/configs/{p.relative_to(ROOT / 'configs').as_posix()}"
              for p in (ROOT / "configs").rglob("*.yaml")}
    return files - set(names)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with the built wheel installed; returns its folder."""
    work = tmp_path_factory.mktemp("installed")
    source, wheels, venv = work / "source", work / "wheels", work / "venv"
    source.mkdir()
    for name in BUILD_INPUTS:  # a copy: building in place would leave build/ in the repository
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels, source],
        cwd=work)
    (wheel,) = wheels.glob("centernet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert not missing_from(archive.namelist()), "add them to pyproject.toml's packages"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet",
         wheel], cwd=work)
    # after the install, so that pip does not take this environment's centernet for the wheel's
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=work).stdout.strip())
    (site / "dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    imported = run([python, "-c", "import centernet; print(centernet.__file__)"], cwd=work)
    assert Path(imported.stdout.strip()).is_relative_to(venv), imported.stdout
    return venv


@pytest.mark.slow
def test_the_installed_command_trains_and_evaluates_from_an_empty_folder(installed, tmp_path):
    command = installed / "bin" / "centernet"
    folder = tmp_path / "empty"
    folder.mkdir()
    tfds = f"dataset.data_dir={tmp_path / 'tfds'}"
    train = run([command, "train", "experiment=smoke", tfds, *FEW_STEPS], cwd=folder)
    assert not NOISE.search(train.stdout + train.stderr), train.stderr
    (run_dir,) = (folder / "outputs" / "train").iterdir()  # where `python scripts/train.py` puts it
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "best").is_dir()
    assert (run_dir / "report" / "validation" / "index.html").is_file()

    evaluate = run([command, "evaluate", f"run_dir={run_dir}"], cwd=folder)
    assert "AP50" in evaluate.stdout
    assert (run_dir / "eval" / "metrics.json").is_file()


@pytest.mark.slow
def test_the_installed_command_takes_a_users_config_dir(installed, tmp_path):
    (tmp_path / "myconf" / "experiment").mkdir(parents=True)
    (tmp_path / "myconf" / "experiment" / "mine.yaml").write_text(MINE)
    composed = run([installed / "bin" / "centernet", "train", "--config-dir", "myconf",
                    "experiment=mine", "--cfg", "job"], cwd=tmp_path)
    assert "max_steps: 3" in composed.stdout and "input_size: 64" in composed.stdout
    listed = run([installed / "bin" / "centernet", "--help"], cwd=tmp_path)
    assert "compare-losses" in listed.stdout
