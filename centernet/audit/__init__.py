"""The label audit: which annotations of a run's training split look wrong.

`audit_run` trains the folds' short runs (`folds.py`: out-of-sample detections for every
training image), scores every label and image with cleanlab (`issues.py`), draws the top
findings (`pictures.py`) and writes `DIR/audit/label_issues.json`. The dataset folder is only
read. Written for folder datasets (`dataset=voc_xml|coco_json`): their findings name files a
user can open and fix.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List

from centernet.config import AuditSettings, RunConfig
from centernet.errors import ConfigError

AUDIT_DIR = "audit"
ISSUES_FILE = "label_issues.json"
PICTURES_DIR = "pictures"


def audit_run(run: RunConfig, run_dir: Path, settings: AuditSettings) -> Path:
    """Audit the labels of `run`'s training split; returns the path of `label_issues.json`.

    The file holds the settings and the machine's time (`seconds`), `summary` (findings per
    kind), `issues` (every finding, most likely an error first: `rank`, `kind`, `score` in
    [0, 1], `image`, `annotation`, `image_id`, `object_index` (the object's number in its
    annotation, null for a missing box), `class` and `box` (`x1, y1, x2, y2` pixels) as given,
    `suggestion` (`action`: add / relabel / move / remove, with the model's `class`, `box` and
    `probability`) and, for the top `settings.top`, `picture`), `images` (cleanlab's
    `label_quality` and `flagged` per image, worst first), `objects` (every label's cleanlab
    `swap` and `badloc` scores) and `habits` (per class, inside the image or cut by its edge:
    the share of confident detections the annotators labelled, and of labels a detection
    covers; `audit.issues.annotation_habits`).

    Raises:
        ConfigError: the run's dataset is not a folder (`voc_xml`, `coco_json`).
    """
    from centernet.audit.folds import FOLDS_DIR, coco_dataset, train_folds
    from centernet.audit.issues import score_labels, summarize
    from centernet.audit.pictures import write_pictures
    from centernet.data.sources import ClassMap, FolderSource, build_source

    started = time.perf_counter()
    source = build_source(run.dataset, ClassMap.load(run_dir))
    if not isinstance(source, FolderSource):
        raise ConfigError(f"dataset.source={run.dataset.source}: the label audit reads a folder "
                          f"dataset (dataset=voc_xml or dataset=coco_json)")
    split = run.dataset.train_split
    index = source.index(split)
    names = list(source.class_names)
    directory = Path(run_dir) / AUDIT_DIR
    detections = train_folds(run, index, names, directory / FOLDS_DIR, settings.folds,
                             settings.seed, settings.fold_budget, settings.max_steps)
    confident = settings.confident_score
    if confident is None:
        confident = held_out_threshold(coco_dataset(index, range(len(index)), names),
                                       [d for found in detections.values() for d in found])
    found = score_labels(index, detections, names, confident)
    write_pictures(found["issues"][:settings.top], directory / PICTURES_DIR)
    summary = summarize(found["issues"])
    payload = {"run_dir": str(run_dir), "split": split, "images_scored": len(index),
               "objects_scored": int((~index.is_crowd).sum()), "folds": settings.folds,
               "fold_time_budget": None if settings.max_steps else settings.fold_budget,
               "fold_max_steps": settings.max_steps, "confident_score": confident,
               "seconds": round(time.perf_counter() - started, 1), "summary": summary, **found}
    path = directory / ISSUES_FILE
    path.write_text(json.dumps(payload, indent=1))
    for line in summary_lines(payload):
        print(line)
    return path


def held_out_threshold(ground_truth: dict, detections: List[dict]) -> float:
    """The best-F1 score threshold of the pooled held-out `detections` against the labels
    (`evaluation.curves.f1_by_threshold` at IoU 0.5); at least 0.05, so that a weak model's
    noise is never confident."""
    from centernet.evaluation.curves import f1_by_threshold
    from centernet.evaluation.metrics import run_cocoeval

    evaluation = run_cocoeval(ground_truth, detections, print_summary=False)
    return max(float(f1_by_threshold(evaluation)["best_threshold"]), 0.05)


def summary_lines(payload: dict, shown: int = 5) -> List[str]:
    """What the audit prints: the counts per kind, the share of confident detections the
    labels have per class (`habits`) and the first `shown` findings."""
    counts = ", ".join(f"{n} {kind}" for kind, n in payload["summary"].items())
    lines = [f"audit: {payload['images_scored']} images, {payload['objects_scored']} objects of "
             f"split {payload['split']!r} scored in {payload['seconds']:.0f} s "
             f"({payload['folds']} folds, detector score {payload['confident_score']:.2f} "
             f"counted confident): {counts}"]
    habits = {(h["class"], h["cut_by_edge"]): h["labelled"] for h in payload["habits"]}
    names = dict.fromkeys(h["class"] for h in payload["habits"])
    lines.append("  confident detections the labels have, inside the image / cut by its edge: "
                 + ", ".join(f"{name} {habits[name, False]:.0%} / {habits[name, True]:.0%}"
                             for name in names))
    for issue in payload["issues"][:shown]:
        what = (f"object #{issue['object_index']} ({issue['class']})"
                if issue["object_index"] is not None else "no label")
        suggestion = issue["suggestion"]
        advice = suggestion["action"] + (f" {suggestion['class']}" if "class" in suggestion
                                         else "")
        lines.append(f"  {issue['rank']:>3}. {issue['kind']}: {issue['annotation']}, {what}; "
                     f"suggest {advice} (score {issue['score']:.3f})")
    return lines
