"""Evaluating a training run's checkpoint: what `centernet evaluate` (`scripts/evaluate.py`)
writes (`centernet.engine.runs` finds the run's config, checkpoint and model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

from centernet.config import RunConfig
from centernet.data.sources import ClassMap, build_source, check_splits
from centernet.engine.checkpointing import write_json_atomic
from centernet.engine.runs import load_model
from centernet.evaluation.error_analysis import analyze_errors
from centernet.evaluation.inference import SplitEvaluator


def evaluate_run(run: RunConfig, run_dir: Path, checkpoint: Path,
                 output_dir: Path) -> Tuple[dict, dict, dict, list]:
    """COCO-evaluate `checkpoint` of the run in `run_dir` (whose saved classes it keeps) on
    `run.dataset.val_split`.

    Writes `output_dir/metrics.json` (`AP`, `AP50`, ... as fractions, plus `checkpoint`, `split`,
    `images_evaluated` and `images_skipped`: a folder split's unusable images, which are not
    scored), `output_dir/detections.json` (COCO results, original image and category ids) and
    `output_dir/errors.json` (`centernet.evaluation.error_analysis.analyze_errors` at IoU 0.5, score
    0.3).

    Returns:
        the metrics dict, the error analysis, and the split's COCO ground truth and
        detections (what `centernet.report` draws).
    """
    source = build_source(run.dataset, ClassMap.load(run_dir))
    check_splits(source, [run.dataset.val_split])
    for line in source.report.summary():
        print(line)
    model = load_model(run, checkpoint, source.num_classes)
    evaluate = SplitEvaluator(model, source, run)
    metrics = evaluate()
    output_dir.mkdir(parents=True, exist_ok=True)
    split = run.dataset.val_split
    counts = source.report.splits.get(split)
    write_json_atomic(output_dir / "metrics.json",
                      {**metrics, "checkpoint": str(checkpoint), "split": split,
                       "images_evaluated": source.num_examples(split),
                       "images_skipped": counts.images - counts.images_used if counts else 0})
    detections = evaluate.detections
    (output_dir / "detections.json").write_text(json.dumps(detections))
    ground_truth = evaluate.ground_truth
    errors = analyze_errors(ground_truth, detections)
    write_json_atomic(output_dir / "errors.json", errors)
    return metrics, errors, ground_truth, detections
