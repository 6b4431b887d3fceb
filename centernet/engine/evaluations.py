"""What the training loop needs of an evaluation and keeps of it: the `Evaluator` protocol
(the caller, a later stage, builds one: docs/architecture.md, Stages), the best evaluation's
file (`BEST_EVALUATION`, which the run report and the label audit read) and the pictures of
each evaluation in TensorBoard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Protocol

import keras
import numpy as np
import tensorflow as tf

from centernet.config import RunConfig
from centernet.data.sources import Source
from centernet.engine.run_log import RunLog
from centernet.visualize import draw_coco_detections

# the best evaluation's split, step, metrics, ground truth and detections (COCO dicts): what
# the run's report (`centernet.report`) is drawn from without evaluating again
BEST_EVALUATION = "best_evaluation.json"
TENSORBOARD_SCORE_THRESHOLD = 0.3  # detections drawn in TensorBoard's pictures


class Evaluator(Protocol):
    """What the loop needs of an evaluation: called with the model's current weights, it
    returns the metrics (at least `AP`, `AP50`, `AP75`, as fractions); afterwards it holds the
    COCO ground truth and that call's COCO detections (for the best evaluation's file and the
    TensorBoard pictures) and, when it has them, the per-class counts of the PR curves."""

    detections: List[dict]
    ground_truth: dict

    def __call__(self) -> Dict[str, float]: ...

    def threshold_counts(self) -> Optional[Dict[int, Dict[str, np.ndarray]]]: ...


# builds a run's evaluator once the model and the source exist: (model, source, cfg)
MakeEvaluator = Callable[[keras.Model, Source, RunConfig], Evaluator]


def write_best_evaluation(run_dir: Path, step: int, split: str, metrics: Dict[str, float],
                          evaluator: Evaluator) -> None:
    """`run_dir/BEST_EVALUATION` for the evaluation of `split` at `step` that just made the
    best checkpoint (compact JSON through a temporary file and a rename)."""
    payload = {"step": step, "split": split,
               "metrics": {k: float(v) for k, v in metrics.items()},
               "ground_truth": evaluator.ground_truth, "detections": evaluator.detections}
    path = Path(run_dir) / BEST_EVALUATION
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)


class EvaluationPictures:
    """TensorBoard's PR curve of each class and the detections (score >=
    `TENSORBOARD_SCORE_THRESHOLD`) drawn on the first `train.tensorboard_images` validation
    images, which are read once, at the first evaluation."""

    def __init__(self, source: Source, cfg: RunConfig):
        self.source = source
        self.split = cfg.dataset.val_split
        self.count = cfg.train.tensorboard_images
        self.images: Optional[list] = None  # (image id, RGB uint8 [H, W, 3])

    def write(self, log: RunLog, step: int, evaluator: Evaluator) -> None:
        """The pictures of `evaluator`'s last call, at `step`."""
        source = self.source
        counts = evaluator.threshold_counts()
        if counts is not None:
            log.write_pr_curves(step, counts, dict(zip(source.category_ids, source.class_names)))
        if self.images is None:
            self.images = [
                (int(r["image_id"]), tf.io.decode_image(r["image"], channels=3,
                                                        expand_animations=False).numpy())
                for r in source.read(self.split).take(self.count)]
        found: Dict[int, list] = {image_id: [] for image_id, _ in self.images}
        for detection in evaluator.detections:
            found.get(int(detection["image_id"]), []).append(detection)
        log.write_images(step, "detections", [
            draw_coco_detections(image, found[image_id], source.category_ids,
                                 source.class_names, TENSORBOARD_SCORE_THRESHOLD)
            for image_id, image in self.images])
