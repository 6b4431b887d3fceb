"""The TTFNet pieces of the fast recipe against float64 NumPy references written from the
paper (Liu et al., "Training-Time-Friendly Network for Real-Time Object Detection", AAAI
2020, section 3 and its released code's conventions), not from the implementation:

- `render_ttf_targets`: elliptical Gaussian heatmap, box regression region and weights, drawn
  object by object in a Python loop, largest box first so smaller ones overwrite (on both
  renderers, the native kernel and the TensorFlow ops); and the memory either holds while
  rendering a crowded batch: never a plane per object;
- `dense_giou_loss`: GIoU per cell in float64, and its gradient by central differences.
"""

import numpy as np
import pytest
import tensorflow as tf

from centernet.data.targets import render_ttf_targets, render_ttf_targets_batch
from centernet.losses import centernet_loss, dense_giou_loss


def ref_ttf(boxes, labels, size, num_classes, alpha=0.54, beta=0.54, stride=4):
    """TTFNet's targets drawn box by box in float64 (boxes clipped to the grid's edge)."""
    b = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0, size)
    keep = [i for i in range(len(b)) if b[i, 2] > b[i, 0] and b[i, 3] > b[i, 1]]
    heatmap = np.zeros((size, size, num_classes))
    box_target = np.zeros((size, size, 4))
    box_weight = np.zeros((size, size))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    areas = {i: (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1]) * stride ** 2 for i in keep}
    # Largest first; among equal areas the earlier box first, so the later one overwrites.
    for i in sorted(keep, key=lambda i: (-areas[i], i)):
        x1, y1, x2, y2 = b[i]
        w, h = x2 - x1, y2 - y1
        cx, cy = np.floor((x1 + x2) / 2), np.floor((y1 + y2) / 2)

        def gaussian(fraction):
            rx, ry = np.floor(fraction * w / 2), np.floor(fraction * h / 2)
            sx, sy = (2 * rx + 1) / 6, (2 * ry + 1) / 6
            inside = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
            g = np.exp(-(xx - cx) ** 2 / (2 * sx ** 2) - (yy - cy) ** 2 / (2 * sy ** 2))
            return np.where(inside, g, 0.0)

        heatmap[..., labels[i]] = np.maximum(heatmap[..., labels[i]], gaussian(alpha))
        g = gaussian(beta)
        region = g > 0
        box_target[region] = b[i]
        box_weight[region] = np.log(max(areas[i], 2.0)) * g[region] / g.sum()
    return heatmap, box_target, box_weight


CASES = {
    "one box": ([[3.2, 4.7, 20.1, 12.9]], [1]),
    "nested boxes, the small one wins the shared cells": (
        [[2.0, 2.0, 26.0, 26.0], [10.0, 11.0, 16.5, 17.0]], [0, 2]),
    "equal areas overlap, the later one wins": ([[4, 4, 14, 12], [6, 5, 16, 13]], [1, 1]),
    "tiny box: a one-cell region": ([[7.2, 7.1, 8.9, 8.6]], [0]),
    "sub-pixel box: its weight stays positive": ([[7.2, 7.1, 7.4, 7.3]], [1]),
    "box over the edge, clipped": ([[-5.0, 20.0, 9.0, 40.0]], [2]),
    "degenerate box skipped": ([[5.0, 5.0, 5.0, 9.0], [1.0, 1.0, 9.0, 7.0]], [0, 1]),
    "no boxes": (np.zeros((0, 4)), []),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.usefixtures("renderer")
def test_ttf_targets_match_float64_reference(case):
    boxes, labels = CASES[case]
    size, classes = 32, 3
    t = render_ttf_targets(tf.constant(boxes, tf.float32), tf.constant(labels, tf.int32), size,
                           classes, max_objects=8)
    heatmap, box_target, box_weight = ref_ttf(np.asarray(boxes, np.float32), labels, size,
                                              classes)
    np.testing.assert_allclose(t["heatmap"].numpy(), heatmap, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(t["box_target"].numpy(), box_target, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(t["box_weight"].numpy(), box_weight, rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("renderer")
def test_ttf_heatmap_peaks_are_exactly_one_at_the_centres_and_follow_the_aspect_ratio():
    t = render_ttf_targets(tf.constant([[2.0, 10.0, 30.0, 16.0]]), tf.constant([0]), 32, 1, 4)
    heatmap = t["heatmap"].numpy()[..., 0]
    assert heatmap[13, 16] == 1.0 and heatmap.max() == 1.0
    row, column = heatmap[13], heatmap[:, 16]
    assert np.count_nonzero(row) > np.count_nonzero(column)  # wide box, wide Gaussian


@pytest.mark.usefixtures("renderer")
def test_ttf_weights_of_an_unshared_object_sum_to_the_log_of_its_input_pixel_area():
    t = render_ttf_targets(tf.constant([[4.0, 4.0, 20.0, 12.0]]), tf.constant([0]), 32, 1, 4,
                           stride=4)
    np.testing.assert_allclose(t["box_weight"].numpy().sum(), np.log(16 * 8 * 16), rtol=1e-5)


@pytest.mark.usefixtures("renderer")
def test_ttf_centre_targets_are_those_of_render_targets():
    from centernet.data.targets import render_targets
    boxes = tf.constant([[3.2, 4.7, 20.1, 12.9], [10.0, 11.0, 16.5, 17.0]])
    labels = tf.constant([1, 0])
    ttf = render_ttf_targets(boxes, labels, 32, 3, 8)
    centre = render_targets(boxes, labels, 32, 3, 8, clip_to_edge=True)
    for key in ("wh", "reg", "ind", "mask", "num_dropped"):
        np.testing.assert_array_equal(ttf[key].numpy(), centre[key].numpy(), err_msg=key)


def peak_bytes(render) -> int:
    """Peak bytes TensorFlow's pooled CPU allocator (on since `import centernet`) held while
    `render()` ran, above what it held before."""
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    render()
    return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before


@pytest.mark.usefixtures("renderer")
def test_ttf_targets_of_a_crowded_batch_never_hold_a_plane_per_object():
    """4 images of 400 small boxes each on a 128 x 128 grid: one float32 plane per object
    would be 1600 x 64 KiB = 100 MiB; the windows and the outputs (6 planes per image) take a
    few MiB, traced as the pipeline runs it."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 128, (4, 400, 2))
    sizes = rng.uniform(1, 20, (4, 400, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32)
    labels = np.zeros((4, 400), np.int32)
    render = tf.function(lambda b, l: render_ttf_targets_batch(b, l, 128, 1, 512),
                         input_signature=[tf.TensorSpec([None, None, 4], tf.float32),
                                          tf.TensorSpec([None, None], tf.int32)])
    render(boxes[:, :1], labels[:, :1])  # traced and warmed up on one object per image
    peak = peak_bytes(lambda: render(boxes, labels)["box_weight"].numpy())
    plane_per_object = 4 * 400 * 128 * 128 * 4
    outputs = 4 * 128 * 128 * 4 * (1 + 4 + 1)
    assert outputs < peak < plane_per_object / 8, f"{peak / 2 ** 20:.1f} MiB"


# --------------------------------------------------------------------------------------------
# dense GIoU loss
# --------------------------------------------------------------------------------------------


def ref_giou(p, t):
    """GIoU of two boxes x1, y1, x2, y2 in float64 (Rezatofighi et al. 2019)."""
    area = (p[2] - p[0]) * (p[3] - p[1])
    t_area = (t[2] - t[0]) * (t[3] - t[1])
    iw = max(min(p[2], t[2]) - max(p[0], t[0]), 0.0)
    ih = max(min(p[3], t[3]) - max(p[1], t[1]), 0.0)
    inter = iw * ih
    union = area + t_area - inter
    hull = (max(p[2], t[2]) - min(p[0], t[0])) * (max(p[3], t[3]) - min(p[1], t[1]))
    return inter / union - (hull - union) / hull


def ref_dense_giou(wh, reg, box_target, box_weight):
    """sum over weighted cells of w (1 - GIoU) / (sum w + 1e-4); the box at cell (x, y) is
    centred at (x + reg_x, y + reg_y) with size wh."""
    total = 0.0
    for bi, y, x in zip(*np.nonzero(box_weight > 0)):
        cx, cy = x + reg[bi, y, x, 0], y + reg[bi, y, x, 1]
        w, h = wh[bi, y, x]
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        total += box_weight[bi, y, x] * (1 - ref_giou(box, box_target[bi, y, x]))
    return total / (box_weight.sum() + 1e-4)


def loss_case(seed=0):
    rng = np.random.default_rng(seed)
    boxes = [[3.2, 4.7, 14.1, 12.9], [9.0, 2.0, 15.5, 15.0]]
    t = render_ttf_targets(tf.constant(boxes), tf.constant([0, 1]), 16, 2, 4)
    box_target = t["box_target"].numpy()[None].astype(np.float64)
    box_weight = t["box_weight"].numpy()[None].astype(np.float64)
    wh = rng.uniform(3.0, 12.0, (1, 16, 16, 2))
    reg = rng.uniform(-2.0, 2.0, (1, 16, 16, 2))
    return wh, reg, box_target, box_weight


def test_dense_giou_loss_matches_float64_reference():
    wh, reg, box_target, box_weight = loss_case()
    assert (box_weight > 0).sum() > 10
    loss = dense_giou_loss(*(tf.constant(a, tf.float32) for a in (wh, reg, box_target,
                                                                    box_weight)))
    np.testing.assert_allclose(float(loss), ref_dense_giou(wh, reg, box_target, box_weight),
                               rtol=1e-5)


def test_dense_giou_loss_gradient_matches_central_differences():
    wh, reg, box_target, box_weight = loss_case(1)
    wh_t, reg_t = tf.Variable(wh, dtype=tf.float64), tf.Variable(reg, dtype=tf.float64)
    with tf.GradientTape() as tape:
        loss = dense_giou_loss(wh_t, reg_t, tf.constant(box_target), tf.constant(box_weight))
    # The loss computes in float32; compare at the cells that carry weight.
    grad_wh, grad_reg = (g.numpy() for g in tape.gradient(loss, [wh_t, reg_t]))
    cells = list(zip(*np.nonzero(box_weight > 0)))[::3]
    eps = 1e-4
    for array, grad in ((wh, grad_wh), (reg, grad_reg)):
        for bi, y, x in cells:
            for c in range(2):
                plus, minus = array.copy(), array.copy()
                plus[bi, y, x, c] += eps
                minus[bi, y, x, c] -= eps
                args_plus = (plus, reg) if array is wh else (wh, plus)
                args_minus = (minus, reg) if array is wh else (wh, minus)
                numeric = (ref_dense_giou(*args_plus, box_target, box_weight)
                           - ref_dense_giou(*args_minus, box_target, box_weight)) / (2 * eps)
                np.testing.assert_allclose(grad[bi, y, x, c], numeric, rtol=2e-3, atol=2e-6)


def test_dense_giou_loss_is_zero_for_perfect_boxes_and_ignores_unweighted_cells():
    _, _, box_target, box_weight = loss_case()
    ys, xs = np.mgrid[0:16, 0:16]
    centre = (box_target[..., :2] + box_target[..., 2:]) / 2
    reg = centre - np.stack([xs, ys], -1)[None]
    wh = box_target[..., 2:] - box_target[..., :2]
    # Garbage where nothing is regressed must not count.
    wh = np.where(box_weight[..., None] > 0, wh, -7.0)
    loss = dense_giou_loss(*(tf.constant(a, tf.float32) for a in (wh, reg, box_target,
                                                                    box_weight)))
    assert abs(float(loss)) < 1e-5


def test_centernet_loss_uses_the_dense_giou_with_ttf_targets():
    wh, reg, box_target, box_weight = loss_case()
    t = render_ttf_targets(tf.constant([[3.2, 4.7, 14.1, 12.9], [9.0, 2.0, 15.5, 15.0]]),
                           tf.constant([0, 1]), 16, 2, 4)
    batch = {k: v[None] for k, v in t.items()}
    outputs = {"heatmap": tf.zeros([1, 16, 16, 2]), "wh": tf.constant(wh, tf.float32),
               "reg": tf.constant(reg, tf.float32)}
    parts = centernet_loss(outputs, batch, giou_weight=5.0)
    np.testing.assert_allclose(float(parts["giou"]),
                               ref_dense_giou(wh, reg, box_target, box_weight), rtol=1e-5)
    np.testing.assert_allclose(float(parts["loss"]),
                               float(parts["heatmap"]) + 0.1 * float(parts["wh"])
                               + float(parts["offset"]) + 5.0 * float(parts["giou"]), rtol=1e-6)


@pytest.mark.usefixtures("renderer")
def test_ttf_batch_matches_the_reference_image_by_image():
    """A padded batch of the cases above (zero rows pad the shorter ones): each image gets the
    float64 reference's targets of its own boxes, and no object of one image owns a cell of
    another (the ranks that choose a cell's owner run over the whole batch)."""
    from test_targets import padded_batch
    scenes = [(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(l, np.int32))
              for b, l in CASES.values()]
    boxes, labels = padded_batch(scenes)
    size, classes = 32, 3
    got = render_ttf_targets_batch(tf.constant(boxes), tf.constant(labels), size, classes, 8)
    assert got["box_weight"].shape == (len(scenes), size, size)
    for index, (b, l) in enumerate(scenes):
        heatmap, box_target, box_weight = ref_ttf(b, l, size, classes)
        np.testing.assert_allclose(got["heatmap"][index].numpy(), heatmap, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got["box_target"][index].numpy(), box_target, rtol=1e-6,
                                   atol=1e-5)
        np.testing.assert_allclose(got["box_weight"][index].numpy(), box_weight, rtol=1e-5,
                                   atol=1e-6)
