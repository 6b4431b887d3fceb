"""Independent tests of `centernet.data.targets` against float64 NumPy references.

The references below are written from the formulas in docs/architecture.md ("Targets"), not
from the implementation: `ref_radius` is the CornerNet radius as CenterNet ships it and
`ref_render` draws the targets with an explicit (slow, obvious) Python loop in float64.
"""

import numpy as np
import pytest
import tensorflow as tf

from centernet.data import targets as T

pytestmark = pytest.mark.usefixtures("renderer")  # every test on both renderers (conftest)


# --------------------------------------------------------------------------------------------
# float64 references
# --------------------------------------------------------------------------------------------


def ref_radius(h, w, m=0.7):
    """CornerNet radius R = min(r1, r2, r3), float64, exactly the formulas of docs/architecture.md
    ("Targets")."""
    h = np.asarray(h, np.float64)
    w = np.asarray(w, np.float64)
    b1 = h + w
    c1 = w * h * (1 - m) / (1 + m)
    r1 = (b1 + np.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - m) * w * h
    r2 = (b2 + np.sqrt(b2**2 - 16 * c2)) / 2
    b3 = -2 * m * (h + w)
    c3 = (m - 1) * w * h
    r3 = (b3 + np.sqrt(b3**2 - 16 * m * c3)) / 2
    return np.minimum(np.minimum(r1, r2), r3)


def ref_render(boxes, labels, output_size, num_classes, max_objects, min_overlap=0.7):
    """Targets drawn box by box in float64 (the spec, literally).

    Returns the same dict as `render_targets` (NumPy arrays in the expected dtypes) plus
    `_used`: the input indices of the boxes that got a slot, in slot order.
    """
    H, W = (output_size, output_size) if np.isscalar(output_size) else output_size
    K, C = max_objects, num_classes
    b = np.asarray(boxes, np.float32).reshape(-1, 4).astype(np.float64)
    labels = np.asarray(labels, np.int64).reshape(-1)
    x1 = np.clip(b[:, 0], 0, W - 1)
    y1 = np.clip(b[:, 1], 0, H - 1)
    x2 = np.clip(b[:, 2], 0, W - 1)
    y2 = np.clip(b[:, 3], 0, H - 1)
    w = x2 - x1
    h = y2 - y1
    valid = np.flatnonzero((w > 0) & (h > 0))
    used = valid[:K]

    heatmap = np.zeros((H, W, C), np.float64)
    wh = np.zeros((K, 2), np.float64)
    reg = np.zeros((K, 2), np.float64)
    ind = np.zeros((K,), np.int64)
    mask = np.zeros((K,), np.float64)
    yy, xx = np.mgrid[0:H, 0:W]
    for slot, i in enumerate(used):
        cx = (x1[i] + x2[i]) / 2
        cy = (y1[i] + y2[i]) / 2
        px, py = int(np.floor(cx)), int(np.floor(cy))
        r = max(0, int(ref_radius(np.ceil(h[i]), np.ceil(w[i]), min_overlap)))
        sigma = (2 * r + 1) / 6
        g = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma**2))
        g[(np.abs(xx - px) > r) | (np.abs(yy - py) > r)] = 0.0
        c = labels[i]
        heatmap[..., c] = np.maximum(heatmap[..., c], g)
        wh[slot] = (w[i], h[i])
        reg[slot] = (cx - px, cy - py)
        ind[slot] = py * W + px
        mask[slot] = 1.0
    return {
        "heatmap": heatmap,  # compared with a 1e-6 tolerance, kept in float64
        "wh": wh.astype(np.float32),
        "reg": reg.astype(np.float32),
        "ind": ind.astype(np.int32),
        "mask": mask.astype(np.float32),
        "num_dropped": np.int32(max(0, len(valid) - K)),
        "_used": used,
        "_labels": labels,
    }


def to_numpy(out):
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in out.items()}


def assert_targets_match(got, ref, output_size, num_classes, max_objects):
    """Every field of `render_targets` against the reference, with the brief's tolerances."""
    H, W = (output_size, output_size) if np.isscalar(output_size) else output_size
    K, C = max_objects, num_classes
    got = to_numpy(got)
    assert got["heatmap"].shape == (H, W, C) and got["heatmap"].dtype == np.float32
    assert got["wh"].shape == (K, 2) and got["wh"].dtype == np.float32
    assert got["reg"].shape == (K, 2) and got["reg"].dtype == np.float32
    assert got["ind"].shape == (K,) and got["ind"].dtype == np.int32
    assert got["mask"].shape == (K,) and got["mask"].dtype == np.float32
    assert got["num_dropped"].shape == () and got["num_dropped"].dtype == np.int32

    np.testing.assert_allclose(got["heatmap"], ref["heatmap"], rtol=0, atol=1e-6)
    assert np.array_equal(got["wh"], ref["wh"]), (got["wh"], ref["wh"])
    assert np.array_equal(got["reg"], ref["reg"]), (got["reg"], ref["reg"])
    assert np.array_equal(got["ind"], ref["ind"]), (got["ind"], ref["ind"])
    assert np.array_equal(got["mask"], ref["mask"]), (got["mask"], ref["mask"])
    assert int(got["num_dropped"]) == int(ref["num_dropped"])

    # One exact 1.0 peak per kept centre, and 1.0 nowhere else.
    hm = got["heatmap"]
    used, labels = ref["_used"], ref["_labels"]
    for slot in range(len(used)):
        py, px = divmod(int(ref["ind"][slot]), W)
        assert hm[py, px, labels[used[slot]]] == 1.0
    for c in range(C):
        centres = {int(ref["ind"][s]) for s in range(len(used)) if labels[used[s]] == c}
        ones = set(np.flatnonzero(hm[..., c].reshape(-1) == 1.0).tolist())
        assert ones == centres, f"class {c}: cells at 1.0 {sorted(ones)} != centres {sorted(centres)}"


def render(boxes, labels, output_size, num_classes, max_objects, **kw):
    return T.render_targets(
        tf.constant(np.asarray(boxes, np.float32).reshape(-1, 4)),
        tf.constant(np.asarray(labels, np.int32).reshape(-1)),
        output_size,
        num_classes,
        max_objects,
        **kw,
    )


# --------------------------------------------------------------------------------------------
# scenes (coordinates are multiples of 1/8 unless said otherwise, so that every sum and
# difference is exact in float32 as well as float64 and nothing hinges on rounding)
# --------------------------------------------------------------------------------------------


def q(a):
    """Quantise to multiples of 1/8."""
    return np.round(np.asarray(a, np.float64) * 8) / 8


def random_scene(rng, H, W, C, n):
    """Random boxes over (and beyond) an H x W grid plus every awkward kind of box."""
    cx = rng.uniform(-2, W + 2, n)
    cy = rng.uniform(-2, H + 2, n)
    bw = rng.uniform(0.1, W / 2, n)
    bh = rng.uniform(0.1, H / 2, n)
    boxes = q(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
    labels = rng.integers(0, C, n)
    special = [
        ([-5, -5, 3.5, 4.25], 0),  # crosses the top-left border
        ([W - 3.5, H - 2.25, W + 7, H + 9], 1 % C),  # crosses the bottom-right border
        ([-9, 2, -1, 6], 0),  # fully left of the grid -> zero width after clipping
        ([W + 1, 2, W + 5, 6], 0),  # fully right of the grid
        ([2, H + 1, 6, H + 4], 0),  # fully below the grid
        ([8, 5, 3, 9], 0),  # inverted x
        ([3, 9, 8, 5], 0),  # inverted y
        ([4, 4, 4, 9], 0),  # zero width
        ([4, 4, 9, 4], 0),  # zero height
        ([5.25, 6.5, 5.5, 6.875], 1 % C),  # tiny: 0.25 x 0.375 px
        ([10.125, 3.75, 10.75, 4.0], 0),  # tiny: 0.625 x 0.25 px
        ([1, 1, 13, 11], 2 % C),  # same class, overlapping
        ([4, 3, 15, 12], 2 % C),
        ([6, 6, 10, 10], 0),  # same centre (8, 8), same class, different sizes
        ([4, 7, 12, 9], 0),
        ([7, 5, 9, 11], 1 % C),  # same centre (8, 8), another class
    ]
    sb = np.array([s[0] for s in special], np.float64)
    sl = np.array([s[1] for s in special], np.int64)
    boxes = np.concatenate([boxes, sb])
    labels = np.concatenate([labels, sl])
    perm = rng.permutation(len(boxes))
    return boxes[perm].astype(np.float32), labels[perm].astype(np.int32)


SCENES = [
    # (seed, (H, W), C, K, n_random)
    (0, (24, 40), 3, 64, 20),  # non-square, everything fits
    (1, (40, 24), 4, 64, 30),  # non-square, the other way round
    (2, (32, 32), 3, 8, 25),  # more valid boxes than max_objects
    (3, (16, 16), 2, 128, 5),  # square, few boxes
]


# --------------------------------------------------------------------------------------------
# gaussian_radius
# --------------------------------------------------------------------------------------------


def test_gaussian_radius_known_values():
    """R matches values worked out by hand from the formulas (docs/architecture.md, "Targets").

    h = w = 10, m = 0.7:  b3 = -2*0.7*20 = -28, c3 = -0.3*100 = -30,
        b3^2 - 16*m*c3 = 784 + 336 = 1120, r3 = (-28 + sqrt(1120)) / 2 = sqrt(280) - 14 = 2.7332...
        r1 = (20 + sqrt(400 - 4*100*0.3/1.7)) / 2 = 19.07..., r2 = 20 + sqrt(280) = 36.73...
        -> R = sqrt(280) - 14.
    h = w = 2, m = 0.5:   b3 = -4, c3 = -2, 16 + 16 = 32, r3 = (-4 + sqrt(32)) / 2 = 2*sqrt(2) - 2,
        r1 = (4 + sqrt(16 - 16/3)) / 2 = 3.63..., r2 = (8 + sqrt(32)) / 2 = 6.83...
        -> R = 2*sqrt(2) - 2 = 0.828...
    h = w = 1, m = 0.7:   everything scales linearly in (h, w): R = (sqrt(280) - 14) / 10.
    """
    got = T.gaussian_radius(10.0, 10.0, min_overlap=0.7)
    assert tf.as_dtype(got.dtype) == tf.float64
    np.testing.assert_allclose(got.numpy(), np.sqrt(280.0) - 14.0, rtol=1e-12)
    got = T.gaussian_radius(2.0, 2.0, min_overlap=0.5)
    np.testing.assert_allclose(got.numpy(), 2 * np.sqrt(2.0) - 2, rtol=1e-12)
    got = T.gaussian_radius(1.0, 1.0)  # default min_overlap is 0.7
    np.testing.assert_allclose(got.numpy(), (np.sqrt(280.0) - 14.0) / 10, rtol=1e-12)


@pytest.mark.parametrize("m", [0.3, 0.5, 0.7, 0.9])
def test_gaussian_radius_random_matches_reference(m):
    """R(h, w) equals the float64 reference to 1e-9 relative for random h, w in (0, 500]."""
    rng = np.random.default_rng(int(m * 10))
    h = np.concatenate([rng.uniform(0, 500, 2000), [500.0, 1e-3, 0.5, 1.0]])
    w = np.concatenate([rng.uniform(0, 500, 2000), [500.0, 500.0, 1e-3, 1.0]])
    h[h == 0] = 1.0
    w[w == 0] = 1.0
    got = T.gaussian_radius(h, w, min_overlap=m)
    assert tf.as_dtype(got.dtype) == tf.float64
    assert got.shape == h.shape
    np.testing.assert_allclose(got.numpy(), ref_radius(h, w, m), rtol=1e-9, atol=0)


def test_gaussian_radius_broadcasts_and_accepts_float32_tensors():
    """Shapes broadcast like NumPy; float32 tensor inputs are promoted to a float64 result."""
    rng = np.random.default_rng(7)
    h = rng.uniform(1, 300, (5, 1)).astype(np.float32)
    w = rng.uniform(1, 300, (1, 4)).astype(np.float32)
    got = T.gaussian_radius(tf.constant(h), tf.constant(w), min_overlap=0.7)
    assert tf.as_dtype(got.dtype) == tf.float64
    assert tuple(got.shape) == (5, 4)
    np.testing.assert_allclose(got.numpy(), ref_radius(h, w, 0.7), rtol=1e-6)
    # and the symmetric argument order gives the same radius
    np.testing.assert_allclose(
        T.gaussian_radius(w.T, h.T).numpy().T, ref_radius(h, w, 0.7), rtol=1e-6
    )


# --------------------------------------------------------------------------------------------
# render_targets: eager
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,size,C,K,n", SCENES)
def test_render_targets_random_scenes_match_reference(seed, size, C, K, n):
    """Every output of render_targets equals the float64 reference on random scenes that
    include border-crossing, outside, inverted, zero-size and tiny boxes, overlapping
    same-class boxes, shared centres and (for K=8) more valid boxes than max_objects."""
    rng = np.random.default_rng(seed)
    boxes, labels = random_scene(rng, size[0], size[1], C, n)
    ref = ref_render(boxes, labels, size, C, K)
    got = render(boxes, labels, size, C, K)
    assert_targets_match(got, ref, size, C, K)


def test_render_targets_scene_with_drops_really_drops():
    """Sanity of the scene set itself: the K=8 scene has more valid boxes than K, the
    others have invalid boxes that must not take slots (compaction)."""
    seed, size, C, K, n = SCENES[2]
    boxes, labels = random_scene(np.random.default_rng(seed), size[0], size[1], C, n)
    ref = ref_render(boxes, labels, size, C, K)
    assert ref["num_dropped"] > 0
    got = to_numpy(render(boxes, labels, size, C, K))
    assert int(got["num_dropped"]) == int(ref["num_dropped"])
    assert got["mask"].sum() == K


def test_render_targets_handmade_scene():
    """A small scene checked against hand-worked values.

    Grid H=6, W=10, 2 classes, K=4. Boxes, in order:
      0: [-2, 0, 7, 5]  class 0 -> clipped to [0, 0, 7, 5]: w=7, h=5, c=(3.5, 2.5), p=(3, 2),
         R(5, 7): b3 = -1.4*12 = -16.8, b3^2 - 16*m*c3 = 282.24 + 117.6 = 399.84,
         r3 = (-16.8 + 19.996) / 2 = 1.598 (< r1, r2) -> r = 1: rows 1..3, columns 2..4
      1: [5, 5, 2, 6]   inverted -> invalid, takes no slot
      2: [6.5, 0.25, 6.75, 0.5] class 1, tiny: w=0.25, h=0.25, c=(6.625, 0.375), p=(6, 0),
         R(1, 1) = 0.273 -> r = 0: a single 1.0 cell
      3: [20, 1, 30, 4] fully right -> clipped to x1=x2=9 -> invalid
    """
    boxes = [[-2, 0, 7, 5], [5, 5, 2, 6], [6.5, 0.25, 6.75, 0.5], [20, 1, 30, 4]]
    labels = [0, 1, 1, 0]
    got = to_numpy(render(boxes, labels, (6, 10), 2, 4))
    np.testing.assert_array_equal(got["mask"], [1, 1, 0, 0])
    np.testing.assert_array_equal(got["ind"], [2 * 10 + 3, 0 * 10 + 6, 0, 0])
    np.testing.assert_array_equal(got["wh"], [[7, 5], [0.25, 0.25], [0, 0], [0, 0]])
    np.testing.assert_array_equal(got["reg"], [[0.5, 0.5], [0.625, 0.375], [0, 0], [0, 0]])
    assert int(got["num_dropped"]) == 0
    # box 2 (r = 0): exactly one nonzero cell in class 1
    assert got["heatmap"][0, 6, 1] == 1.0
    assert np.count_nonzero(got["heatmap"][..., 1]) == 1
    # box 0: r = 1, sigma = 0.5 -> a 3x3 window around (3, 2) with exp(-2) at the edges
    assert int(ref_radius(5.0, 7.0)) == 1
    nz = np.argwhere(got["heatmap"][..., 0] > 0)
    assert (nz[:, 0].min(), nz[:, 0].max(), nz[:, 1].min(), nz[:, 1].max()) == (1, 3, 2, 4)
    np.testing.assert_allclose(got["heatmap"][1, 3, 0], np.exp(-2.0), atol=1e-6)
    np.testing.assert_allclose(got["heatmap"][1, 2, 0], np.exp(-4.0), atol=1e-6)
    assert_targets_match(got, ref_render(boxes, labels, (6, 10), 2, 4), (6, 10), 2, 4)


def test_render_targets_no_boxes():
    """N = 0: all-zero heatmap and slots, nothing dropped."""
    got = render(np.zeros((0, 4)), np.zeros((0,)), (24, 40), 3, 16)
    ref = ref_render(np.zeros((0, 4)), np.zeros((0,)), (24, 40), 3, 16)
    assert_targets_match(got, ref, (24, 40), 3, 16)
    assert not np.any(to_numpy(got)["heatmap"])


def test_render_targets_only_invalid_boxes():
    """Boxes that are all invalid behave like N = 0 (no slot, no heat, nothing dropped)."""
    boxes = [[-9, 2, -1, 6], [8, 5, 3, 9], [4, 4, 4, 9], [2, 30, 6, 40]]
    got = render(boxes, [0, 1, 0, 1], (24, 40), 2, 3)
    assert_targets_match(got, ref_render(boxes, [0, 1, 0, 1], (24, 40), 2, 3), (24, 40), 2, 3)
    assert not np.any(to_numpy(got)["heatmap"])
    assert int(to_numpy(got)["num_dropped"]) == 0


def test_render_targets_int_output_size_is_square():
    """output_size given as an int means an (S, S) grid."""
    boxes, labels = random_scene(np.random.default_rng(11), 20, 20, 2, 10)
    got = render(boxes, labels, 20, 2, 32)
    assert_targets_match(got, ref_render(boxes, labels, (20, 20), 2, 32), 20, 2, 32)


def test_render_targets_dropped_boxes_draw_nothing():
    """Only the first K valid boxes (in input order, invalid ones skipped) are used; later
    ones neither take a slot nor draw heat, and are counted in num_dropped."""
    boxes = [
        [1, 1, 5, 5],  # valid, slot 0, class 0
        [3, 3, 1, 1],  # invalid
        [10, 10, 14, 14],  # valid, slot 1, class 1
        [20, 4, 24, 8],  # valid, dropped (K = 2), class 2
        [2, 14, 6, 18],  # valid, dropped, class 2
    ]
    labels = [0, 0, 1, 2, 2]
    got = to_numpy(render(boxes, labels, (24, 32), 3, 2))
    assert int(got["num_dropped"]) == 2
    np.testing.assert_array_equal(got["ind"], [3 * 32 + 3, 12 * 32 + 12])
    assert not np.any(got["heatmap"][..., 2])
    assert_targets_match(got, ref_render(boxes, labels, (24, 32), 3, 2), (24, 32), 3, 2)


def test_render_targets_unquantised_float32_coordinates():
    """With arbitrary float32 coordinates the centre, reg and wh follow the float64 recipe:
    c = (x1 + x2) / 2 in float64, reg = float32(c - floor(c)), wh = float32(x2 - x1)."""
    rng = np.random.default_rng(21)
    H, W, C, K = 30, 44, 3, 64
    n = 40
    cx, cy = rng.uniform(0, W, n), rng.uniform(0, H, n)
    bw, bh = rng.uniform(0.3, 15, n), rng.uniform(0.3, 15, n)
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
    labels = rng.integers(0, C, n).astype(np.int32)
    # Guard on the test data: the float32 and float64 readings of ceil(w), ceil(h) agree here,
    # so nothing below depends on which precision the radius is computed from.
    b = np.clip(boxes, 0, [W - 1, H - 1, W - 1, H - 1])
    d32 = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)  # float32 arithmetic
    d64 = b[:, 2:].astype(np.float64) - b[:, :2].astype(np.float64)
    assert np.array_equal(np.ceil(d32), np.ceil(d64))
    got = render(boxes, labels, (H, W), C, K)
    assert_targets_match(got, ref_render(boxes, labels, (H, W), C, K), (H, W), C, K)


def test_render_targets_centre_is_computed_in_float64():
    """The centre is (x1 + x2) / 2 in float64. Here x1 = 0.25 - 2**-25 and x2 = 3.75 are
    float32 values whose float32 sum rounds up to 4.0 (centre 2.0, p = 2), while the exact
    (float64) centre is 2 - 2**-26, so p = 1 and reg_x = float32(1 - 2**-26) = 1.0.
    (ceil(w) is 4 either way, so the radius does not depend on the precision.)"""
    x1 = np.float32(0.25 - 2.0**-25)
    assert np.float64(x1) == 0.25 - 2.0**-25  # exactly representable
    assert np.float32(x1 + np.float32(3.75)) == np.float32(4.0)  # float32 sum rounds up
    boxes = np.array([[x1, 2.0, 3.75, 6.0]], np.float32)
    got = to_numpy(render(boxes, [0], (8, 8), 1, 2))
    assert int(got["ind"][0]) == 4 * 8 + 1
    np.testing.assert_array_equal(got["reg"][0], np.float32([1 - 2.0**-26, 0.0]))
    assert_targets_match(got, ref_render(boxes, [0], (8, 8), 1, 2), (8, 8), 1, 2)


def test_render_targets_min_overlap_is_used():
    """min_overlap changes the radius exactly as the reference says."""
    boxes = np.array([[2, 3, 22, 17], [25, 4, 37, 20]], np.float32)
    labels = np.array([0, 1], np.int32)
    for m in (0.3, 0.9):
        got = render(boxes, labels, (24, 40), 2, 4, min_overlap=m)
        assert_targets_match(got, ref_render(boxes, labels, (24, 40), 2, 4, m), (24, 40), 2, 4)


# --------------------------------------------------------------------------------------------
# render_targets: graph mode (tf.data, tf.function with unknown N)
# --------------------------------------------------------------------------------------------


def _scene_list():
    rng = np.random.default_rng(5)
    scenes = [random_scene(rng, 24, 40, 3, n) for n in (0, 3, 12, 30)]
    scenes.insert(1, (np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)))
    return scenes


def test_render_targets_in_tf_data_map_from_generator():
    """Inside Dataset.map (graph mode) with ragged N from a generator, the outputs equal the
    eager outputs and the reference."""
    H, W, C, K = 24, 40, 3, 16
    scenes = _scene_list()

    def gen():
        for b, l in scenes:
            yield b, l

    ds = tf.data.Dataset.from_generator(
        gen,
        output_signature=(
            tf.TensorSpec([None, 4], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ),
    ).map(lambda b, l: T.render_targets(b, l, (H, W), C, K))
    outs = list(ds)
    assert len(outs) == len(scenes)
    for (b, l), g in zip(scenes, outs):
        eager = to_numpy(render(b, l, (H, W), C, K))
        g = to_numpy(g)
        for key in eager:
            np.testing.assert_array_equal(g[key], eager[key], err_msg=key)
        assert_targets_match(g, ref_render(b, l, (H, W), C, K), (H, W), C, K)


def test_render_targets_in_tf_data_map_padded_with_count():
    """Same through from_tensor_slices on padded arrays + a count, sliced inside map."""
    H, W, C, K = 24, 40, 3, 16
    scenes = _scene_list()
    nmax = max(len(b) for b, _ in scenes)
    pb = np.zeros((len(scenes), nmax, 4), np.float32)
    pl = np.zeros((len(scenes), nmax), np.int32)
    counts = np.zeros((len(scenes),), np.int32)
    for i, (b, l) in enumerate(scenes):
        pb[i, : len(b)], pl[i, : len(l)], counts[i] = b, l, len(b)

    def fn(b, l, n):
        return T.render_targets(b[:n], l[:n], (H, W), C, K)

    outs = list(tf.data.Dataset.from_tensor_slices((pb, pl, counts)).map(fn))
    for (b, l), g in zip(scenes, outs):
        assert_targets_match(g, ref_render(b, l, (H, W), C, K), (H, W), C, K)


def test_render_targets_tf_function_unknown_n_single_trace():
    """One tf.function trace with input_signature [None, 4] serves every N (so no Python
    loop over the objects), and each call matches the reference."""
    H, W, C, K = 24, 40, 3, 16

    @tf.function(
        input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)]
    )
    def f(b, l):
        return T.render_targets(b, l, (H, W), C, K)

    for b, l in _scene_list():
        g = f(tf.constant(b.reshape(-1, 4)), tf.constant(l.reshape(-1)))
        assert_targets_match(g, ref_render(b, l, (H, W), C, K), (H, W), C, K)
    assert f.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("label", [-1, 3])
def test_label_outside_the_classes_is_refused(label):
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must be in 0..2"):
        T.render_targets(tf.constant([[1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 9.0, 9.0]]),
                       tf.constant([0, label]), 16, 3, 8)


# --------------------------------------------------------------------------------------------
# render_targets_batch: the pipeline renders whole batches
# --------------------------------------------------------------------------------------------


def padded_batch(scenes):
    """Scenes `[(boxes [n, 4], labels [n])]` padded with zero rows to one `[B, N, 4]` and
    `[B, N]`, as `tf.data`'s `padded_batch` pads them."""
    rows = max(len(boxes) for boxes, _ in scenes)
    boxes = np.zeros((len(scenes), rows, 4), np.float32)
    labels = np.zeros((len(scenes), rows), np.int32)
    for index, (b, l) in enumerate(scenes):
        boxes[index, :len(b)], labels[index, :len(l)] = b, l
    return boxes, labels


def batch_scenes(seed, H, W, C):
    """Four images: random scenes (`random_scene`: 20, 3 and 40 random boxes, each with its
    16 awkward ones) and one with no boxes at all; padded to the longest."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, H, W, C, 20), random_scene(rng, H, W, C, 3),
              (np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)),
              random_scene(rng, H, W, C, 40)]
    return scenes, padded_batch(scenes)


@pytest.mark.parametrize("size, C, K", [((24, 40), 3, 12), ((32, 32), 2, 64)])
def test_render_targets_batch_matches_the_reference_image_by_image(size, C, K):
    """Each image of a padded batch gets exactly the float64 reference's targets of its own
    boxes: padding rows take no slot, slots and drops are counted per image, no image's
    objects leak into another's heatmap."""
    scenes, (boxes, labels) = batch_scenes(5, *size, C)
    got = to_numpy(T.render_targets_batch(tf.constant(boxes), tf.constant(labels), size, C, K))
    assert got["heatmap"].shape == (4, *size, C) and got["num_dropped"].shape == (4,)
    for index, (b, l) in enumerate(scenes):
        image = {key: value[index] for key, value in got.items()}
        assert_targets_match(image, ref_render(b, l, size, C, K), size, C, K)
    assert not got["heatmap"][2].any() and not got["mask"][2].any()
    assert (got["num_dropped"][3] > 0) == (K == 12)  # the 40-box scene overflows 12 slots


@pytest.mark.parametrize("kind", ["centernet", "ttfnet"])
@pytest.mark.parametrize("batch_shape", ["static", "unknown"])
def test_each_image_of_a_batch_gets_exactly_its_targets_alone(kind, batch_shape):
    """Bit for bit, every output (dense targets included) of each image of a padded batch
    equals rendering that image alone, with the batch's size known when traced (int32
    indices) or not (int64); and a batch of images without boxes renders zeros."""
    size, C, K = (24, 40), 3, 12
    render_alone, render_batch, options = {
        "centernet": (T.render_targets, T.render_targets_batch,
                      {"dense_wh": True, "dense_reg": True}),
        "ttfnet": (T.render_ttf_targets, T.render_ttf_targets_batch, {})}[kind]
    shape = [4, None, 4] if batch_shape == "static" else [None, None, 4]
    rendered = tf.function(lambda b, l: render_batch(b, l, size, C, K, **options),
                           input_signature=[tf.TensorSpec(shape, tf.float32),
                                            tf.TensorSpec(shape[:2], tf.int32)])
    scenes, (boxes, labels) = batch_scenes(7, *size, C)
    got = to_numpy(rendered(boxes, labels))
    for index, (b, l) in enumerate(scenes):
        alone = to_numpy(render_alone(b, l, size, C, K, **options))
        assert alone.keys() == got.keys()
        for key, value in alone.items():
            np.testing.assert_array_equal(got[key][index], value, err_msg=key)
    if batch_shape == "static":
        empty = rendered(np.zeros((4, 2, 4), np.float32), np.zeros((4, 2), np.int32))
        assert not any(np.any(value.numpy()) for value in empty.values())
