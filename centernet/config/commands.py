"""The other commands' schemas (evaluate, predict, export, show-data, audit-labels), each a run's
config plus the command's own keys (`SCRIPT_KEYS`), and their registration with Hydra."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore

from centernet.config.checks import at_least, choice, fail, in_range, parse_duration
from centernet.config.run import RunConfig


@dataclass
class EvaluateConfig(RunConfig):
    """`scripts/evaluate.py`: a run directory and/or a checkpoint; other keys override the
    run's own saved config (e.g. `dataset.val_split=test`, `eval.flip_test=true`)."""

    # the training run (its saved config and checkpoints)
    run_dir: Optional[str] = None
    # a checkpoint prefix or folder; null: the run's best, else its latest
    checkpoint: Optional[str] = None


@dataclass
class PredictConfig(EvaluateConfig):
    """`scripts/predict.py`: draw detections on an image, a folder of images or a video."""

    # an image, a folder of images or a video
    input: Optional[str] = None
    # where the drawn pictures go; null: predictions/ in the run folder (or beside the file)
    output: Optional[str] = None
    # detections drawn from this score; null: the run report's best-F1 threshold, or 0.3
    score_threshold: Optional[float] = None
    # also draw the heatmap
    heatmap: bool = False
    # checkpoint, litert or onnx (an exported file, model_file=)
    format: str = "checkpoint"
    # the exported .tflite or .onnx file (format=litert or onnx)
    model_file: Optional[str] = None

    def __post_init__(self) -> None:
        if self.score_threshold is not None:
            in_range("score_threshold", self.score_threshold, 0.0, 1.0)
        choice("format", self.format, ("checkpoint", "litert", "onnx"))
        if self.model_file and self.format == "checkpoint":
            fail("format", self.format, "model_file= runs an exported file: pass "
                  "format=litert or format=onnx with it")


@dataclass
class AuditSettings:
    """The label audit (`scripts/audit_labels.py`, `centernet/audit/`). `folds` short runs of
    the run's own configuration, each trained on the other folds of its training split for
    `time_budget / folds` (or `max_steps` steps each, when set) and evaluated once on its own
    fold, give every image out-of-sample detections for cleanlab to score. `top`: pictures of
    that many findings. `confident_score`: the detector score that counts as confident
    (cleanlab's 0.95); null: the best-F1 threshold of the held-out detections. `seed`: the
    fold assignment's."""

    # folds of the training split, one short run each
    folds: int = 3
    # all the folds' runs together (each gets its share)
    time_budget: str = "30m"
    # steps of each fold's run instead of the time budget
    max_steps: Optional[int] = None
    # pictures of that many findings
    top: int = 24
    # a confident detection's score; null: the held-out detections' best-F1 threshold
    confident_score: Optional[float] = None
    # the fold assignment's seed
    seed: int = 0

    def __post_init__(self) -> None:
        at_least("audit.folds", self.folds, 2)
        at_least("audit.top", self.top, 0)
        if self.max_steps is not None:
            at_least("audit.max_steps", self.max_steps, 1)
        else:
            try:
                seconds = parse_duration(self.time_budget)
            except ValueError as error:
                fail("audit.time_budget", self.time_budget, str(error))
            if seconds / self.folds < 10:
                fail("audit.time_budget", self.time_budget,
                      f"gives each of the {self.folds} folds under 10s")
        if self.confident_score is not None:
            in_range("audit.confident_score", self.confident_score, 0.0, 1.0)

    @property
    def fold_budget(self) -> str:
        """Each fold's time budget, in seconds (`"600s"`)."""
        return f"{parse_duration(self.time_budget) / self.folds:.0f}s"


@dataclass
class AuditConfig(EvaluateConfig):
    """`scripts/audit_labels.py`: a run directory; `audit.*` the audit's settings; other keys
    override the run's own saved config for the fold runs."""

    # the audit's settings (audit.*)
    audit: AuditSettings = field(default_factory=AuditSettings)


@dataclass
class ExportConfig(EvaluateConfig):
    """`scripts/export.py`: write the detector as a SavedModel (letterboxing and decoding
    inside), a LiteRT file (`export.precision`) or an ONNX file."""

    # the file or folder written; null: in the run folder
    output: Optional[str] = None
    # saved_model, litert or onnx
    format: str = "saved_model"

    def __post_init__(self) -> None:
        choice("format", self.format, ("saved_model", "litert", "onnx"))


@dataclass
class ShowDataConfig(RunConfig):
    """`scripts/show_data.py`: a grid of training-pipeline images with their targets."""

    # training-pipeline images drawn
    num_images: int = 16
    # the grid's columns
    columns: int = 4
    # the picture written
    output: str = "data_preview.png"

    def __post_init__(self) -> None:
        at_least("num_images", self.num_images, 1)
        at_least("columns", self.columns, 1)


SCRIPT_KEYS = ("run_dir", "checkpoint", "input", "output", "score_threshold", "heatmap", "format",
               "model_file", "audit")


# each command's config (`configs/<name>.yaml`) -> its schema, stored as `<name>_schema`
SCHEMAS = {"train": RunConfig, "evaluate": EvaluateConfig, "predict": PredictConfig,
           "export": ExportConfig, "show_data": ShowDataConfig, "audit_labels": AuditConfig}


def register_configs() -> None:
    """Store the schemas so YAML files can name them in their defaults lists."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)
