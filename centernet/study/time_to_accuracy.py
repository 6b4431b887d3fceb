"""`centernet benchmark time-to-accuracy`: train recipes on the same data and compare
how fast each reaches its accuracy, in wall-clock seconds and in images seen.

Each recipe is a separate `centernet train` process (`recipe=<name>` plus the shared
overrides) in `<out>/runs/<name>`; its evaluations (`metrics.jsonl`) carry `train_seconds`
(training wall-clock time, input pipeline and compilation included, evaluation excluded) and
`images_seen`. The table (`time_to_accuracy.md`, and `.json`) and the figure
(`time_to_accuracy.png`: AP50 and AP against seconds and against images) are read from those
files afterwards, so existing runs can be reported again without training (`--runs`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from centernet.engine.run_log import read_metrics
from centernet.study.train_process import train_in_process

RECIPES = ("centernet", "ttfnet")
THRESHOLDS = (("AP50", 0.5), ("AP50", 0.9), ("AP50", 0.95), ("AP", 0.5), ("AP", 0.7))


@dataclass
class Point:
    """One evaluation of a run."""

    step: int
    train_seconds: float
    images_seen: int
    AP: float  # pylint: disable=invalid-name  (the COCO names)
    AP50: float  # pylint: disable=invalid-name


@dataclass
class Curve:
    """A run's evaluations, and its process wall time when this report trained it."""

    name: str
    run_dir: str
    points: List[Point] = field(default_factory=list)
    wall_seconds: Optional[float] = None

    def first_reaching(self, metric: str, threshold: float) -> Optional[Point]:
        """The first evaluation with `metric >= threshold`, if any."""
        return next((p for p in self.points if getattr(p, metric) >= threshold), None)


def read_curve(name: str, run_dir: Path, wall_seconds: Optional[float] = None) -> Curve:
    """A `Curve` from `run_dir/metrics.jsonl` (evaluations that carry `train_seconds`).

    Raises:
        ValueError: naming the run directory when it has no such evaluation.
    """
    points = [Point(r["step"], r["train_seconds"], r["images_seen"], r["AP"], r["AP50"])
              for r in read_metrics(run_dir)
              if r.get("kind") == "eval" and "train_seconds" in r and r.get("AP") is not None]
    if not points:
        raise ValueError(f"{run_dir}: no evaluation with train_seconds in metrics.jsonl "
                         f"(set train.eval_every, and train with this version)")
    return Curve(name, str(run_dir), points, wall_seconds)


def check_runs_are_new(recipes: Sequence[str], out_dir: Path) -> None:
    """Refuse to train into `out_dir/runs/<recipe>` folders that already hold a run: training
    there would resume it under today's settings and report a mixture of two runs.

    Raises:
        FileExistsError: naming every such folder.
    """
    used = [out_dir / "runs" / recipe for recipe in recipes
            if (out_dir / "runs" / recipe).is_dir() and any((out_dir / "runs" / recipe).iterdir())]
    if used:
        names = ", ".join(str(path) for path in used)
        raise FileExistsError(
            f"{names} already hold a run; give a new --out, or report existing runs without "
            f"training with --runs NAME=DIR")


def train_recipe(recipe: str, overrides: Sequence[str], out_dir: Path) -> Curve:
    """Train `recipe=<recipe>` with `overrides` in `out_dir/runs/<recipe>` and read its curve.

    Raises:
        RuntimeError: when the training process fails (its output is above).
    """
    run_dir = out_dir / "runs" / recipe
    status, wall = train_in_process(recipe, [
        f"recipe={recipe}", *overrides, f"hydra.run.dir={run_dir}", "train.progress_bar=false"])
    if status != 0:
        raise RuntimeError(f"recipe {recipe}: centernet train exited {status}; its output is "
                           f"above, its run directory {run_dir}")
    return read_curve(recipe, run_dir, wall)


def _reach(curve: Curve, metric: str, threshold: float) -> str:
    point = curve.first_reaching(metric, threshold)
    if point is None:
        return "not reached"
    return f"{point.train_seconds:.0f} s, {point.images_seen:,} images"


def markdown(curves: Sequence[Curve], command: str, machine: str) -> str:
    """The time-to-accuracy table with the command and machine it came from."""
    head = ["run", "steps", "images", "train s", "process s", "AP", "AP50"]
    head += [f"to {metric} {threshold:g}" for metric, threshold in THRESHOLDS]
    lines = ["# Time to accuracy", "", f"`{command}`", "", f"Machine: {machine}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for curve in curves:
        last = curve.points[-1]
        wall = f"{curve.wall_seconds:.0f}" if curve.wall_seconds is not None else "-"
        cells = [curve.name, str(last.step), f"{last.images_seen:,}",
                 f"{last.train_seconds:.0f}", wall, f"{last.AP:.3f}", f"{last.AP50:.3f}"]
        cells += [_reach(curve, metric, threshold) for metric, threshold in THRESHOLDS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "train s: training wall-clock seconds (input pipeline, compilation and "
              "checkpoints included, evaluation excluded). process s: the whole "
              "`centernet train` process, evaluations and start-up included. AP, AP50: COCO, "
              "validation split, last evaluation. \"to X\": the first evaluation at or above "
              "X (evaluations every `train.eval_every` steps).", ""]
    return "\n".join(lines)


def plot(curves: Sequence[Curve], path: Path, title: str = "") -> None:
    """`time_to_accuracy.png`: AP50 and AP (rows) against training seconds and images seen
    (columns), one line per run."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    figure, axes = plt.subplots(2, 2, figsize=(12, 8), sharey="row")
    for index, curve in enumerate(curves):
        color = f"C{index % 10}"
        for row, metric in enumerate(("AP50", "AP")):
            values = [getattr(p, metric) for p in curve.points]
            axes[row, 0].plot([p.train_seconds for p in curve.points], values, "o-",
                              color=color, label=curve.name)
            axes[row, 1].plot([p.images_seen for p in curve.points], values, "o-",
                              color=color, label=curve.name)
    for row, metric in enumerate(("AP50", "AP")):
        axes[row, 0].set(xlabel="training wall-clock seconds", ylabel=f"COCO {metric}")
        axes[row, 1].set(xlabel="training images seen")
        for ax in axes[row]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=9)
    axes[0, 0].set_ylim(0, 1)
    axes[1, 0].set_ylim(0, 1)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(curves: Sequence[Curve], out_dir: Path, command: str,
                 machine: str) -> Tuple[Path, Path, Path]:
    """Write `time_to_accuracy.md`, `.json` and `.png` into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "time_to_accuracy.md"
    table.write_text(markdown(curves, command, machine))
    data = out_dir / "time_to_accuracy.json"
    data.write_text(json.dumps({"command": command, "machine": machine,
                                "runs": [asdict(curve) for curve in curves]}, indent=2) + "\n")
    figure = out_dir / "time_to_accuracy.png"
    plot(curves, figure, title=machine)
    return table, data, figure
