"""Train CenterNet: `python scripts/train.py [group=option ...] [key=value ...]`.

With no arguments it trains ResNet-18 CenterNet on the built-in `shapes` dataset. Run it again
with the same `hydra.run.dir=DIR` to resume from DIR's latest checkpoint. Returns the run's
best validation AP, what a sweeper maximises (`-m hparams_search=optuna`); in a sweep, a trial
that fails on bad input fails alone instead of ending the sweep.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from centernet.cli import run_command
from centernet.config import validate


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    def train() -> dict:
        run = validate(cfg)  # fails on bad values before TensorFlow is imported
        from centernet.engine.training import train as train_run

        return train_run(run, HydraConfig.get().runtime.output_dir)

    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    metrics = run_command(train, exit_on_user_error=not sweeping)
    return metrics.get("best_AP", float("nan"))


if __name__ == "__main__":
    main()
