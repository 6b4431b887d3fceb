"""The stages' import contracts (pyproject.toml, `[tool.importlinter]`; docs/architecture.md,
Stages) checked by import-linter's own `lint-imports`, as CI runs it through `make test`; and a
copy of the package with one import against the order, which the same command must reject."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on `root`'s pyproject.toml, with `root`'s `centernet` imported first."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo",
                           str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Stages: a module imports only from the stages before its own KEPT" in result.stdout
    assert "0 broken" in result.stdout


def copy_package(destination: Path) -> Path:
    shutil.copytree(ROOT / "centernet", destination / "centernet",
                    ignore=shutil.ignore_patterns("__pycache__", "*.cc"))
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination / "centernet"


def test_an_import_against_the_order_breaks_the_stages_contract(tmp_path):
    """The loop importing evaluation (an earlier stage importing a later one), even inside a
    function, fails the check and names the import."""
    package = copy_package(tmp_path)
    step = package / "engine" / "step.py"
    step.write_text(step.read_text() + "\n\ndef _later():\n"
                    "    from centernet.evaluation import decode  # noqa: F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "Stages: a module imports only from the stages before its own BROKEN" in result.stdout
    assert "centernet.engine.step -> centernet.evaluation.decode" in result.stdout


def test_tensorflow_in_the_config_breaks_the_ground_contract(tmp_path):
    package = copy_package(tmp_path)
    config = package / "config" / "train.py"
    config.write_text(config.read_text() + "\nimport tensorflow  # noqa: E402,F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "import no TensorFlow" in result.stdout and "BROKEN" in result.stdout
