"""Audit a run's training labels: `centernet audit-labels run_dir=DIR [audit.folds=K]` (or
`python scripts/audit_labels.py ...`).

Trains `audit.folds` short runs of DIR's own configuration (each on the other folds, for
`audit.time_budget / audit.folds`), predicts each held-out fold, scores every label and image
with cleanlab's object-detection module and writes DIR/audit/label_issues.json (findings
ranked, most likely an error first) and DIR/audit/pictures/ (the top findings drawn). The
dataset folder is only read. Run it again to resume an interrupted audit. Other `key=value`
overrides change the run's configuration for the fold runs (e.g. `dataset.root=COPY`).
"""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from centernet.cli import hydra_command, run_command
from centernet.config import SCRIPT_KEYS, AuditSettings
from centernet.engine.runs import load_run_config
from centernet.errors import CheckpointError


@hydra_command("audit_labels")
def main(cfg: DictConfig) -> None:
    def audit() -> None:
        if not cfg.run_dir:
            raise CheckpointError("pass run_dir=DIR (a training run)")
        run_dir = Path(cfg.run_dir)
        run = load_run_config(run_dir, cfg, HydraConfig.get().overrides.task, SCRIPT_KEYS)
        settings = AuditSettings(**OmegaConf.to_container(cfg.audit))
        from centernet.audit import audit_run

        print(f"wrote {audit_run(run, run_dir, settings)}")

    run_command(audit)

