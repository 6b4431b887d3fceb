"""What the data stage reads: the dataset, the training targets and the augmentation."""

from __future__ import annotations

import re
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
    is decoded at every start; and each split's checked index while its annotation files,
    folders and images are unchanged, in the split cache, `centernet/data/split_cache.py`); a
    TFDS source's records in memory after the training stream's first pass.
    `data_service` (`[grpc://]HOST:PORT` of a tf.data service dispatcher, `centernet
    data-service`): the training batches are made by that service's workers (reading,
    decoding, augmentation, targets), each worker taking whole batches in turn, instead of by
    this process; the workers must see the dataset at the same paths. With one worker the
    batches are the same, in the same order, as without the service; with several, the same
    batches in the order the workers deliver them (a resumed run continues from its step, but
    the order of a few batches may differ from an uninterrupted one).
    """

    # the reader: shapes (built in), tfds, voc_xml or coco_json
    source: str = "shapes"
    # the dataset's name; for tfds the TFDS name, e.g. voc/2007 or coco/2017
    name: str = "shapes"
    # TFDS data folder (shapes is prepared there); null: TFDS's default, ~/tensorflow_datasets
    data_dir: Optional[str] = None
    # voc_xml, coco_json: the dataset folder (required)
    root: Optional[str] = None
    # coco_json: the annotation file, instead of root/annotations/instances_{split}.json
    annotation_file: Optional[str] = None
    # coco_json: the image folder, instead of root/{split}/
    image_dir: Optional[str] = None
    # class names and their order; null: the training split's sorted names (VOC), the file's
    # categories (COCO)
    classes: Optional[List[str]] = None
    # the first skipped image or object is an error instead of a line in data_report.json
    strict: bool = False
    # the split trained on
    train_split: str = "train"
    # the split evaluated on during training (and by evaluate)
    val_split: str = "validation"
    # folders: keep the image checks and the checked splits between starts (the index and split
    # caches); TFDS: records in memory after the first pass
    cache: bool = True
    # examples in the training stream's shuffle buffer
    shuffle_buffer: int = 4096
    # shapes: side of the square images, pixels
    image_size: int = 128
    # shapes: images in the train split
    num_train: int = 4000
    # shapes: images in the validation split
    num_val: int = 500
    # shapes: images in a test split from its own seeds (0: no test split)
    num_test: int = 0
    # shapes: at most this many objects per image (1..max_shapes)
    max_shapes: int = 6
    # shapes: smallest object, its longer side as a fraction of image_size
    min_size: float = 0.08
    # shapes: largest object, its longer side as a fraction of image_size
    max_size: float = 0.5
    # shapes: largest intersection of two objects' boxes, a fraction of the smaller
    max_overlap: float = 0.3
    # shapes: the seed of the whole dataset
    seed: int = 0
    # shapes: the share of images without objects
    empty_fraction: float = 0.0
    # [grpc://]HOST:PORT of a tf.data service dispatcher whose workers make the training
    # batches (centernet data-service); null: this process makes them
    data_service: Optional[str] = None

    def __post_init__(self) -> None:
        choice("dataset.source", self.source, DATASET_SOURCES)
        if self.data_service is not None and not re.fullmatch(
                r"(grpc://)?[^:/\s]+:\d+", str(self.data_service)):
            fail("dataset.data_service", self.data_service,
                 "must be the address of a tf.data service dispatcher, [grpc://]HOST:PORT")
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

    # centernet: round Gaussian, size at the centre; ttfnet: elliptical Gaussian, boxes by GIoU
    kind: str = "centernet"
    # objects per image with a target (K); the rest are dropped and counted
    max_objects: int = 128
    # the CornerNet radius' minimum IoU (centernet targets)
    min_overlap: float = 0.7
    # regress the size at every cell of an object's Gaussian window, not the centre alone
    dense_wh: bool = False
    # the same for the offset to the object's centre
    dense_reg: bool = False
    # clip boxes to the output grid's edge W (false: the original's last cell, W - 1)
    clip_to_edge: bool = True
    # ttfnet: the heatmap Gaussian's size, a share of the box's
    ttf_alpha: float = 0.54
    # ttfnet: the box-regression Gaussian's size, a share of the box's
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

    # horizontal flip probability
    flip: float = 0.5
    # random square crop of side max(H, W) * U(min_scale, max_scale), resized to the input
    crop: bool = True
    # the crop's smallest scale
    min_scale: float = 0.6
    # the crop's largest scale (zoom out); null: chosen from the data's smallest objects
    max_scale: Optional[float] = 1.4
    # the crop's centre stays this many pixels inside the image (halved until it fits)
    crop_border: int = 128
    # colour jitter: factor 1 + U(-v, v); 0: off
    brightness: float = 0.4
    # colour jitter: factor 1 + U(-v, v); 0: off
    contrast: float = 0.4
    # colour jitter: factor 1 + U(-v, v); 0: off
    saturation: float = 0.4
    # PCA (AlexNet) lighting noise, its standard deviation; 0: off
    lighting: float = 0.1
    # four images in one input, until the last mosaic_off share of the steps
    mosaic: bool = False
    # the share of the run's last steps trained without mosaic
    mosaic_off: float = 0.15
    # probability that an example is blended with a second one
    mixup: float = 0.0
    # mixup's blend lam ~ Beta(mixup_alpha, mixup_alpha)
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
