"""`targets.dense_wh`: the original CenterNet's `--dense_wh` size targets, checked against a
sequential float64 reference that follows `draw_dense_reg` literally (object by object, each
overwriting where its Gaussian is at least the running heatmap maximum)."""

import numpy as np
import pytest
import tensorflow as tf

from centernet.data.targets import render_targets
from centernet.losses import dense_l1_loss
from test_targets import SCENES, random_scene, ref_radius


def ref_dense_wh(boxes, labels, output_size, max_objects, min_overlap=0.7):
    H, W = output_size
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, x2 = np.clip(b[:, 0], 0, W - 1), np.clip(b[:, 2], 0, W - 1)
    y1, y2 = np.clip(b[:, 1], 0, H - 1), np.clip(b[:, 3], 0, H - 1)
    w, h = x2 - x1, y2 - y1
    used = np.flatnonzero((w > 0) & (h > 0))[:max_objects]
    running_max = np.zeros((H, W))
    dense = np.zeros((H, W, 2))
    yy, xx = np.mgrid[0:H, 0:W]
    for i in used:
        px, py = int(np.floor((x1[i] + x2[i]) / 2)), int(np.floor((y1[i] + y2[i]) / 2))
        r = max(0, int(ref_radius(np.ceil(h[i]), np.ceil(w[i]), min_overlap)))
        sigma = (2 * r + 1) / 6
        window = (np.abs(xx - px) <= r) & (np.abs(yy - py) <= r)
        g = np.where(window, np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma ** 2)), 0)
        running_max = np.maximum(running_max, g)  # draw_gaussian comes first in ctdet.py
        overwrite = window & (g >= running_max)
        dense[overwrite] = (w[i], h[i])
    return dense, running_max


@pytest.mark.parametrize("seed, size, num_classes, max_objects, n", SCENES)
def test_dense_wh_matches_sequential_reference(seed, size, num_classes, max_objects, n):
    boxes, labels = random_scene(np.random.default_rng(seed), *size, num_classes, n)
    got = render_targets(boxes, labels, size, num_classes, max_objects, dense_wh=True)
    dense, weight = ref_dense_wh(boxes, labels, size, max_objects)
    np.testing.assert_allclose(got["dense_wh"].numpy(), dense, atol=1e-5)
    np.testing.assert_allclose(got["dense_wh_mask"].numpy(), weight, atol=1e-6)
    np.testing.assert_allclose(got["dense_wh_mask"].numpy(), got["heatmap"].numpy().max(-1))


def test_dense_wh_with_no_boxes_is_zero():
    got = render_targets(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), 8, 2, 4,
                         dense_wh=True)
    assert not got["dense_wh"].numpy().any() and not got["dense_wh_mask"].numpy().any()


def test_dense_l1_loss_is_the_weighted_mean():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 5, 6, 2)), rng.normal(size=(2, 5, 6, 2))
    weight = rng.uniform(size=(2, 5, 6)) * (rng.uniform(size=(2, 5, 6)) > 0.5)
    expected = (np.abs(pred - target) * weight[..., None]).sum() / (2 * weight.sum() + 1e-4)
    got = dense_l1_loss(tf.constant(pred, tf.float32), tf.constant(target, tf.float32),
                        tf.constant(weight, tf.float32))
    assert float(got) == pytest.approx(expected, rel=1e-5)
