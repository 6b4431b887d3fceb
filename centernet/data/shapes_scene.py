"""Drawing the `shapes` dataset's scenes: sampling circles, rectangles and triangles
(`sample_scene`), a background (`draw_background`), rendering them with their exact boxes
(`render_scene`) and one TFDS example (`generate_example`), all from one example's random
generator (`example_rng`). Conventions (continuous pixels, `(x, y)` points): the dataset's own
docstring, `centernet.data.shapes`, whose TFDS builder calls `generate_example`.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # the settings a scene is drawn with: only their fields are read
    from centernet.data.shapes import ShapesConfig

CLASS_NAMES = ("circle", "rectangle", "triangle")
CIRCLE, RECTANGLE, TRIANGLE = range(len(CLASS_NAMES))

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
