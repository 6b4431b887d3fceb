"""Train CenterNet: `centernet train [group=option ...] [key=value ...]` (or `python
scripts/train.py ...`).

With no arguments it trains ResNet-18 CenterNet on the built-in `shapes` dataset; at the end it
writes the report of its best validation evaluation (`RUN/report/<split>/index.html`). Run it again
with the same `hydra.run.dir=DIR` to resume from DIR's latest checkpoint. What it prints (the
progress bar aside) is also appended to DIR/train.log. Returns the run's best validation AP, what a
sweeper maximises (`-m hparams_search=optuna`); in a sweep, a trial that fails on bad input fails
alone instead of ending the sweep.
"""

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from centernet.cli import hydra_command, output_copied_to, run_command
from centernet.config import validate


@hydra_command("train")
def main(cfg: DictConfig) -> float:
    def train() -> dict:
        run = validate(cfg)  # fails on bad values before TensorFlow is imported
        from centernet.engine.hardware import float16_without_onednn

        onednn_note = float16_without_onednn(run.precision.policy)  # never auto's pick
        if onednn_note:
            print(onednn_note, file=sys.stderr)
        from centernet.training import train as train_run

        run_dir = HydraConfig.get().runtime.output_dir
        metrics = train_run(run, run_dir)
        if metrics.get("best_AP") == metrics.get("best_AP"):  # it evaluated (the chief)
            from centernet.report import write_run_report

            index = write_run_report(run_dir)
            if index is not None:
                print(f"report: {index}")
        return metrics

    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    with output_copied_to(Path(HydraConfig.get().runtime.output_dir) / "train.log"):
        metrics = run_command(train, exit_on_user_error=not sweeping)
    return metrics.get("best_AP", float("nan"))
