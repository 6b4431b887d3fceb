"""Mosaic and mixup: quadrants and boxes checked against the pixels they claim, the box rule
against a float64 NumPy transcription, the Beta draw against its moments, mixup's blend on
solid images, and the stream's determinism and resume across the step where mosaic stops."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tensorflow as tf

from centernet.config import AugmentConfig, validate
from centernet.errors import ConfigError
from centernet.data.mosaic import (MIN_KEPT_AREA, QUADRANTS, beta_sample, maybe_mixup, mosaic,
                                   quadrant_boxes)
from centernet.data.pipeline import train_dataset
from centernet.data.sources import build_source
from conftest import compose_config, run_script
from test_augment import _colour_mask

SIZE = 128
GEOMETRY = AugmentConfig(flip=0.0, crop=True, min_scale=0.6, max_scale=1.4, brightness=0.0,
                         contrast=0.0, saturation=0.0, lighting=0.0)
SOLID = np.array([[250, 30, 30], [30, 250, 30], [30, 30, 250], [250, 250, 30]], np.float64)


def _solid(k: int, height: int, width: int) -> dict:
    """Image `k`: one colour, one box covering all of it."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = SOLID[k]
    return {"image": tf.constant(image), "boxes": tf.constant([[0, 0, width, height]],
                                                              tf.float32),
            "labels": tf.constant([k], tf.int32), "is_crowd": tf.constant([False]),
            "image_id": tf.constant(k, tf.int64)}


def _mosaics(examples, seeds, cfg=GEOMETRY):
    """`mosaic` in graph mode inside a tf.data map, one output per seed `[3, s]`."""
    mapped = tf.data.Dataset.from_tensor_slices(tf.constant(seeds, tf.int64)).map(
        lambda s: mosaic(examples, cfg, tf.stack([tf.constant(3, tf.int64), s]), SIZE))
    return list(mapped.as_numpy_iterator())


def test_four_solid_images_tile_the_input_around_one_centre():
    """Each image's colour fills a rectangle with a corner at the same point c (the
    top-left image's bottom-right corner, ...), c in the middle half of the input, and each
    kept box is exactly its colour's extent: the visible part of its image, within its
    quadrant (a whole-image box mostly outside its quadrant is dropped, so not every seed
    keeps all four)."""
    examples = [_solid(0, 90, 120), _solid(1, 120, 80), _solid(2, 60, 60), _solid(3, 100, 140)]
    seen = set()
    for out in _mosaics(examples, range(40)):
        image, boxes, labels = out["image"], out["boxes"], out["labels"]
        assert image.shape == (SIZE, SIZE, 3)
        extents = {}
        for k in range(4):
            ys, xs = np.nonzero(_colour_mask(image, SOLID[k]))
            extents[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        cx, cy = extents[0][2], extents[0][3]  # top-left image ends at c (to a pixel)
        assert SIZE / 4 - 1 <= cx <= 3 * SIZE / 4 + 1 and SIZE / 4 - 1 <= cy <= 3 * SIZE / 4 + 1
        assert extents[1][0] == cx and extents[1][3] == cy  # top-right starts at cx
        assert extents[2][2] == cx and extents[2][1] == cy  # bottom-left starts at cy
        assert extents[3][0] == cx and extents[3][1] == cy
        assert len(set(labels.tolist())) == len(labels) >= 1
        seen.update(labels.tolist())
        for box, label in zip(boxes, labels):
            np.testing.assert_allclose(box, extents[label], atol=1.0)
    assert seen == {0, 1, 2, 3}


def test_objects_keep_their_colour_and_tight_boxes():
    """Four scenes of coloured boxes on black (16 colours of distinct hues, so no colour
    reads as a darker other): every kept box is its colour's extent."""
    rng = np.random.default_rng(5)
    colours = rng.permutation(np.array([[r, g, b] for r in (0, 128, 255) for g in (0, 128, 255)
                                        for b in (0, 128, 255) if max(r, g, b) == 255],
                                       np.float64))[:16]
    examples = []
    for k in range(4):
        image = np.zeros((150, 200, 3), np.uint8)
        boxes = []
        for i in range(4):
            x1, y1 = 10 + 45 * i, 8 + 35 * i
            image[y1:y1 + 26, x1:x1 + 34] = colours[4 * k + i]
            boxes.append([x1, y1, x1 + 34, y1 + 26])
        examples.append({"image": tf.constant(image), "boxes": tf.constant(boxes, tf.float32),
                         "labels": tf.constant(np.arange(4 * k, 4 * k + 4), tf.int32),
                         "is_crowd": tf.zeros([4], tf.bool),
                         "image_id": tf.constant(k, tf.int64)})
    kept = 0
    for out in _mosaics(examples, range(30)):
        for (x1, y1, x2, y2), label in zip(out["boxes"], out["labels"]):
            kept += 1
            ys, xs = np.nonzero(_colour_mask(out["image"], colours[label]))
            if min(x2 - x1, y2 - y1) < 2:
                continue
            assert len(xs), label
            assert abs(xs.min() - x1) <= 1.0 and abs(xs.max() + 1 - x2) <= 1.0, label
            assert abs(ys.min() - y1) <= 1.0 and abs(ys.max() + 1 - y2) <= 1.0, label
    assert kept > 30


def _quadrant_boxes_reference(boxes, window, centre, quadrant, size):
    """float64 transcription: map to the input, clip to the quadrant, keep >= MIN_KEPT_AREA."""
    right, bottom = quadrant
    x0, y0, side = window
    mapped = (np.asarray(boxes, np.float64) - [x0, y0, x0, y0]) * size / side
    low = [centre[0] if right else 0.0, centre[1] if bottom else 0.0]
    high = [size if right else centre[0], size if bottom else centre[1]]
    clipped = np.clip(mapped, low * 2, high * 2)

    def area(b):
        return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)

    return clipped, (area(clipped) > 0) & (area(clipped) >= MIN_KEPT_AREA * area(mapped))


def test_quadrant_boxes_against_numpy():
    rng = np.random.default_rng(0)
    for trial in range(200):
        xy = rng.uniform(-50, 250, (12, 2))
        wh = rng.uniform(0, 80, (12, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        window = np.array([rng.uniform(-80, 80), rng.uniform(-80, 80), rng.uniform(60, 300)],
                          np.float32)
        centre = rng.uniform(SIZE / 4, 3 * SIZE / 4, 2).astype(np.float32)
        quadrant = QUADRANTS[trial % 4]
        got, keep = quadrant_boxes(tf.constant(boxes), tf.constant(window),
                                   tf.constant(centre), quadrant, SIZE)
        want, want_keep = _quadrant_boxes_reference(boxes, window, centre, quadrant, SIZE)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(keep.numpy(), want_keep)


@pytest.mark.parametrize("alpha", [32.0, 1.0])
def test_beta_draws_have_the_beta_moments(alpha):
    """Beta(a, a): mean 1/2 (within four standard errors of 4000 draws), variance
    1 / (4 (2a + 1))."""
    seeds = tf.random.experimental.stateless_split(tf.constant([1, 2], tf.int64), num=8000)
    pairs = tf.data.Dataset.from_tensor_slices(tf.reshape(seeds, [4000, 2, 2]))
    draws = np.array(list(pairs.map(lambda pair: beta_sample(alpha, pair)).as_numpy_iterator()))
    variance = 1 / (4 * (2 * alpha + 1))
    assert np.all((draws > 0) & (draws < 1))
    assert abs(draws.mean() - 0.5) < 4 * np.sqrt(variance / len(draws))
    assert draws.var() == pytest.approx(variance, rel=0.15)


def test_mixup_blends_solid_images_with_one_weight_and_keeps_both_boxes():
    first = {"image": tf.fill([8, 8, 3], tf.constant(200, tf.uint8)),
             "boxes": tf.constant([[0.0, 0.0, 1.0, 1.0]]), "labels": tf.constant([0])}
    second = {"image": tf.fill([8, 8, 3], tf.constant(40, tf.uint8)),
              "boxes": tf.constant([[1.0, 1.0, 2.0, 2.0], [0.0, 1.0, 1.0, 2.0]]),
              "labels": tf.constant([1, 2])}
    cfg = AugmentConfig(mixup=1.0)
    weights = []
    for s in range(20):
        out = maybe_mixup(first, lambda: second, cfg, tf.constant([4, s], tf.int64))
        values = np.unique(out["image"].numpy())
        assert len(values) == 1
        weights.append((float(values[0]) - 40) / 160)  # lam * 200 + (1 - lam) * 40
        assert out["labels"].numpy().tolist() == [0, 1, 2]
        np.testing.assert_array_equal(out["boxes"].numpy()[1:], second["boxes"].numpy())
    assert 0.3 < min(weights) and max(weights) < 0.7 and np.std(weights) > 0.01
    never = maybe_mixup(first, lambda: second, AugmentConfig(mixup=0.0),
                        tf.constant([4, 0], tf.int64))
    np.testing.assert_array_equal(never["image"].numpy(), first["image"].numpy())


def test_bad_mosaic_and_mixup_values_are_named():
    with pytest.raises(ConfigError, match="augment.mixup=1.5 is invalid"):
        AugmentConfig(mixup=1.5)
    with pytest.raises(ConfigError, match="augment.mosaic_off=1.0 is invalid"):
        AugmentConfig(mosaic_off=1.0)
    with pytest.raises(ConfigError, match="augment.mixup_alpha=0.0 is invalid"):
        AugmentConfig(mixup_alpha=0.0)


@pytest.fixture(scope="module")
def smoke(tfds_dir):
    run = validate(compose_config(["experiment=smoke", f"dataset.data_dir={tfds_dir}",
                                   "augment=default", "augment.mosaic=true",
                                   "augment.mixup=0.5"]))
    return run, build_source(run.dataset)


def test_the_stream_is_deterministic_and_resumes_across_the_mosaic_switch(smoke):
    """Mosaic for steps 0-2, then single images (with mixup throughout): a stream started at
    step 2 or 4 gives exactly the batches of the stream from 0; mosaics hold more objects
    than smoke's 2 per image can, single images with mixup at most 4, without it 2."""
    run, source = smoke
    whole = [{k: v.numpy() for k, v in b.items()}
             for b in train_dataset(source, run, mosaic_until=3).take(6)]
    for start in (2, 4):
        resumed = list(train_dataset(source, run, start_step=start, mosaic_until=3).take(2))
        for offset, batch in enumerate(resumed):
            for key, value in batch.items():
                np.testing.assert_array_equal(value.numpy(), whole[start + offset][key])
    per_image = [b["mask"].sum(axis=1) for b in whole]
    assert max(n.max() for n in per_image[:3]) > 4  # a mosaic of four images' objects
    assert all(n.max() <= 4 for n in per_image[3:])
    plain = copy.deepcopy(run)
    plain.augment.mixup = 0.0
    for batch in train_dataset(source, plain, mosaic_until=0).take(3):
        assert batch["mask"].numpy().sum(axis=1).max() <= 2


@pytest.mark.slow
def test_show_data_pictures_mosaic_and_mixup(tfds_dir, tmp_path):
    output = tmp_path / "mosaic.png"
    result = run_script("show_data.py", "experiment=smoke", f"dataset.data_dir={tfds_dir}",
                        "augment=default", "augment.mosaic=true", "augment.mixup=0.5",
                        "num_images=8", f"output={output}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert output.stat().st_size > 1000 and "wrote 8 examples" in result.stdout
