"""The time-to-accuracy report: curves read from runs' logs, the first evaluation reaching each
threshold, the table and the figure; and the whole command on two real (tiny) runs."""

import json

import pytest

from centernet.study import time_to_accuracy as tta
from conftest import run_script


def write_run(run_dir, evals):
    run_dir.mkdir(parents=True)
    lines = [{"step": 5, "kind": "train", "loss": 3.0}]
    lines += [{"step": step, "kind": "eval", "AP": ap, "AP50": ap50, "train_seconds": seconds,
               "images_seen": step * 8} for step, seconds, ap, ap50 in evals]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_report_reads_curves_and_finds_the_first_evaluation_over_each_threshold(tmp_path):
    write_run(tmp_path / "a", [(100, 60.0, 0.30, 0.55), (200, 118.5, 0.52, 0.91),
                               (300, 170.0, 0.71, 0.96)])
    write_run(tmp_path / "b", [(100, 50.0, 0.10, 0.20), (200, 99.0, 0.20, 0.45)])
    a, b = tta.read_curve("a", tmp_path / "a"), tta.read_curve("b", tmp_path / "b", 321.0)
    assert [p.step for p in a.points] == [100, 200, 300]
    assert a.first_reaching("AP50", 0.9).train_seconds == 118.5
    assert a.first_reaching("AP", 0.7).images_seen == 2400
    assert b.first_reaching("AP50", 0.5) is None
    table, data, figure = tta.write_report([a, b], tmp_path / "report", "cmd", "a CPU")
    text = table.read_text()
    assert "| a | 300 | 2,400 | 170 | - | 0.710 | 0.960 |" in text
    assert "| 118 s, 1,600 images |" in text  # a's first AP50 >= 0.9 (118.5 s rounds to 118)
    assert "| b | 200 | 1,600 | 99 | 321 | 0.200 | 0.450 | not reached |" in text
    assert json.loads(data.read_text())["runs"][1]["wall_seconds"] == 321.0
    assert figure.stat().st_size > 10_000


def test_a_run_without_timed_evaluations_is_named(tmp_path):
    write_run(tmp_path / "old", [])
    with pytest.raises(ValueError, match="old: no evaluation with train_seconds"):
        tta.read_curve("old", tmp_path / "old")


def test_command_refuses_to_train_into_an_earlier_run_and_changes_nothing(tmp_path):
    earlier = tmp_path / "tta" / "runs" / "ttfnet"
    write_run(earlier, [(100, 60.0, 0.30, 0.55)])
    before = (earlier / "metrics.jsonl").read_text()
    finished = run_script("benchmark.py", "time-to-accuracy", "--out", str(tmp_path / "tta"))
    assert finished.returncode != 0
    assert f"{earlier} already hold a run" in finished.stderr
    assert not (tmp_path / "tta" / "runs" / "centernet").exists()
    assert (earlier / "metrics.jsonl").read_text() == before
    tta.check_runs_are_new(["ttfnet"], tmp_path / "elsewhere")  # a new folder is fine


@pytest.mark.slow
def test_time_to_accuracy_command_trains_both_recipes_and_reports(tmp_path, smoke_overrides):
    out = tmp_path / "tta"
    finished = run_script("benchmark.py", "time-to-accuracy", "--out", str(out),
                          *smoke_overrides, "train.max_steps=10", "train.eval_every=5",
                          "train.checkpoint_every=10")
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads((out / "time_to_accuracy.json").read_text())
    assert [run["name"] for run in report["runs"]] == ["centernet", "ttfnet"]
    for run in report["runs"]:
        assert [p["step"] for p in run["points"]] == [5, 10]
        assert [p["images_seen"] for p in run["points"]] == [40, 80]
        seconds = [p["train_seconds"] for p in run["points"]]
        assert 0 < seconds[0] < seconds[1] < run["wall_seconds"]
    assert (out / "time_to_accuracy.png").stat().st_size > 10_000
    assert "| ttfnet | 10 | 80 |" in (out / "time_to_accuracy.md").read_text()
