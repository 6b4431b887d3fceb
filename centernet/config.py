"""Structured configs: every key's type, default and allowed range, checked before any TF work.

The YAML files under `configs/` fill these dataclasses through Hydra's ConfigStore (`train_schema`
is the first entry of `configs/train.yaml`'s defaults list), so a wrong *type* fails while Hydra
merges the override (OmegaConf names the key), and a wrong *value* fails in `validate`, whose
`__post_init__` checks raise `ConfigError` with the full key and the allowed values, e.g.

    model.input_size=100 is invalid: must be a multiple of 32 and at least 64 (e.g. 128, 256, 512)

This module imports no TensorFlow, so validation costs nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from centernet.errors import ConfigError

DATASET_SOURCES = ("shapes", "tfds", "voc_xml", "coco_json")
PRETRAINED = ("imagenet",)
# ImageNet weights: keras.applications ships ResNet-50's and MobileNetV2's, KerasHub ResNet-18's
PRETRAINED_BACKBONES = ("resnet18", "resnet50", "mobilenetv2")
BACKBONES = ("resnet18", "resnet50", "mobilenetv2")
NECKS = ("deconv", "shortcut")
TARGET_KINDS = ("centernet", "ttfnet")
LOSS_IMPLS = ("stable", "naive", "clamped", "per_image")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "cosine")
PRECISION_POLICIES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_CHOICES = ("auto", "true", "false")
HEAD_DTYPES = ("float32", "compute")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
NONFINITE_ACTIONS = ("stop", "skip")
DOWN_RATIO = 4


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def _choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        _fail(key, value, "choose one of " + ", ".join(choices))


def _at_least(key: str, value: float, minimum: float) -> None:
    if value < minimum:
        _fail(key, value, f"must be >= {minimum}")


def _in_range(key: str, value: float, low: float, high: float, *, open_low: bool = False) -> None:
    if not (low < value <= high if open_low else low <= value <= high):
        _fail(key, value, f"must be in {'(' if open_low else '['}{low}, {high}]")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_SECONDS_PER_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `45m`, `2h`, `90s`, `1h30m` or `1.5h`.

    Raises:
        ValueError: the text is not such a duration (the message shows the accepted forms).
    """
    compact = str(text).strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError("must be a duration such as 45m, 2h, 90s or 1h30m (or auto, or null)")
    return sum(float(number) * _SECONDS_PER_UNIT[unit] for number, unit in parts)


@dataclass
class DatasetConfig:
    """Where examples come from. `source` picks the reader; the other keys configure it.

    shapes: the built-in synthetic TFDS dataset (`image_size`, `num_train`, `num_val`,
    `num_test` (0: no test split), `max_shapes`, `min_size`, `max_size`, `max_overlap`, `seed`,
    `empty_fraction`: the share of images without objects), prepared into `data_dir`.
    tfds: any TFDS detection dataset with `objects/bbox` and `objects/label`, by `name`
    (e.g. `voc/2007`, `coco/2017`), read from `data_dir` (nothing is downloaded).
    voc_xml: a Pascal VOC folder at `root` (`ImageSets/Main/<split>.txt` lists, or one
    sub-folder of XML files and images per split); coco_json: `root/annotations/
    instances_<split>.json` with images in `root/<split>/` (`annotation_file` and `image_dir`
    override both; `{split}` in them is replaced by the split's name). `classes` fixes the
    class names and their order (default: sorted names of the training split for VOC, the
    file's categories for COCO). `strict` turns the first skipped image or object into an
    error instead of a line in `data_report.json`.
    `cache` keeps what reading the data costs to learn: a folder source's image checks
    between starts, in the index cache (`centernet/data/index_cache.py`; false: every image
    is decoded at every start); a TFDS source's records in memory after the training
    stream's first pass.
    """

    source: str = "shapes"
    name: str = "shapes"
    data_dir: Optional[str] = None
    root: Optional[str] = None
    annotation_file: Optional[str] = None
    image_dir: Optional[str] = None
    classes: Optional[List[str]] = None
    strict: bool = False
    train_split: str = "train"
    val_split: str = "validation"
    cache: bool = True
    shuffle_buffer: int = 4096
    image_size: int = 128
    num_train: int = 4000
    num_val: int = 500
    num_test: int = 0
    max_shapes: int = 6
    min_size: float = 0.08
    max_size: float = 0.5
    max_overlap: float = 0.3
    seed: int = 0
    empty_fraction: float = 0.0

    def __post_init__(self) -> None:
        _choice("dataset.source", self.source, DATASET_SOURCES)
        if self.source in ("voc_xml", "coco_json") and not self.root and not (
                self.source == "coco_json" and self.annotation_file and self.image_dir):
            _fail("dataset.root", self.root,
                  f"dataset={self.source} needs dataset.root=DIR, the dataset folder")
        if self.classes is not None and (len(self.classes) == 0 or
                                         len(set(self.classes)) != len(self.classes)):
            _fail("dataset.classes", list(self.classes), "must be unique class names")
        _at_least("dataset.shuffle_buffer", self.shuffle_buffer, 1)
        _at_least("dataset.image_size", self.image_size, 32)
        _at_least("dataset.num_train", self.num_train, 1)
        _at_least("dataset.num_val", self.num_val, 1)
        _at_least("dataset.num_test", self.num_test, 0)
        _at_least("dataset.max_shapes", self.max_shapes, 1)
        _in_range("dataset.min_size", self.min_size, 0.0, 1.0, open_low=True)
        _in_range("dataset.max_size", self.max_size, self.min_size, 1.0)
        _in_range("dataset.max_overlap", self.max_overlap, 0.0, 1.0)
        if not 0.0 <= self.empty_fraction < 1.0:
            _fail("dataset.empty_fraction", self.empty_fraction, "must be in [0, 1)")


@dataclass
class ModelConfig:
    """Backbone, upsampling neck and heads. The output stride is always 4. `neck`: `deconv`,
    the original CenterNet's three deconvolutions from stride 32, or `shortcut`, the same with
    TTFNet's shortcuts adding the backbone's stride-16, 8 and 4 features on the way up.
    `sync_bn`: BatchNormalization takes its batch statistics over all replicas of a
    distributed run (the global batch) instead of each replica's own share. `preset`: where
    `model.pretrained=imagenet` loads ResNet-18's weights from KerasHub, a preset name
    (default `resnet_18_imagenet`, downloaded once) or a local preset folder. `input_size`
    null: chosen from the training split's object sizes when the run starts
    (`centernet/engine/data_choices.py`)."""

    name: str = "resnet18"
    input_size: Optional[int] = 512
    neck: str = "deconv"
    neck_channels: List[int] = field(default_factory=lambda: [256, 128, 64])
    head_conv: int = 64
    heatmap_bias: float = -2.19
    weights: Optional[str] = None
    pretrained: Optional[str] = None
    preset: Optional[str] = None
    sync_bn: bool = False

    def __post_init__(self) -> None:
        _choice("model.name", self.name, BACKBONES)
        _choice("model.neck", self.neck, NECKS)
        if self.pretrained is not None:
            _choice("model.pretrained", self.pretrained, PRETRAINED)
            if self.name not in PRETRAINED_BACKBONES:
                _fail("model.pretrained", self.pretrained,
                      f"backbone {self.name} has no ImageNet weights; "
                      f"choose model.name={' or model.name='.join(PRETRAINED_BACKBONES)}, or "
                      f"pass model.weights=PATH")
        if self.input_size is not None and (self.input_size < 64 or self.input_size % 32):
            _fail("model.input_size", self.input_size,
                  "must be a multiple of 32 and at least 64 (e.g. 128, 256, 512)")
        if len(self.neck_channels) != 3 or min(self.neck_channels) < 1:
            _fail("model.neck_channels", list(self.neck_channels),
                  "must be three positive channel counts (stride 32 -> 4), e.g. [256, 128, 64]")
        _at_least("model.head_conv", self.head_conv, 1)


@dataclass
class TargetsConfig:
    """Training-target rendering (docs/architecture.md, Targets). `dense_wh` is the original
    CenterNet's `--dense_wh`: every cell of an object's Gaussian window regresses its size,
    weighted by the heatmap, instead of the centre cell alone; `dense_reg` does the same for
    the offset to the object's centre, so a peak decoded one cell off still gives the right
    centre. Both add many regression samples per image and speed up convergence.
    `clip_to_edge` clips boxes to the output grid's edge `W` rather than the original's last
    cell `W - 1`, which shortens boxes at the right and bottom borders (see `render_targets`).
    `kind=ttfnet` renders TTFNet's targets instead (`render_ttf_targets`): an elliptical
    heatmap `ttf_alpha` of the box's size, and the box regressed (GIoU, `loss.giou_weight`) by
    every cell of a Gaussian `ttf_beta` of its size, weighted by that Gaussian."""

    kind: str = "centernet"
    max_objects: int = 128
    min_overlap: float = 0.7
    dense_wh: bool = False
    dense_reg: bool = False
    clip_to_edge: bool = True
    ttf_alpha: float = 0.54
    ttf_beta: float = 0.54

    def __post_init__(self) -> None:
        _choice("targets.kind", self.kind, TARGET_KINDS)
        _at_least("targets.max_objects", self.max_objects, 1)
        _in_range("targets.min_overlap", self.min_overlap, 0.0, 1.0, open_low=True)
        _in_range("targets.ttf_alpha", self.ttf_alpha, 0.0, 1.0, open_low=True)
        _in_range("targets.ttf_beta", self.ttf_beta, 0.0, 1.0, open_low=True)
        if self.kind == "ttfnet" and (self.dense_wh or self.dense_reg):
            _fail("targets.dense_wh/dense_reg", True, "apply to targets.kind=centernet only; "
                  "targets.kind=ttfnet regresses boxes densely already")


@dataclass
class AugmentConfig:
    """Training-time augmentation (never on validation), the original CenterNet's.

    `crop`: a square window of side `max(H, W) * s`, `s ~ U(min_scale, max_scale)`, centred
    at a random point at least `crop_border` pixels (halved until it fits, as the original's
    `_get_border`) inside the image, resized to the network input; boxes are clipped to it and
    those left without area dropped. `flip`: horizontal flip probability. `brightness`,
    `contrast`, `saturation`: factor `1 + U(-v, v)` each, applied in a random order;
    `lighting`: PCA (AlexNet) lighting noise with standard deviation `lighting`. 0 turns a
    knob off. `max_scale` null: chosen from the training split's smallest objects when the
    run starts (`centernet/engine/data_choices.py`).

    `mosaic`: four images in one input (`centernet/data/mosaic.py`), until the last
    `mosaic_off` share of the run's steps, which train on single images as YOLO trainers
    close mosaic; `mixup`: the probability that an example is blended with a second one,
    `lam ~ Beta(mixup_alpha, mixup_alpha)`."""

    flip: float = 0.5
    crop: bool = True
    min_scale: float = 0.6
    max_scale: Optional[float] = 1.4
    crop_border: int = 128
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    lighting: float = 0.1
    mosaic: bool = False
    mosaic_off: float = 0.15
    mixup: float = 0.0
    mixup_alpha: float = 32.0

    def __post_init__(self) -> None:
        _in_range("augment.flip", self.flip, 0.0, 1.0)
        if not 0.0 <= self.mosaic_off < 1.0:
            _fail("augment.mosaic_off", self.mosaic_off, "must be in [0, 1): the share of the "
                  "run's last steps without mosaic")
        _in_range("augment.mixup", self.mixup, 0.0, 1.0)
        _in_range("augment.mixup_alpha", self.mixup_alpha, 0.0, 1000.0, open_low=True)
        _in_range("augment.min_scale", self.min_scale, 0.0, 10.0, open_low=True)
        if self.max_scale is not None:
            _in_range("augment.max_scale", self.max_scale, self.min_scale, 10.0)
        _at_least("augment.crop_border", self.crop_border, 0)
        for key in ("brightness", "contrast", "saturation"):
            _in_range(f"augment.{key}", getattr(self, key), 0.0, 1.0)
        _at_least("augment.lighting", self.lighting, 0.0)


@dataclass
class LossConfig:
    """Focal-loss implementation and the weights of the three loss parts."""

    impl: str = "stable"
    alpha: float = 2.0
    beta: float = 4.0
    heatmap_weight: float = 1.0
    wh_weight: float = 0.1
    offset_weight: float = 1.0
    giou_weight: float = 0.0

    def __post_init__(self) -> None:
        _choice("loss.impl", self.impl, LOSS_IMPLS)
        for key in ("alpha", "beta", "heatmap_weight", "wh_weight", "offset_weight",
                    "giou_weight"):
            _at_least(f"loss.{key}", getattr(self, key), 0.0)


@dataclass
class OptimizerConfig:
    name: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    global_clipnorm: Optional[float] = None

    def __post_init__(self) -> None:
        _choice("optimizer.name", self.name, OPTIMIZERS)
        _at_least("optimizer.weight_decay", self.weight_decay, 0.0)
        _in_range("optimizer.momentum", self.momentum, 0.0, 1.0)
        if self.global_clipnorm is not None and self.global_clipnorm <= 0:
            _fail("optimizer.global_clipnorm", self.global_clipnorm, "must be > 0 or null")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule over `train.max_steps`, after `warmup_steps` of linear warm-up.

    step: multiply by `gamma` at each fraction of the run in `milestones`;
    cosine: cosine decay from the peak to `min_lr_ratio` x peak; constant: the peak throughout.
    """

    name: str = "cosine"
    warmup_steps: int = 0
    milestones: List[float] = field(default_factory=lambda: [0.64, 0.86])
    gamma: float = 0.1
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        _choice("schedule.name", self.name, SCHEDULES)
        _at_least("schedule.warmup_steps", self.warmup_steps, 0)
        if any(not 0.0 < m < 1.0 for m in self.milestones) or list(self.milestones) != sorted(
                self.milestones):
            _fail("schedule.milestones", list(self.milestones),
                  "must be increasing fractions of the run in (0, 1), e.g. [0.64, 0.86]")
        _in_range("schedule.gamma", self.gamma, 0.0, 1.0, open_low=True)
        _in_range("schedule.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)


@dataclass
class PrecisionConfig:
    """`policy`: the Keras mixed-precision policy. `heads`: `float32` (default) runs the heads'
    last layers in float32, as Keras advises for a model's outputs, so every loss sees float32
    logits; `compute` runs them in the policy's compute dtype, as a model built without a
    float32 output layer does, so `loss=naive` and `loss=clamped` compute in bfloat16 or
    float16 (`loss=stable` casts to float32 first either way)."""

    policy: str = "float32"
    heads: str = "float32"

    def __post_init__(self) -> None:
        _choice("precision.policy", self.policy, PRECISION_POLICIES)
        _choice("precision.heads", self.heads, HEAD_DTYPES)

    @property
    def head_dtype(self) -> str | None:
        """`build_model`'s `head_dtype`: "float32", or None for the policy's compute dtype."""
        return "float32" if self.heads == "float32" else None


@dataclass
class DistributeConfig:
    """`strategy` (`centernet/engine/strategies.py`): `default` (one device), `mirrored` (the
    visible GPUs, or `cpu_devices` logical CPU devices when set), `multi_worker` (cluster from
    TF_CONFIG or Slurm) or `tpu`. `train.batch_size` is the global batch, split evenly between
    the replicas. `worker_dir`: where a worker other than the chief writes what it must (its
    copy of each checkpoint save, its log); null: a temporary directory removed at the end."""

    strategy: str = "default"
    cpu_devices: int = 0
    worker_dir: Optional[str] = None

    def __post_init__(self) -> None:
        _choice("distribute.strategy", self.strategy, STRATEGIES)
        _at_least("distribute.cpu_devices", self.cpu_devices, 0)


@dataclass
class TrainConfig:
    """The loop. `lr` is the peak learning rate at `lr_reference_batch` images per step; with
    `scale_lr` the rate used is `lr * batch_size / lr_reference_batch` (linear scaling, as the
    original CenterNet does from 1.25e-4 at batch 32). `jit_compile` (`true`, `false` or
    `auto`: where it measured faster, `centernet/engine/hardware.py`) compiles the train step
    with XLA. `batch_size` null: chosen from the data and the machine when the run starts.

    The run's length, first that applies: `time_budget` when it is a duration (`45m`, `2h`,
    `90s`, `1h30m`): the run measures its own step and evaluation times, then plans the number
    of steps (and `evaluations` evaluations, the last at the end) to end within it
    (`centernet/engine/budget.py`); `max_steps`; `epochs` passes over the training split;
    `time_budget=auto`: a budget that suits the machine (an hour on a CPU, 100 epochs on a
    GPU). The schedule spans that whole length. `stop_at_step` ends this invocation early
    (checkpointed, resumable, schedule unchanged), e.g. to split a long run into time-boxed
    jobs. `patience`: end the run after that many evaluations without a better validation AP
    (the best checkpoint is kept); null: never.
    `deterministic` (needs `seed`): a run stopped at any checkpoint and resumed ends with the
    same weights, bit for bit, as the run left alone. On one device the step is then compiled
    with XLA, whose CPU code measured bit-exact from run to run where TensorFlow's own CPU
    kernels did not (even under op determinism, which in turn cannot compile the max-pool
    gradient with XLA); under a distributed strategy TensorFlow's op determinism is on.
    `ema_decay` keeps an exponential moving average of the weights (`centernet/engine/ema.py`)
    that evaluation, the best checkpoint and the scripts use; null: none.
    `tensorboard_images`: at every evaluation TensorBoard gets the detections drawn on that
    many validation images (the split's first) and each class's PR curve; 0: no pictures."""

    def total_steps(self, num_train_examples: int) -> int:
        """The run's length in steps when it is fixed by `max_steps` or `epochs` (a time
        budget's length is planned by `centernet/engine/budget.py`)."""
        if self.max_steps is not None:
            return self.max_steps
        if self.epochs is None:
            raise ConfigError("the run has no length: set train.max_steps, train.epochs or "
                              "train.time_budget")
        return self.epochs * max(num_train_examples // self.batch_size, 1)

    @property
    def budget_seconds(self) -> Optional[float]:
        """The time budget in seconds when it decides the run's length, else None (`auto`
        is resolved to a duration or to epochs before training, `engine/data_choices.py`)."""
        if self.time_budget in (None, "auto"):
            return None
        return parse_duration(self.time_budget)

    batch_size: Optional[int] = 32
    max_steps: Optional[int] = None
    epochs: Optional[int] = None
    time_budget: Optional[str] = None
    evaluations: int = 6
    patience: Optional[int] = None
    stop_at_step: Optional[int] = None
    lr: float = 1.25e-4
    lr_reference_batch: int = 32
    scale_lr: bool = True
    seed: Optional[int] = 0
    deterministic: bool = False
    log_every: int = 20
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    eval_every: int = 0
    on_nonfinite: str = "stop"
    ema_decay: Optional[float] = None
    jit_compile: str = "auto"
    progress_bar: bool = True
    tensorboard_images: int = 4

    def __post_init__(self) -> None:
        _at_least("train.tensorboard_images", self.tensorboard_images, 0)
        if self.batch_size is not None:
            _at_least("train.batch_size", self.batch_size, 1)
        if self.max_steps is not None:
            _at_least("train.max_steps", self.max_steps, 1)
        if self.time_budget not in (None, "auto"):
            try:
                seconds = parse_duration(self.time_budget)
            except ValueError as error:
                _fail("train.time_budget", self.time_budget, str(error))
            if seconds < 10:
                _fail("train.time_budget", self.time_budget, "must be at least 10s")
        _at_least("train.evaluations", self.evaluations, 1)
        if self.patience is not None:
            _at_least("train.patience", self.patience, 1)
        if self.epochs is not None:
            _at_least("train.epochs", self.epochs, 1)
        if self.stop_at_step is not None:
            _at_least("train.stop_at_step", self.stop_at_step, 1)
        if not self.lr > 0:
            _fail("train.lr", self.lr, "must be > 0")
        _at_least("train.lr_reference_batch", self.lr_reference_batch, 1)
        _at_least("train.log_every", self.log_every, 1)
        _at_least("train.checkpoint_every", self.checkpoint_every, 1)
        _at_least("train.keep_checkpoints", self.keep_checkpoints, 1)
        _at_least("train.eval_every", self.eval_every, 0)
        _choice("train.on_nonfinite", self.on_nonfinite, NONFINITE_ACTIONS)
        if self.deterministic and self.seed is None:
            _fail("train.deterministic", self.deterministic, "needs train.seed (an integer)")
        if self.deterministic and self.jit_compile == "false":
            _fail("train.jit_compile", self.jit_compile, "train.deterministic=true compiles the "
                  "step with XLA (the deterministic path on one device): use auto or true")
        self.jit_compile = str(self.jit_compile).lower()
        _choice("train.jit_compile", self.jit_compile, JIT_CHOICES)
        if self.ema_decay is not None:
            _in_range("train.ema_decay", self.ema_decay, 0.0, 1.0, open_low=True)
            if self.ema_decay >= 1.0:
                _fail("train.ema_decay", self.ema_decay, "must be < 1 (or null: no average)")

    @property
    def peak_lr(self) -> float:
        """The learning rate after warm-up, after linear batch scaling."""
        scale = self.batch_size / self.lr_reference_batch if self.scale_lr else 1.0
        return self.lr * scale


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

    k: int = 100
    flip_test: bool = False
    cross_class_iou: Optional[float] = None
    cross_class_decay: float = 0.3


DECODING_KEYS = tuple(item.name for item in fields(Decoding))


@dataclass
class EvalConfig:
    """Decoding (`Decoding`'s keys) and COCO evaluation (during training and in
    `scripts/evaluate.py`)."""

    k: int = 100
    flip_test: bool = False
    cross_class_iou: Optional[float] = None
    cross_class_decay: float = 0.3
    batch_size: int = 16
    score_threshold: float = 0.0
    voc_metrics: bool = False

    def __post_init__(self) -> None:
        _at_least("eval.k", self.k, 1)
        if self.cross_class_iou is not None:
            _in_range("eval.cross_class_iou", self.cross_class_iou, 0.0, 1.0)
        _in_range("eval.cross_class_decay", self.cross_class_decay, 0.0, 1.0)
        _at_least("eval.batch_size", self.batch_size, 1)
        _in_range("eval.score_threshold", self.score_threshold, 0.0, 1.0)

    @property
    def decoding(self) -> Decoding:
        return Decoding(self.k, self.flip_test, self.cross_class_iou, self.cross_class_decay)


@dataclass
class ExportOptions:
    """How `scripts/export.py` writes a LiteRT file (and `benchmark.py export` measures it):
    `precision` `float32`, `float16` (float16 weights) or `int8` (full-integer quantisation,
    calibrated on the first `calibration_images` letterboxed images of the training split)."""

    precision: str = "float32"
    calibration_images: int = 200

    def __post_init__(self) -> None:
        _choice("export.precision", self.precision, ("float32", "float16", "int8"))
        _at_least("export.calibration_images", self.calibration_images, 1)


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


@dataclass
class EvaluateConfig(RunConfig):
    """`scripts/evaluate.py`: a run directory and/or a checkpoint; other keys override the
    run's own saved config (e.g. `dataset.val_split=test`, `eval.flip_test=true`)."""

    run_dir: Optional[str] = None
    checkpoint: Optional[str] = None


@dataclass
class PredictConfig(EvaluateConfig):
    """`scripts/predict.py`: draw detections on an image, a folder of images or a video."""

    input: Optional[str] = None
    output: Optional[str] = None
    score_threshold: Optional[float] = None  # None: the run report's best-F1 threshold, or 0.3
    heatmap: bool = False
    format: str = "checkpoint"
    model_file: Optional[str] = None

    def __post_init__(self) -> None:
        if self.score_threshold is not None:
            _in_range("score_threshold", self.score_threshold, 0.0, 1.0)
        _choice("format", self.format, ("checkpoint", "litert", "onnx"))
        if self.model_file and self.format == "checkpoint":
            _fail("format", self.format, "model_file= runs an exported file: pass "
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

    folds: int = 3
    time_budget: str = "30m"
    max_steps: Optional[int] = None
    top: int = 24
    confident_score: Optional[float] = None
    seed: int = 0

    def __post_init__(self) -> None:
        _at_least("audit.folds", self.folds, 2)
        _at_least("audit.top", self.top, 0)
        if self.max_steps is not None:
            _at_least("audit.max_steps", self.max_steps, 1)
        else:
            try:
                seconds = parse_duration(self.time_budget)
            except ValueError as error:
                _fail("audit.time_budget", self.time_budget, str(error))
            if seconds / self.folds < 10:
                _fail("audit.time_budget", self.time_budget,
                      f"gives each of the {self.folds} folds under 10s")
        if self.confident_score is not None:
            _in_range("audit.confident_score", self.confident_score, 0.0, 1.0)

    @property
    def fold_budget(self) -> str:
        """Each fold's time budget, in seconds (`"600s"`)."""
        return f"{parse_duration(self.time_budget) / self.folds:.0f}s"


@dataclass
class AuditConfig(EvaluateConfig):
    """`scripts/audit_labels.py`: a run directory; `audit.*` the audit's settings; other keys
    override the run's own saved config for the fold runs."""

    audit: AuditSettings = field(default_factory=AuditSettings)


@dataclass
class ExportConfig(EvaluateConfig):
    """`scripts/export.py`: write the detector as a SavedModel (letterboxing and decoding
    inside), a LiteRT file (`export.precision`) or an ONNX file."""

    output: Optional[str] = None
    format: str = "saved_model"

    def __post_init__(self) -> None:
        _choice("format", self.format, ("saved_model", "litert", "onnx"))


@dataclass
class ShowDataConfig(RunConfig):
    """`scripts/show_data.py`: a grid of training-pipeline images with their targets."""

    num_images: int = 16
    columns: int = 4
    output: str = "data_preview.png"

    def __post_init__(self) -> None:
        _at_least("num_images", self.num_images, 1)
        _at_least("columns", self.columns, 1)


SCRIPT_KEYS = ("run_dir", "checkpoint", "input", "output", "score_threshold", "heatmap", "format",
               "model_file", "audit")


def register_configs() -> None:
    """Store the schemas so YAML files can name them in their defaults lists."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=RunConfig)
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="predict_schema", node=PredictConfig)
    store.store(name="export_schema", node=ExportConfig)
    store.store(name="show_data_schema", node=ShowDataConfig)
    store.store(name="audit_labels_schema", node=AuditConfig)


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


register_configs()
