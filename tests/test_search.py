"""Hyperparameter search on Hydra's Optuna sweeper: two tiny trials write their study to an
SQLite file, each trial's value is its run's best validation AP, the best trial's run
directory holds that AP, and the same command again goes on with the same study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import run_script


def _sweep(tfds_dir: Path, tmp_path: Path, trials: int, stamp: str):
    return run_script(
        "train.py", "-m", "hparams_search=optuna", "experiment=smoke",
        f"dataset.data_dir={tfds_dir}", "train.time_budget=null", "train.max_steps=6",
        "train.eval_every=0", "train.progress_bar=false", "model.input_size=64",
        "loss.giou_weight=5.0",  # fixed: taken out of the search
        f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.storage=sqlite:///{tmp_path}/study.db",
        f"hydra.sweep.dir={tmp_path}/sweep-{stamp}", timeout=1200)


@pytest.mark.slow
def test_two_trials_then_the_study_goes_on(tfds_dir, tmp_path):
    result = _sweep(tfds_dir, tmp_path, 2, "a")
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="centernet", storage=f"sqlite:///{tmp_path}/study.db")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    searched = set(complete[0].params)
    assert {"train.lr", "augment.max_scale", "loss.heatmap_weight"} <= searched
    assert not {"model.input_size", "loss.giou_weight"} & searched  # fixed on the command line
    assert all(1e-3 <= t.params["train.lr"] <= 2e-2 for t in complete)

    sweep = tmp_path / "sweep-a"
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == study.best_value
    # Each trial's value is its run's best checkpoint's AP; the best trial's directory holds it.
    for trial in complete:
        run_dir = sweep / str(trial.number)
        best = json.loads((run_dir / "checkpoints" / "best" / "best.json").read_text())
        assert best["metrics"]["AP"] == pytest.approx(trial.value, abs=1e-12)
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        assert f"train.lr={trial.params['train.lr']}" in overrides
    assert (sweep / str(study.best_trial.number) / "checkpoints" / "best").is_dir()

    again = _sweep(tfds_dir, tmp_path, 1, "b")  # e.g. after the first was killed
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="centernet", storage=f"sqlite:///{tmp_path}/study.db")
    assert len(study.trials) == 3
