"""`targets.dense_wh` / `dense_reg`: the original CenterNet's `--dense_wh` size targets (and
the `is_offset` form of its `draw_dense_reg` for offsets), checked against a
sequential float64 reference that follows `draw_dense_reg` literally (object by object, each
overwriting where its Gaussian is at least the running heatmap maximum)."""

import numpy as np
import pytest
import tensorflow as tf

from centernet.data.targets import render_targets
from centernet.losses import dense_l1_loss
from test_targets import SCENES, random_scene, ref_radius


def ref_dense(boxes, labels, output_size, max_objects, min_overlap=0.7):
    H, W = output_size
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, x2 = np.clip(b[:, 0], 0, W - 1), np.clip(b[:, 2], 0, W - 1)
    y1, y2 = np.clip(b[:, 1], 0, H - 1), np.clip(b[:, 3], 0, H - 1)
    w, h = x2 - x1, y2 - y1
    used = np.flatnonzero((w > 0) & (h > 0))[:max_objects]
    running_max = np.zeros((H, W))
    dense_wh = np.zeros((H, W, 2))
    dense_reg = np.zeros((H, W, 2))
    yy, xx = np.mgrid[0:H, 0:W]
    for i in used:
        cx, cy = (x1[i] + x2[i]) / 2, (y1[i] + y2[i]) / 2
        px, py = int(np.floor(cx)), int(np.floor(cy))
        r = max(0, int(ref_radius(np.ceil(h[i]), np.ceil(w[i]), min_overlap)))
        sigma = (2 * r + 1) / 6
        window = (np.abs(xx - px) <= r) & (np.abs(yy - py) <= r)
        g = np.where(window, np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma ** 2)), 0)
        running_max = np.maximum(running_max, g)  # draw_gaussian comes first in ctdet.py
        overwrite = window & (g >= running_max)
        dense_wh[overwrite] = (w[i], h[i])
        # draw_dense_reg(is_offset=True): the centre offset minus the cell's distance to p
        dense_reg[overwrite, 0] = (cx - px) - (xx[overwrite] - px)
        dense_reg[overwrite, 1] = (cy - py) - (yy[overwrite] - py)
    return dense_wh, dense_reg, running_max


@pytest.mark.parametrize("seed, size, num_classes, max_objects, n", SCENES)
def test_dense_targets_match_sequential_reference(seed, size, num_classes, max_objects, n):
    boxes, labels = random_scene(np.random.default_rng(seed), *size, num_classes, n)
    got = render_targets(boxes, labels, size, num_classes, max_objects, dense_wh=True,
                         dense_reg=True)
    dense_wh, dense_reg, weight = ref_dense(boxes, labels, size, max_objects)
    np.testing.assert_allclose(got["dense_wh"].numpy(), dense_wh, atol=1e-5)
    np.testing.assert_allclose(got["dense_reg"].numpy(), dense_reg, atol=1e-5)
    np.testing.assert_allclose(got["dense_mask"].numpy(), weight, atol=1e-6)
    np.testing.assert_allclose(got["dense_mask"].numpy(), got["heatmap"].numpy().max(-1))


def test_dense_targets_with_no_boxes_are_zero():
    got = render_targets(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), 8, 2, 4,
                         dense_wh=True, dense_reg=True)
    for key in ("dense_wh", "dense_reg", "dense_mask"):
        assert not got[key].numpy().any()


def test_dense_offset_points_every_owned_cell_at_the_centre():
    """Decoding at any covered cell with its dense offset lands on the object's centre."""
    got = render_targets(np.array([[3.25, 4.5, 12.75, 13.0]], np.float32),
                         np.zeros((1,), np.int32), 16, 1, 4, dense_reg=True)
    cells = np.argwhere(got["dense_mask"].numpy() > 0)
    centres = cells[:, ::-1] + got["dense_reg"].numpy()[cells[:, 0], cells[:, 1]]
    np.testing.assert_allclose(centres, np.tile([[8.0, 8.75]], (len(cells), 1)), atol=1e-6)
    assert len(cells) > 1


def test_dense_l1_loss_is_the_weighted_mean():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 5, 6, 2)), rng.normal(size=(2, 5, 6, 2))
    weight = rng.uniform(size=(2, 5, 6)) * (rng.uniform(size=(2, 5, 6)) > 0.5)
    expected = (np.abs(pred - target) * weight[..., None]).sum() / (2 * weight.sum() + 1e-4)
    got = dense_l1_loss(tf.constant(pred, tf.float32), tf.constant(target, tf.float32),
                        tf.constant(weight, tf.float32))
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_dense_targets_of_a_padded_batch_match_the_reference_image_by_image():
    from centernet.data.targets import render_targets_batch
    from test_targets import batch_scenes
    size, max_objects = (24, 40), 12
    scenes, (boxes, labels) = batch_scenes(6, *size, 3)
    got = render_targets_batch(boxes, labels, size, 3, max_objects, dense_wh=True,
                               dense_reg=True)
    for index, (b, l) in enumerate(scenes):
        dense_wh, dense_reg, weight = ref_dense(b, l, size, max_objects)
        np.testing.assert_allclose(got["dense_wh"][index].numpy(), dense_wh, atol=1e-5)
        np.testing.assert_allclose(got["dense_reg"][index].numpy(), dense_reg, atol=1e-5)
        np.testing.assert_allclose(got["dense_mask"][index].numpy(), weight, atol=1e-6)
