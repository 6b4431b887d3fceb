"""Run a model on letterboxed batches and return detections in original image pixels; read a
split's ground truth for evaluation."""

from __future__ import annotations

import abc
import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import keras
import numpy as np
import tensorflow as tf

from centernet.config import Decoding, RunConfig
from centernet.data.annotations import SplitIndex
from centernet.data.letterbox import letterbox_image
from centernet.data.pipeline import AUTOTUNE, eval_dataset
from centernet.data.sources import FolderSource, Source, decode_record
from centernet.evaluation.curves import threshold_counts
from centernet.evaluation.decode import (decay_cross_class_twins, decode_probs, merge_flipped,
                                         to_original_pixels)
from centernet.errors import DataError
from centernet.evaluation.coco_format import GroundTruthImage, coco_ground_truth
from centernet.evaluation.metrics import CocoEvaluator


def detections_from_outputs(outputs: Dict[str, tf.Tensor],
                            mirrored_outputs: Optional[Dict[str, tf.Tensor]],
                            letterbox: tf.Tensor, original_size: tf.Tensor,
                            decoding: Decoding, with_heatmap: bool = False
                            ) -> Dict[str, tf.Tensor]:
    """Decode network outputs into detections in original image pixels.

    The one post-processing of every path: the Keras model (`Predictor`), and the LiteRT and
    ONNX files (`centernet.export.runtime`), so each gives the detections evaluation scores.

    Args:
        outputs: `heatmap` `[B, S/4, S/4, C]` logits, `wh` and `reg` `[B, S/4, S/4, 2]`.
        mirrored_outputs: the outputs of the horizontally mirrored images (flip test), or None.
        letterbox: `[B, 4]` letterbox params; original_size: `[B, 2]` (height, width).
        decoding: `k` detections per image and the cross-class twin decay (`flip_test` is
            the caller's: it passes `mirrored_outputs`).
        with_heatmap: also return the heatmap probabilities (`heatmap`).

    Returns:
        `boxes` `[B, K, 4]` xyxy original pixels, `scores` `[B, K]` descending, `classes`
        `[B, K]` int32.
    """
    if mirrored_outputs is not None:
        probs, wh, reg = merge_flipped(outputs, mirrored_outputs)
    else:
        probs = tf.sigmoid(outputs["heatmap"])
        wh, reg = outputs["wh"], outputs["reg"]
    boxes, scores, classes = decode_probs(probs, wh, reg, decoding.k)
    if decoding.cross_class_iou is not None:
        boxes, scores, classes = decay_cross_class_twins(
            boxes, scores, classes, decoding.cross_class_iou, decoding.cross_class_decay)
    result = {"boxes": to_original_pixels(boxes, letterbox, original_size),
              "scores": scores, "classes": classes}
    return result | {"heatmap": probs} if with_heatmap else result


def image_batch(image: np.ndarray, input_size: int) -> Dict[str, tf.Tensor]:
    """One `[H, W, 3]` uint8 RGB image as an `eval_dataset`-style batch of one: `image`
    `[1, S, S, 3]` letterboxed, `letterbox` `[1, 4]`, `original_size` `[1, 2]`, `image_id`."""
    letterboxed, params = letterbox_image(tf.convert_to_tensor(image), input_size)
    return {"image": letterboxed[tf.newaxis], "letterbox": params[tf.newaxis],
            "original_size": tf.constant([image.shape[:2]], tf.int32),
            "image_id": np.zeros([1], np.int64)}


class ImageDetector(abc.ABC):
    """What evaluation, `predict.py` and the export benchmark need of a detector, whatever
    runs it: `input_size` (pixels), `__call__(batch)` on letterboxed batches, and
    `detect_image(image)`."""

    input_size: int

    @abc.abstractmethod
    def __call__(self, batch: Dict[str, tf.Tensor]) -> Dict[str, np.ndarray]:
        """Detections of an `eval_dataset` batch: `boxes` `[B, K, 4]` xyxy original pixels,
        `scores` `[B, K]`, `classes` `[B, K]` contiguous ids, `image_id` `[B]`."""

    def detect_image(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """Detections of one `[H, W, 3]` uint8 RGB image: `boxes` `[K, 4]` xyxy pixels,
        `scores` `[K]`, `classes` `[K]`, `letterbox` `[4]`, and `heatmap` (`[S/4, S/4, C]`
        probabilities) when the detector returns it."""
        batch = image_batch(image, self.input_size)
        result = self(batch)
        return {key: value[0] for key, value in result.items() if key != "image_id"} | {
            "letterbox": batch["letterbox"][0].numpy()}


class Predictor(ImageDetector):
    """Compiled model + decoding: `[B, S, S, 3]` uint8 letterboxed images -> detections.

    Args:
        model: a CenterNet model from `build_model`.
        decoding: `k`, `flip_test`, the cross-class twin decay (the run's `eval` keys).
        with_heatmap: also return the `[B, S/4, S/4, C]` heatmap probabilities (`heatmap`).
    """

    def __init__(self, model: keras.Model, decoding: Decoding = Decoding(),
                 with_heatmap: bool = False):
        self.model = model
        self.decoding = decoding
        self.with_heatmap = with_heatmap
        self.input_size = size = int(model.input_shape[1])
        self._predict = tf.function(self.detect, input_signature=[
            tf.TensorSpec([None, size, size, 3], tf.uint8),
            tf.TensorSpec([None, 4], tf.float32),
            tf.TensorSpec([None, 2], tf.int32),
        ])

    def detect(self, images: tf.Tensor, letterbox: tf.Tensor,
               original_size: tf.Tensor) -> Dict[str, tf.Tensor]:
        """The graph of one batch (usable inside other `tf.function`s, e.g. the export).

        Args:
            images: `[B, S, S, 3]` uint8 letterboxed images.
            letterbox: `[B, 4]` letterbox params; original_size: `[B, 2]` (height, width).

        Returns:
            `boxes` `[B, K, 4]` xyxy original pixels, `scores` `[B, K]`, `classes` `[B, K]`
            (and `heatmap` with `with_heatmap`).
        """
        outputs = self.model(images, training=False)
        mirrored = (self.model(tf.reverse(images, axis=[2]), training=False)
                    if self.decoding.flip_test else None)
        return detections_from_outputs(outputs, mirrored, letterbox, original_size,
                                       self.decoding, self.with_heatmap)

    def __call__(self, batch: Dict[str, tf.Tensor]) -> Dict[str, np.ndarray]:
        """Detections of an `eval_dataset` batch: `boxes` `[B, K, 4]` xyxy original pixels,
        `scores` `[B, K]`, `classes` `[B, K]` contiguous ids, `image_id` `[B]`."""
        result = self._predict(batch["image"], batch["letterbox"],
                               tf.cast(batch["original_size"], tf.int32))
        return {"image_id": np.asarray(batch["image_id"]),
                **{key: value.numpy() for key, value in result.items()}}


def evaluate_predictions(predictor: ImageDetector, batches: Iterable[Dict[str, tf.Tensor]],
                         evaluator: CocoEvaluator,
                         progress: Optional[callable] = None) -> Dict[str, float]:
    """Feed every batch's detections to `evaluator` and return its metrics."""
    evaluator.reset()
    for batch in batches:
        detections = predictor(batch)
        evaluator.process(detections["image_id"], detections["boxes"], detections["scores"],
                          detections["classes"])
        if progress is not None:
            progress(len(detections["image_id"]))
    return evaluator.evaluate()


def ground_truth(source: Source, split: str) -> List[GroundTruthImage]:
    """The annotations of `split` in original image pixels, for COCO evaluation: a folder
    source's from its index (no image read), a TFDS source's from its decoded records."""
    if isinstance(source, FolderSource):
        return index_ground_truth(source.index(split))

    def annotations(record: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        example = decode_record(record)
        return {key: example[key] for key in ("image_id", "boxes", "labels", "is_crowd")} | {
            "size": tf.shape(example["image"])[:2]}

    images = []
    for item in source.read(split).map(annotations, num_parallel_calls=AUTOTUNE) \
            .as_numpy_iterator():
        images.append(GroundTruthImage(
            image_id=int(item["image_id"]), height=int(item["size"][0]),
            width=int(item["size"][1]), boxes=np.asarray(item["boxes"], np.float64),
            labels=item["labels"], is_crowd=item["is_crowd"]))
    return images


def index_ground_truth(index: SplitIndex) -> List[GroundTruthImage]:
    """A checked split's annotations in original image pixels, from its index's image sizes:
    the values `decode_record` gives from the decoded image (normalised float32 boxes times
    the float32 size), without reading an image."""
    images = []
    for position in range(len(index)):
        start, end = index.row_splits[position], index.row_splits[position + 1]
        height, width = (int(n) for n in index.sizes[position])
        scale = np.array([width, height, width, height], np.float32)
        images.append(GroundTruthImage(
            image_id=int(index.image_ids[position]), height=height, width=width,
            boxes=(index.boxes[start:end][:, [1, 0, 3, 2]] * scale).astype(np.float64),
            labels=index.labels[start:end], is_crowd=index.is_crowd[start:end]))
    return images


def original_ground_truth(source: Source, split: str) -> Optional[dict]:
    """A COCO source's annotation file as it is (its own areas, crowds and ids), so the
    metrics are exactly pycocotools' on that file; None for other sources. Its categories are
    put in the source's class order (the per-class metrics pair them with the class names),
    and annotations of categories the run does not have (`dataset.classes`) are left out."""
    path = source.annotation_file(split)
    if path is None:
        return None
    truth = json.loads(Path(path).read_text())
    by_id = {int(category["id"]): category for category in truth["categories"]}
    ids = [int(category_id) for category_id in source.category_ids]
    missing = [category_id for category_id in ids if category_id not in by_id]
    if missing:
        raise DataError(f"{path}: has no categories with ids {missing}, which the run's "
                        f"classes ({', '.join(source.class_names)}) map to")
    truth["categories"] = [{**by_id[category_id], "id": category_id}  # class-id order
                           for category_id in ids]
    truth["images"] = [{**image, "id": int(image["id"])} for image in truth["images"]]
    kept = set(ids)
    truth["annotations"] = [_scorable(annotation) for annotation in truth.get("annotations", [])
                            if int(annotation["category_id"]) in kept and
                            _finite_box(annotation.get("bbox"))]
    return truth


def _finite_box(bbox) -> bool:
    """Whether a COCO `bbox` is four finite numbers (the source drops the others as
    `coordinate_invalid`; pycocotools would crash on them)."""
    try:
        return len(bbox) == 4 and all(math.isfinite(float(v)) for v in bbox)
    except (TypeError, ValueError):
        return False


def _scorable(annotation: dict) -> dict:
    """An annotation with integer ids and an `area` (w * h when the file has none), as
    pycocotools needs; everything the file does have is kept as it is."""
    x, y, w, h = (float(v) for v in annotation["bbox"])
    return {**annotation, "image_id": int(annotation["image_id"]),
            "category_id": int(annotation["category_id"]),
            "area": annotation.get("area", w * h), "iscrowd": annotation.get("iscrowd", 0)}


class SplitEvaluator:
    """COCO evaluation of a model on the validation split `cfg.dataset.val_split`.

    Built once (ground truth read, pipeline and compiled predictor ready), called any number
    of times with the model's current weights; `evaluator.detections` holds the last call's
    detections in COCO results format.
    """

    def __init__(self, model: keras.Model, source: Source, cfg: RunConfig):
        split = cfg.dataset.val_split
        self.batches = eval_dataset(source, split, cfg.model.input_size, cfg.eval.batch_size)
        truth = original_ground_truth(source, split) or coco_ground_truth(
            ground_truth(source, split), source.class_names, source.category_ids)
        self.evaluator = CocoEvaluator(truth, source.category_ids, source.class_names,
                                       voc_metrics=cfg.eval.voc_metrics,
                                       score_threshold=cfg.eval.score_threshold)
        self.predictor = Predictor(model, cfg.eval.decoding)

    def __call__(self) -> Dict[str, float]:
        return evaluate_predictions(self.predictor, self.batches, self.evaluator)

    @property
    def detections(self) -> List[dict]:
        """The last call's detections, COCO results (original image and category ids)."""
        return self.evaluator.detections

    @property
    def ground_truth(self) -> dict:
        """The split's COCO ground truth (the dataset's own ids)."""
        return self.evaluator.ground_truth

    def threshold_counts(self) -> Optional[Dict[int, Dict[str, np.ndarray]]]:
        """The last call's true and false positives and missed objects per category id over
        rising score thresholds at IoU 0.5 (`curves.threshold_counts`); None before a call."""
        last = self.evaluator.last_evaluation
        return None if last is None else threshold_counts(last, 0.5)
