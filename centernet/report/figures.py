"""The report's matplotlib figures, each written to a PNG file (Agg backend, no display).

Every function takes the plain numbers `centernet.report.analysis` and the run's logs give
(lists and dicts), draws one figure and writes it to `path`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

LOSS_KEYS = ("loss", "heatmap", "wh", "giou", "offset")  # metrics.jsonl's loss parts


def _pyplot():
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    return plt


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def training_curves(records: Sequence[dict], path: Path) -> Path:
    """Each loss part and the learning rate against the step (the `train` records of
    `metrics.jsonl`), and AP and AP50 at every evaluation (its `eval` records)."""
    plt = _pyplot()
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    figure, (losses, rate, accuracy) = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in train]
    for key in LOSS_KEYS:
        values = [r.get(key) for r in train]
        if any(v is not None for v in values):
            losses.plot(steps, [np.nan if v is None else v for v in values], label=key)
    losses.set_yscale("log")
    losses.set(title="training loss (each part)", xlabel="step")
    losses.legend()
    rate.plot(steps, [r.get("lr", np.nan) for r in train])
    rate.set(title="learning rate", xlabel="step")
    for key in ("AP", "AP50"):
        accuracy.plot([r["step"] for r in evals], [r.get(key, np.nan) for r in evals],
                      marker="o", label=key)
    accuracy.set(title="validation AP at each evaluation", xlabel="step", ylim=(0, 1))
    accuracy.legend()
    for axes in (losses, rate, accuracy):
        axes.grid(alpha=0.3)
    return _save(figure, path)


def pr_curves(curves: Dict[str, object], names: Dict[int, str], iou: float,
              path: Path) -> Path:
    """Each class's precision against recall at IoU `iou` (`analysis.pr_curves`), its AP
    (the curve's mean) in the legend."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 5))
    recall = curves["recall"]
    for category_id, precision in curves["precision"].items():
        if precision is not None:
            axes.plot(recall, precision,
                      label=f"{names[int(category_id)]} AP {np.mean(precision):.3f}")
    axes.set(title=f"precision-recall at IoU {iou:g}", xlabel="recall", ylabel="precision",
             xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    return _save(figure, path)


def f1_curve(f1: Dict[str, object], names: Dict[int, str], path: Path) -> Path:
    """F1 of each class and their mean against the score threshold, the best marked."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 5))
    thresholds = f1["thresholds"]
    for category_id, curve in f1["per_class"].items():
        axes.plot(thresholds, curve["f1"], linewidth=1, label=names[int(category_id)])
    axes.plot(thresholds, f1["mean_f1"], color="black", linewidth=2.5, label="mean")
    best = f1["best_threshold"]
    axes.axvline(best, color="black", linestyle="--",
                 label=f"best {best:.2f} (mean F1 {f1['best_mean_f1']:.3f})")
    axes.set(title="F1 at IoU 0.5 against the score threshold", xlabel="score threshold",
             ylabel="F1", xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    return _save(figure, path)


def confusion(matrix: Dict[str, object], path: Path, normalised: bool) -> Path:
    """The confusion matrix (`analysis.confusion_matrix`) as counts, or each row divided by
    its total (what share of a true class went where)."""
    plt = _pyplot()
    counts = np.asarray(matrix["counts"], np.float64)
    labels: List[str] = matrix["labels"]
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalised else counts
    size = 2.5 + 0.6 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalised else None)
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="detected", ylabel="true",
             title=(f"confusion{', row-normalised' if normalised else ''} (IoU "
                    f"{matrix['iou']:g}, score >= {matrix['score_threshold']:.2f})"))
    if len(labels) <= 25:
        top = values.max() if values.size else 0
        for (row, column), value in np.ndenumerate(values):
            if counts[row, column]:
                axes.text(column, row, f"{value:.2f}" if normalised else f"{int(value)}",
                          ha="center", va="center", fontsize=8,
                          color="white" if value > top / 2 else "black")
    return _save(figure, path)


def sizes_and_errors(metrics: Dict[str, float], errors: Dict[str, float], path: Path) -> Path:
    """AP by object size (COCO's small, medium, large: NaN where a size has no object) and
    the breakdown of the detections above the error analysis' score threshold."""
    from centernet.evaluation.error_analysis import DETECTION_KINDS  # pylint: disable=import-outside-toplevel

    plt = _pyplot()
    figure, (sizes, kinds) = plt.subplots(1, 2, figsize=(11, 4))
    keys = ("APs", "APm", "APl")
    values = [metrics.get(key, np.nan) for key in keys]
    bars = sizes.bar(["small\n< 32² px", "medium", "large\n> 96² px"],
                     [0 if np.isnan(v) else v for v in values], color="tab:blue")
    for bar, value in zip(bars, values):
        sizes.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                   "no objects" if np.isnan(value) else f"{value:.3f}", ha="center")
    sizes.set(title="AP by object size", ylim=(0, 1.1))
    counts = [int(errors.get(kind, 0)) for kind in DETECTION_KINDS]
    kinds.barh(list(DETECTION_KINDS)[::-1], counts[::-1], color="tab:orange")
    kinds.set(title=f"{int(errors.get('detections', sum(counts)))} detections above the error "
                    "analysis' threshold", xlabel="detections")
    return _save(figure, path)


def data(splits: Dict[str, Dict[str, np.ndarray]], names: Sequence[str], path: Path) -> Path:
    """The data: instances per class in each split (`splits`: split name -> `split_boxes`),
    and for the first split the boxes' width against height and their aspect ratio (as
    fractions of the image's width and height) and where their centres fall."""
    plt = _pyplot()
    figure, (counts, sizes, aspects, centres) = plt.subplots(1, 4, figsize=(20, 4.5))
    width = 0.8 / max(len(splits), 1)
    for offset, (split, boxes) in enumerate(splits.items()):
        per_class = np.bincount(boxes["labels"].astype(np.int64), minlength=len(names))
        counts.bar(np.arange(len(names)) + offset * width, per_class[:len(names)], width,
                   label=f"{split} ({int(per_class.sum())})")
    counts.set_xticks(np.arange(len(names)) + width * (len(splits) - 1) / 2, names,
                      rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6
                      else "center")
    counts.set(title="instances per class")
    counts.legend()
    first, boxes = next(iter(splits.items()))
    box = boxes["boxes"]
    box_height, box_width = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    sizes.hist2d(box_width, box_height, bins=40, range=[[0, 1], [0, 1]], cmap="Blues",
                 cmin=1)
    sizes.set(title=f"box width and height ({first})", xlabel="width / image width",
              ylabel="height / image height")
    aspect = np.log2(np.maximum(box_width, 1e-6) / np.maximum(box_height, 1e-6))
    aspects.hist(aspect, bins=40, color="tab:blue")
    aspects.set(title=f"aspect ratio ({first})", xlabel="log2(width / height)",
                ylabel="boxes")
    centres.hist2d((box[:, 1] + box[:, 3]) / 2, (box[:, 0] + box[:, 2]) / 2, bins=20,
                   range=[[0, 1], [0, 1]], cmap="Blues", cmin=1)
    centres.invert_yaxis()
    centres.set(title=f"box centres ({first})", xlabel="x / width", ylabel="y / height",
                aspect="equal")
    return _save(figure, path)
