"""Independent tests of `centernet.losses` against float64 NumPy references.

The references follow docs/architecture.md ("Losses"): per element, positives (z == 1)
`-log s(x) * (1 - s(x))^a`, others `-log(1 - s(x)) * s(x)^a * (1 - z)^b`, summed over the whole
batch and divided by the batch's number of positives (the sum alone when there are none).
"""

import numpy as np
import pytest
import tensorflow as tf

from centernet.losses import focal_loss, reg_l1_loss

# --------------------------------------------------------------------------------------------
# float64 references
# --------------------------------------------------------------------------------------------


def sigmoid64(x):
    """Stable float64 sigmoid (no overflow for any finite x)."""
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus64(x):
    """log(1 + exp(x)), stable in float64."""
    return np.logaddexp(0.0, np.asarray(x, np.float64))


def _reduce(total, pos):
    npos = int(pos.sum())
    return total / npos if npos > 0 else total


def ref_focal_terms(logits, heatmap, alpha=2.0, beta=4.0):
    """Per-element focal terms in float64 (-log s(x) = softplus(-x), -log(1-s(x)) =
    softplus(x), 1 - s(x) = s(-x)) and the positive mask."""
    x = np.asarray(logits, np.float64)
    z = np.asarray(heatmap, np.float64)
    pos = z == 1.0
    pos_loss = softplus64(-x) * sigmoid64(-x) ** alpha
    neg_loss = softplus64(x) * sigmoid64(x) ** alpha * (1 - z) ** beta
    return np.where(pos, pos_loss, neg_loss), pos


def ref_focal(logits, heatmap, alpha=2.0, beta=4.0):
    """Exact focal loss in float64."""
    terms, pos = ref_focal_terms(logits, heatmap, alpha, beta)
    return _reduce(terms.sum(), pos)


def ref_focal_clamped(logits, heatmap, alpha=2.0, beta=4.0):
    """The original CenterNet's form: p = clip(s(x), 1e-4, 1 - 1e-4), then the logs."""
    x = np.asarray(logits, np.float64)
    z = np.asarray(heatmap, np.float64)
    pos = z == 1.0
    p = np.clip(sigmoid64(x), 1e-4, 1 - 1e-4)
    pos_loss = -np.log(p) * (1 - p) ** alpha
    neg_loss = -np.log(1 - p) * p**alpha * (1 - z) ** beta
    total = pos_loss[pos].sum() + neg_loss[~pos].sum()
    return _reduce(total, pos)


def ref_focal_grad(logits, heatmap, alpha=2.0, beta=4.0):
    """d(loss)/d(logits) in float64, from the closed form:
    positives: d/dx [sp(-x) s(-x)^a] = -s(-x)^(a+1) - a sp(-x) s(-x)^a s(x)
    others:    d/dx [sp(x) s(x)^a (1-z)^b] = (1-z)^b [s(x)^(a+1) + a sp(x) s(x)^a s(-x)]
    """
    x = np.asarray(logits, np.float64)
    z = np.asarray(heatmap, np.float64)
    pos = z == 1.0
    sp, sn = sigmoid64(x), sigmoid64(-x)
    gpos = -(sn ** (alpha + 1)) - alpha * softplus64(-x) * sn**alpha * sp
    gneg = (1 - z) ** beta * (sp ** (alpha + 1) + alpha * softplus64(x) * sp**alpha * sn)
    g = np.where(pos, gpos, gneg)
    npos = int(pos.sum())
    return g / npos if npos > 0 else g


def ref_reg_l1(pred, ind, mask, target):
    """sum(|pred[ind] - target| * mask) / (2 * sum(mask) + 1e-4), in float64."""
    pred = np.asarray(pred, np.float64)
    B, H, W, D = pred.shape
    flat = pred.reshape(B, H * W, D)
    gathered = np.stack([flat[b, np.asarray(ind)[b]] for b in range(B)])
    m = np.asarray(mask, np.float64)[..., None]
    num = (np.abs(gathered - np.asarray(target, np.float64)) * m).sum()
    return num / (D * np.asarray(mask, np.float64).sum() + 1e-4)


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def make_heatmap(rng, shape, n_peaks_per_image, empty_images=()):
    """A target-like heatmap: values in (0, 1) that are Gaussian bumps around exact 1.0 peaks
    plus background zeros; images listed in `empty_images` are all zero (no positives)."""
    B, H, W, C = shape
    z = np.zeros(shape, np.float64)
    yy, xx = np.mgrid[0:H, 0:W]
    for b in range(B):
        if b in empty_images:
            continue
        for _ in range(n_peaks_per_image):
            py, px, c = rng.integers(0, H), rng.integers(0, W), rng.integers(0, C)
            sigma = rng.uniform(0.5, 2.5)
            g = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma**2))
            g[py, px] = 1.0
            z[b, ..., c] = np.maximum(z[b, ..., c], g)
    z = z.astype(np.float32)
    assert z[z < 1].max(initial=0) < 0.95  # off-peak values stay clearly below 1
    return z


def extreme_logits(rng, shape):
    """Logits mixing moderate values with +-30 and +-1e4."""
    x = rng.normal(0, 3, shape)
    choice = rng.integers(0, 6, shape)
    x = np.where(choice == 0, 30.0, x)
    x = np.where(choice == 1, -30.0, x)
    x = np.where(choice == 2, 1e4, x)
    x = np.where(choice == 3, -1e4, x)
    return x.astype(np.float32)


def loss(logits, heatmap, impl):
    return focal_loss(tf.constant(logits), tf.constant(heatmap), impl=impl)


SHAPE = (3, 16, 20, 4)


def _cases():
    rng = np.random.default_rng(0)
    z = make_heatmap(rng, SHAPE, 5)
    z_one = make_heatmap(rng, SHAPE, 4, empty_images=(0, 2))  # only image 1 has objects
    z_none = make_heatmap(rng, SHAPE, 4, empty_images=(0, 1, 2))  # all background
    x_rand = (rng.normal(0, 3, SHAPE)).astype(np.float32)
    x_ext = extreme_logits(rng, SHAPE)
    return {
        "random": (x_rand, z),
        "extreme": (x_ext, z),
        "one_image_with_objects": (x_rand, z_one),
        "one_image_with_objects_extreme": (x_ext, z_one),
        "all_background": (x_rand, z_none),
        "all_background_extreme": (x_ext, z_none),
    }


CASES = _cases()


# --------------------------------------------------------------------------------------------
# focal loss values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_focal_stable_matches_float64_reference(case):
    """impl='stable' equals the exact float64 focal loss to 1e-4 relative, on random and
    extreme logits, with/without positives; the result is a float32 scalar."""
    x, z = CASES[case]
    got = loss(x, z, "stable")
    assert got.shape == () and got.dtype == tf.float32
    np.testing.assert_allclose(float(got), ref_focal(x, z), rtol=1e-4)


def test_focal_stable_is_default_impl():
    """focal_loss without impl= is the stable form."""
    x, z = CASES["extreme"]
    got = focal_loss(tf.constant(x), tf.constant(z))
    np.testing.assert_allclose(float(got), ref_focal(x, z), rtol=1e-4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_focal_clamped_matches_clamped_reference(case):
    """impl='clamped' equals the original CenterNet's clamped-sigmoid loss (float64
    reference with the same clamp) to 1e-4 relative, on random and extreme logits."""
    x, z = CASES[case]
    got = loss(x, z, "clamped")
    assert got.shape == () and got.dtype == tf.float32
    np.testing.assert_allclose(float(got), ref_focal_clamped(x, z), rtol=1e-4)


def test_focal_naive_matches_reference_on_moderate_logits():
    """impl='naive' is the same loss as long as no sigmoid saturates (|x| <= 8 here)."""
    rng = np.random.default_rng(3)
    z = make_heatmap(rng, SHAPE, 5)
    x = np.clip(rng.normal(0, 3, SHAPE), -8, 8).astype(np.float32)
    np.testing.assert_allclose(float(loss(x, z, "naive")), ref_focal(x, z), rtol=1e-3)


def test_focal_normalisation_is_over_the_whole_batch():
    """The sum over ALL images is divided by the batch's number of positives: an image
    without objects still contributes its negatives, and nothing is divided per image."""
    x, z = CASES["one_image_with_objects"]
    npos = int((z == 1).sum())
    assert npos > 0 and not np.any(z[0] == 1) and not np.any(z[2] == 1)
    sums = [ref_focal(x[b : b + 1], z[b : b + 1]) * max(1, int((z[b] == 1).sum())) for b in range(3)]
    expected = sum(sums) / npos
    np.testing.assert_allclose(float(loss(x, z, "stable")), expected, rtol=1e-4)


def test_focal_all_background_is_the_plain_sum_and_not_zero():
    """With no positive anywhere the loss is the plain sum of the negative terms (> 0)."""
    x, z = CASES["all_background"]
    assert not np.any(z == 1)
    x64, z64 = x.astype(np.float64), z.astype(np.float64)
    expected = (softplus64(x64) * sigmoid64(x64) ** 2 * (1 - z64) ** 4).sum()
    got = float(loss(x, z, "stable"))
    assert got > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_focal_stable_keeps_relative_accuracy_when_predictions_are_confidently_right():
    """Logit-space evaluation: with positives at logit +20 and negatives at -20 the loss is
    ~1e-26 per element (1 - sigmoid(20) is 0 in float32, sigmoid(-20) is not), and the stable
    form still gets it to 1e-4 relative."""
    rng = np.random.default_rng(6)
    z = make_heatmap(rng, (2, 8, 8, 2), 3)
    x = np.where(z == 1, 20.0, -20.0).astype(np.float32)
    expected = ref_focal(x, z)
    assert 0 < expected < 1e-24
    np.testing.assert_allclose(float(loss(x, z, "stable")), expected, rtol=1e-4)


def test_focal_alpha_beta_are_used():
    """alpha and beta are honoured (checked against the reference at alpha=1, beta=2)."""
    x, z = CASES["random"]
    got = focal_loss(tf.constant(x), tf.constant(z), impl="stable", alpha=1.0, beta=2.0)
    np.testing.assert_allclose(float(got), ref_focal(x, z, 1.0, 2.0), rtol=1e-4)


# --------------------------------------------------------------------------------------------
# NaN behaviour of naive vs stable
# --------------------------------------------------------------------------------------------


def _single_cell(logit, z_value, dtype=np.float32, z_dtype=np.float32):
    """A 1x4x4x2 batch with one positive at (1, 1, 0) and one chosen cell at (2, 3, 1)."""
    x = np.zeros((1, 4, 4, 2), np.float64)
    z = np.zeros((1, 4, 4, 2), np.float64)
    z[0, 1, 1, 0] = 1.0
    x[0, 2, 3, 1] = logit
    z[0, 2, 3, 1] = z_value
    return tf.constant(x, dtype), tf.constant(z, z_dtype)


@pytest.mark.parametrize(
    "logit,z_value,why",
    [
        (-200.0, 0.0, "negative cell: sigmoid(-200) == 0 -> log(0) * 0 in the masked positive term"),
        (-200.0, 0.3, "negative cell near an object with sigmoid == 0"),
        (200.0, 1.0, "positive cell: sigmoid(200) == 1 -> log(1 - 1) * (1 - z)^4 = -inf * 0"),
    ],
)
def test_focal_naive_is_nan_where_sigmoid_saturates_but_stable_is_finite(logit, z_value, why):
    """In float32 the textbook form yields NaN (-inf * 0) once a sigmoid rounds to exactly
    0 or 1; the stable form gives the exact, finite value there."""
    x, z = _single_cell(logit, z_value)
    assert np.isnan(float(focal_loss(x, z, impl="naive"))), why
    got = float(focal_loss(x, z, impl="stable"))
    assert np.isfinite(got)
    np.testing.assert_allclose(got, ref_focal(x.numpy(), z.numpy()), rtol=1e-4)
    assert np.isfinite(float(focal_loss(x, z, impl="clamped")))


def test_focal_naive_float16_saturates_far_sooner():
    """In float16 the naive form computes in the input dtype: sigmoid(12) already rounds to
    1.0 (and sigmoid(-20) to 0), so a positive at logit 12 gives NaN; stable stays finite."""
    x, z = _single_cell(0.0, 0.0, np.float16, np.float16)
    x = tf.tensor_scatter_nd_update(x, [[0, 1, 1, 0]], tf.constant([12.0], tf.float16))
    assert np.isnan(float(focal_loss(x, z, impl="naive")))
    got = float(focal_loss(x, z, impl="stable"))
    assert np.isfinite(got)
    np.testing.assert_allclose(got, ref_focal(x.numpy(), z.numpy()), rtol=1e-4)


# --------------------------------------------------------------------------------------------
# dtypes, huge logits, gradients
# --------------------------------------------------------------------------------------------


def _huge_logits(dtype):
    """Logits up to +-6e4 (float16 max is 65504) on positives and negatives alike."""
    rng = np.random.default_rng(9)
    z = make_heatmap(rng, (2, 8, 8, 3), 3)
    x = rng.choice([-6e4, -1e4, -300.0, -30.0, -1.0, 0.0, 2.0, 30.0, 300.0, 1e4, 6e4], z.shape)
    # make sure +-6e4 hit positives and negatives (both background and near-object ones)
    pos, neg = np.argwhere(z == 1), np.argwhere(z < 1)
    near = np.argwhere((z > 0) & (z < 1))
    x[tuple(pos[0])], x[tuple(pos[1])] = -6e4, 6e4
    x[tuple(neg[0])], x[tuple(neg[1])] = -6e4, 6e4
    x[tuple(near[0])], x[tuple(near[1])] = -6e4, 6e4
    return tf.constant(x, dtype), z


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16, tf.float16])
@pytest.mark.parametrize("z_dtype", ["float32", "same"])
def test_focal_stable_finite_loss_and_gradients_for_huge_logits(dtype, z_dtype):
    """impl='stable' returns a finite float32 loss and finite gradients w.r.t. logits for
    logits up to +-6e4 in float32, bfloat16 and float16 (computed in float32 inside): the
    value equals the float64 reference on the dtype-rounded logits."""
    x, z = _huge_logits(dtype)
    zt = tf.constant(z, tf.float32 if z_dtype == "float32" else dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = focal_loss(x, zt, impl="stable")
    grad = tape.gradient(value, x)
    assert value.dtype == tf.float32 and value.shape == ()
    assert np.isfinite(float(value))
    assert grad is not None and grad.dtype == dtype
    assert np.all(np.isfinite(tf.cast(grad, tf.float32).numpy()))
    x64 = tf.cast(x, tf.float64).numpy()
    z64 = tf.cast(zt, tf.float64).numpy()
    np.testing.assert_allclose(float(value), ref_focal(x64, z64), rtol=1e-4)


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_focal_stable_low_precision_inputs_are_computed_in_float32(dtype):
    """With bfloat16/float16 logits the stable loss is the float32 result on the rounded
    logits (not a low-precision sum): it matches float64 on those logits to 1e-4."""
    x, z = CASES["random"]
    xt = tf.cast(tf.constant(x), dtype)
    got = focal_loss(xt, tf.constant(z), impl="stable")
    assert got.dtype == tf.float32
    np.testing.assert_allclose(float(got), ref_focal(tf.cast(xt, tf.float64).numpy(), z), rtol=1e-4)


def test_focal_stable_gradient_matches_float64_reference():
    """The gradient of impl='stable' w.r.t. logits equals the float64 closed form (itself
    checked against float64 central finite differences) to rtol 1e-4 on moderate logits."""
    rng = np.random.default_rng(4)
    shape = (2, 8, 10, 3)
    z = make_heatmap(rng, shape, 4)
    x = rng.normal(0, 3, shape).astype(np.float32)
    # self-check of the closed form: central differences of each element's own term
    # (the loss is a sum of per-element terms over a constant number of positives)
    g_ref = ref_focal_grad(x, z)
    x64, eps = x.astype(np.float64), 1e-5
    npos = int((z == 1).sum())
    fd = (ref_focal_terms(x64 + eps, z)[0] - ref_focal_terms(x64 - eps, z)[0]) / (2 * eps) / npos
    np.testing.assert_allclose(fd, g_ref, rtol=1e-6, atol=1e-9)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value = focal_loss(xt, tf.constant(z), impl="stable")
    g = tape.gradient(value, xt).numpy()
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6 * np.abs(g_ref).max())


def test_focal_unknown_impl_raises_value_error_naming_choices():
    """An unknown impl raises ValueError naming the bad value and the allowed ones."""
    x, z = CASES["random"]
    with pytest.raises(ValueError) as info:
        focal_loss(tf.constant(x), tf.constant(z), impl="bogus_impl")
    msg = str(info.value)
    for word in ("bogus_impl", "stable", "naive", "clamped"):
        assert word in msg, msg


# --------------------------------------------------------------------------------------------
# L1 regression loss
# --------------------------------------------------------------------------------------------


def test_reg_l1_loss_matches_numpy():
    """reg_l1_loss = sum(|pred[ind] - target| * mask) / (2 * sum(mask) + 1e-4), with pred
    gathered at the flattened index y * W + x (W = width), mask broadcast to both channels;
    repeated indices and an image without objects included."""
    rng = np.random.default_rng(8)
    B, H, W, K = 3, 12, 17, 10
    pred = rng.normal(0, 5, (B, H, W, 2)).astype(np.float32)
    ind = rng.integers(0, H * W, (B, K)).astype(np.int32)
    ind[0, 1] = ind[0, 0]  # the same location twice
    ind[1, 0] = H * W - 1  # last cell
    mask = (rng.uniform(size=(B, K)) < 0.6).astype(np.float32)
    mask[2] = 0.0  # no objects in image 2 (its garbage ind/target must not count)
    target = rng.normal(0, 5, (B, K, 2)).astype(np.float32)
    got = reg_l1_loss(tf.constant(pred), tf.constant(ind), tf.constant(mask), tf.constant(target))
    assert got.shape == ()
    np.testing.assert_allclose(float(got), ref_reg_l1(pred, ind, mask, target), rtol=1e-5)


def test_reg_l1_loss_index_is_row_major_y_times_width():
    """A hand case: pred is zero except (y=2, x=1) = (3, 4) on a 4x5 grid (ind = 2*5+1 = 11);
    target (1, 1) there with mask 1 -> (|3-1| + |4-1|) / (2*1 + 1e-4)."""
    pred = np.zeros((1, 4, 5, 2), np.float32)
    pred[0, 2, 1] = (3.0, 4.0)
    ind = np.array([[11, 0]], np.int32)
    mask = np.array([[1.0, 0.0]], np.float32)
    target = np.array([[[1.0, 1.0], [9.0, 9.0]]], np.float32)
    got = reg_l1_loss(tf.constant(pred), tf.constant(ind), tf.constant(mask), tf.constant(target))
    np.testing.assert_allclose(float(got), 5.0 / (2.0 + 1e-4), rtol=1e-6)


def test_reg_l1_loss_empty_mask_is_zero():
    """With no objects at all the loss is exactly 0 (not NaN)."""
    pred = np.ones((2, 4, 4, 2), np.float32)
    ind = np.zeros((2, 3), np.int32)
    mask = np.zeros((2, 3), np.float32)
    target = np.full((2, 3, 2), 7.0, np.float32)
    got = reg_l1_loss(tf.constant(pred), tf.constant(ind), tf.constant(mask), tf.constant(target))
    assert float(got) == 0.0


# --------------------------------------------------------------------------------------------
# per_image: each image's sum over its own positives (div_no_nan), then the batch mean
# --------------------------------------------------------------------------------------------


def ref_focal_per_image(logits, heatmap, alpha=2.0, beta=4.0):
    """float64: mean over images of (image's terms summed) / (its positives), 0 without any."""
    terms, pos = ref_focal_terms(logits, heatmap, alpha, beta)
    sums = terms.reshape(len(terms), -1).sum(axis=1)
    counts = pos.reshape(len(pos), -1).sum(axis=1)
    return np.mean(np.where(counts > 0, sums / np.maximum(counts, 1), 0.0))


def test_per_image_drops_an_empty_image_that_stable_counts():
    """A batch of 3 with image 1 empty: per_image gives image 1 zero loss and zero gradient,
    stable does not; both equal their float64 references (loss and gradient)."""
    rng = np.random.default_rng(7)
    shape = (3, 12, 12, 2)
    heatmap = make_heatmap(rng, shape, 3, empty_images=(1,))
    logits = rng.normal(-2, 2, shape).astype(np.float32)
    x = tf.Variable(logits)
    results = {}
    for impl in ("per_image", "stable"):
        with tf.GradientTape() as tape:
            value = focal_loss(x, tf.constant(heatmap), impl)
        results[impl] = (float(value), tape.gradient(value, x).numpy())
    per_image_loss, per_image_grad = results["per_image"]
    stable_loss, stable_grad = results["stable"]
    assert per_image_loss == pytest.approx(ref_focal_per_image(logits, heatmap), rel=1e-5)
    assert stable_loss == pytest.approx(ref_focal(logits, heatmap), rel=1e-5)
    assert np.all(per_image_grad[1] == 0)  # the empty image teaches nothing
    assert np.abs(stable_grad[1]).max() > 1e-3  # its negatives do count in stable
    # the empty image's own contribution, per image: 0 for per_image, its whole sum for stable
    terms, _ = ref_focal_terms(logits, heatmap)
    assert terms[1].sum() > 1.0
    # float64 gradients: per_image = (1/B) * d terms / (image positives); stable = / all
    eps = 1e-3
    for b, y, xx, c in [(0, 3, 4, 1), (2, 7, 7, 0), (1, 5, 5, 1)]:
        bumped = logits.astype(np.float64).copy()
        bumped[b, y, xx, c] += eps
        lowered = logits.astype(np.float64).copy()
        lowered[b, y, xx, c] -= eps
        for impl, ref in (("per_image", ref_focal_per_image), ("stable", ref_focal)):
            numeric = (ref(bumped, heatmap) - ref(lowered, heatmap)) / (2 * eps)
            got = results[impl][1][b, y, xx, c]
            assert got == pytest.approx(numeric, rel=1e-3, abs=1e-7), (impl, b)


def test_per_image_equals_stable_when_every_image_has_the_same_positives():
    """With equal positives per image, per-image and batch normalisation coincide."""
    rng = np.random.default_rng(3)
    heatmap = np.zeros((2, 8, 8, 1), np.float32)
    heatmap[0, 2, 2, 0] = heatmap[1, 5, 6, 0] = 1.0
    logits = rng.normal(0, 3, heatmap.shape).astype(np.float32)
    assert float(focal_loss(logits, heatmap, "per_image")) == pytest.approx(
        float(focal_loss(logits, heatmap, "stable")), rel=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_sigmoid_rounding_points_are_the_edges_where_the_sigmoid_is_exactly_0_or_1(dtype):
    """At the returned points tf.sigmoid is exactly 0 / 1; the dtype's next value toward 0
    gives neither (so they are the edges, not just somewhere past them)."""
    import ml_dtypes

    from centernet.losses import sigmoid_rounding_points

    zero_below, one_from = sigmoid_rounding_points(dtype)
    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    values = [zero_below, one_from]
    probabilities = tf.sigmoid(tf.constant(np.array(values, np_dtype))).numpy().astype(float)
    assert probabilities[0] == 0 and probabilities[1] == 1
    # the neighbouring representable values toward 0
    grid = np.array(np.arange(-200, 40, 1 / 1024), np_dtype).astype(np.float64)
    grid = np.unique(grid)
    next_low = grid[grid > zero_below].min()
    next_high = grid[grid < one_from].max()
    inside = tf.sigmoid(tf.constant(np.array([next_low, next_high], np_dtype))).numpy()
    assert 0 < float(inside[0]) and float(inside[1]) < 1
    # float16's range is far narrower than float32's: it saturates at much smaller |x|
    if dtype == "float16":
        assert -18 < zero_below < -17 and 7 < one_from < 8.5
