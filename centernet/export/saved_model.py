"""SavedModel export with letterboxing and decoding inside (`scripts/export.py`).

The serving signature takes a batch of uint8 RGB images of any (shared) size and returns
detections in those images' pixels, so a consumer needs nothing but TensorFlow:

    detector = tf.saved_model.load("DIR/export")
    out = detector.signatures["serving_default"](images=tf.constant(rgb[None]))  # [1, H, W, 3]
    out["boxes"]   # [1, K, 4] float32 x1, y1, x2, y2 pixels
    out["scores"]  # [1, K] float32, descending
    out["classes"] # [1, K] int32 contiguous ids; names: detector.class_names
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import tensorflow as tf

from centernet.data.letterbox import letterbox_image
from centernet.evaluation.decode import portable_decoding
from centernet.evaluation.inference import Predictor


class DetectorModule(tf.Module):
    """The exported object: `serve(images)` plus `class_names` and `category_ids`."""

    def __init__(self, predictor: Predictor, class_names: Sequence[str],
                 category_ids: Sequence[int]):
        super().__init__()
        self.predictor = predictor
        self.model = predictor.model
        self.input_size = int(predictor.model.input_shape[1])
        self.class_names = tf.Variable(list(class_names), trainable=False, name="class_names")
        self.category_ids = tf.Variable(list(category_ids), dtype=tf.int64, trainable=False,
                                        name="category_ids")

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                name="images")])
    def serve(self, images: tf.Tensor):
        """`[B, H, W, 3]` uint8 RGB -> `boxes` `[B, K, 4]` xyxy pixels of those images,
        `scores` `[B, K]`, `classes` `[B, K]` int32."""
        letterboxed, params = letterbox_image(images, self.input_size)
        batch = tf.shape(images)[0]
        result = self.predictor.detect(letterboxed, tf.tile(params[tf.newaxis], [batch, 1]),
                                       tf.tile(tf.shape(images)[1:3][tf.newaxis], [batch, 1]))
        return {key: result[key] for key in ("boxes", "scores", "classes")}


def export_saved_model(predictor: Predictor, class_names: Sequence[str],
                       category_ids: Sequence[int], output_dir: Path) -> Path:
    """Write the SavedModel to `output_dir` and return it."""
    module = DetectorModule(predictor, class_names, category_ids)
    with portable_decoding():  # no XLA in the file: servers run it without XLA
        tf.saved_model.save(module, str(output_dir), signatures={"serving_default": module.serve})
    return Path(output_dir)
