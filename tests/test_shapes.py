"""Tests of the synthetic `shapes` TFDS builder (`centernet.data.shapes`).

Builds go into pytest's temporary directories, never into ~/tensorflow_datasets. Boxes, labels
and colours are checked against an analytic rasterisation written here with NumPy, independent
of the OpenCV drawing code.
"""

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from centernet.data import shapes, shapes_scene

SMALL = dict(image_size=96, num_train=20, num_val=10)


def read_split(builder: shapes.Shapes, split: str) -> dict[int, dict]:
    """The decoded examples of a split, keyed by `image/id`."""
    return {int(ex["image/id"]): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}


def tfrecord_bytes(builder: shapes.Shapes) -> dict[str, bytes]:
    """The contents of the builder's record files, by file name."""
    return {path.name: path.read_bytes() for path in Path(builder.data_path).glob("*.tfrecord*")}


@pytest.fixture(scope="module")
def small_config() -> shapes.ShapesConfig:
    return shapes.shapes_config(**SMALL)


@pytest.fixture(scope="module")
def small_builds(small_config, tmp_path_factory) -> list[shapes.Shapes]:
    """The small config prepared twice, into two directories."""
    dirs = [str(tmp_path_factory.mktemp(f"data{i}")) for i in range(2)]
    return [shapes.load_builder(small_config, data_dir) for data_dir in dirs]


# --- config -----------------------------------------------------------------------------------


def test_config_name_encodes_every_parameter():
    default = shapes.ShapesConfig()
    assert default.name == "s128_t4000_v500_m6_z0.08-0.5_o0.3_seed0"
    assert default.version == "1.0.0"
    assert shapes.shapes_config().name == default.name
    names = {
        shapes.shapes_config(**{key: value}).name
        for key, value in dict(
            image_size=64, num_train=7, num_val=3, max_shapes=2, min_size=0.1, max_size=0.4,
            max_overlap=0.0, seed=5,
        ).items()
    }  # fmt: skip
    assert len(names) == 8 and default.name not in names
    assert shapes.shapes_config(min_size=0.08000001).name != default.name
    assert shapes.shapes_config(empty_fraction=0.25).name == default.name + "_e0.25"
    assert shapes.shapes_config(num_test=500).name == default.name + "_x500"


def test_empty_fraction_leaves_that_share_of_images_empty_and_the_rest_unchanged():
    """About `empty_fraction` of the images have no objects; with 0 every scene is the one
    drawn before the option existed (no extra random draw), so existing data stays put."""
    config = shapes.shapes_config(image_size=64, num_train=400, num_val=1, max_shapes=3,
                                  min_size=0.2, max_size=0.5, empty_fraction=0.25)
    counts = [len(shapes_scene.sample_scene(shapes_scene.example_rng(0, 0, i), config)) for i in range(400)]
    empty = counts.count(0) / len(counts)
    assert 0.18 < empty < 0.32  # binomial(400, 0.25): 5 standard deviations either side
    plain = shapes.shapes_config(image_size=64, num_train=400, num_val=1, max_shapes=3,
                                 min_size=0.2, max_size=0.5)
    assert all(len(shapes_scene.sample_scene(shapes_scene.example_rng(0, 0, i), plain)) >= 1
               for i in range(100))
    with pytest.raises(ValueError, match="empty_fraction"):
        shapes.shapes_config(empty_fraction=1.0)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_size"):
        shapes.shapes_config(min_size=0.5, max_size=0.2)
    with pytest.raises(TypeError):
        shapes.ShapesConfig(name="mine", image_size=64)  # the name is derived
    with pytest.raises(dataclasses.FrozenInstanceError):
        shapes.ShapesConfig().image_size = 64
    renamed = dataclasses.replace(shapes.ShapesConfig(), seed=4)
    assert renamed.name == shapes.shapes_config(seed=4).name


def test_builder_lookup_by_name(small_config, small_builds, tmp_path):
    data_dir = small_builds[0].data_dir_root
    builder = tfds.builder("shapes", config=shapes.shapes_config(**SMALL), data_dir=data_dir)
    assert isinstance(builder, shapes.Shapes) and builder.is_prepared()
    assert builder.info.splits["train"].num_examples == SMALL["num_train"]
    default = tfds.builder("shapes", data_dir=str(tmp_path))
    assert default.builder_config is shapes.Shapes.BUILDER_CONFIGS[0]
    assert default.builder_config.name == shapes.ShapesConfig().name and not default.is_prepared()
    # A config equal to the registered default is accepted (TFDS alone refuses a custom config
    # named like a registered one).
    again = tfds.builder("shapes", config=shapes.ShapesConfig(), data_dir=str(tmp_path))
    assert again.builder_config is default.builder_config


# --- determinism and splits -------------------------------------------------------------------


def test_split_sizes_and_features(small_builds):
    builder = small_builds[0]
    for split, size in (("train", SMALL["num_train"]), ("validation", SMALL["num_val"])):
        assert builder.info.splits[split].num_examples == size
        examples = read_split(builder, split)
        assert sorted(examples) == list(range(size))
    example = examples[0]
    assert example["image"].shape == (96, 96, 3) and example["image"].dtype == np.uint8
    objects = example["objects"]
    count = len(objects["label"])
    assert objects["bbox"].shape == (count, 4) and objects["color"].shape == (count, 3)
    assert objects["filled"].dtype == bool
    assert builder.info.features["objects"]["label"].names == list(shapes.CLASS_NAMES)


def assert_same_records(first: shapes.Shapes, second: shapes.Shapes) -> None:
    """Asserts that two prepared builders hold the same decoded examples."""
    for split in ("train", "validation"):
        ours, theirs = read_split(first, split), read_split(second, split)
        assert ours.keys() == theirs.keys()
        for image_id, example in ours.items():
            other = theirs[image_id]
            np.testing.assert_array_equal(example["image"], other["image"])
            for key in ("bbox", "label", "color", "filled"):
                np.testing.assert_array_equal(example["objects"][key], other["objects"][key])


def test_two_builds_are_identical(small_builds):
    assert_same_records(*small_builds)
    # TFDS writes records in an order fixed by the keys, so within one process the files are
    # byte-identical too. Not across processes: TFDS serialises each tf.train.Example's feature
    # map in protobuf's per-process hash order (see test_concurrent_preparation).
    first, second = (tfrecord_bytes(builder) for builder in small_builds)
    assert first and first == second


def test_examples_do_not_depend_on_generation_order(small_config, small_builds):
    stored = read_split(small_builds[0], "validation")
    for index in (7, 3):
        example = shapes_scene.generate_example(small_config, shapes.SPLITS["validation"], index)
        image = tfds.features.Image(encoding_format="png").decode_example_np(example["image"])
        np.testing.assert_array_equal(image, stored[index]["image"])
    train = shapes_scene.generate_example(small_config, shapes.SPLITS["train"], 3)
    validation = shapes_scene.generate_example(small_config, shapes.SPLITS["validation"], 3)
    assert train["image"] != validation["image"]


def test_a_test_split_has_images_of_its_own_and_leaves_the_others_unchanged(small_builds,
                                                                            tmp_path):
    """num_test adds a "test" split drawn from its own seeds (split number 2): the train and
    validation examples are the same as without it, and no test image is one of theirs."""
    config = shapes.shapes_config(**{**SMALL, "num_test": 5})
    with_test = shapes.load_builder(config, str(tmp_path))
    assert with_test.info.splits["test"].num_examples == 5
    assert "test" not in small_builds[0].info.splits
    for split in ("train", "validation"):
        ours, before = read_split(with_test, split), read_split(small_builds[0], split)
        for image_id, example in before.items():
            np.testing.assert_array_equal(ours[image_id]["image"], example["image"])
    seen = {example["image"].tobytes() for split in ("train", "validation")
            for example in read_split(with_test, split).values()}
    tests = read_split(with_test, "test")
    assert sorted(tests) == list(range(5))
    assert not seen & {example["image"].tobytes() for example in tests.values()}


def test_other_seed_gives_other_images(small_builds, tmp_path):
    config = shapes.shapes_config(**{**SMALL, "num_train": 4, "num_val": 2, "seed": 1})
    other = shapes.load_builder(config, str(tmp_path))
    ours = read_split(small_builds[0], "train")
    for image_id, example in read_split(other, "train").items():
        assert not np.array_equal(example["image"], ours[image_id]["image"])


# --- geometry, checked against an analytic rasterisation ------------------------------------
#
# OpenCV decides each pixel from coordinates rounded to the pixel grid (polygon spans rounded in
# x, edges and stroke joints through vertices rounded to whole pixels): a pixel is drawn when its
# centre lies inside the shape by more than sqrt(2)/2 px and is not drawn when it lies outside by
# more than that; the circle's inscribed polygon (CIRCLE_SAGITTA) and the fixed-point vertices
# (1/256 px) add little. Hence a margin of 1 px around the analytic shape. For a box side, the
# centre of the extreme drawn pixel is within half a pixel of the shape's extreme point, and the
# pixel's own half-width adds another half: the box grows by at most 1 px and shrinks by no more
# than the circle approximation.

MARGIN = 1.0
FIXED_POINT = 2.0**-8


def polygon(shape: shapes_scene.Shape) -> np.ndarray:
    """Vertices `[V, 2]` of a rectangle or triangle, counter-clockwise in image axes."""
    if shape.kind == shapes_scene.RECTANGLE:
        half_w, half_h = shape.half_size
        cos, sin = math.cos(math.radians(shape.angle)), math.sin(math.radians(shape.angle))
        corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
        rotation = np.array([[cos, -sin], [sin, cos]])
        points = np.array(shape.center) + np.array(corners) @ rotation.T
    else:
        points = np.array(shape.vertices)
    edges = np.roll(points, -1, axis=0) - points
    signed_area = np.sum(points[:, 0] * edges[:, 1] - points[:, 1] * edges[:, 0])
    return points if signed_area > 0 else points[::-1]


def signed_distance(shape: shapes_scene.Shape, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (px, negative inside) from the points `(x, y)` to the region the shape
    covers: its interior when filled, else the band of half-width `thickness / 2` around its
    outline."""
    if shape.kind == shapes_scene.CIRCLE:
        to_outline = np.hypot(x - shape.center[0], y - shape.center[1]) - shape.radius
    else:
        points = polygon(shape)
        distance = np.full(x.shape, np.inf)
        inside = np.ones(x.shape, bool)
        for start, end in zip(points, np.roll(points, -1, axis=0)):
            edge = end - start
            dx, dy = x - start[0], y - start[1]
            t = np.clip((dx * edge[0] + dy * edge[1]) / (edge @ edge), 0.0, 1.0)  # nearest point
            distance = np.minimum(distance, np.hypot(dx - t * edge[0], dy - t * edge[1]))
            inside &= edge[0] * dy - edge[1] * dx >= 0  # on the inner side of the edge
        to_outline = np.where(inside, -distance, distance)
    return to_outline if shape.filled else np.abs(to_outline) - shape.thickness / 2


def exact_extent(shape: shapes_scene.Shape) -> np.ndarray:
    """Continuous extent `[x1, y1, x2, y2]` (px) of the region the shape covers, unclipped."""
    pad = shape.thickness / 2
    if shape.kind == shapes_scene.CIRCLE:
        reach = shape.radius + pad
        return np.array([-reach, -reach, reach, reach]) + np.tile(shape.center, 2)
    points = polygon(shape)
    return np.concatenate([points.min(axis=0) - pad, points.max(axis=0) + pad])


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight box `[x1, y1, x2, y2]` of a boolean mask `[H, W]`, in pixels."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([columns[0], rows[0], columns[-1] + 1, rows[-1] + 1], np.float64)


def check_example(config: shapes.ShapesConfig, split: str, example: dict) -> None:
    """Asserts that a decoded example matches the analytic rasterisation of its scene."""
    size = config.image_size
    rng = shapes_scene.example_rng(config.seed, shapes.SPLITS[split], int(example["image/id"]))
    scene = shapes_scene.sample_scene(rng, config)
    centres = np.arange(size) + 0.5
    x, y = np.meshgrid(centres, centres)
    distances = [signed_distance(shape, x, y) for shape in scene]
    # Every object keeps >= 64% of its extent in the image, so it always has pixels.
    objects = example["objects"]
    assert len(objects["label"]) == len(scene)
    boxes = objects["bbox"][:, [1, 0, 3, 2]].astype(np.float64) * size  # x1, y1, x2, y2 px
    # Tight boxes of pixels have whole-pixel sides (up to float32 normalisation).
    np.testing.assert_allclose(boxes, np.round(boxes), atol=1e-4)
    boxes = np.round(boxes)
    for i, (shape, distance, box) in enumerate(zip(scene, distances, boxes)):
        where = f"object {i} of {split}/{example['image/id']}: {shape}"
        assert objects["label"][i] == shape.kind, where
        assert tuple(objects["color"][i]) == shape.color, where
        assert objects["filled"][i] == shape.filled, where
        # The box lies between those of the pixels 1 px inside (none for a 2 px stroke) and
        # 1 px outside the shape.
        outer = mask_box(distance <= MARGIN)
        assert (box[:2] >= outer[:2]).all() and (box[2:] <= outer[2:]).all(), where
        if (distance <= -MARGIN).any():
            inner = mask_box(distance <= -MARGIN)
            assert (box[:2] <= inner[:2]).all() and (box[2:] >= inner[2:]).all(), where
        # Away from the image border, it matches the exact extent: at most 1 px larger, and
        # smaller only by the circle's approximation.
        extent = exact_extent(shape)
        if (extent >= 0).all() and (extent <= size).all():
            grown = np.concatenate([extent[:2] - box[:2], box[2:] - extent[2:]])
            assert grown.max() <= MARGIN + FIXED_POINT, where
            assert grown.min() >= -(shapes_scene.CIRCLE_SAGITTA + FIXED_POINT), where
        # Its own pixels (1 px inside it, 1 px away from every later object) have its colour.
        own = distance <= -MARGIN
        for later in distances[i + 1 :]:
            own &= later > MARGIN
        assert (example["image"][own] == shape.color).all(), where


def test_boxes_labels_and_colours_match_the_geometry(small_config, small_builds):
    checked = 0
    for split in ("train", "validation"):
        for example in read_split(small_builds[0], split).values():
            check_example(small_config, split, example)
            checked += len(example["objects"]["label"])
    assert checked > 60


def test_geometry_at_another_size(tmp_path):
    config = shapes.shapes_config(image_size=160, num_train=12, num_val=1, max_shapes=8, seed=3)
    for example in read_split(shapes.load_builder(config, str(tmp_path)), "train").values():
        check_example(config, "train", example)


# --- statistics of the generated scenes -------------------------------------------------------


def test_scene_statistics():
    """200 default-config images: object counts, classes, sizes, fill, stroke widths, triangles."""
    config = shapes.ShapesConfig()
    size = config.image_size
    counts, labels, sides, filled = [], [], [], []
    for index in range(200):
        rng = shapes_scene.example_rng(config.seed, shapes.SPLITS["train"], index)
        scene = shapes_scene.sample_scene(rng, config)
        background = shapes_scene.draw_background(rng, size)
        image, boxes, scene_labels, kept = shapes_scene.render_scene(scene, background)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert boxes.dtype == np.float32 and scene_labels.dtype == np.int32
        assert ((boxes >= 0) & (boxes <= size)).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        counts.append(len(boxes))
        labels.extend(scene_labels)
        sides.extend(np.max(boxes[:, 2:] - boxes[:, :2], axis=1))
        for shape in (scene[i] for i in kept):
            filled.append(shape.filled)
            assert shape.filled == (shape.thickness == 0)
            if not shape.filled:
                assert shape.thickness % 2 == 0 and 2 <= shape.thickness
            if shape.kind == shapes_scene.TRIANGLE:
                points = np.array(shape.vertices)
                for k in range(3):
                    a, b = points[(k + 1) % 3] - points[k], points[(k + 2) % 3] - points[k]
                    angle = math.degrees(math.acos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
                    assert angle >= 25.0 - 1e-9
            if shape.kind == shapes_scene.RECTANGLE:
                assert -45.0 <= shape.angle <= 45.0
    counts, sides = np.array(counts), np.array(sides)
    assert counts.min() >= 1 and counts.max() <= config.max_shapes
    assert len(set(counts)) >= 4  # the number of objects varies
    assert set(labels) == {0, 1, 2}
    assert (sides < 12).sum() >= 5 and (sides > 0.4 * size).sum() >= 5
    assert 0.55 < np.mean(filled) < 0.85


def test_background_palette():
    background = shapes_scene.draw_background(np.random.default_rng(0), 64)
    assert background.shape == (64, 64, 3) and background.dtype == np.uint8
    assert 30 <= background.min() and background.max() <= 170
    assert background.std() > 2  # textured, not flat


def test_render_drops_objects_outside_the_image():
    outside = shapes_scene.Shape(
        kind=shapes_scene.CIRCLE, center=(-20.0, 10.0), radius=5.0, half_size=(0.0, 0.0), angle=0.0,
        vertices=(), color=(255, 0, 0), filled=True, thickness=0,
    )  # fmt: skip
    inside = dataclasses.replace(outside, center=(10.0, 10.0))
    background = np.zeros((32, 32, 3), np.uint8)
    image, boxes, labels, kept = shapes_scene.render_scene([outside, inside], background)
    assert kept.tolist() == [1] and labels.tolist() == [shapes_scene.CIRCLE]
    np.testing.assert_allclose(boxes[0], [5, 5, 15, 15], atol=MARGIN)
    assert (image[10, 10] == (255, 0, 0)).all()


# --- concurrency --------------------------------------------------------------------------------


def test_concurrent_preparation(tmp_path):
    """Two processes preparing the same config into the same directory both succeed (without
    the lock, the second to finish fails renaming its temporary directory), and their records
    decode to those prepared in this process."""
    config = shapes.shapes_config(image_size=64, num_train=30, num_val=5)
    code = (
        "import sys; from centernet.data import shapes; "
        "config = shapes.shapes_config(image_size=64, num_train=30, num_val=5); "
        "b = shapes.load_builder(config, sys.argv[1]); "
        "assert b.is_prepared() and b.info.splits['train'].num_examples == 30"
    )
    shared = tmp_path / "shared"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(shared)], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr[-3000:]
    versions = [path.name for path in (shared / "shapes").glob("*/*") if path.is_dir()]
    assert versions == ["1.0.0"]  # and no leftover incomplete directory
    assert_same_records(
        shapes.load_builder(config, str(shared)),
        shapes.load_builder(config, str(tmp_path / "local")),
    )
