"""Training-time augmentation on common-format examples (original image pixels).

Randomness is stateless: each example gets its own seed `[run seed, example index]`, so a seeded
run sees the same augmentations in any thread order and after a resume.
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from centernet.config import AugmentConfig


def flip_horizontal(image: tf.Tensor, boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror `[H, W, 3]` image and its `[N, 4]` xyxy pixel boxes left-right."""
    width = tf.cast(tf.shape(image)[1], boxes.dtype)
    flipped = tf.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]],
                       axis=1)
    return tf.reverse(image, axis=[1]), flipped


def augment(example: Dict[str, tf.Tensor], cfg: AugmentConfig, seed: tf.Tensor
            ) -> Dict[str, tf.Tensor]:
    """Apply the configured augmentations.

    Args:
        example: common-format example (`image`, `boxes`, ...).
        cfg: the `augment` config.
        seed: `[2]` int64 stateless seed of this example.
    """
    if cfg.flip <= 0:
        return example
    do_flip = tf.random.stateless_uniform([], seed=seed) < cfg.flip
    image, boxes = tf.cond(do_flip,
                           lambda: flip_horizontal(example["image"], example["boxes"]),
                           lambda: (example["image"], example["boxes"]))
    return {**example, "image": image, "boxes": boxes}
