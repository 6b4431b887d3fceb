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

Importing this module registers the builder with TFDS under the name "shapes".
"""

from __future__ import annotations

import collections
import colorsys
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

CLASS_NAMES = ("circle", "rectangle", "triangle")
CIRCLE, RECTANGLE, TRIANGLE = range(len(CLASS_NAMES))

VERSION = "1.0.0"
# Split name -> split number, the second component of each example's random seed.
SPLITS = {"train": 0, "validation": 1, "test": 2}

FILLED_PROBABILITY = 0.7
AXIS_ALIGNED_PROBABILITY = 0.5
MAX_RECTANGLE_ANGLE = 45.0  # degrees, either sign
MIN_RECTANGLE_ASPECT = 0.3  # short side / long side
MIN_TRIANGLE_ANGLE = 25.0  # degrees
MAX_OUTSIDE_FRACTION = 0.2  # per axis, of the object's extent: >= 0.8**2 = 64% of it is inside
PLACEMENT_TRIES = 20
CIRCLE_SAGITTA = 0.05  # px: largest gap between a circle and the polygon that draws it
DRAW_SHIFT = 8  # fractional bits of the fixed-point vertices handed to OpenCV (1/256 px)
BACKGROUND_RANGE = (30, 170)  # background values are clipped into this range
BACKGROUND_NOISE = (2.0, 6.0)  # range of the per-pixel noise's standard deviation
BACKGROUND_FIELD_SIZE = 32  # px, resolution of the smooth colour field before upsampling
# Fast lossless PNG: noise does not compress much whatever the effort.
PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
]  # fmt: skip


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


def shapes_config(
    image_size: int = 128,
    num_train: int = 4000,
    num_val: int = 500,
    max_shapes: int = 6,
    min_size: float = 0.08,
    max_size: float = 0.5,
    max_overlap: float = 0.3,
    seed: int = 0,
    empty_fraction: float = 0.0,
    num_test: int = 0,
) -> ShapesConfig:
    """A `ShapesConfig` with these parameters, named after them, version `VERSION`."""
    return ShapesConfig(
        image_size=image_size, num_train=num_train, num_val=num_val, max_shapes=max_shapes,
        min_size=min_size, max_size=max_size, max_overlap=max_overlap, seed=seed,
        empty_fraction=empty_fraction, num_test=num_test,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Shape:
    """One object of a scene, in continuous pixel coordinates (`(x, y)` points).

    Attributes:
      kind: class id, index into `CLASS_NAMES` (0 circle, 1 rectangle, 2 triangle).
      center: circle centre, rectangle centre, or triangle circumcentre, px.
      radius: circle radius, px (0 for other kinds).
      half_size: rectangle half-width and half-height before rotation, px ((0, 0) otherwise).
      angle: rectangle rotation, degrees in [-45, 45] (0 otherwise): a corner offset
        `(dx, dy)` maps to `center + (dx cos a - dy sin a, dx sin a + dy cos a)`.
      vertices: the triangle's three vertices, px (empty otherwise).
      color: RGB colour of its pixels.
      filled: filled, or outlined with a stroke of `thickness` px.
      thickness: stroke width of an outlined object, an even number of px (0 when filled): the
        stroke covers the points within `thickness / 2` of the outline. OpenCV draws an odd
        width w as w + 1, so only even widths are drawn as specified.
    """

    kind: int
    center: tuple[float, float]
    radius: float
    half_size: tuple[float, float]
    angle: float
    vertices: tuple[tuple[float, float], ...]
    color: tuple[int, int, int]
    filled: bool
    thickness: int


def example_rng(seed: int, split_index: int, index: int) -> np.random.Generator:
    """The random generator of one example: `generate_example` draws from it `sample_scene`
    first, then `draw_background`."""
    return np.random.default_rng([seed, split_index, index])


def _sample_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated, bright RGB colour: HSV with S in [0.5, 1], V in [0.7, 1]."""
    hue, saturation, value = rng.uniform((0.0, 0.5, 0.7), (1.0, 1.0, 1.0))
    rgb = colorsys.hsv_to_rgb(hue, saturation, value)
    return tuple(int(round(255 * channel)) for channel in rgb)


def _triangle_vertices(rng: np.random.Generator) -> np.ndarray:
    """Vertices `[3, 2]` of a triangle inscribed in the unit circle, every angle >=
    `MIN_TRIANGLE_ANGLE`, randomly rotated."""
    spare = 180.0 - 3 * MIN_TRIANGLE_ANGLE
    angles = np.radians(MIN_TRIANGLE_ANGLE + spare * rng.dirichlet((1.0, 1.0, 1.0)))
    # Inscribed angle theorem: the arc between two vertices is twice the angle at the third.
    start = rng.uniform(0.0, 2 * math.pi)
    polar = start + np.array([0.0, 2 * angles[2], 2 * (angles[2] + angles[0])])
    return np.stack([np.cos(polar), np.sin(polar)], axis=1)


def _rectangle_corners(center, half_size, angle: float) -> np.ndarray:
    """Corners `[4, 2]` of a rotated rectangle (see `Shape`), in drawing order."""
    half_w, half_h = half_size
    offsets = np.array([(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)])
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    rotation = np.array([[cos, -sin], [sin, cos]])
    return np.asarray(center, np.float64) + offsets @ rotation.T


def _circle_polygon(center, radius: float) -> np.ndarray:
    """Vertices `[V, 2]` of the regular polygon inscribed in the circle whose edges stay within
    `CIRCLE_SAGITTA` px of it."""
    step = math.acos(max(1.0 - CIRCLE_SAGITTA / radius, -1.0))  # half the angle between vertices
    count = max(8, math.ceil(math.pi / step))
    polar = np.linspace(0.0, 2 * math.pi, count, endpoint=False)
    unit = np.stack([np.cos(polar), np.sin(polar)], axis=1)
    return np.asarray(center, np.float64) + radius * unit


def _outline(shape: Shape) -> np.ndarray:
    """The polygon `[V, 2]` (px) that draws the shape (for circles, `_circle_polygon`)."""
    if shape.kind == CIRCLE:
        return _circle_polygon(shape.center, shape.radius)
    if shape.kind == RECTANGLE:
        return _rectangle_corners(shape.center, shape.half_size, shape.angle)
    return np.asarray(shape.vertices, np.float64)


def _extent(shape: Shape) -> np.ndarray:
    """Analytic extent `[x1, y1, x2, y2]` (px) of the shape, stroke included, unclipped."""
    pad = shape.thickness / 2
    if shape.kind == CIRCLE:
        x, y = shape.center
        reach = shape.radius + pad
        return np.array([x - reach, y - reach, x + reach, y + reach])
    points = _outline(shape)
    return np.concatenate([points.min(axis=0) - pad, points.max(axis=0) + pad])


def _sample_shape(rng: np.random.Generator, config: ShapesConfig) -> Shape:
    """One object centred near the origin (to be moved by `_translate`)."""
    log_size = rng.uniform(math.log(config.min_size), math.log(config.max_size))
    size = config.image_size * math.exp(log_size)
    kind = int(rng.integers(len(CLASS_NAMES)))
    filled = bool(rng.random() < FILLED_PROBABILITY)
    thickness = 0 if filled else 2 * int(rng.integers(1, max(1, int(size / 16)) + 1))
    color = _sample_color(rng)
    geometry = dict(center=(0.0, 0.0), radius=0.0, half_size=(0.0, 0.0), angle=0.0, vertices=())
    if kind == CIRCLE:
        geometry["radius"] = size / 2
    elif kind == RECTANGLE:
        sides = np.array([1.0, rng.uniform(MIN_RECTANGLE_ASPECT, 1.0)])
        if rng.random() < 0.5:
            sides = sides[::-1]
        axis_aligned = rng.random() < AXIS_ALIGNED_PROBABILITY
        angle = 0.0
        if not axis_aligned:
            angle = float(rng.uniform(-MAX_RECTANGLE_ANGLE, MAX_RECTANGLE_ANGLE))
        cos, sin = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
        box_w, box_h = sides[0] * cos + sides[1] * sin, sides[0] * sin + sides[1] * cos
        scale = size / max(box_w, box_h)
        geometry["half_size"] = (float(sides[0] * scale / 2), float(sides[1] * scale / 2))
        geometry["angle"] = angle
    else:
        unit = _triangle_vertices(rng)
        scale = size / (unit.max(axis=0) - unit.min(axis=0)).max()
        geometry["vertices"] = tuple(tuple(float(v) for v in point) for point in unit * scale)
    return Shape(kind=kind, color=color, filled=filled, thickness=thickness, **geometry)


def _translate(shape: Shape, offset: np.ndarray) -> Shape:
    """The shape moved by `offset` `(dx, dy)` px."""
    center = tuple(float(v) for v in np.asarray(shape.center) + offset)
    vertices = tuple(
        tuple(float(v) for v in np.asarray(point) + offset) for point in shape.vertices
    )
    return dataclasses.replace(shape, center=center, vertices=vertices)


def _too_much_overlap(box: np.ndarray, others: Sequence[np.ndarray], max_overlap: float) -> bool:
    """Whether `box` intersects one of `others` (all `[x1, y1, x2, y2]`) by more than
    `max_overlap` times the smaller of the two areas."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    for other in others:
        inter_w = min(box[2], other[2]) - max(box[0], other[0])
        inter_h = min(box[3], other[3]) - max(box[1], other[1])
        if inter_w > 0 and inter_h > 0:
            other_area = (other[2] - other[0]) * (other[3] - other[1])
            if inter_w * inter_h > max_overlap * min(area, other_area):
                return True
    return False


def sample_scene(rng: np.random.Generator, config: ShapesConfig) -> list[Shape]:
    """The objects of one image, in drawing order (later ones are drawn on top).

    A uniform 1..`max_shapes` number of objects is attempted. Each object's geometry is drawn
    once (so sizes stay log-uniform) and its position up to `PLACEMENT_TRIES` times, uniformly
    among the positions that keep at least 80% of its extent inside the image along each axis,
    until its image-clipped extent overlaps every earlier object's by at most `max_overlap`
    times the smaller area; an object that never fits is left out. The first always fits, so a
    scene has at least one object, unless it is one of the `empty_fraction` left empty.
    """
    if config.empty_fraction and rng.random() < config.empty_fraction:
        return []
    size = config.image_size
    count = int(rng.integers(1, config.max_shapes + 1))
    shapes: list[Shape] = []
    placed: list[np.ndarray] = []
    for _ in range(count):
        shape = _sample_shape(rng, config)
        extent = _extent(shape)
        span = extent[2:] - extent[:2]
        low = -MAX_OUTSIDE_FRACTION * span - extent[:2]
        high = size - (1 - MAX_OUTSIDE_FRACTION) * span - extent[:2]
        for _ in range(PLACEMENT_TRIES):
            offset = rng.uniform(low, high)
            box = np.clip(extent + np.tile(offset, 2), 0, size)
            if not _too_much_overlap(box, placed, config.max_overlap):
                shapes.append(_translate(shape, offset))
                placed.append(box)
                break
    return shapes


def draw_background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A textured, noisy, darkish background, uint8 `[image_size, image_size, 3]` RGB.

    A random grey level and tint, plus two octaves of smooth colour noise (random grids of 2..5
    and 8..16 cells, bicubically upsampled to `BACKGROUND_FIELD_SIZE` px, then bilinearly to the
    image), plus per-pixel Gaussian noise, clipped into `BACKGROUND_RANGE`.
    """
    field_shape = (BACKGROUND_FIELD_SIZE, BACKGROUND_FIELD_SIZE, 3)
    field = np.full(field_shape, rng.uniform(70.0, 110.0), np.float32)
    field += rng.uniform(-15.0, 15.0, size=3).astype(np.float32)
    for cells_range, amplitude in (((2, 6), 30.0), ((8, 17), 12.0)):
        cells = int(rng.integers(*cells_range))
        grid = rng.uniform(-amplitude, amplitude, size=(cells, cells, 3)).astype(np.float32)
        field += cv2.resize(grid, field.shape[:2], interpolation=cv2.INTER_CUBIC)
    noise = rng.standard_normal((image_size, image_size, 3), dtype=np.float32)
    noise *= rng.uniform(*BACKGROUND_NOISE)
    noise += cv2.resize(field, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(noise, out=noise), *BACKGROUND_RANGE, out=noise).astype(np.uint8)


def _draw_mask(mask: np.ndarray, shape: Shape) -> None:
    """Sets to 1 the pixels of `mask` (uint8 `[H, W]`) that OpenCV draws for `shape`.

    No anti-aliasing (LINE_8); vertices in fixed point with `DRAW_SHIFT` fractional bits, shifted
    by half a pixel because OpenCV puts integer coordinates at pixel centres.
    """
    points = np.rint((_outline(shape) - 0.5) * (1 << DRAW_SHIFT)).astype(np.int32)
    if shape.filled:
        cv2.fillConvexPoly(mask, points, 1, lineType=cv2.LINE_8, shift=DRAW_SHIFT)
    else:
        cv2.polylines(
            mask, [points], True, 1, thickness=shape.thickness, lineType=cv2.LINE_8,
            shift=DRAW_SHIFT,
        )  # fmt: skip


def render_scene(
    shapes: Sequence[Shape], background: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draws `shapes` in order onto a copy of `background` (uint8 `[H, W, 3]` RGB).

    Each object is drawn alone into a mask, its pixels set to its exact colour, and its box is
    the tight box of its mask, so it is clipped to the image; an object with an empty mask is
    dropped.

    Returns:
      image: uint8 `[H, W, 3]` RGB.
      boxes: float32 `[N, 4]`, `x1, y1, x2, y2` pixels (`x2` = last column + 1).
      labels: int32 `[N]`, class ids.
      kept: int32 `[N]`, index into `shapes` of each box's object.
    """
    image = background.copy()
    mask = np.empty(image.shape[:2], np.uint8)
    boxes, kept = [], []
    for index, shape in enumerate(shapes):
        mask.fill(0)
        _draw_mask(mask, shape)
        columns = np.flatnonzero(mask.any(axis=0))
        if columns.size == 0:
            continue
        rows = np.flatnonzero(mask.any(axis=1))
        image[mask.view(bool)] = shape.color
        boxes.append((columns[0], rows[0], columns[-1] + 1, rows[-1] + 1))
        kept.append(index)
    labels = [shapes[index].kind for index in kept]
    return (
        image,
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int32),
        np.array(kept, np.int32),
    )


def generate_example(config: ShapesConfig, split_index: int, index: int) -> dict:
    """The TFDS example `index` of split number `split_index` (see `SPLITS`).

    Returns the feature dict of `Shapes`: `image` PNG bytes, `image/id` = `index` (unique within
    its split), `objects` with `bbox` `[N, 4]` normalised `ymin, xmin, ymax, xmax`, `label` `[N]`,
    `filled` `[N]` and `color` uint8 `[N, 3]`.
    """
    rng = example_rng(config.seed, split_index, index)
    shapes = sample_scene(rng, config)
    image, boxes, labels, kept = render_scene(shapes, draw_background(rng, config.image_size))
    bgr = np.ascontiguousarray(image[..., ::-1])  # OpenCV encodes BGR
    encoded, png = cv2.imencode(".png", bgr, PNG_PARAMS)
    if not encoded:
        raise RuntimeError(f"PNG encoding failed for shapes example {split_index}/{index}")
    return {
        "image": png.tobytes(),
        "image/id": index,
        "objects": {
            "bbox": boxes[:, [1, 0, 3, 2]].astype(np.float64) / config.image_size,
            "label": labels,
            "filled": np.array([shapes[i].filled for i in kept], bool),
            "color": np.array([shapes[i].color for i in kept], np.uint8).reshape(-1, 3),
        },
    }


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
