"""The `centernet` command (`centernet.commands`): its help, its dispatch to the same `main` as
`python scripts/<command>.py`, the configs it composes from and a user's own `--config-dir`.
The installed wheel is tested end to end in test_installed.py."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from centernet.cli import command_line, config_dir, output_copied_to
from centernet.commands import COMMANDS, main
from conftest import ROOT, run_script

MINE = """# @package _global_
defaults:
  - smoke  # the shipped experiment/smoke.yaml
train:
  max_steps: 3
"""


def centernet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`centernet ARGS` as `python -m centernet ARGS` (the console script calls the same
    `main`), run from `cwd`."""
    return subprocess.run([sys.executable, "-m", "centernet", *args], capture_output=True,
                          text=True, timeout=300, cwd=str(cwd))


def test_help_lists_every_command_on_one_line(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()
              if line.startswith("  ")]
    assert listed == list(COMMANDS)
    assert {name.replace("-", "_") for name in COMMANDS} == {
        path.stem for path in (ROOT / "scripts").glob("*.py")}  # a command per script


@pytest.mark.parametrize("argv, message", [([], "usage: centernet COMMAND"),
                                           (["trian"], "unknown command 'trian'")])
def test_a_missing_or_unknown_command_is_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert message in capsys.readouterr().err


def test_the_configs_are_the_repository_root_folder_in_a_checkout():
    assert config_dir() == ROOT / "configs"


def test_the_recorded_command_is_the_one_the_user_typed():
    assert command_line(["centernet compare-losses", "a=1", "b=x y"]) == \
        "centernet compare-losses a=1 'b=x y'"
    assert command_line(["scripts/benchmark.py", "suite", "--quick"]) == \
        "python scripts/benchmark.py suite --quick"


def test_script_and_command_compose_the_same_config_from_any_folder(tmp_path):
    """`--cfg job` prints the composed config without running the job."""
    overrides = ["experiment=smoke", "train.max_steps=7", "--cfg", "job"]
    command = centernet("train", *overrides, cwd=tmp_path)
    script = run_script("train.py", *overrides, cwd=tmp_path)
    assert command.returncode == 0, command.stderr
    assert script.returncode == 0, script.stderr
    assert command.stdout == script.stdout and "max_steps: 7" in command.stdout


def test_a_users_config_dir_adds_experiments_to_the_shipped_ones(tmp_path):
    (tmp_path / "myconf" / "experiment").mkdir(parents=True)
    (tmp_path / "myconf" / "experiment" / "mine.yaml").write_text(MINE)
    composed = centernet("train", "--config-dir", "myconf", "experiment=mine", "--cfg", "job",
                         cwd=tmp_path)
    assert composed.returncode == 0, composed.stderr
    assert "max_steps: 3" in composed.stdout and "input_size: 64" in composed.stdout  # smoke's
    unknown = centernet("train", "experiment=mine", "--cfg", "job", cwd=tmp_path)
    assert unknown.returncode != 0 and "mine" in unknown.stderr


def test_output_copied_to_a_log_keeps_lines_not_bar_redraws_and_never_closes_the_stream(
        tmp_path, monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    log = tmp_path / "train.log"
    with output_copied_to(log):
        print("a choice", file=sys.stderr)
        sys.stderr.write("\r 40%|####      | 4/10")  # a progress bar redrawing itself
        sys.stderr.write("an evaluation, ")
        sys.stderr.write("in two writes\nand an unfinished line")
        leaked = sys.stderr
        leaked.close()  # a library closing the stderr it was given
    assert not terminal.closed
    leaked.write("after the block\n")  # a handler kept the copy: it writes through only
    assert log.read_text() == "a choice\nan evaluation, in two writes\nand an unfinished line\n"
    assert terminal.getvalue().endswith("after the block\n") and "40%" in terminal.getvalue()
