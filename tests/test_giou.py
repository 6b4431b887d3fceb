"""`giou_loss` against a float64 reference written from the GIoU definition (Rezatofighi et al.
2019): boxes `[offset - size/2, offset + size/2]` at each object's centre cell, GIoU =
IoU - (hull - union) / hull, loss = mean of (1 - GIoU) over the used slots."""

import numpy as np
import pytest
import tensorflow as tf

from centernet.losses import centernet_loss, giou_loss


def ref_giou(box_a, box_b):
    """GIoU of two xyxy boxes in float64, one pair at a time."""
    ax1, ay1, ax2, ay2 = map(float, box_a)
    bx1, by1, bx2, by2 = map(float, box_b)
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    return inter / union - (hull - union) / hull


def ref_giou_loss(wh, reg, ind, mask, wh_target, reg_target):
    width = wh.shape[2]
    total, used = 0.0, 0.0
    for b in range(ind.shape[0]):
        for k in range(ind.shape[1]):
            if not mask[b, k]:
                continue
            y, x = divmod(int(ind[b, k]), width)
            size = np.maximum(wh[b, y, x].astype(np.float64), 0.0)
            offset = reg[b, y, x].astype(np.float64)
            pred = np.concatenate([offset - size / 2, offset + size / 2])
            target = np.concatenate([reg_target[b, k] - wh_target[b, k] / 2,
                                     reg_target[b, k] + wh_target[b, k] / 2]).astype(np.float64)
            total += 1.0 - ref_giou(pred, target)
            used += 1.0
    return total / (used + 1e-4)


def random_case(rng, batch=3, height=8, width=10, slots=6):
    wh = rng.uniform(-2.0, 30.0, (batch, height, width, 2)).astype(np.float32)
    reg = rng.uniform(0.0, 1.0, (batch, height, width, 2)).astype(np.float32)
    ind = np.stack([rng.choice(height * width, slots, replace=False) for _ in range(batch)])
    mask = (rng.uniform(size=(batch, slots)) < 0.7).astype(np.float32)
    wh_target = rng.uniform(0.5, 30.0, (batch, slots, 2)).astype(np.float32)
    reg_target = rng.uniform(0.0, 1.0, (batch, slots, 2)).astype(np.float32)
    return wh, reg, ind.astype(np.int32), mask, wh_target, reg_target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_float64_reference_on_random_boxes(seed):
    case = random_case(np.random.default_rng(seed))
    got = float(giou_loss(*[tf.constant(a) for a in case]))
    assert got == pytest.approx(ref_giou_loss(*case), rel=1e-5)


def test_hand_computed_cases():
    # One slot per image on a 1x1 grid: image 0 predicts its target exactly (loss 0); image 1
    # predicts a 2x2 box beside a 2x2 target, touching at one edge: IoU 0, hull 4x2 = 8,
    # union 8, so GIoU = 0 and the loss is 1; image 2 predicts a 2x2 box 2 px right of a 2x2
    # target: IoU 0, hull 6x2 = 12, union 8, GIoU = -1/3, loss 4/3.
    wh = tf.constant([[[[4.0, 6.0]]], [[[2.0, 2.0]]], [[[2.0, 2.0]]]])
    reg = tf.constant([[[[0.5, 0.25]]], [[[2.0, 0.0]]], [[[4.0, 0.0]]]])
    ind = tf.zeros([3, 1], tf.int32)
    mask = tf.ones([3, 1])
    wh_target = tf.constant([[[4.0, 6.0]], [[2.0, 2.0]], [[2.0, 2.0]]])
    reg_target = tf.constant([[[0.5, 0.25]], [[0.0, 0.0]], [[0.0, 0.0]]])
    per_image = [float(giou_loss(wh[i:i + 1], reg[i:i + 1], ind[i:i + 1], mask[i:i + 1],
                                 wh_target[i:i + 1], reg_target[i:i + 1])) for i in range(3)]
    np.testing.assert_allclose(per_image, [0.0, 1.0, 4.0 / 3.0], atol=1e-3)


def test_no_objects_gives_zero_and_finite_gradients():
    wh, reg, ind, _, wh_target, reg_target = random_case(np.random.default_rng(3))
    wh, reg = tf.Variable(wh), tf.Variable(reg)
    with tf.GradientTape() as tape:
        loss = giou_loss(wh, reg, ind, tf.zeros(ind.shape), wh_target, reg_target)
    grads = tape.gradient(loss, [wh, reg])
    assert float(loss) == 0.0
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_gradient_grows_a_too_small_box():
    wh = tf.Variable(tf.fill([1, 1, 1, 2], 2.0))
    reg = tf.zeros([1, 1, 1, 2])
    with tf.GradientTape() as tape:
        loss = giou_loss(wh, reg, tf.zeros([1, 1], tf.int32), tf.ones([1, 1]),
                         tf.fill([1, 1, 2], 8.0), tf.zeros([1, 1, 2]))
    assert np.all(tape.gradient(loss, wh).numpy() < 0)


def test_centernet_loss_weights_giou_into_the_total():
    wh, reg, ind, mask, wh_target, reg_target = random_case(np.random.default_rng(4))
    outputs = {"heatmap": tf.fill([3, 8, 10, 2], -2.0), "wh": wh, "reg": reg}
    heatmap = np.zeros([3, 8, 10, 2], np.float32)
    heatmap[0, 1, 1, 0] = 1.0
    targets = {"heatmap": heatmap, "ind": ind, "mask": mask, "wh": wh_target,
               "reg": reg_target}
    plain = centernet_loss(outputs, targets)
    weighted = centernet_loss(outputs, targets, giou_weight=2.5)
    assert float(plain["giou"]) == pytest.approx(ref_giou_loss(wh, reg, ind, mask, wh_target,
                                                               reg_target), rel=1e-5)
    assert float(weighted["loss"]) == pytest.approx(
        float(plain["loss"]) + 2.5 * float(plain["giou"]), rel=1e-6)
