"""Independent tests of `centernet.evaluation.decode.decode` against a float64 NumPy reference.

Reference (docs/architecture.md, "Decoding"): p = sigmoid(logits); keep p where it equals its
3x3 neighbourhood maximum (stride 1, borders compare only with cells inside the grid), else 0;
top-k over all (y, x, c) of each image by score; box = (x + reg_x, y + reg_y) -/+ (w, h) / 2.
Ties are never compared by order: only the sorted scores and the set of picks.
"""

import numpy as np
import pytest
import tensorflow as tf

from centernet.evaluation.decode import decode
from centernet.data.targets import render_targets

# --------------------------------------------------------------------------------------------
# float64 reference
# --------------------------------------------------------------------------------------------


def sigmoid64(x):
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def ref_peak_scores(logits):
    """sigmoid, then zero every cell that is not the maximum of its 3x3 neighbourhood."""
    p = sigmoid64(logits)
    B, H, W, C = p.shape
    padded = np.pad(p, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    hmax = np.max(
        [padded[:, dy : dy + H, dx : dx + W] for dy in range(3) for dx in range(3)], axis=0
    )
    return np.where(p == hmax, p, 0.0)


def ref_boxes(wh, reg):
    """The box every cell would decode to, [B, H, W, 4] in float64."""
    wh = np.asarray(wh, np.float64)
    reg = np.asarray(reg, np.float64)
    B, H, W, _ = wh.shape
    yy, xx = np.mgrid[0:H, 0:W]
    cx = xx[None] + reg[..., 0]
    cy = yy[None] + reg[..., 1]
    w, h = wh[..., 0], wh[..., 1]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def ref_decode(logits, wh, reg, k):
    """Reference top-k: (boxes [B,k,4], scores [B,k], classes [B,k], picks [B,k,3] as y,x,c)."""
    keep = ref_peak_scores(logits)
    B, H, W, C = keep.shape
    flat = keep.reshape(B, -1)
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    y, x, c = order // (W * C), (order // C) % W, order % C
    allb = ref_boxes(wh, reg)
    bidx = np.arange(B)[:, None]
    return allb[bidx, y, x], flat[bidx, order], c, np.stack([y, x, c], -1)


def run_decode(logits, wh, reg, k):
    boxes, scores, classes = decode(
        tf.constant(logits, tf.float32), tf.constant(wh, tf.float32), tf.constant(reg, tf.float32), k=k
    )
    B = np.shape(logits)[0]
    assert tuple(boxes.shape) == (B, k, 4) and boxes.dtype == tf.float32
    assert tuple(scores.shape) == (B, k) and scores.dtype == tf.float32
    assert tuple(classes.shape) == (B, k) and classes.dtype == tf.int32
    return boxes.numpy(), scores.numpy(), classes.numpy()


def check_against_reference(logits, wh, reg, k):
    """Compare decode with the reference without depending on the order of ties.

    Needs reg in (0, 1) away from the ends, so that each returned box tells its own cell:
    x = floor((x1 + x2) / 2), y = floor((y1 + y2) / 2). Checks per image:
    - scores are sorted descending and equal the reference's top-k scores (1e-6);
    - the picks (y, x, c) are distinct, and each returned (score, box) is what its own cell
      gives: score = reference peak score there (0 for a suppressed cell), box = that cell's
      reference box (1e-4);
    - where the reference top-k scores are strictly distinct and positive, the picks are the
      reference's picks.
    """
    boxes, scores, classes = run_decode(logits, wh, reg, k)
    rboxes, rscores, rclasses, rpicks = ref_decode(logits, wh, reg, k)
    keep = ref_peak_scores(logits)
    allb = ref_boxes(wh, reg)
    B, H, W, C = keep.shape
    for b in range(B):
        assert np.all(np.diff(scores[b]) <= 0), "scores not sorted descending"
        np.testing.assert_allclose(scores[b], rscores[b], rtol=0, atol=1e-6)
        cx = (boxes[b, :, 0] + boxes[b, :, 2]) / 2
        cy = (boxes[b, :, 1] + boxes[b, :, 3]) / 2
        xs, ys = np.floor(cx).astype(int), np.floor(cy).astype(int)
        assert np.all((xs >= 0) & (xs < W) & (ys >= 0) & (ys < H))
        assert np.all((classes[b] >= 0) & (classes[b] < C))
        picks = list(zip(ys.tolist(), xs.tolist(), classes[b].tolist()))
        assert len(set(picks)) == k, "the same (y, x, c) returned twice"
        for j, (y, x, c) in enumerate(picks):
            np.testing.assert_allclose(scores[b, j], keep[b, y, x, c], rtol=0, atol=1e-6)
            np.testing.assert_allclose(boxes[b, j], allb[b, y, x], rtol=0, atol=1e-4)
        distinct = len(np.unique(rscores[b])) == k and rscores[b].min() > 0
        if distinct:
            assert set(picks) == set(map(tuple, rpicks[b].tolist()))
            np.testing.assert_array_equal(classes[b], rclasses[b])
            np.testing.assert_allclose(boxes[b], rboxes[b], rtol=0, atol=1e-4)
    return boxes, scores, classes


def random_outputs(rng, shape, lo=-6.0, hi=3.0):
    """Network-like outputs with distinct logits (a shuffled grid with spacing well above
    float32 resolution of the sigmoid), wh in [0.5, 20], reg in [0.05, 0.95]."""
    B, H, W, C = shape
    logits = rng.permutation(np.linspace(lo, hi, B * H * W * C)).reshape(shape)
    wh = rng.uniform(0.5, 20, (B, H, W, 2))
    reg = rng.uniform(0.05, 0.95, (B, H, W, 2))
    return logits.astype(np.float32), wh.astype(np.float32), reg.astype(np.float32)


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_decode_handmade_peaks():
    """A 5x5 single-class map: a corner peak is kept (borders compare only with cells inside),
    its lower neighbour is suppressed, a two-cell plateau keeps both cells, a border peak is
    kept; top-4 are exactly those four with the right boxes."""
    x = np.full((1, 5, 5, 1), -5.0)
    x[0, 0, 0, 0] = 2.0  # corner peak
    x[0, 0, 1, 0] = 1.0  # next to it: suppressed although higher than most cells
    x[0, 3, 3, 0] = 0.5  # plateau of two equal maxima: both kept
    x[0, 3, 4, 0] = 0.5
    x[0, 4, 0, 0] = -1.0  # bottom-left border peak
    wh = np.tile(np.float32([2.0, 3.0]), (1, 5, 5, 1))
    reg = np.tile(np.float32([0.5, 0.25]), (1, 5, 5, 1))
    boxes, scores, classes = run_decode(x, wh, reg, 4)
    s = sigmoid64([2.0, 0.5, 0.5, -1.0])
    np.testing.assert_allclose(scores[0], s, atol=1e-6)
    np.testing.assert_array_equal(classes[0], [0, 0, 0, 0])

    def box(y, xx):  # centre (x + 0.5, y + 0.25), size 2 x 3
        return [xx + 0.5 - 1, y + 0.25 - 1.5, xx + 0.5 + 1, y + 0.25 + 1.5]

    np.testing.assert_allclose(boxes[0, 0], box(0, 0), atol=1e-5)
    np.testing.assert_allclose(boxes[0, 3], box(4, 0), atol=1e-5)
    got_mid = sorted(map(tuple, np.round(boxes[0, 1:3], 4).tolist()))
    assert got_mid == sorted([tuple(box(3, 3)), tuple(box(3, 4))])


@pytest.mark.parametrize("seed,shape,k", [(0, (2, 16, 20, 3), 40), (1, (3, 12, 12, 5), 60)])
def test_decode_random_matches_reference(seed, shape, k):
    """On random network outputs with distinct scores, decode returns the reference's top-k
    peaks: scores to 1e-6, classes exactly, boxes to 1e-4."""
    rng = np.random.default_rng(seed)
    logits, wh, reg = random_outputs(rng, shape)
    keep = ref_peak_scores(logits)
    assert (keep > 0).sum(axis=(1, 2, 3)).min() > k  # k below the number of peaks here
    check_against_reference(logits, wh, reg, k)


def test_decode_k_larger_than_number_of_peaks():
    """With k above the number of peaks, the remaining picks are suppressed cells returned
    with score 0 (each still a distinct cell with its own box); with k = H*W*C every cell
    comes back exactly once."""
    rng = np.random.default_rng(2)
    shape = (2, 4, 5, 2)
    logits, wh, reg = random_outputs(rng, shape)
    keep = ref_peak_scores(logits)
    npeaks = (keep > 0).sum(axis=(1, 2, 3))
    for k in (int(npeaks.max()) + 3, 4 * 5 * 2):
        boxes, scores, classes = check_against_reference(logits, wh, reg, k)
        for b in range(2):
            assert (scores[b] > 0).sum() == npeaks[b]
            assert np.all(scores[b, npeaks[b] :] == 0)


def test_decode_scores_are_probabilities_not_logits():
    """Scores are sigmoid(logit) at the peaks (a single peak of logit 0 scores 0.5)."""
    x = np.full((1, 3, 3, 2), -20.0, np.float32)
    x[0, 1, 1, 1] = 0.0
    wh = np.ones((1, 3, 3, 2), np.float32)
    reg = np.full((1, 3, 3, 2), 0.5, np.float32)
    boxes, scores, classes = run_decode(x, wh, reg, 1)
    np.testing.assert_allclose(scores, [[0.5]], atol=1e-7)
    np.testing.assert_array_equal(classes, [[1]])
    np.testing.assert_allclose(boxes, [[[1.0, 1.0, 2.0, 2.0]]], atol=1e-6)


def assert_same_detections(exp_classes, exp_boxes, got_classes, got_boxes, atol=1e-4):
    """The two lists of (class, box) are equal as multisets, boxes within atol: each expected
    detection is matched to the closest unused returned one of the same class."""
    assert len(exp_classes) == len(got_classes)
    got_boxes = np.asarray(got_boxes, np.float64)
    unused = list(range(len(got_classes)))
    for c, box in zip(np.asarray(exp_classes).tolist(), np.asarray(exp_boxes, np.float64)):
        cands = [j for j in unused if got_classes[j] == c]
        assert cands, f"no detection of class {c} left for box {box}"
        j = min(cands, key=lambda j: np.abs(got_boxes[j] - box).max())
        np.testing.assert_allclose(got_boxes[j], box, rtol=0, atol=atol)
        unused.remove(j)


def _separated_boxes(rng, n, H, W):
    """n boxes inside the H x W grid (so clipping changes nothing) whose integer centres are
    distinct and not adjacent (Chebyshev distance >= 2). Coordinates are multiples of 1/8."""
    centres, boxes = [], []
    while len(boxes) < n:
        w, h = rng.integers(8, 97) / 8, rng.integers(8, 97) / 8  # 1 .. 12 px
        cx = rng.integers(int(np.ceil(w / 2 * 8)), int((W - 1 - w / 2) * 8) + 1) / 8
        cy = rng.integers(int(np.ceil(h / 2 * 8)), int((H - 1 - h / 2) * 8) + 1) / 8
        p = (int(np.floor(cx)), int(np.floor(cy)))
        if any(max(abs(p[0] - q[0]), abs(p[1] - q[1])) < 2 for q in centres):
            continue
        centres.append(p)
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    boxes = np.array(boxes, np.float32)
    assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= W - 1 and boxes[:, 3].max() <= H - 1
    return boxes


def test_decode_round_trip_through_render_targets():
    """Boxes -> render_targets -> ideal network outputs -> decode gives back the same
    (class, box) pairs (as multisets) within 1e-4 output pixels.

    Ideal outputs: logits = log(h / (1 - h)) with the heatmap clipped to [1e-6, 1 - 1e-6]
    (exact 1.0 peaks become the largest value, 1 - 1e-6, and remain strict 3x3 maxima since
    centres are distinct and not adjacent); dense wh / reg maps hold each box's targets at
    its centre cell ind = y * W + x."""
    H, W, C = 32, 40, 3
    rng = np.random.default_rng(12)
    batch = []
    for n in (9, 14):
        boxes = _separated_boxes(rng, n, H, W)
        labels = rng.integers(0, C, n).astype(np.int32)
        batch.append((boxes, labels))
    K = max(len(b) for b, _ in batch)
    logits = np.zeros((2, H, W, C), np.float32)
    whm = np.zeros((2, H, W, 2), np.float32)
    regm = np.zeros((2, H, W, 2), np.float32)
    for i, (boxes, labels) in enumerate(batch):
        t = render_targets(tf.constant(boxes), tf.constant(labels), (H, W), C, K)
        hm = np.clip(t["heatmap"].numpy().astype(np.float64), 1e-6, 1 - 1e-6)
        logits[i] = np.log(hm / (1 - hm))
        m = t["mask"].numpy() > 0
        assert m.sum() == len(boxes)
        ys, xs = np.divmod(t["ind"].numpy()[m], W)
        whm[i, ys, xs] = t["wh"].numpy()[m]
        regm[i, ys, xs] = t["reg"].numpy()[m]
    for i, (boxes, labels) in enumerate(batch):
        n = len(boxes)
        got_boxes, got_scores, got_classes = run_decode(logits[i : i + 1], whm[i : i + 1], regm[i : i + 1], n)
        assert np.all(got_scores[0] > 0.99)  # the n picks are the 1.0 peaks
        assert_same_detections(labels, boxes, got_classes[0], got_boxes[0], atol=1e-4)
    # the batched call gives the same as per-image calls
    Kd = min(len(b) for b, _ in batch)
    bb, ss, cc = run_decode(logits, whm, regm, Kd)
    for i in range(2):
        b1, s1, c1 = run_decode(logits[i : i + 1], whm[i : i + 1], regm[i : i + 1], Kd)
        np.testing.assert_allclose(ss[i], s1[0], atol=1e-7)
        assert_same_detections(c1[0], b1[0], cc[i], bb[i], atol=1e-6)


def _ref_peaks(values, floor):
    """float64 reference: `values` where each is its class's 3x3 maximum, else `floor`."""
    B, H, W, C = values.shape
    padded = np.pad(values.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)),
                    constant_values=-np.inf)
    hmax = np.max(
        [padded[:, dy : dy + H, dx : dx + W] for dy in range(3) for dx in range(3)], axis=0
    )
    return np.where(values == hmax, values, floor)


@pytest.mark.parametrize("fused", [True, False], ids=["xla", "portable"])
@pytest.mark.parametrize("seed", range(3))
def test_top_k_peaks_equals_one_sort_of_all_peaks(seed, fused):
    """The two-round top K (best cells by their best peak, then the best peaks of those cells)
    against NumPy's full sort of every masked value, with the fused (XLA) and the portable
    pass: a cell that holds every winner, values rounded so that ties and plateaus occur, an
    image with fewer peaks than K (the rest is the floor), and a grid smaller than K (one
    `top_k` over everything)."""
    import contextlib

    from centernet.evaluation.decode import portable_decoding, top_k_peaks

    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(0, 1, (4, 6, 7, 30)), 1).astype(np.float32)
    values[1, 2, 3, :] = 10 + np.arange(30)  # image 1: all 20 winners in one cell
    values[2] = 0.5  # image 2: one plateau per class, every value a peak
    values[3] = -1.0
    values[3, 0, 0, :3] = [3.0, 2.0, 1.0]  # image 3: plateaus, plus 3 single peaks
    small = values[:, :3, :3, :2]  # 9 cells < K: the fallback
    for floor in (float("-inf"), 0.0):
        for data, k in ((values, 20), (small, 12)):
            with contextlib.nullcontext() if fused else portable_decoding():
                got_values, got_index = tf.function(
                    lambda x: top_k_peaks(x, k, floor))(tf.constant(data))
            flat = _ref_peaks(data, floor).reshape(len(data), -1)
            want = -np.sort(-flat, axis=1)[:, :k]
            np.testing.assert_array_equal(got_values.numpy(), want)
            picked = np.take_along_axis(flat, got_index.numpy(), axis=1)
            np.testing.assert_array_equal(picked, want)  # each index holds its value
            for row, picks in zip(flat, got_index.numpy()):
                real = picks[row[picks] > floor]
                assert len(set(real.tolist())) == len(real)  # no peak picked twice


def _iou_reference(a, b):
    """IoU of two xyxy boxes in float64, from the definition."""
    width = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    height = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = width * height
    union = (max(a[2] - a[0], 0) * max(a[3] - a[1], 0) + max(b[2] - b[0], 0)
             * max(b[3] - b[1], 0) - inter)
    return inter / union if union > 0 else 0.0


def _twin_decay_reference(boxes, scores, classes, iou_threshold, decay):
    """One image: each detection below a detection of another class with IoU > threshold
    gets score * decay; then a stable sort by the new scores, descending."""
    new = []
    for j in range(len(scores)):
        twin = any(scores[i] > scores[j] and classes[i] != classes[j]
                   and _iou_reference(boxes[i], boxes[j]) > iou_threshold
                   for i in range(len(scores)))
        new.append(scores[j] * decay if twin else scores[j])
    order = sorted(range(len(new)), key=lambda j: -new[j])  # Python's sort is stable
    return boxes[order], np.asarray(new)[order], classes[order]


def test_box_iou_matrix_matches_definition():
    from centernet.evaluation.decode import box_iou_matrix

    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 20, (2, 9, 2, 2))
    boxes = np.concatenate([corners.min(axis=2), corners.max(axis=2)], axis=-1)
    boxes[0, 0] = [5, 5, 5, 9]  # no area
    boxes[0, 1] = [5, 5, 5, 9]  # two boxes without area: 0, not NaN
    got = box_iou_matrix(tf.constant(boxes, tf.float32)).numpy()
    want = np.array([[[_iou_reference(a, b) for b in image] for a in image] for image in boxes])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_cross_class_twins_hand_made():
    from centernet.evaluation.decode import decay_cross_class_twins

    boxes = np.array([[[0, 0, 10, 10],     # 0.9 class 0
                       [0, 0, 10, 11],     # 0.8 class 1: IoU 0.91 with the first -> 0.24
                       [0, 0, 10, 10.5],   # 0.7 class 0: IoU 0.95 with the 0.8 -> 0.21 (the
                                           # original 0.8 counts, not its decayed 0.24)
                       [30, 30, 40, 40],   # 0.5 class 2: alone
                       [0, 0, 20, 20]]],   # 0.4 class 1: IoU 0.25 -> kept
                     np.float32)
    scores = np.array([[0.9, 0.8, 0.7, 0.5, 0.4]], np.float32)
    classes = np.array([[0, 1, 0, 2, 1]], np.int32)
    out_boxes, out_scores, out_classes = (t.numpy() for t in decay_cross_class_twins(
        tf.constant(boxes), tf.constant(scores), tf.constant(classes), 0.7, 0.3))
    np.testing.assert_allclose(out_scores[0], [0.9, 0.5, 0.4, 0.24, 0.21], rtol=1e-6)
    np.testing.assert_array_equal(out_classes[0], [0, 2, 1, 1, 0])
    np.testing.assert_array_equal(out_boxes[0, 3:], [[0, 0, 10, 11], [0, 0, 10, 10.5]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_class_twins_random_match_reference(seed):
    from centernet.evaluation.decode import decay_cross_class_twins

    rng = np.random.default_rng(seed)
    batch, k = 3, 40
    centres = rng.uniform(0, 30, (batch, k, 2))
    sizes = rng.uniform(1, 12, (batch, k, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1)
    boxes[:, 1::2] = boxes[:, ::2] + rng.normal(0, 0.5, boxes[:, ::2].shape)  # near-twins
    scores = -np.sort(-rng.uniform(0, 1, (batch, k)), axis=1)
    scores[:, 5] = scores[:, 4]  # a tie
    classes = rng.integers(0, 3, (batch, k))
    got = decay_cross_class_twins(tf.constant(boxes, tf.float32),
                                  tf.constant(scores, tf.float32),
                                  tf.constant(classes, tf.int32), 0.6, 0.25)
    for image in range(batch):
        want = _twin_decay_reference(boxes[image].astype(np.float32).astype(np.float64),
                                     scores[image].astype(np.float32), classes[image], 0.6,
                                     np.float32(0.25))
        np.testing.assert_allclose(got[0][image].numpy(), want[0], atol=1e-5)
        np.testing.assert_allclose(got[1][image].numpy(), want[1], rtol=1e-6)
        np.testing.assert_array_equal(got[2][image].numpy(), want[2])
