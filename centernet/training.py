"""Training as the commands run it: the loop (`centernet.engine.training`) with the COCO
evaluation of the validation split (`centernet.evaluation.inference.SplitEvaluator`).

The loop sits in an earlier stage than evaluation and does not import it (docs/architecture.md,
Stages); this module, after both, hands the one to the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from omegaconf import DictConfig

from centernet.config import RunConfig
from centernet.engine import training
from centernet.evaluation.inference import SplitEvaluator


def train(cfg: DictConfig | RunConfig, run_dir: str | Path,
          started_at: Optional[float] = None) -> Dict[str, float]:
    """Train (or resume) a run in `run_dir`, COCO-evaluating the validation split
    (`cfg.dataset.val_split`) every `train.eval_every` steps and at the end; returns the
    run's final metrics (`centernet.engine.training.train`, which says what it raises)."""
    return training.train(cfg, run_dir, SplitEvaluator, started_at)
