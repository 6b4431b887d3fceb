"""A training run's whole config (`RunConfig`, what `configs/train.yaml` composes), its decoding and
evaluation sections, and `validate`, which turns a composed config into it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterable, List, Optional

from omegaconf import DictConfig, OmegaConf

from centernet.config.checks import at_least, choice, in_range
from centernet.config.data import AugmentConfig, DatasetConfig, TargetsConfig
from centernet.config.model import LossConfig, ModelConfig
from centernet.config.train import (DistributeConfig, OptimizerConfig, PrecisionConfig,
                                    ScheduleConfig, TrainConfig)
from centernet.errors import ConfigError


@dataclass(frozen=True)
class Decoding:
    """How network outputs become detections, wherever the network runs (evaluation,
    `predict.py`, the SavedModel, the LiteRT and ONNX files' sidecars):

    - `k`: detections per image (top K over all classes and positions);
    - `flip_test`: average each image's heatmap and sizes with its mirror's;
    - `cross_class_iou`: when set, a detection whose box overlaps a higher-scoring detection
      of another class by IoU above it has its score multiplied by `cross_class_decay`
      (`centernet.evaluation.decode.decay_cross_class_twins`); None: off, as the original.
    """

    # detections per image (top k over all classes and cells)
    k: int = 100
    # average each image's heatmap and sizes with its mirror's
    flip_test: bool = False
    # decay a detection overlapping a higher-scoring one of another class beyond this IoU; null: off
    cross_class_iou: Optional[float] = None
    # the factor such a detection's score is multiplied by
    cross_class_decay: float = 0.3


DECODING_KEYS = tuple(item.name for item in fields(Decoding))


@dataclass
class EvalConfig:
    """Decoding (`Decoding`'s keys) and COCO evaluation (during training and in
    `scripts/evaluate.py`)."""

    k: int = Decoding.k  # Decoding's keys, defaults and descriptions
    flip_test: bool = Decoding.flip_test
    cross_class_iou: Optional[float] = Decoding.cross_class_iou
    cross_class_decay: float = Decoding.cross_class_decay
    # images per evaluation batch
    batch_size: int = 16
    # detections scoring below it are not evaluated
    score_threshold: float = 0.0
    # also report Pascal VOC AP50 (07 and 2010+)
    voc_metrics: bool = False

    def __post_init__(self) -> None:
        at_least("eval.k", self.k, 1)
        if self.cross_class_iou is not None:
            in_range("eval.cross_class_iou", self.cross_class_iou, 0.0, 1.0)
        in_range("eval.cross_class_decay", self.cross_class_decay, 0.0, 1.0)
        at_least("eval.batch_size", self.batch_size, 1)
        in_range("eval.score_threshold", self.score_threshold, 0.0, 1.0)

    @property
    def decoding(self) -> Decoding:
        return Decoding(self.k, self.flip_test, self.cross_class_iou, self.cross_class_decay)


@dataclass
class ExportOptions:
    """The exported LiteRT file. How `scripts/export.py` writes it (and `benchmark.py export`
    measures it): `precision` `float32`, `float16` (float16 weights) or `int8` (full-integer
    quantisation, calibrated on the first `calibration_images` letterboxed images of the
    training split)."""

    # the LiteRT file's precision: float32, float16 (weights) or int8 (calibrated)
    precision: str = "float32"
    # int8: training images the quantisation is calibrated on
    calibration_images: int = 200

    def __post_init__(self) -> None:
        choice("export.precision", self.precision, ("float32", "float16", "int8"))
        at_least("export.calibration_images", self.calibration_images, 1)


@dataclass
class RunConfig:
    """Everything `scripts/train.py` composes (`configs/train.yaml`)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportOptions = field(default_factory=ExportOptions)


def override_keys(overrides: Iterable[str]) -> List[str]:
    """The key (or config group) each command-line override sets (`key=value`, `+key=value`,
    `~key`, `group@package=option`), read by Hydra's own override parser: the one place the
    project takes an override apart.

    Raises:
        ConfigError: an override Hydra cannot parse (its message says where).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as error:
        raise ConfigError(str(error)) from None
    return [override.key_or_group for override in parsed]


def validate(cfg: DictConfig | RunConfig) -> RunConfig:
    """Check every value of a composed config; return it as typed dataclasses.

    Raises:
        ConfigError: naming the first key whose value is out of range and the allowed values.
    """
    if isinstance(cfg, RunConfig):
        cfg = OmegaConf.structured(cfg)
    schema = OmegaConf.structured(RunConfig)
    run_keys = {name: cfg[name] for name in schema if name in cfg}
    return OmegaConf.to_object(OmegaConf.merge(schema, run_keys))
