"""What the data stage reads: the dataset, the training targets and the augmentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from centernet.config.checks import at_least, choice, fail, in_range


DATASET_SOURCES = ("shapes", "tfds", "voc_xml", "coco_json")
TARGET_KINDS = ("centernet", "ttfnet")


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
        choice("dataset.source", self.source, DATASET_SOURCES)
        if self.source in ("voc_xml", "coco_json") and not self.root and not (
                self.source == "coco_json" and self.annotation_file and self.image_dir):
            fail("dataset.root", self.root,
                  f"dataset={self.source} needs dataset.root=DIR, the dataset folder")
        if self.classes is not None and (len(self.classes) == 0 or
                                         len(set(self.classes)) != len(self.classes)):
            fail("dataset.classes", list(self.classes), "must be unique class names")
        at_least("dataset.shuffle_buffer", self.shuffle_buffer, 1)
        at_least("dataset.image_size", self.image_size, 32)
        at_least("dataset.num_train", self.num_train, 1)
        at_least("dataset.num_val", self.num_val, 1)
        at_least("dataset.num_test", self.num_test, 0)
        at_least("dataset.max_shapes", self.max_shapes, 1)
        in_range("dataset.min_size", self.min_size, 0.0, 1.0, open_low=True)
        in_range("dataset.max_size", self.max_size, self.min_size, 1.0)
        in_range("dataset.max_overlap", self.max_overlap, 0.0, 1.0)
        if not 0.0 <= self.empty_fraction < 1.0:
            fail("dataset.empty_fraction", self.empty_fraction, "must be in [0, 1)")


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
        choice("targets.kind", self.kind, TARGET_KINDS)
        at_least("targets.max_objects", self.max_objects, 1)
        in_range("targets.min_overlap", self.min_overlap, 0.0, 1.0, open_low=True)
        in_range("targets.ttf_alpha", self.ttf_alpha, 0.0, 1.0, open_low=True)
        in_range("targets.ttf_beta", self.ttf_beta, 0.0, 1.0, open_low=True)
        if self.kind == "ttfnet" and (self.dense_wh or self.dense_reg):
            fail("targets.dense_wh/dense_reg", True, "apply to targets.kind=centernet only; "
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
        in_range("augment.flip", self.flip, 0.0, 1.0)
        if not 0.0 <= self.mosaic_off < 1.0:
            fail("augment.mosaic_off", self.mosaic_off, "must be in [0, 1): the share of the "
                  "run's last steps without mosaic")
        in_range("augment.mixup", self.mixup, 0.0, 1.0)
        in_range("augment.mixup_alpha", self.mixup_alpha, 0.0, 1000.0, open_low=True)
        in_range("augment.min_scale", self.min_scale, 0.0, 10.0, open_low=True)
        if self.max_scale is not None:
            in_range("augment.max_scale", self.max_scale, self.min_scale, 10.0)
        at_least("augment.crop_border", self.crop_border, 0)
        for key in ("brightness", "contrast", "saturation"):
            in_range(f"augment.{key}", getattr(self, key), 0.0, 1.0)
        at_least("augment.lighting", self.lighting, 0.0)
