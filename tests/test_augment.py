"""Training augmentation (crop, flip, colour): boxes checked against the pixels they claim,
stateless determinism, colour maths against a NumPy transcription of the original CenterNet's
`color_aug` (on BGR, as it runs), and validation never augmented."""

import copy
import itertools

import numpy as np
import pytest
import tensorflow as tf

from centernet.config import AugmentConfig, validate
from centernet.data.augment import (apply_colour, augment, colour_params, crop_image,
                                    flip_horizontal, get_border)
from centernet.data.letterbox import letterbox_image
from centernet.data.pipeline import eval_dataset, train_dataset, train_example
from centernet.data.sources import build_source, decode_record
from conftest import compose_config

SIZE = 128  # network input of the scene tests
HEIGHT, WIDTH = 150, 200
# Non-overlapping boxes, at least 10 px apart, two touching the image corners.
BOXES = np.array([[0, 0, 40, 30], [170, 120, 200, 150], [60, 10, 140, 50], [10, 60, 34, 140],
                  [50, 70, 110, 110], [130, 70, 186, 100], [120, 115, 160, 145]], np.float32)
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
                    [0, 255, 255], [255, 128, 0]], np.float64)
CROWD = np.array([False, True, False, False, True, False, False])
GEOMETRY_ONLY = dict(flip=0.5, crop=True, min_scale=0.6, max_scale=1.4, crop_border=128,
                     brightness=0.0, contrast=0.0, saturation=0.0, lighting=0.0)


def _scene():
    """Black image with each box's interior filled with its own colour; label i = box i."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for (x1, y1, x2, y2), colour in zip(BOXES.astype(int), COLOURS):
        image[y1:y2, x1:x2] = colour
    return {"image": tf.constant(image), "boxes": tf.constant(BOXES),
            "labels": tf.constant(np.arange(len(BOXES)), tf.int32),
            "is_crowd": tf.constant(CROWD), "image_id": tf.constant(5, tf.int64)}


def _augmented(cfg, seeds, example=None, size=SIZE):
    """`augment` in graph mode inside a tf.data map (as training runs it), one output per seed
    `[11, s]`."""
    example = _scene() if example is None else example
    seeds = tf.data.Dataset.from_tensor_slices(tf.constant(seeds, tf.int64))
    mapped = seeds.map(lambda s: augment(example, cfg, tf.stack([tf.constant(11, tf.int64), s]),
                                         size))
    return list(mapped.as_numpy_iterator())


def _colour_mask(image, colour):
    """Pixels that are `colour` blended with black at least half way (bilinear edges)."""
    pixels = image.astype(np.float64)
    t = pixels @ colour / (colour @ colour)
    residual = np.linalg.norm(pixels - t[..., None] * colour, axis=-1)
    return (t >= 0.5) & (residual <= 20)


def _reference_border(border, size):
    """The original CenterNet's `_get_border`, verbatim."""
    i = 1
    while size - border // i <= border // i:
        i *= 2
    return border // i


def test_get_border_matches_the_original():
    for border in (0, 1, 7, 64, 128, 129):
        for size in (1, 2, 3, 10, 63, 64, 65, 128, 150, 200, 256, 257, 640):
            assert int(get_border(border, tf.constant(size))) == _reference_border(border, size)


def test_boxes_are_tight_on_their_pixels_after_crop_and_flip():
    cfg = AugmentConfig(**GEOMETRY_ONLY)
    # Interior margin for the bilinear edge ramps; the half-blend extent of a colour lies
    # within half an output pixel of its true edge, so 0.75 px catches any half-pixel slip.
    margin, tol = 1.5, 0.75
    kept_counts, flipped_or_cut = [], 0
    for out in _augmented(cfg, range(120)):
        image, boxes, labels = out["image"], out["boxes"], out["labels"]
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert len(boxes) == len(labels) == len(out["is_crowd"])
        assert len(set(labels.tolist())) == len(labels)
        np.testing.assert_array_equal(out["is_crowd"], CROWD[labels])
        assert np.all(boxes >= 0) and np.all(boxes <= SIZE)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        kept_counts.append(len(labels))
        flipped_or_cut += len(labels) < len(BOXES)
        for (x1, y1, x2, y2), label in zip(boxes, labels):
            colour = COLOURS[label]
            # Interior: exactly the box's colour (up to rounding).
            top, left = int(np.ceil(y1 + margin)), int(np.ceil(x1 + margin))
            rows = slice(top, max(top, int(np.floor(y2 - margin))))
            cols = slice(left, max(left, int(np.floor(x2 - margin))))
            inside = image[rows, cols].astype(np.float64)
            assert np.all(np.abs(inside - colour) <= 1), (label, (x1, y1, x2, y2))
            # Tight: the colour's pixel extent is the box.
            ys, xs = np.nonzero(_colour_mask(image, colour))
            if len(xs) == 0:
                assert min(x2 - x1, y2 - y1) < 1.5, (label, (x1, y1, x2, y2))
                continue
            assert abs(xs.min() - x1) <= tol and abs(xs.max() + 1 - x2) <= tol, (label, x1, x2)
            assert abs(ys.min() - y1) <= tol and abs(ys.max() + 1 - y2) <= tol, (label, y1, y2)
        for label in set(range(len(BOXES))) - set(labels.tolist()):
            assert not _colour_mask(image, COLOURS[label]).any(), label  # dropped: not visible
    assert min(kept_counts) < len(BOXES) and max(kept_counts) == len(BOXES)
    assert flipped_or_cut > 0


def test_crop_samples_the_image_bilinearly_with_black_outside():
    """Against a float64 NumPy resampler: output pixel j samples continuous x0 + (j + 0.5) *
    side / size of the image extended with black, bilinear between pixel centres."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (23, 31, 3)).astype(np.uint8)
    size = 16
    for x0, y0, side in [(-5.3, 2.7, 40.0), (3.25, -1.5, 12.0), (10.0, 8.0, 8.0),
                         (-20.0, -20.0, 70.0)]:
        padded = np.pad(image.astype(np.float64), [(2, 2), (2, 2), (0, 0)])

        def sample(coord, limit):
            index = coord - 0.5 + 2  # pixel-centre index in `padded`
            index = np.clip(index, 0, limit + 3)
            low = np.floor(index).astype(int)
            return low, index - low

        centres = (np.arange(size) + 0.5) * side / size
        (ly, fy), (lx, fx) = sample(y0 + centres, 23), sample(x0 + centres, 31)
        outside = lambda c, n: (c < -1) | (c > n + 1)  # noqa: E731  (all black there)
        hy, hx = np.minimum(ly + 1, 26), np.minimum(lx + 1, 34)
        expected = ((1 - fy)[:, None, None] * ((1 - fx)[None, :, None] * padded[ly][:, lx]
                                               + fx[None, :, None] * padded[ly][:, hx])
                    + fy[:, None, None] * ((1 - fx)[None, :, None] * padded[hy][:, lx]
                                           + fx[None, :, None] * padded[hy][:, hx]))
        expected[outside(y0 + centres, 23)] = 0
        expected[:, outside(x0 + centres, 31)] = 0
        produced = crop_image(tf.constant(image), tf.constant([x0, y0, side], tf.float32), size)
        np.testing.assert_allclose(produced.numpy(), expected, atol=2e-3)


def test_crop_scale_and_centre_statistics():
    """From each crop's unclipped boxes: side / max(H, W) covers [min_scale, max_scale] and stays
    inside; the window centre stays inside the borders of the original's `_get_border`."""
    cfg = AugmentConfig(**{**GEOMETRY_ONLY, "flip": 0.0})
    scales, cxs, cys = [], [], []
    for out in _augmented(cfg, range(300)):
        boxes, labels = out["boxes"].astype(np.float64), out["labels"]
        free_x = (boxes[:, 0] > 1e-3) & (boxes[:, 2] < SIZE - 1e-3)
        free_y = (boxes[:, 1] > 1e-3) & (boxes[:, 3] < SIZE - 1e-3)
        if not free_x.any():
            continue
        k = np.argmax(np.where(free_x, boxes[:, 2] - boxes[:, 0], -1))
        original = BOXES[labels[k]].astype(np.float64)
        side = SIZE * (original[2] - original[0]) / (boxes[k, 2] - boxes[k, 0])
        scales.append(side / max(HEIGHT, WIDTH))
        cxs.append(original[0] - boxes[k, 0] * side / SIZE + side / 2)
        if free_y[k]:
            cys.append(original[1] - boxes[k, 1] * side / SIZE + side / 2)
    scales, cxs, cys = map(np.array, (scales, cxs, cys))
    assert len(scales) > 250 and len(cys) > 100
    assert scales.min() >= 0.6 - 1e-4 and scales.max() <= 1.4 + 1e-4
    assert scales.min() < 0.65 and scales.max() > 1.35
    bx, by = _reference_border(128, WIDTH), _reference_border(128, HEIGHT)
    assert (bx, by) == (64, 64)
    assert cxs.min() >= bx - 0.05 and cxs.max() <= WIDTH - bx + 0.05
    assert cys.min() >= by - 0.05 and cys.max() <= HEIGHT - by + 0.05
    assert cxs.min() < bx + 6 and cxs.max() > WIDTH - bx - 6
    assert cys.min() < by + 3 and cys.max() > HEIGHT - by - 3


def test_flip_twice_is_the_identity():
    rng = np.random.default_rng(1)
    image = tf.constant(rng.integers(0, 256, (17, 29, 3)).astype(np.uint8))
    # Multiples of 1/64 px: every flip subtraction is exact in float32.
    boxes = tf.constant(np.sort(rng.integers(0, 29 * 64, (5, 2, 2)), axis=1)
                        .transpose(0, 2, 1).reshape(5, 4) / 64.0, tf.float32)
    twice = flip_horizontal(*flip_horizontal(image, boxes))
    np.testing.assert_array_equal(twice[0].numpy(), image.numpy())
    np.testing.assert_array_equal(twice[1].numpy(), boxes.numpy())
    # Through `augment` with flip certain and nothing else.
    cfg = AugmentConfig(**{**GEOMETRY_ONLY, "flip": 1.0, "crop": False})
    example = {**_scene(), "boxes": tf.constant(BOXES + 0.25)}
    once = augment(example, cfg, tf.constant([1, 2], tf.int64), SIZE)
    np.testing.assert_array_equal(once["image"].numpy(), example["image"].numpy()[:, ::-1])
    again = augment(once, cfg, tf.constant([3, 4], tf.int64), SIZE)
    np.testing.assert_array_equal(again["image"].numpy(), example["image"].numpy())
    np.testing.assert_array_equal(again["boxes"].numpy(), example["boxes"].numpy())


def test_same_seed_same_output_different_seeds_different_crops():
    cfg = AugmentConfig()  # everything on
    graph = _augmented(cfg, [3, 3, 4])
    eager = augment(_scene(), cfg, tf.constant([11, 3], tf.int64), SIZE)
    for key in ("image", "boxes", "labels", "is_crowd"):
        np.testing.assert_array_equal(graph[0][key], graph[1][key])
        np.testing.assert_array_equal(graph[0][key], eager[key].numpy())
    assert not np.array_equal(graph[0]["image"], graph[2]["image"])
    boxes = [tuple(np.round(out["boxes"][0], 3)) for out in _augmented(cfg, range(20))]
    assert len(set(boxes)) == 20


def test_colour_jitter_changes_colours_not_geometry():
    geometry = AugmentConfig(**GEOMETRY_ONLY)
    coloured = AugmentConfig(**{**GEOMETRY_ONLY, "brightness": 0.4, "contrast": 0.4,
                                "saturation": 0.4, "lighting": 0.1})
    changed = 0
    for plain, jittered in zip(_augmented(geometry, range(10)), _augmented(coloured, range(10))):
        assert jittered["image"].dtype == np.uint8
        for key in ("boxes", "labels", "is_crowd"):
            np.testing.assert_array_equal(plain[key], jittered[key])
        changed += not np.array_equal(plain["image"], jittered["image"])
    assert changed == 10
    # Saturates at 255 instead of wrapping around.
    bright = {**_scene(), "image": tf.fill([HEIGHT, WIDTH, 3], tf.constant(250, tf.uint8))}
    cfg = AugmentConfig(flip=0.0, crop=False, brightness=0.4, contrast=0.0, saturation=0.0,
                        lighting=0.0)
    images = np.stack([o["image"] for o in _augmented(cfg, range(20), bright)])
    assert images.min() >= int(250 * 0.6) - 1 and images.max() == 255
    # All knobs at 0: nothing changes.
    off = AugmentConfig(flip=0.0, crop=False, brightness=0.0, contrast=0.0, saturation=0.0,
                        lighting=0.0)
    scene = _scene()
    for out in _augmented(off, range(3)):
        np.testing.assert_array_equal(out["image"], scene["image"].numpy())
        np.testing.assert_array_equal(out["boxes"], BOXES)


def _original_color_aug_bgr(image_bgr, factors, order, alpha):
    """The original's `color_aug` on a float BGR image with its draws given: `order` lists the
    ops (0 brightness, 1 contrast, 2 saturation) as shuffled; `alpha` the lighting normals."""
    eigval = np.array([0.2141788, 0.01817699, 0.00340571])
    eigvec = np.array([[-0.58752847, -0.69563484, 0.41528053],
                       [-0.5832747, 0.00994535, -0.81221408],
                       [-0.56089297, 0.71832671, 0.41880184]])
    image = image_bgr.copy()
    gs = image @ np.array([0.114, 0.587, 0.299])  # cv2.COLOR_BGR2GRAY
    gs_mean = gs.mean()
    for op in order:
        a = factors[op]
        if op == 0:
            image *= a
        elif op == 1:
            image = image * a + gs_mean * (1 - a)
        else:
            image = image * a + gs[:, :, None] * (1 - a)
    return image + eigvec @ (eigval * alpha)


def test_colour_maths_match_the_original_in_each_order():
    """Each of the 6 order indices reproduces exactly one shuffle of the original (run on the
    BGR image), and together they cover all 6."""
    rng = np.random.default_rng(2)
    rgb = rng.uniform(0, 1, (9, 13, 3))
    factors = np.array([1.3, 0.7, 1.2])
    alpha = np.array([0.5, -1.0, 2.0]) * 0.1
    references = {order: _original_color_aug_bgr(rgb[..., ::-1], factors, order, alpha)[..., ::-1]
                  for order in itertools.permutations(range(3))}
    matched = []
    for index in range(6):
        produced = apply_colour(tf.constant(rgb, tf.float32), tf.constant(factors, tf.float32),
                                tf.constant(index), tf.constant(alpha, tf.float32)).numpy()
        hits = [order for order, expected in references.items()
                if np.allclose(produced, expected, atol=1e-5)]
        assert len(hits) == 1, index
        matched.append(hits[0])
        on_255 = apply_colour(tf.constant(rgb * 255, tf.float32), tf.constant(factors, tf.float32),
                              tf.constant(index), tf.constant(alpha, tf.float32), white=255.0)
        np.testing.assert_allclose(on_255.numpy(), references[hits[0]] * 255, atol=3e-3)
    assert sorted(matched) == sorted(references)


def test_colour_draws_stay_in_their_ranges():
    cfg = AugmentConfig(brightness=0.1, contrast=0.0, saturation=0.3, lighting=0.2)
    draws = [colour_params(cfg, tf.random.experimental.stateless_split(
        tf.constant([5, i], tf.int64), 6)) for i in range(400)]
    factors = np.stack([d[0].numpy() for d in draws])
    orders = np.array([int(d[1]) for d in draws])
    lighting = np.stack([d[2].numpy() for d in draws])
    spread = np.array([0.1, 0.0, 0.3])
    assert np.all(np.abs(factors - 1) <= spread + 1e-6)
    assert np.all(np.abs(factors - 1).max(axis=0) >= spread * 0.9)
    assert np.all(factors[:, 1] == 1.0)
    assert set(orders.tolist()) == set(range(6))
    assert np.all(np.abs(lighting.std(axis=0) / 0.2 - 1) < 0.2)


@pytest.fixture(scope="module")
def smoke(tfds_dir):
    run = validate(compose_config(["experiment=smoke", f"dataset.data_dir={tfds_dir}",
                                   "augment=default"]))
    return run, build_source(run.dataset)


def test_validation_is_never_augmented(smoke):
    """With the full augmentation configured, training images change but evaluation batches
    are the plain decoded images (64 px letterboxed to 64 is the identity)."""
    run, source = smoke
    assert run.augment.crop and run.dataset.image_size == run.model.input_size == 64
    records = list(source.read(run.dataset.val_split).take(4))
    plain = np.stack([decode_record(r)["image"].numpy() for r in records])
    batch = next(iter(eval_dataset(source, run.dataset.val_split, run.model.input_size, 4)))
    np.testing.assert_array_equal(batch["image"].numpy(), plain)
    trained = [train_example(r, tf.constant([0, i], tf.int64), run, source.num_classes)["image"]
               for i, r in enumerate(records)]
    assert not any(np.array_equal(t.numpy(), p) for t, p in zip(trained, plain))


def test_train_example_after_a_crop_letterboxes_as_the_identity(smoke):
    run, source = copy.deepcopy(smoke[0]), smoke[1]
    run.model.input_size = 96  # the 64 px images are cropped and scaled to 96
    square = tf.constant(np.random.default_rng(3).integers(0, 256, (96, 96, 3)), tf.uint8)
    boxed, params = letterbox_image(square, 96)
    np.testing.assert_array_equal(boxed.numpy(), square.numpy())
    np.testing.assert_array_equal(params.numpy(), [1, 1, 0, 0])
    record = next(iter(source.read(run.dataset.train_split)))
    seed = tf.constant([4, 2], tf.int64)
    produced = train_example(record, seed, run, source.num_classes)
    augmented = augment(decode_record(record), run.augment, seed, 96)
    np.testing.assert_array_equal(produced["image"].numpy(), augmented["image"].numpy())
    batch = next(iter(train_dataset(source, run)))
    assert batch["image"].shape == (run.train.batch_size, 96, 96, 3)
