"""Dataset sources: every dataset behind one interface that yields the common example format.

A `Source` reads one split as records (image still encoded, so shuffle buffers and caches stay
small) and `decode_record` turns a record into the common example format (docs/architecture.md,
The example format):

    image     uint8   [H, W, 3] RGB
    boxes     float32 [N, 4] x1, y1, x2, y2 in pixels of that image
    labels    int32   [N] contiguous class ids 0..C-1
    is_crowd  bool    [N] boxes that training ignores and COCO evaluation treats as ignore regions
    image_id  int64   the dataset's own image id

`source=shapes` is the built-in synthetic TFDS dataset (prepared on first use),
`source=tfds` any prepared TFDS detection dataset with `objects/bbox` and `objects/label`
(`voc/2007`, `coco/2017`, ...), `source=voc_xml` and `source=coco_json` a user's own folder
(`voc.py`, `coco.py`; defects are repaired or skipped and reported, `report.py`). VOC's
difficult and COCO's crowd boxes are ignore regions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds

from centernet.config import DatasetConfig
from centernet.data import coco, shapes, voc
from centernet.data.annotations import RawImage, SplitIndex, clean_split
from centernet.data.images import probe_images
from centernet.data.index_cache import IndexCache
from centernet.data.split_cache import CachedSplit, SplitCache, stamps as split_stamps
from centernet.data.report import DataReport
from centernet.errors import DataError

Record = Dict[str, tf.Tensor]


@dataclass
class ClassMap:
    """A run's classes: `names[c]` and `category_ids[c]` (the dataset's own id, written into
    evaluation results) of contiguous class id `c`. Saved in the run directory, so evaluation,
    prediction and export keep the training run's mapping after the data folder changes."""

    names: List[str]
    category_ids: List[int]

    FILE = "classes.json"

    def save(self, run_dir: Path) -> None:
        path = Path(run_dir) / self.FILE
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps({"names": self.names, "category_ids": self.category_ids},
                                  indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, run_dir: Path) -> Optional["ClassMap"]:
        """The run's saved classes, or None for a run saved before they were kept."""
        path = Path(run_dir) / cls.FILE
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text())
            return cls([str(n) for n in saved["names"]], [int(i) for i in saved["category_ids"]])
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{path}: not a class list written by training ({error})") from error


class Source:
    """One dataset read as records, split by split.

    Attributes:
        class_names: `C` names, index = contiguous class id.
        category_ids: `C` original category ids written into evaluation results.
        report: the defects found in the splits read so far (folder sources).
    """

    class_names: List[str]
    category_ids: List[int]
    report: DataReport

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def classes(self) -> ClassMap:
        return ClassMap(list(self.class_names), list(self.category_ids))

    def num_examples(self, split: str) -> int:
        """Usable examples of `split` (raises DataError, naming what exists, when it does
        not exist)."""
        raise NotImplementedError

    def read(self, split: str) -> tf.data.Dataset:
        """Records of `split` in file order: `image` (encoded bytes), `image_id` int64,
        `boxes` float32 `[N, 4]` normalised `ymin, xmin, ymax, xmax`, `labels` int32 `[N]`,
        `is_crowd` bool `[N]`. Entry points check the split first (`check_splits`)."""
        raise NotImplementedError

    def stream(self, split: str, num_shards: int = 1,
               shard: int = 0) -> Tuple[tf.data.Dataset, Callable[[tf.Tensor], Record]]:
        """`split` as the training stream takes it: the elements it shuffles, repeats and
        skips (every `num_shards`-th from `shard` on: a worker's share), in file order, and
        the function that turns one element into a record (`read`'s format). The stream reads
        after it skips: a folder source's elements are image positions, so a resumed run
        reads no file of the examples it skips."""
        raise NotImplementedError

    def annotation_file(self, split: str) -> Optional[Path]:
        """A COCO file whose annotations evaluation should use as they are (None: build the
        ground truth from the records)."""
        return None

    def index_counts(self) -> Dict[str, int]:
        """The image files this process's checks looked up (`images_indexed`) and how many of
        them it decoded (`images_checked`; the others came from the index cache); empty for a
        source without image checks."""
        return {}

    def index_line(self) -> Optional[str]:
        """`index_counts` as a line for the console, naming up to three checked files when the
        index cache held the rest (new or changed files); None when there is nothing to say."""
        return None


class TfdsSource(Source):
    """A prepared TFDS detection dataset (`shapes`, `voc/2007`, `coco/2017`, ...). With
    `cache` (`dataset.cache`) the training stream keeps its records in memory after the
    first pass (the TFRecord files have no random access: its elements are the records)."""

    def __init__(self, builder: tfds.core.DatasetBuilder, class_names: List[str],
                 category_ids: List[int], cache: bool = False):
        self.builder = builder
        self.class_names = class_names
        self.category_ids = category_ids
        self.cache = cache
        self.report = DataReport()

    def num_examples(self, split: str) -> int:
        return self._split_info(split).num_examples

    def _split_info(self, split: str):
        splits = self.builder.info.splits
        if split not in splits:
            raise DataError(f"split {split!r} does not exist in dataset "
                            f"{self.builder.info.full_name}; it has: {', '.join(sorted(splits))}")
        return splits[split]

    def read(self, split: str) -> tf.data.Dataset:
        dataset = self.builder.as_dataset(split=split, shuffle_files=False,
                                          decoders={"image": tfds.decode.SkipDecoding()})
        has_id, ignore_key = record_layout(self.builder.info.features)
        return dataset.enumerate().map(
            lambda index, example: to_record(example, index, has_id, ignore_key),
            num_parallel_calls=tf.data.AUTOTUNE)

    def stream(self, split: str, num_shards: int = 1,
               shard: int = 0) -> Tuple[tf.data.Dataset, Callable[[tf.Tensor], Record]]:
        records = self.read(split)
        if num_shards > 1:
            records = records.shard(num_shards, shard)
        if self.cache:
            records = records.cache()
        return records, lambda record: record


class FolderSource(Source):
    """A VOC-XML or COCO-JSON folder (`voc.py`, `coco.py`). Each split is parsed, checked
    against its images and repaired once, on first use (`annotations.clean_split`); every case
    goes to `report`. The training stream shuffles and skips image positions in the split's
    index and reads the files it keeps.

    Args:
        parse: split -> its parsed `RawImage`s.
        class_keys: `C` class keys (VOC: names; COCO: category ids), index = class id.
        class_names, category_ids: see `Source`.
        report: collects the defects (strict or not).
        max_objects: `targets.max_objects`, for the `too_many_objects` note.
        annotation_files: split -> its COCO file, for evaluation (COCO only).
        location: split -> where its annotations are, for messages.
        classes_chosen: the classes come from `dataset.classes` (see `clean_split`).
        probe: checks image files (`clean_split`'s; `dataset.cache`: an `IndexCache`).
    """

    def __init__(self, parse: Callable[[str], List[RawImage]], class_keys: Sequence,
                 class_names: List[str], category_ids: List[int], report: DataReport,
                 max_objects: Optional[int] = None,
                 annotation_files: Optional[Callable[[str], Path]] = None,
                 location: Callable[[str], str] = str, classes_chosen: bool = False,
                 probe: Callable[[Sequence[Path]], list] = probe_images,
                 inputs: Callable[[str], List[Path]] = lambda split: [],
                 split_cache: Optional[SplitCache] = None):
        self._parse = parse
        self._class_index = {key: index for index, key in enumerate(class_keys)}
        self.class_names = class_names
        self.category_ids = category_ids
        self.report = report
        self._max_objects = max_objects
        self._annotation_files = annotation_files
        self._location = location
        self._classes_chosen = classes_chosen
        self._probe = probe
        self._inputs = inputs
        self._split_cache = split_cache
        self._splits: Dict[str, SplitIndex] = {}
        self.images_indexed = 0  # image files looked up by the checks so far
        self.images_from_split_cache = 0  # images of splits the split cache held
        self._read_failures = 0  # image files that could not be read (not: did not decode)

    def _counted_probe(self, paths: Sequence[Path]) -> list:
        self.images_indexed += len(paths)
        outcomes = self._probe(paths)
        self._read_failures += sum(isinstance(outcome, ValueError) and
                                   isinstance(outcome.__cause__, OSError)
                                   for outcome in outcomes)
        return outcomes

    def _cache_settings(self, split: str) -> dict:
        """What besides its inputs decides a split's index (`split_cache.SplitCache`)."""
        return {"split": split, "inputs": [str(path) for path in self._inputs(split)],
                "classes": [str(key) for key in self._class_index],
                "max_objects": self._max_objects, "strict": self.report.strict,
                "classes_chosen": self._classes_chosen}

    def _checked_split(self, split: str) -> SplitIndex:
        """The split parsed and checked (`clean_split`), or as the split cache kept it."""
        settings = self._cache_settings(split) if self._split_cache else {}
        if self._split_cache:
            cached = self._split_cache.load(settings)
            if cached is not None:
                self.report.cases.extend(cached.cases)
                self.report.splits[split] = cached.counts
                self.images_from_split_cache += cached.counts.images
                return cached.index
        first_case, read_failures = len(self.report.cases), self._read_failures
        images = self._parse(split)
        index = clean_split(split, images, self._class_index, self.report, self._max_objects,
                            self._counted_probe, location=self._location(split),
                            classes_chosen=self._classes_chosen)
        # A file that could not be read says nothing about its content: such a split is
        # checked again at every start, as the index cache checks that file again.
        if self._split_cache and self._read_failures == read_failures:
            found = [str(image.image_path) for image in images if image.image_path]
            inputs = [*settings["inputs"], *found, *sorted({os.path.dirname(p) for p in found})]
            self._split_cache.save(settings, CachedSplit(
                index, self.report.cases[first_case:], self.report.splits[split],
                split_stamps(inputs)))
        return index

    def index_counts(self) -> Dict[str, int]:
        checked = (len(self._probe.checked) if isinstance(self._probe, IndexCache)
                   else self.images_indexed)
        return {"images_indexed": self.images_indexed + self.images_from_split_cache,
                "images_checked": checked}

    def index_line(self) -> Optional[str]:
        total = self.images_indexed + self.images_from_split_cache
        if not total:
            return None
        if not isinstance(self._probe, IndexCache):
            return f"index: {total:,} images checked (dataset.cache=false)"
        checked = self._probe.checked
        line = f"index: {total:,} images"
        if self.images_from_split_cache:
            line += (f", {self.images_from_split_cache:,} in splits kept by the split cache "
                     f"(annotations and images unchanged)")
        if self.images_indexed:
            line += (f", {self.images_indexed - len(checked):,} from the index cache, "
                     f"{len(checked):,} checked")
        if checked and len(checked) <= 3 and len(checked) < total:
            line += " (new or changed: " + ", ".join(str(path) for path in checked) + ")"
        return line

    def index(self, split: str) -> SplitIndex:
        """The split's usable images and objects (parsed and checked on first use)."""
        if split not in self._splits:
            self._splits[split] = self._checked_split(split)
        return self._splits[split]

    def num_examples(self, split: str) -> int:
        return len(self.index(split))

    def read(self, split: str) -> tf.data.Dataset:
        return self.index(split).records()

    def stream(self, split: str, num_shards: int = 1,
               shard: int = 0) -> Tuple[tf.data.Dataset, Callable[[tf.Tensor], Record]]:
        index = self.index(split)
        positions = tf.data.Dataset.range(len(index))
        if num_shards > 1:
            positions = positions.shard(num_shards, shard)
        return positions, index.reader()

    def annotation_file(self, split: str) -> Optional[Path]:
        return self._annotation_files(split) if self._annotation_files else None


def record_layout(features) -> Tuple[bool, Optional[str]]:
    """Whether a TFDS feature dict has `image/id`, and its ignore flag in `objects`
    (`is_crowd` for COCO, `is_difficult` for VOC, None when there is none)."""
    ignore_key = next((key for key in ("is_crowd", "is_difficult") if key in features["objects"]),
                      None)
    return "image/id" in features, ignore_key


def to_record(example: Record, index: tf.Tensor, has_id: bool,
              ignore_key: str | None) -> Record:
    """A TFDS detection example -> a record (see `Source.read`).

    Args:
        example: TFDS features with `image`, `objects/bbox`, `objects/label` (and `image/id`).
        index: the example's position in its split, its id when it has no `image/id`.
        has_id: whether `image/id` exists.
        ignore_key: the `objects` flag marking boxes to ignore (`is_crowd`, `is_difficult`).
    """
    objects = example["objects"]
    labels = tf.cast(objects["label"], tf.int32)
    is_crowd = (tf.cast(objects[ignore_key], tf.bool) if ignore_key
                else tf.zeros_like(labels, dtype=tf.bool))
    return {
        "image": example["image"],
        "image_id": tf.cast(example["image/id"] if has_id else index, tf.int64),
        "boxes": tf.cast(objects["bbox"], tf.float32),
        "labels": labels,
        "is_crowd": is_crowd,
    }


def decode_record(record: Record) -> Record:
    """A record from `Source.read` -> the common example format (module docstring)."""
    image = tf.io.decode_image(record["image"], channels=3, expand_animations=False)
    shape = tf.cast(tf.shape(image), tf.float32)
    scale = tf.stack([shape[1], shape[0], shape[1], shape[0]])
    ymin_xmin_ymax_xmax = record["boxes"]
    boxes = tf.gather(ymin_xmin_ymax_xmax, [1, 0, 3, 2], axis=1) * scale
    return {
        "image": tf.ensure_shape(image, [None, None, 3]),
        "boxes": tf.reshape(boxes, [-1, 4]),
        "labels": record["labels"],
        "is_crowd": record["is_crowd"],
        "image_id": record["image_id"],
    }


def _class_names(builder: tfds.core.DatasetBuilder) -> List[str]:
    label = builder.info.features["objects"]["label"]
    return list(label.names)


def _shapes_builder(cfg: DatasetConfig, data_dir: str | None) -> tfds.core.DatasetBuilder:
    config = shapes.shapes_config(
        image_size=cfg.image_size, num_train=cfg.num_train, num_val=cfg.num_val,
        max_shapes=cfg.max_shapes, min_size=cfg.min_size, max_size=cfg.max_size,
        max_overlap=cfg.max_overlap, seed=cfg.seed, empty_fraction=cfg.empty_fraction,
        num_test=cfg.num_test)
    return shapes.load_builder(config, data_dir)


def _tfds_builder(cfg: DatasetConfig, data_dir: str | None) -> tfds.core.DatasetBuilder:
    try:
        builder = tfds.builder(cfg.name, data_dir=data_dir)
    except Exception as error:  # TFDS raises several types for unknown names
        raise DataError(f"dataset.name={cfg.name!r} is not a TFDS dataset this installation "
                        f"knows: {error}") from error
    if not builder.is_prepared():
        where = data_dir or "the TFDS default data dir (~/tensorflow_datasets)"
        raise DataError(f"dataset.name={cfg.name!r} has no prepared data in {where}. This project "
                        f"never downloads: prepare it first (e.g. `tfds build {cfg.name} "
                        f"--data_dir DIR`) and pass dataset.data_dir=DIR.")
    features = builder.info.features
    if "objects" not in features or "bbox" not in features["objects"] or \
            "label" not in features["objects"]:
        raise DataError(f"dataset.name={cfg.name!r} is not a detection dataset: it has no "
                        f"objects/bbox and objects/label features")
    return builder


def _root(cfg: DatasetConfig) -> Optional[Path]:
    if not cfg.root:
        return None
    root = Path(os.path.expanduser(cfg.root))
    if not root.is_dir():
        raise DataError(f"dataset.root={cfg.root}: no such folder")
    return root


def _fixed_classes(names: Sequence[str], known: Sequence, what: str) -> None:
    missing = [name for name in names if name not in known]
    if missing:
        raise DataError(f"dataset.classes: {', '.join(map(repr, missing))} not among the "
                        f"{what}: {', '.join(map(str, known))}")


def _image_probe(cfg: DatasetConfig) -> Callable[[Sequence[Path]], list]:
    """How a folder source checks its images: through the index cache with `dataset.cache`,
    else every image decoded at every start."""
    return IndexCache() if cfg.cache else probe_images


def _kept_facts(split_cache: Optional[SplitCache], settings: dict, inputs: List[Path],
                read: Callable[[], dict]) -> dict:
    """`read()` (facts from annotation files, JSON-able), or what the split cache kept of it
    while `inputs` are unchanged; without a split cache, `read()`."""
    if split_cache is None:
        return read()
    facts = split_cache.load_facts(settings)
    if facts is None:
        facts = read()
        split_cache.save_facts(settings, facts, [str(path) for path in inputs])
    return facts


def _voc_source(cfg: DatasetConfig, classes: Optional[ClassMap], report: DataReport,
                max_objects: Optional[int]) -> FolderSource:
    root = _root(cfg)
    parsed: Dict[str, List[RawImage]] = {}

    def parse(split: str) -> List[RawImage]:
        if split not in parsed:
            parsed[split] = voc.read_split(root, split)
        return parsed[split]

    def inputs(split: str) -> List[Path]:
        listing = voc.split_list(root, split)
        files, image_dir = voc.annotation_files(root, split)
        return ([listing if listing.is_file() else root / split] + files
                + ([image_dir] if image_dir else []))

    split_cache = SplitCache() if cfg.cache else None
    if classes is not None:
        names = classes.names
    elif cfg.classes:
        names = list(cfg.classes)
    else:
        train_inputs = inputs(cfg.train_split)  # reads the split's listing once
        names = _kept_facts(
            split_cache, {"facts": "voc class names", "split": cfg.train_split,
                          "inputs": [str(path) for path in train_inputs]},
            train_inputs, lambda: {"names": voc.class_names(parse(cfg.train_split))})["names"]
        if not names:
            raise DataError(f"dataset.root={cfg.root}: split {cfg.train_split!r} has no "
                            f"named objects to take class names from; set dataset.classes")

    def location(split: str) -> str:
        listing = voc.split_list(root, split)
        return str(listing if listing.is_file() else root / split)

    return FolderSource(parse, names, list(names), list(range(len(names))), report,
                        max_objects, location=location, classes_chosen=bool(cfg.classes),
                        probe=_image_probe(cfg), inputs=inputs, split_cache=split_cache)


def _coco_source(cfg: DatasetConfig, classes: Optional[ClassMap], report: DataReport,
                 max_objects: Optional[int]) -> FolderSource:
    _root(cfg)
    loaded: Dict[str, coco.COCO] = {}

    def paths(split: str) -> Tuple[Path, Path]:
        return coco.split_paths(os.path.expanduser(cfg.root or ""), split,
                                cfg.annotation_file, cfg.image_dir)

    def load(split: str) -> coco.COCO:
        if split not in loaded:
            loaded[split] = coco.load(paths(split)[0])
        return loaded[split]

    def parse(split: str) -> List[RawImage]:
        return coco.read_split(load(split), *paths(split))

    def inputs(split: str) -> List[Path]:
        return list(paths(split))

    split_cache = SplitCache() if cfg.cache else None
    if classes is not None:
        names, ids = classes.names, classes.category_ids
    else:
        train_file = paths(cfg.train_split)[0]
        kept = _kept_facts(split_cache, {"facts": "coco categories", "file": str(train_file)},
                           [train_file], lambda: dict(zip(
                               ("names", "ids"), coco.categories(load(cfg.train_split)))))
        names, ids = kept["names"], kept["ids"]
        if cfg.classes:
            _fixed_classes(cfg.classes, names, f"categories of {paths(cfg.train_split)[0]}")
            ids = [ids[names.index(name)] for name in cfg.classes]
            names = list(cfg.classes)
    return FolderSource(parse, ids, list(names), list(ids), report, max_objects,
                        annotation_files=lambda split: paths(split)[0],
                        location=lambda split: "{}, images in {}".format(*paths(split)),
                        classes_chosen=bool(cfg.classes), probe=_image_probe(cfg),
                        inputs=inputs, split_cache=split_cache)


def build_source(cfg: DatasetConfig, classes: Optional[ClassMap] = None,
                 max_objects: Optional[int] = None) -> Source:
    """The source `cfg.source` names, with its class names and original category ids.

    Args:
        cfg: the `dataset` config.
        classes: a saved run's classes, which folder sources keep instead of finding their own.
        max_objects: `targets.max_objects`, so folder sources can note images with more.
    """
    if cfg.source in ("voc_xml", "coco_json"):
        if classes is not None and cfg.classes and list(cfg.classes) != classes.names:
            raise DataError(f"dataset.classes={list(cfg.classes)} differs from the classes "
                            f"this run was trained with ({classes.names}, its {ClassMap.FILE}); "
                            f"start a new run to train other classes")
        build = _voc_source if cfg.source == "voc_xml" else _coco_source
        return build(cfg, classes, DataReport(strict=cfg.strict), max_objects)
    data_dir = os.path.expanduser(cfg.data_dir) if cfg.data_dir else None
    if cfg.source == "shapes":
        builder = _shapes_builder(cfg, data_dir)
    else:
        builder = _tfds_builder(cfg, data_dir)
    names = _class_names(builder)
    return TfdsSource(builder=builder, class_names=names, category_ids=list(range(len(names))),
                      cache=cfg.cache)


def check_splits(source: Source, splits: Sequence[str]) -> None:
    """Fail early, naming the split and the splits that exist, before any training work."""
    for split in splits:
        source.num_examples(split)
