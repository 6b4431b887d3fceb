"""Training-time augmentation on common-format examples: the original CenterNet's
(`src/lib/datasets/sample/ctdet.py`), as TensorFlow ops inside the tf.data map.

1. Random scale and crop: a square window of side `s = max(H, W) * U(min_scale, max_scale)`
   centred at `(cx, cy)`, `cx ~ U(bx, W - bx)`, `cy ~ U(by, H - by)` (borders from
   `crop_border` as the original's `_get_border`), resized straight to the network input
   `input_size x input_size`. The window may reach beyond the image, which is black there.
   Boxes follow, are clipped to the input and dropped (with their labels) when left without
   area.
2. Horizontal flip with probability `flip`.
3. Colour jitter (the original's `color_aug`): brightness, contrast and saturation in a random
   order, then PCA lighting noise.

Coordinates are continuous pixels (pixel column `c` spans `[c, c + 1)`), as in `letterbox.py`,
and the image is treated as the bilinear interpolation of its pixel centres over a black plane.

Randomness is stateless: each example gets its own seed `[run seed, example index]`, split into
one independent sub-seed per random draw, so a seeded run sees the same augmentations in any
thread order and after a resume, and turning one knob off does not change the others' draws.
"""

from __future__ import annotations

import itertools
from typing import Dict, Tuple

import tensorflow as tf

from centernet.config import AugmentConfig

# Sub-seed index of each random draw (stable: changing one knob never shifts the others).
_SCALE, _CENTRE, _FLIP, _ORDER, _FACTORS, _LIGHTING = range(6)
_NUM_SEEDS = 6

# The orders in which brightness (0), contrast (1) and saturation (2) can be applied.
_ORDERS = tuple(itertools.permutations(range(3)))

# ITU-R 601 luma weights on RGB channels (what cv2.COLOR_BGR2GRAY applies to BGR images).
_GRAY_RGB = (0.299, 0.587, 0.114)

# The original's ImageNet PCA of pixel colours (from CornerNet). It works on OpenCV BGR images,
# so its eigenvector *rows* are the B, G, R channels (columns are the components, paired with
# `_EIGVAL`); it matches AlexNet's RGB table with rows reversed. Our images are RGB, so we
# reverse the rows and keep the columns.
_EIGVAL = (0.2141788, 0.01817699, 0.00340571)
_EIGVEC_BGR = ((-0.58752847, -0.69563484, 0.41528053),
               (-0.5832747, 0.00994535, -0.81221408),
               (-0.56089297, 0.71832671, 0.41880184))
_EIGVEC_RGB = _EIGVEC_BGR[::-1]


def get_border(border: int, size: tf.Tensor) -> tf.Tensor:
    """The original's `_get_border`: `border // i` for the first `i = 1, 2, 4, ...` with
    `size - border // i > border // i`.

    Args:
        border: `crop_border`, pixels.
        size: scalar int32 image side, pixels (at least 1).

    Returns:
        scalar int32 border, pixels.
    """
    candidates = [border]
    while candidates[-1] > 0:
        candidates.append(border // (2 ** len(candidates)))
    candidates = tf.constant(candidates, tf.int32)
    fits = tf.cast(size, tf.int32) > 2 * candidates  # the last candidate, 0, always fits
    return tf.gather(candidates, tf.argmax(tf.cast(fits, tf.int32)))


def random_window(height: tf.Tensor, width: tf.Tensor, cfg: AugmentConfig, scale_seed: tf.Tensor,
                  centre_seed: tf.Tensor) -> tf.Tensor:
    """Draw the crop window.

    Args:
        height, width: scalar int32 image size, pixels.
        cfg: `min_scale`, `max_scale`, `crop_border`.
        scale_seed, centre_seed: `[2]` stateless seeds.

    Returns:
        `[3]` float32 `(x0, y0, side)`: the window's top-left corner and side, pixels.
    """
    side = tf.cast(tf.maximum(height, width), tf.float32) * tf.random.stateless_uniform(
        [], seed=scale_seed, minval=cfg.min_scale, maxval=cfg.max_scale)
    low = tf.cast(tf.stack([get_border(cfg.crop_border, width),
                            get_border(cfg.crop_border, height)]), tf.float32)
    high = tf.cast(tf.stack([width, height]), tf.float32) - low
    centre = low + (high - low) * tf.random.stateless_uniform([2], seed=centre_seed)
    return tf.concat([centre - side / 2, side[None]], axis=0)


def crop_image(image: tf.Tensor, window: tf.Tensor, input_size: int) -> tf.Tensor:
    """Resample the square `window` of `image` to `input_size x input_size`, bilinear, black
    outside the image.

    Output pixel `j` (centre `j + 0.5`) samples the image at `x0 + (j + 0.5) * side /
    input_size`. The image is padded with one black pixel each side first, so samples within
    half a pixel of its edge blend with black as bilinear interpolation of a black-surrounded
    image should (`crop_and_resize` alone would cut them to black).

    Args:
        image: `[H, W, 3]` uint8 (or float).
        window: `[3]` float32 `(x0, y0, side)` from `random_window`, pixels.
        input_size: output side, pixels.

    Returns:
        `[input_size, input_size, 3]` float32 in `[0, 255]`.
    """
    padded = tf.pad(image, [[1, 1], [1, 1], [0, 0]])
    shape = tf.cast(tf.shape(padded), tf.float32)
    x0, y0, side = window[0], window[1], window[2]
    step = side / input_size
    # crop_and_resize samples index position `start * (n - 1) + j * step` (pixel centres at
    # integers); continuous `x` is padded index `x + 1 - 0.5`.
    first = tf.stack([y0, x0]) + 0.5 + step / 2
    last = tf.stack([y0, x0]) + 0.5 + side - step / 2
    extent = shape[:2] - 1.0  # at least 2: the padded image is at least 3 pixels
    box = tf.concat([first / extent, last / extent], axis=0)
    crop = tf.image.crop_and_resize(padded[None], box[None], [0], [input_size, input_size],
                                    method="bilinear", extrapolation_value=0.0)
    return crop[0]


def crop_boxes(boxes: tf.Tensor, window: tf.Tensor, input_size: int
               ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Map `[N, 4]` xyxy image-pixel boxes into the window's frame at input pixels, clipped to
    `[0, input_size]`.

    Returns:
        (`[N, 4]` float32 boxes, `[N]` bool: the box still has area).
    """
    origin = tf.tile(window[0:2], [2])
    mapped = (tf.cast(boxes, tf.float32) - origin) * (input_size / window[2])
    clipped = tf.clip_by_value(mapped, 0.0, float(input_size))
    keep = tf.logical_and(clipped[:, 2] > clipped[:, 0], clipped[:, 3] > clipped[:, 1])
    return clipped, keep


def random_crop(example: Dict[str, tf.Tensor], cfg: AugmentConfig, seeds: tf.Tensor,
                input_size: int) -> Dict[str, tf.Tensor]:
    """Step 1: random scale and crop to `input_size`; boxes without area are dropped together
    with their `labels` and `is_crowd`. The image comes back float32 in `[0, 255]`."""
    shape = tf.shape(example["image"])
    window = random_window(shape[0], shape[1], cfg, seeds[_SCALE], seeds[_CENTRE])
    boxes, keep = crop_boxes(example["boxes"], window, input_size)
    return {**example, "image": crop_image(example["image"], window, input_size),
            "boxes": tf.boolean_mask(boxes, keep),
            "labels": tf.boolean_mask(example["labels"], keep),
            "is_crowd": tf.boolean_mask(example["is_crowd"], keep)}


def flip_horizontal(image: tf.Tensor, boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror `[H, W, 3]` image and its `[N, 4]` xyxy pixel boxes left-right."""
    width = tf.cast(tf.shape(image)[1], boxes.dtype)
    flipped = tf.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]],
                       axis=1)
    return tf.reverse(image, axis=[1]), flipped


def random_flip(example: Dict[str, tf.Tensor], probability: float, seed: tf.Tensor
                ) -> Dict[str, tf.Tensor]:
    """Step 2: `flip_horizontal` with `probability`, drawn from the `[2]` `seed`."""
    do_flip = tf.random.stateless_uniform([], seed=seed) < probability
    image, boxes = tf.cond(do_flip,
                           lambda: flip_horizontal(example["image"], example["boxes"]),
                           lambda: (example["image"], example["boxes"]))
    return {**example, "image": image, "boxes": boxes}


def colour_params(cfg: AugmentConfig, seeds: tf.Tensor) -> Tuple[tf.Tensor, ...]:
    """Draw the colour jitter: `[3]` float32 factors (brightness, contrast, saturation), each
    `1 + U(-v, v)` (exactly 1 for a knob at 0), a scalar int32 order index into the 6 orders,
    and `[3]` float32 lighting coefficients `N(0, lighting)`."""
    spread = tf.constant([cfg.brightness, cfg.contrast, cfg.saturation], tf.float32)
    factors = 1.0 + spread * tf.random.stateless_uniform([3], seed=seeds[_FACTORS],
                                                         minval=-1.0, maxval=1.0)
    order = tf.random.stateless_uniform([], seed=seeds[_ORDER], minval=0, maxval=len(_ORDERS),
                                        dtype=tf.int32)
    lighting = cfg.lighting * tf.random.stateless_normal([3], seed=seeds[_LIGHTING])
    return factors, order, lighting


def _blend_coefficients(factors: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
    """`[2]` float32 `(c_mean, c_gray)` such that brightness, contrast and saturation applied
    in `order` give `prod(factors) * img + c_mean * mean(gray) + c_gray * gray`.

    Each op is `img -> a * img + (1 - a) * t` with `t` = 0 (brightness), the mean grey
    (contrast), or the grey image (saturation), where the grey image and its mean are taken
    once from the input, as the original does; so the composition is affine in those three.
    """

    def compose(permutation: Tuple[int, ...]) -> tf.Tensor:
        c_mean, c_gray = tf.constant(0.0), tf.constant(0.0)
        for op in permutation:
            a = factors[op]
            c_mean, c_gray = a * c_mean, a * c_gray
            if op == 1:
                c_mean += 1.0 - a
            elif op == 2:
                c_gray += 1.0 - a
        return tf.stack([c_mean, c_gray])

    return tf.switch_case(order, [lambda p=p: compose(p) for p in _ORDERS])


def apply_colour(image: tf.Tensor, factors: tf.Tensor, order: tf.Tensor, lighting: tf.Tensor,
                 use_gray: bool = True, white: float = 1.0) -> tf.Tensor:
    """Step 3 with given parameters (from `colour_params`) on `[H, W, 3]` float32 RGB with
    values in `[0, white]` (the original works on `[0, 1]`); returns the same, unclipped.

    Brightness `img *= a`; contrast `img = a * img + (1 - a) * mean(gray)`; saturation
    `img = a * img + (1 - a) * gray`, gray = 0.299 R + 0.587 G + 0.114 B of the input; in the
    order `_ORDERS[order]`. Then PCA lighting `img += white * eigvec_rgb @ (eigval * lighting)`.
    All of it is affine per pixel, so it runs as one `[3, 3]` matrix product plus a bias.
    `use_gray=False` skips the grey image when contrast and saturation are both off (their
    factors are then 1).
    """
    scale = tf.reduce_prod(factors)
    offset = white * tf.linalg.matvec(tf.constant(_EIGVEC_RGB, tf.float32),
                                      tf.constant(_EIGVAL, tf.float32) * lighting)  # [3]
    if not use_gray:
        return image * scale + offset
    weights = tf.constant(_GRAY_RGB, tf.float32)
    c_mean, c_gray = tf.unstack(_blend_coefficients(factors, order))
    gray_mean = tf.tensordot(tf.reduce_mean(image, axis=[0, 1]), weights, axes=1)
    # out[j] = scale * img[j] + c_gray * sum_i weights[i] * img[i] + bias[j]
    matrix = scale * tf.eye(3) + c_gray * weights[:, None] * tf.ones([1, 3])
    bias = c_mean * gray_mean + offset
    pixels = tf.matmul(tf.reshape(image, [-1, 3]), matrix) + bias
    return tf.reshape(pixels, tf.shape(image))


def random_colour(image: tf.Tensor, cfg: AugmentConfig, seeds: tf.Tensor) -> tf.Tensor:
    """Step 3: colour jitter and lighting on `[H, W, 3]` uint8 or float32 `[0, 255]`;
    returns float32 `[0, 255]`, unclipped."""
    factors, order, lighting = colour_params(cfg, seeds)
    return apply_colour(tf.cast(image, tf.float32), factors, order, lighting,
                        use_gray=cfg.contrast > 0 or cfg.saturation > 0, white=255.0)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """float `[0, 255]` (possibly beyond) -> uint8, rounded and clipped; uint8 passes."""
    if image.dtype == tf.uint8:
        return image
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def augment(example: Dict[str, tf.Tensor], cfg: AugmentConfig, seed: tf.Tensor,
            input_size: int) -> Dict[str, tf.Tensor]:
    """Apply the configured augmentations: crop (if `cfg.crop`), flip, colour jitter.

    Args:
        example: common-format example: `image` `[H, W, 3]` uint8 RGB, `boxes` `[N, 4]` float32
            xyxy pixels of that image, `labels` `[N]` int32, `is_crowd` `[N]` bool, and any
            other keys (passed through).
        cfg: the `augment` config.
        seed: `[2]` int64 stateless seed of this example.
        input_size: network input side, pixels (the crop's output size).

    Returns:
        The example with `image` uint8 (`[input_size, input_size, 3]` when cropping, else
        `[H, W, 3]`), `boxes` `[M, 4]` float32 xyxy pixels of that image, and `labels`,
        `is_crowd` `[M]` (`M <= N`: boxes the crop leaves without area are dropped).
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=_NUM_SEEDS)
    if cfg.crop:
        example = random_crop(example, cfg, seeds, input_size)
    if cfg.flip > 0:
        example = random_flip(example, cfg.flip, seeds[_FLIP])
    if max(cfg.brightness, cfg.contrast, cfg.saturation, cfg.lighting) > 0:
        example = {**example, "image": random_colour(example["image"], cfg, seeds)}
    return {**example, "image": to_uint8(example["image"])}
