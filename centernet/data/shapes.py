"""The built-in synthetic `shapes` dataset: a TFDS `GeneratorBasedBuilder`.

Each image is a square RGB picture of `image_size` pixels: a textured, noisy, darkish background
with 1..`max_shapes` circles, rectangles and triangles drawn on it, filled or outlined, in
saturated colours. Boxes are the exact tight boxes of each object's drawn pixels.

Coordinates are continuous pixel coordinates: the pixel at column `c`, row `r` covers
`[c, c + 1) x [r, r + 1)`, its centre is `(c + 0.5, r + 0.5)`; points are `(x, y)`.

The records have the same structure as TFDS's `voc` and `coco` (`objects/bbox` normalised
`[ymin, xmin, ymax, xmax]`, `objects/label`), so one TFDS adapter reads all of them, plus
`objects/filled` and `objects/color`. Every example is a pure function of
`(seed, split_index, index)` (`example_rng`), so examples are reproducible independently, in any
order, and two preparations of one config give identical records.

Importing this module registers the builder with TFDS under the name "shapes". Its scenes are
drawn by `centernet.data.shapes_scene`; this module holds the dataset's settings
(`ShapesConfig`, named after them) and its TFDS builder.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import logging
import math
import os
import threading
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from centernet.config import DatasetConfig
from centernet.data.shapes_scene import CLASS_NAMES, generate_example

VERSION = "1.0.0"
_SCHEMA = DatasetConfig()  # the source of ShapesConfig's defaults
# Split name -> split number, the second component of each example's random seed.
SPLITS = {"train": 0, "validation": 1, "test": 2}


@dataclasses.dataclass(eq=False, kw_only=True)
class ShapesConfig(tfds.core.BuilderConfig):
    """Parameters of the generated data; `name` is derived from them.

    TFDS 4.9's `BuilderConfig` is a mutable dataclass (`eq=False`), and a frozen dataclass cannot
    inherit from a mutable one, so this one refuses assignments after construction instead
    (equality stays identity, as in the base class; compare names). `name` and `description`
    are derived, not arguments: the name encodes every parameter (see `config_name`), so
    different parameters never share prepared data, and `dataclasses.replace` renames.

    Attributes:
      image_size: side of the square images, pixels.
      num_train: number of examples in the "train" split.
      num_val: number of examples in the "validation" split.
      num_test: number of examples in the "test" split (0: no test split, as before it
        existed): images from their own seeds, for figures from data nothing was tuned on.
      max_shapes: each image gets a uniform 1..max_shapes number of objects to place (an object
        that cannot be placed without too much overlap is left out, the first always fits).
      min_size, max_size: range of an object's size, the longer side of its geometric bounding
        box, as a fraction of `image_size`; sampled log-uniformly.
      max_overlap: largest allowed intersection of two objects' boxes, as a fraction of the
        smaller box's area.
      seed: seed of the whole dataset.
      empty_fraction: probability that an image has no objects at all (background only);
        0 (the default) draws nothing for it, so such datasets are unchanged by the option.
    """

    name: str = dataclasses.field(default="", init=False)
    description: str = dataclasses.field(default="", init=False)
    version: str = VERSION
    # the defaults are the schema's `dataset.*` ones (`centernet.config.DatasetConfig`)
    image_size: int = _SCHEMA.image_size
    num_train: int = _SCHEMA.num_train
    num_val: int = _SCHEMA.num_val
    num_test: int = _SCHEMA.num_test
    max_shapes: int = _SCHEMA.max_shapes
    min_size: float = _SCHEMA.min_size
    max_size: float = _SCHEMA.max_size
    max_overlap: float = _SCHEMA.max_overlap
    seed: int = _SCHEMA.seed
    empty_fraction: float = _SCHEMA.empty_fraction

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(
                f"num_train and num_val must be >= 1, got {self.num_train}, {self.num_val}"
            )
        if self.num_test < 0:
            raise ValueError(f"num_test must be >= 0, got {self.num_test}")
        if self.max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1, got {self.max_shapes}")
        if not 0 < self.min_size <= self.max_size <= 1:
            raise ValueError(
                f"need 0 < min_size <= max_size <= 1, got {self.min_size}, {self.max_size}"
            )
        if self.min_size * self.image_size < 2:
            raise ValueError(
                f"min_size * image_size must be >= 2 px, got {self.min_size * self.image_size}"
            )
        if not 0 <= self.max_overlap <= 1:
            raise ValueError(f"max_overlap must be in [0, 1], got {self.max_overlap}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 0 <= self.empty_fraction < 1:
            raise ValueError(f"empty_fraction must be in [0, 1), got {self.empty_fraction}")
        self.name = config_name(
            self.image_size, self.num_train, self.num_val, self.max_shapes,
            self.min_size, self.max_size, self.max_overlap, self.seed, self.empty_fraction,
            self.num_test,
        )  # fmt: skip
        self.description = f"Synthetic shapes, {self.image_size}x{self.image_size} px, {self.name}."
        self._frozen = True

    def __setattr__(self, name: str, value) -> None:
        if getattr(self, "_frozen", False):
            raise dataclasses.FrozenInstanceError(f"ShapesConfig is immutable: {name!r}")
        super().__setattr__(name, value)


def config_name(
    image_size: int,
    num_train: int,
    num_val: int,
    max_shapes: int,
    min_size: float,
    max_size: float,
    max_overlap: float,
    seed: int,
    empty_fraction: float = 0.0,
    num_test: int = 0,
) -> str:
    """The config name encoding every parameter, e.g. `s128_t4000_v500_m6_z0.08-0.5_o0.3_seed0`
    (and `_e0.25` for `empty_fraction=0.25`, `_x500` for `num_test=500`; nothing when they are
    0, as before they existed).

    Floats are written with `repr`, the shortest string that round-trips, so different values
    never give the same name.
    """
    empty = f"_e{float(empty_fraction)!r}" if empty_fraction else ""
    test = f"_x{num_test}" if num_test else ""
    return (
        f"s{image_size}_t{num_train}_v{num_val}_m{max_shapes}"
        f"_z{float(min_size)!r}-{float(max_size)!r}_o{float(max_overlap)!r}_seed{seed}{empty}"
        f"{test}"
    )


def shapes_config(**parameters) -> ShapesConfig:
    """A `ShapesConfig` with these parameters (`ShapesConfig`'s fields; the others keep their
    defaults), named after them, version `VERSION`."""
    return ShapesConfig(**parameters)


# Seconds per 128 x 128 image of a whole preparation on two CPU cores (4,500 images in ~20 s).
PREPARE_SECONDS_PER_IMAGE = 20 / 4500


def preparation_message(config: ShapesConfig, data_dir: str) -> str:
    """The line printed when the data of `config` is generated, with a rough duration."""
    images = config.num_train + config.num_val + config.num_test
    seconds = images * (config.image_size / 128) ** 2 * PREPARE_SECONDS_PER_IMAGE
    if seconds < 10:
        duration = "a few seconds"
    elif seconds < 90:
        duration = f"about {round(seconds, -1):.0f} s"
    else:
        duration = f"about {math.ceil(seconds / 60)} min"
    return (f"preparing the built-in shapes dataset once ({images:,} images, {duration}) "
            f"into {data_dir}")


class Shapes(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of the synthetic shapes dataset (registered as "shapes").

    The default config is `ShapesConfig()`. Any other `ShapesConfig` can be passed as `config`;
    one equal to a registered config (same name) is replaced by it, as TFDS refuses a custom
    config that shares a registered config's name.
    """

    VERSION = tfds.core.Version(VERSION)
    BUILDER_CONFIGS = [ShapesConfig()]

    def __init__(self, *, config: str | tfds.core.BuilderConfig | None = None, **kwargs):
        if isinstance(config, ShapesConfig):
            config = self.get_builder_config(config.name) or config
        super().__init__(config=config, **kwargs)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This module's file. TFDS's own lookup needs the `importlib_resources` package, which
        TFDS 4.9.10 does not declare on Python >= 3.9 (tensorflow/datasets#11212)."""
        return epath.Path(__file__)

    def _log_download_bytes(self) -> None:
        """Says what preparation does, instead of TFDS's "Downloading and preparing dataset
        Unknown size ..." (nothing is downloaded)."""
        print(preparation_message(self.builder_config, os.fspath(self.data_dir)), flush=True)

    def _log_download_done(self) -> None:
        """Nothing: TFDS would say "downloaded"."""

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Synthetic circles, rectangles and triangles on textured backgrounds.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "image/id": np.int64,
                    "objects": tfds.features.Sequence(
                        {
                            "bbox": tfds.features.BBoxFeature(),
                            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                            "filled": np.bool_,
                            "color": tfds.features.Tensor(shape=(3,), dtype=np.uint8),
                        }
                    ),
                }
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # nothing to download
        config = self.builder_config
        sizes = {"train": config.num_train, "validation": config.num_val,
                 "test": config.num_test}
        return {split: self._generate_examples(SPLITS[split], sizes[split]) for split in SPLITS
                if sizes[split]}

    def _generate_examples(self, split_index: int, num_examples: int) -> Iterator[tuple[int, dict]]:
        """Yields `(index, example)` in index order, generated by a pool of threads (NumPy and
        OpenCV release the GIL for most of the work) that runs a few examples ahead."""
        if hasattr(os, "sched_getaffinity"):
            workers = len(os.sched_getaffinity(0))
        else:
            workers = os.cpu_count() or 1
        config = self.builder_config
        with concurrent.futures.ThreadPoolExecutor(workers) as executor:
            pending: collections.deque = collections.deque()
            for index in range(num_examples):
                future = executor.submit(generate_example, config, split_index, index)
                pending.append((index, future))
                if len(pending) > 4 * workers:
                    key, future = pending.popleft()
                    yield key, future.result()
            for key, future in pending:
                yield key, future.result()


@contextlib.contextmanager
def _exclusive_lock(path: str) -> Iterator[None]:
    """Holds an exclusive `fcntl.flock` on the file `path` (created if missing; local paths)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Serialises `load_builder` within a process: `_quiet_tfds` saves and restores global settings.
_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """Hides TFDS's progress bars and its log records below ERROR inside the block (its notes
    about custom configs and missing `dataset_info.json`), restoring both settings after it."""
    tqdm_utils = tfds.core.utils.tqdm_utils
    previous_bars = tqdm_utils._active  # pylint: disable=protected-access
    logger = logging.getLogger("absl")
    previous_level = logger.level
    tfds.display_progress_bar(False)
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tfds.display_progress_bar(previous_bars)
        logger.setLevel(previous_level)


def load_builder(config: ShapesConfig, data_dir: str | None = None) -> Shapes:
    """The `Shapes` builder of `config`, prepared in `data_dir` (None: TFDS's default,
    `~/tensorflow_datasets` or `$TFDS_DATA_DIR`).

    Prepares the data only when it is not there yet, without progress bars or statistics. An
    exclusive file lock next to the data (`<data_dir>/shapes/<config>/.<version>.lock`) makes
    concurrent callers wait for one preparation instead of racing: TFDS writes into a temporary
    directory and renames it, and the loser of that race fails on the rename.
    """
    with _LOAD_LOCK, _quiet_tfds():
        builder = Shapes(config=config, data_dir=data_dir)
        if builder.is_prepared():
            return builder
        data_path = os.fspath(builder.data_path)
        lock_path = os.path.join(os.path.dirname(data_path), f".{os.path.basename(data_path)}.lock")
        with _exclusive_lock(lock_path):
            builder = Shapes(config=config, data_dir=data_dir)  # another process may have made it
            if not builder.is_prepared():
                builder.download_and_prepare(
                    download_config=tfds.download.DownloadConfig(
                        try_download_gcs=False,
                        compute_stats=tfds.download.ComputeStatsMode.SKIP,
                    )
                )
    return builder
