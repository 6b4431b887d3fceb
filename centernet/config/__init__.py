"""Structured configs: every key's type, default and allowed range, checked before any TF work.

The YAML files under `configs/` fill these dataclasses through Hydra's ConfigStore (`train_schema`
is the first entry of `configs/train.yaml`'s defaults list), so a wrong *type* fails while Hydra
merges the override (OmegaConf names the key), and a wrong *value* fails in `validate`, whose
`__post_init__` checks raise `ConfigError` with the full key and the allowed values, e.g.

    model.input_size=100 is invalid: must be a multiple of 32 and at least 64 (e.g. 128, 256, 512)

The schema is the one place each key's default is set (docs/configuration.md, Layers); presets
under `configs/` set only what they change. Its sections by stage: `data` (dataset, targets,
augment), `model` (model, loss), `train` (optimizer, schedule, precision, distribute, train),
`run` (eval, export, `RunConfig`, `validate`, `override_keys`), `commands` (the other commands'
schemas); `checks` holds the range checks; `help` writes a command's `--help` from these
docstrings. This package imports no TensorFlow, so validation costs nothing.
"""

from centernet.config.checks import parse_duration
from centernet.config.commands import (SCRIPT_KEYS, AuditConfig, AuditSettings, EvaluateConfig,
                                       ExportConfig, PredictConfig, ShowDataConfig,
                                       register_configs)
from centernet.config.data import AugmentConfig, DatasetConfig, TargetsConfig
from centernet.config.model import DOWN_RATIO, PRETRAINED_BACKBONES, LossConfig, ModelConfig
from centernet.config.run import (DECODING_KEYS, Decoding, EvalConfig, ExportOptions, RunConfig,
                                  override_keys, validate)
from centernet.config.train import (DistributeConfig, OptimizerConfig, PrecisionConfig,
                                    ScheduleConfig, TrainConfig)

__all__ = [
    "SCRIPT_KEYS", "AuditConfig", "AuditSettings", "EvaluateConfig", "ExportConfig",
    "PredictConfig", "ShowDataConfig", "register_configs", "AugmentConfig", "DatasetConfig",
    "TargetsConfig", "DOWN_RATIO", "PRETRAINED_BACKBONES", "LossConfig", "ModelConfig",
    "DECODING_KEYS", "Decoding", "EvalConfig", "ExportOptions", "RunConfig", "override_keys",
    "validate", "DistributeConfig", "OptimizerConfig", "PrecisionConfig", "ScheduleConfig",
    "TrainConfig", "parse_duration",
]

register_configs()
