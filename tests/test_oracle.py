"""End to end without a network: the targets the pipeline renders, turned into ideal outputs,
decode through the letterbox back to the ground truth, and pycocotools scores them AP = 1.

This pins the whole coordinate chain (source boxes -> letterbox -> stride -> targets ->
decode -> stride -> inverse letterbox -> COCO) on real data: a half-pixel slip anywhere costs
AP at the strict IoU thresholds."""

import numpy as np
import pytest
import tensorflow as tf

from centernet.config import DOWN_RATIO, validate
from centernet.data.pipeline import eval_example, train_example
from centernet.data.sources import build_source
from centernet.evaluation.decode import decode, to_original_pixels
from centernet.evaluation.inference import ground_truth
from centernet.evaluation.coco_format import coco_ground_truth
from centernet.evaluation.metrics import CocoEvaluator
from conftest import compose_config


def ideal_outputs(targets, grid):
    """Logits whose sigmoid is the target heatmap, and wh/reg maps holding the targets at the
    centre cells."""
    heatmap = np.clip(targets["heatmap"].numpy(), 1e-6, 1 - 1e-6)
    heatmap[targets["heatmap"].numpy() == 1.0] = 1 - 1e-7  # exact peaks stay the maxima
    logits = np.log(heatmap / (1 - heatmap))
    wh, reg = np.zeros((grid, grid, 2), np.float32), np.zeros((grid, grid, 2), np.float32)
    used = targets["mask"].numpy() > 0
    ind = targets["ind"].numpy()[used]
    wh[ind // grid, ind % grid] = targets["wh"].numpy()[used]
    reg[ind // grid, ind % grid] = targets["reg"].numpy()[used]
    return logits, wh, reg


def oracle_metrics(tfds_dir, input_size, clip_to_edge):
    run = validate(compose_config(["experiment=smoke", f"dataset.data_dir={tfds_dir}",
                                   f"model.input_size={input_size}", "augment=none",
                                   f"targets.clip_to_edge={clip_to_edge}"]))
    source = build_source(run.dataset)
    split = run.dataset.val_split
    evaluator = CocoEvaluator(coco_ground_truth(ground_truth(source, split), source.class_names))
    grid = input_size // DOWN_RATIO
    for record in source.read(split):
        targets = train_example(record, tf.constant([0, 0], tf.int64), run, source.num_classes)
        logits, wh, reg = ideal_outputs(targets, grid)
        boxes, scores, classes = decode(logits[None], wh[None], reg[None], k=20)
        info = eval_example(record, input_size)
        original = to_original_pixels(boxes, info["letterbox"][None],
                                      info["original_size"][None])
        evaluator.process(info["image_id"].numpy()[None], original.numpy(), scores.numpy(),
                          classes.numpy())
    return evaluator.evaluate()


@pytest.mark.parametrize("input_size", [64, 96])
def test_ideal_outputs_score_ap_one(tfds_dir, input_size):
    """Validation images of 64 px letterboxed to 64 (identity) and to 96 (scale 1.5)."""
    metrics = oracle_metrics(tfds_dir, input_size, clip_to_edge=True)
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-6), metrics


def test_the_original_border_clipping_costs_strict_ap(tfds_dir):
    """Why `targets.clip_to_edge` defaults to true: clipping to the last cell (W - 1), as the
    original does, shortens border boxes; perfect outputs then miss the strict thresholds."""
    metrics = oracle_metrics(tfds_dir, 64, clip_to_edge=False)
    assert metrics["AP50"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["AP"] < 0.97
