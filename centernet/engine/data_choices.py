"""Data-aware defaults: the settings a folder preset leaves open, chosen from the data and the
machine when a run starts, each with the reason it prints.

`dataset=voc_xml` and `dataset=coco_json` leave `model.input_size`, `train.batch_size` and
`augment.max_scale` null and `train.time_budget` at `auto`; any of them set on the command line
(or by an experiment file) is kept as it is. The rules:

- input size: the multiple of 32 nearest to the size at which the smallest class's small
  objects (`statistics.SMALL_PERCENTILE`th percentile of the shorter side) span
  `SMALL_OBJECT_CELLS` cells of the stride-4 output grid, within [256, 512] on a CPU (each
  step's cost grows with its square) or [256, 768] on a GPU, and never above the images' own
  size;
- batch size: 16 on a CPU (bfloat16 and float32 steps measured no faster per image at 32), 32
  on a GPU, at most an eighth of the training images (an epoch of at least eight steps);
- zoom-out limit of the random crop: as far as 1.4 (the original's), but no further than
  keeps those small objects `MIN_CELLS_ZOOMED_OUT` cells wide;
- time budget: an hour on a CPU; on a GPU `GPU_EPOCHS` epochs, as YOLO trainers default to;
- `precision=auto` and `train.jit_compile=auto`: what `engine.hardware` picks for this machine.

A run records its choices in `plan.json` and a resumed run keeps them, on whatever machine it
resumes: a run that trained in bfloat16 does not switch to float32 half way because the next
machine has no bfloat16 units (it stops and says which override accepts the change).

The learning rate follows the batch by linear scaling (`train.lr` is the rate at 32 images).
Sources without an index to measure (`shapes`, `tfds`) keep fixed fallbacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from omegaconf import OmegaConf

from centernet.config import RunConfig, validate
from centernet.data.sources import FolderSource, Source
from centernet.data.statistics import DataProfile, profile_split
from centernet.engine.budget import read_plan_file
from centernet.engine.hardware import Machine, choose_jit, choose_precision, this_machine
from centernet.errors import ConfigError, DataError

SMALL_OBJECT_CELLS = 4
MIN_CELLS_ZOOMED_OUT = 2
OUTPUT_STRIDE = 4
CPU_INPUT_RANGE = (256, 512)
GPU_INPUT_RANGE = (256, 768)
FALLBACK_INPUT_SIZE = 512
CPU_BATCH, GPU_BATCH = 16, 32
CPU_BUDGET = "60m"
GPU_EPOCHS = 100
MAX_ZOOM_OUT = 1.4


@dataclass(frozen=True)
class Choice:
    """One setting chosen for the run: the config key, its value and why, in a few words."""

    key: str
    value: Any
    why: str

    def line(self) -> str:
        return f"  {self.key}={self.value}: {self.why}"

    def to_json(self) -> dict:
        return {"key": self.key, "value": self.value, "why": self.why}


def _round_to_32(pixels: float) -> int:
    return int(32 * round(pixels / 32))


def choose_input_size(profile: Optional[DataProfile], machine: Machine) -> Choice:
    """`model.input_size` from the smallest class's small objects."""
    if profile is None:
        return Choice("model.input_size", FALLBACK_INPUT_SIZE,
                      "no annotation index to measure object sizes on; the original's size")
    low, high = GPU_INPUT_RANGE if machine.gpu_capabilities else CPU_INPUT_RANGE
    native = max(64, math.ceil(profile.long_side / 32) * 32)
    wanted = SMALL_OBJECT_CELLS * OUTPUT_STRIDE / profile.small_fraction
    size = min(max(_round_to_32(wanted), low), high, native)
    small_pixels = profile.small_fraction * size
    limits = f"[{low}, {high}] on a {'GPU' if machine.gpu_capabilities else 'CPU'}"
    why = (f"{profile.smallest_class}, the smallest class, has 10% of its boxes under "
           f"{profile.small_fraction * profile.long_side:.0f} px of {profile.long_side:.0f}; "
           f"at {size} px they are {small_pixels:.1f} px, {small_pixels / OUTPUT_STRIDE:.1f} "
           f"output cells (aim {SMALL_OBJECT_CELLS}, sizes {limits}, images "
           f"{profile.long_side:.0f} px)")
    return Choice("model.input_size", size, why)


def choose_batch_size(profile: Optional[DataProfile], machine: Machine, replicas: int) -> Choice:
    """`train.batch_size`: the machine's batch, at most an eighth of the training images,
    divisible between the replicas."""
    batch = GPU_BATCH if machine.gpu_capabilities else CPU_BATCH
    why = (f"{'a GPU' if machine.gpu_capabilities else 'a CPU'}'s batch")
    if profile is not None and profile.images // 8 < batch:
        batch = max(2, 2 ** int(math.log2(max(profile.images // 8, 2))))
        why += f", cut to an eighth of the {profile.images} training images"
    if batch % replicas:
        batch = replicas * math.ceil(batch / replicas)
        why += f", rounded up to divide between {replicas} replicas"
    return Choice("train.batch_size", batch, why)


def choose_max_scale(profile: Optional[DataProfile], input_size: int, min_scale: float) -> Choice:
    """`augment.max_scale`: zoom out no further than keeps the small objects visible."""
    if profile is None:
        return Choice("augment.max_scale", MAX_ZOOM_OUT, "the original's zoom-out limit")
    small_pixels = profile.small_fraction * input_size
    limit = small_pixels / (MIN_CELLS_ZOOMED_OUT * OUTPUT_STRIDE)
    scale = round(max(min(MAX_ZOOM_OUT, limit), 1.0, min_scale), 2)
    why = (f"small {profile.smallest_class} boxes ({small_pixels:.1f} px) keep "
           f"{small_pixels / scale / OUTPUT_STRIDE:.1f} cells zoomed out "
           f"(at least {MIN_CELLS_ZOOMED_OUT}; at most {MAX_ZOOM_OUT}, the original's)")
    return Choice("augment.max_scale", scale, why)


def choose_length(machine: Machine) -> List[Choice]:
    """What `train.time_budget=auto` becomes when neither `max_steps` nor `epochs` is set."""
    if machine.gpu_capabilities:
        return [Choice("train.time_budget", None, "a GPU: the run's length is epochs"),
                Choice("train.epochs", GPU_EPOCHS, "a GPU: YOLO trainers' default length")]
    return [Choice("train.time_budget", CPU_BUDGET,
                    "a CPU: a first result within the hour (the run plans its steps to fit)")]


def choose_settings(cfg: RunConfig, profile: Optional[DataProfile], machine: Machine,
                    replicas: int = 1) -> List[Choice]:
    """Every choice for the keys `cfg` leaves open (null, or `time_budget=auto` without a
    fixed length); an empty list when nothing is open."""
    choices: List[Choice] = []
    input_size = cfg.model.input_size
    if input_size is None:
        choice = choose_input_size(profile, machine)
        input_size = choice.value
        choices.append(choice)
    if cfg.train.batch_size is None:
        choices.append(choose_batch_size(profile, machine, replicas))
    if cfg.augment.max_scale is None:
        choices.append(choose_max_scale(profile, input_size, cfg.augment.min_scale))
    if (cfg.train.time_budget == "auto" and cfg.train.max_steps is None
            and cfg.train.epochs is None):
        choices.extend(choose_length(machine))
    if cfg.precision.policy == "auto":
        choices.append(Choice("precision.policy", *choose_precision(machine)))
    if cfg.train.jit_compile == "auto":
        use_xla, why = choose_jit(machine)
        choices.append(Choice("train.jit_compile", "true" if use_xla else "false", why))
    return choices


def apply_choices(cfg: RunConfig, choices: List[Choice]) -> RunConfig:
    """`cfg` with every choice set (validated again)."""
    settings = OmegaConf.structured(cfg)
    for choice in choices:
        OmegaConf.update(settings, choice.key, choice.value, merge=False)
    return validate(settings)


def learning_rate_line(cfg: RunConfig) -> str:
    """How the run's peak learning rate follows from `train.lr` and the batch."""
    train = cfg.train
    if not train.scale_lr:
        return f"  train.lr={train.lr:g}: the peak rate as set (train.scale_lr=false)"
    return (f"  train.lr={train.lr:g} at {train.lr_reference_batch} images: peak "
            f"{train.peak_lr:.3g} at batch {train.batch_size} (linear scaling)")


def data_profile(source: Source, split: str) -> Optional[DataProfile]:
    """The training split's `DataProfile` (None for sources without an index: shapes, TFDS).

    Raises:
        DataError: the split has no object to measure.
    """
    if not isinstance(source, FolderSource):
        return None
    try:
        return profile_split(source.index(split), source.class_names)
    except ValueError as error:
        raise DataError(f"dataset.train_split={split}: {error}; a detector needs annotated "
                        f"boxes to train on") from error


def resolve_open_settings(cfg: RunConfig, source: Source, run_dir: Optional[Path],
                          replicas: int = 1) -> Tuple[RunConfig, List[Choice]]:
    """Fill in the settings `cfg` leaves open (the rules above): as the run in `run_dir`
    recorded them in its `plan.json` when it started, else chosen now from the training split
    and the machine (`run_dir` None: nothing recorded, as for `show_data.py`)."""
    machine = this_machine()
    recorded = ({c["key"]: c for c in read_plan_file(run_dir).get("choices", [])}
                if run_dir is not None else {})
    measured_keys = ("model.input_size", "augment.max_scale", "train.batch_size")
    open_keys = [c.key for c in choose_settings(cfg, None, machine, replicas)]
    needs_profile = any(k in measured_keys and k not in recorded for k in open_keys)
    profile = data_profile(source, cfg.dataset.train_split) if needs_profile else None
    choices = [Choice(**recorded[c.key]) if c.key in recorded else c
               for c in choose_settings(cfg, profile, machine, replicas)]
    check_recorded_precision(choices, machine, run_dir)
    return (apply_choices(cfg, choices) if choices else cfg), choices


def check_recorded_precision(choices: List[Choice], machine: Machine,
                             run_dir: Optional[Path]) -> None:
    """Raise when the run recorded `precision.policy=mixed_bfloat16` and this machine has no
    bfloat16 units (it would emulate bfloat16, many times slower), naming both ways on."""
    policy = next((c.value for c in choices if c.key == "precision.policy"), None)
    here, why = choose_precision(machine)
    if policy == "mixed_bfloat16" and here != policy:
        raise ConfigError(
            f"precision.policy: this run trained in mixed_bfloat16 (recorded in "
            f"{Path(run_dir or '.') / 'plan.json'}), but here {why}; resume with "
            f"precision=float32 to change it, or precision=mixed_bfloat16 to keep it (emulated, "
            f"slow)")
