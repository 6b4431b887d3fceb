"""A run's report: pictures of where the detector fails, and one page that shows them.

`write_report(directory, ...)` writes, from one split's ground truth and detections, the
metrics and the run's `metrics.jsonl` records: `analysis.json` (the numbers,
`centernet.report.analysis`), the figures (`centernet.report.figures`) and `index.html`
(`centernet.report.page`), which opens from disk. `scripts/train.py` writes one for the
best checkpoint's validation evaluation into `RUN/report/<split>/`, `scripts/evaluate.py`
one for the split it evaluated; `scripts/predict.py` takes the validation report's best-F1
score threshold as its default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Sequence

import numpy as np

from centernet.report import analysis, figures, gallery, page
from centernet.report.data import split_boxes

ImageLoader = Callable[[Iterable[int]], Dict[int, np.ndarray]]  # image ids -> RGB images

REPORT_DIR = "report"
ANALYSIS_FILE = "analysis.json"


def report_dir(run_dir: Path, split: str) -> Path:
    """Where the report of `split` goes: `RUN/report/<split>/`."""
    return Path(run_dir) / REPORT_DIR / split


def best_threshold(run_dir: Path, split: str) -> Optional[float]:
    """The best-F1 score threshold of `split`'s report in `run_dir`, None without one."""
    path = report_dir(run_dir, split) / ANALYSIS_FILE
    if not path.exists():
        return None
    return float(json.loads(path.read_text())["f1"]["best_threshold"])


def write_report(directory: Path, title: str, facts: Sequence[tuple], ground_truth: dict,
                 detections: Sequence[dict], metrics: Dict[str, object],
                 errors: Dict[str, float], records: Sequence[dict],
                 load_images: Optional[ImageLoader] = None,
                 splits: Optional[Dict[str, Dict[str, np.ndarray]]] = None) -> Path:
    """Write the report into `directory` (created) and return its `index.html`.

    `facts`: `(label, text)` lines for the page's head (run, checkpoint, split, ...);
    `ground_truth`, `detections`: the split's COCO dicts; `metrics`, `errors`: what the
    evaluation and `analyze_errors` gave for them; `records`: the run's `metrics.jsonl`;
    `load_images`: the split's images by id, for the gallery (none without it); `splits`:
    split name -> `split_boxes`, the training split first, for the data's pictures."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    numbers = analysis.analyze(ground_truth, detections)
    (directory / ANALYSIS_FILE).write_text(json.dumps(numbers) + "\n")
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in ground_truth["categories"]}
    f1 = numbers["f1"]
    sections = []
    if records:
        figures.training_curves(records, directory / "training_curves.png")
        sections.append(("Training", ["training_curves.png"],
                         "Each loss part and the learning rate at every logged step; AP and "
                         "AP50 on the validation split at every evaluation."))
    figures.pr_curves(numbers["pr50"], names, 0.5, directory / "pr_iou50.png")
    figures.pr_curves(numbers["pr75"], names, 0.75, directory / "pr_iou75.png")
    sections.append(("Precision and recall per class", ["pr_iou50.png", "pr_iou75.png"],
                     "pycocotools' interpolated precision at its 101 recall points (area all, "
                     "100 detections per image): the mean of each curve is the class's AP."))
    figures.f1_curve(f1, names, directory / "f1_threshold.png")
    sections.append(("The score threshold", ["f1_threshold.png"],
                     f"F1 at IoU 0.5 against the score threshold; the mean over classes is "
                     f"best at {f1['best_threshold']:.2f} (mean F1 {f1['best_mean_f1']:.3f}), "
                     f"the threshold predict.py uses unless given one."))
    figures.confusion(numbers["confusion"], directory / "confusion.png", normalised=False)
    figures.confusion(numbers["confusion"], directory / "confusion_normalised.png",
                      normalised=True)
    sections.append(("Confusion", ["confusion.png", "confusion_normalised.png"],
                     "Boxes paired at IoU 0.5 (same class first, then across classes); the "
                     "background row holds false boxes, the background column misses."))
    figures.sizes_and_errors(metrics, errors, directory / "sizes_and_errors.png")
    sections.append(("By object size, and the detections' errors", ["sizes_and_errors.png"],
                     "COCO AP by object area; the error analysis' kinds of detection (IoU "
                     "0.5, score >= 0.3)."))
    worst = numbers["worst_images"]
    if load_images is not None and worst:
        outcomes = analysis.image_outcomes(ground_truth, detections, f1["best_threshold"])
        files = gallery.write_gallery(load_images([row["image_id"] for row in worst]), worst,
                                      outcomes, names, directory)
        listed = "; ".join(f"{file}: image {row['image_id']}, {row['missed']} missed, "
                           f"{row['confused']} wrong class, {row['false']} false"
                           for file, row in zip(files, worst))
        sections.append(("The images it gets most wrong", files,
                         f"At score >= {f1['best_threshold']:.2f}, IoU 0.5. Green: found; "
                         f"orange: wrong class (the true one in brackets); red: a missed "
                         f"object's true box; magenta: a false box. {listed}."))
    if splits:
        figures.data(splits, [names[int(c["id"])] for c in ground_truth["categories"]],
                     directory / "data.png")
        sections.append(("The data", ["data.png"],
                         "Instances per class in each split (crowd and difficult boxes left "
                         "out); box sizes, aspect ratios and centres of the first split, as "
                         "fractions of their image."))
    index = directory / "index.html"
    index.write_text(page.render(title, facts, metrics, sections))
    return index


def write_run_report(run_dir: Path) -> Optional[Path]:
    """The report of a training run's best evaluation (`BEST_EVALUATION`, which the trainer
    writes whenever an evaluation makes the best checkpoint) into `RUN/report/<split>/`;
    None when the run has not evaluated."""
    from centernet.engine.run_log import read_metrics  # pylint: disable=import-outside-toplevel
    from centernet.engine.evaluations import BEST_EVALUATION  # pylint: disable=import-outside-toplevel
    from centernet.evaluation.error_analysis import analyze_errors  # pylint: disable=import-outside-toplevel

    run_dir = Path(run_dir)
    path = run_dir / BEST_EVALUATION
    if not path.exists():
        return None
    best = json.loads(path.read_text())
    facts = [("run", str(run_dir)), ("split", best["split"]),
             ("checkpoint", f"the best by validation AP, step {best['step']}")]
    return write_report(report_dir(run_dir, best["split"]), f"Run report: {run_dir.name}",
                        facts, best["ground_truth"], best["detections"], best["metrics"],
                        analyze_errors(best["ground_truth"], best["detections"]),
                        read_metrics(run_dir), run_images(run_dir, best["split"]),
                        run_splits(run_dir, best["split"]))


def _run_source(run_dir: Path, run=None):
    """The data source of `run` (a `RunConfig`; default the config saved in `run_dir`), with
    the run's classes, and that config."""
    from omegaconf import OmegaConf  # pylint: disable=import-outside-toplevel

    from centernet.config import validate  # pylint: disable=import-outside-toplevel
    from centernet.data.sources import ClassMap, build_source  # pylint: disable=import-outside-toplevel

    if run is None:
        run = validate(OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml"))
    return build_source(run.dataset, ClassMap.load(Path(run_dir))), run


def run_splits(run_dir: Path, split: str, run=None) -> Dict[str, Dict[str, np.ndarray]]:
    """`split_boxes` of the run's training split and of `split` (training first)."""
    source, run = _run_source(run_dir, run)
    names = list(dict.fromkeys([run.dataset.train_split, split]))
    return {name: split_boxes(source, name) for name in names}


def run_images(run_dir: Path, split: str, run=None) -> ImageLoader:
    """An image loader for `split` of the run's dataset (`_run_source`), built when used."""

    def load(image_ids: Iterable[int]) -> Dict[int, np.ndarray]:
        return gallery.split_images(_run_source(run_dir, run)[0], split, image_ids)

    return load
