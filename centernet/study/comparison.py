"""`centernet compare-losses`: train every focal-loss form on one experiment and compare.

Each variant is a separate `centernet train` process (a fresh Keras policy and seed each, and
a real exit status: a run the non-finite guard stops exits 2), in `<out>/runs/<name>`. The
table (`comparison.md`) and the figure (`comparison.png`) are read from each run's
`metrics.jsonl` afterwards, so a comparison can be re-summarised without training again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from centernet.engine.run_log import read_metrics
from centernet.study.train_process import train_in_process

LOSSES = ("stable", "per_image", "clamped", "naive")
PRECISION_LOSSES = ("stable", "naive")  # the forms also run at the other precisions
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
SHORT = {"float32": "fp32", "mixed_bfloat16": "bf16", "mixed_float16": "fp16"}


@dataclass
class Variant:
    """One training run of the comparison: a loss form at a precision."""

    loss: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.loss}_{SHORT[self.precision]}"

    def overrides(self) -> List[str]:
        return [f"loss={self.loss}", f"precision={self.precision}"]


@dataclass
class Row:
    """What `comparison.md` says of one variant (None: does not apply / not reached)."""

    variant: Variant
    exit_status: int
    wall_s: float
    steps: int = 0
    nonfinite_step: Optional[int] = None
    final_loss: Optional[float] = None
    ap: Optional[float] = None
    ap50: Optional[float] = None
    images_per_s: Optional[float] = None
    max_abs_logit: Optional[float] = None
    zero_grad_share: Optional[float] = None
    curve: List[tuple] = field(default_factory=list)  # (step, loss)
    ap_curve: List[tuple] = field(default_factory=list)  # (step, AP)


def machine_supports(precision: str) -> bool:
    """Whether `precision` runs at a useful speed here: bfloat16 needs native bfloat16
    arithmetic (AVX512_BF16 or AMX on the CPU, or a GPU); float16 and float32 always run."""
    if precision != "mixed_bfloat16":
        return True
    from centernet.engine.hardware import (  # pylint: disable=import-outside-toplevel
        choose_precision, this_machine)

    machine = this_machine()
    return bool(machine.gpu_capabilities) or choose_precision(machine)[0] == precision


def variants(base_precision: str, losses: Sequence[str] = LOSSES,
             precisions: Optional[Sequence[str]] = None) -> List[Variant]:
    """Every loss at the experiment's own precision, then `stable` and `naive` at each other
    precision in `precisions` (default: those this machine supports)."""
    if precisions is None:
        precisions = [p for p in PRECISIONS if p != base_precision and machine_supports(p)]
    chosen = [Variant(loss, base_precision) for loss in losses]
    for precision in precisions:
        if precision != base_precision:
            chosen += [Variant(loss, precision) for loss in PRECISION_LOSSES if loss in losses]
    return chosen


def run_variant(variant: Variant, overrides: Sequence[str], out_dir: Path) -> Row:
    """Train one variant in `out_dir/runs/<name>` (resuming what is there) and summarise it."""
    run_dir = out_dir / "runs" / variant.name
    status, wall = train_in_process(variant.name, [
        *overrides, *variant.overrides(), f"hydra.run.dir={run_dir}", "train.progress_bar=false"])
    if status not in (0, 2):
        raise RuntimeError(f"{variant.name}: centernet train exited {status}; its output is "
                           f"above, its run directory {run_dir}")
    return summarize(variant, run_dir, status, wall)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def summarize(variant: Variant, run_dir: Path, exit_status: int, wall_s: float) -> Row:
    """A `Row` from the run's `metrics.jsonl`."""
    records = read_metrics(run_dir)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    stops = [r for r in records if r["kind"] == "nonfinite"]
    row = Row(variant, exit_status, wall_s)
    if stops:
        row.nonfinite_step = stops[0]["step"]
        row.steps = row.nonfinite_step - 1
    elif train:
        row.steps = train[-1]["step"]
    row.curve = [(r["step"], r["loss"]) for r in train if _finite(r.get("loss"))]
    row.ap_curve = [(r["step"], r["AP"]) for r in evals if _finite(r.get("AP"))]
    if row.curve:
        row.final_loss = row.curve[-1][1]
    if evals:
        row.ap, row.ap50 = evals[-1].get("AP"), evals[-1].get("AP50")
    speeds = [r["images_per_sec"] for r in train[1:] if _finite(r.get("images_per_sec"))]
    if speeds:  # the first record includes tracing and compiling
        row.images_per_s = sorted(speeds)[len(speeds) // 2]
    logits = [r.get("logits_absmax") for r in train]
    logits += [max(-s["logits_min"], s["logits_max"]) for s in stops
               if _finite(s.get("logits_min")) and _finite(s.get("logits_max"))]
    logits = [v for v in logits if _finite(v)]
    row.max_abs_logit = max(logits) if logits else None
    shares = [r["zero_grad_share"] for r in train if _finite(r.get("zero_grad_share"))]
    row.zero_grad_share = sum(shares) / len(shares) if shares else None
    return row


def _cell(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def markdown(rows: Sequence[Row], command: str, machine: str) -> str:
    """The comparison table, with the command and machine it came from."""
    lines = [
        "# Focal-loss comparison", "",
        f"`{command}`", "", f"Machine: {machine}", "",
        "| loss | precision | steps | first non-finite step | final loss | AP | AP50 | "
        "images/s | largest \\|logit\\| | zero-gradient share | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.variant.loss} | {row.variant.precision} | {row.steps} | "
            f"{_cell(row.nonfinite_step) if row.nonfinite_step else 'none'} | "
            f"{_cell(row.final_loss)} | {_cell(row.ap, 3)} | {_cell(row.ap50, 3)} | "
            f"{_cell(row.images_per_s, 3)} | {_cell(row.max_abs_logit, 3)} | "
            f"{_cell(row.zero_grad_share, 3)} | {row.wall_s:.0f} |")
    lines += ["", "Steps: updates applied. Final loss: the last logged mean (the last one "
              "before the failure for a stopped run). AP: COCO AP on the validation split at "
              "the end (none for a stopped run). images/s: median of the logged windows. "
              "Largest |logit| and zero-gradient share (heatmap logits whose loss gradient is "
              "exactly 0): over the logged steps.", ""]
    return "\n".join(lines)


def plot(rows: Sequence[Row], path: Path, gradient_curves: Dict[str, Dict[str, tuple]]) -> None:
    """`comparison.png`: loss curves (log scale, NaN step marked), AP over steps, and each
    form's gradient against the logit at a positive and a negative pixel."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    loss_ax, ap_ax, pos_ax, neg_ax = axes.ravel()
    stopped = 0
    for index, row in enumerate(rows):
        color = f"C{index % 10}"
        style = "-" if row.variant.precision == rows[0].variant.precision else "--"
        if row.curve:
            steps, losses = zip(*row.curve)
            loss_ax.plot(steps, losses, style, color=color, label=row.variant.name)
        if row.nonfinite_step:
            y = row.curve[-1][1] if row.curve else 1.0
            loss_ax.plot([row.nonfinite_step], [y], "x", color=color, markersize=12,
                         markeredgewidth=3)
            loss_ax.annotate(f"{row.variant.name}: NaN at step {row.nonfinite_step}",
                             (row.nonfinite_step, y), textcoords="offset points",
                             xytext=(8, 6 + 14 * stopped), color=color)
            stopped += 1  # stacked labels: runs that stop at nearby steps stay readable
        if row.ap_curve:
            steps, aps = zip(*row.ap_curve)
            ap_ax.plot(steps, aps, style + "o", color=color, label=row.variant.name)
    loss_ax.set(yscale="log", xlabel="step", ylabel="training loss (log)",
                title="Training loss; x marks the first non-finite step")
    loss_ax.legend(fontsize=8)
    ap_ax.set(xlabel="step", ylabel="COCO AP (validation)", title="AP over steps")
    ap_ax.legend(fontsize=8)
    for ax, kind in ((pos_ax, "positive"), (neg_ax, "negative")):
        for label, (x, grad) in gradient_curves[kind].items():
            ax.plot(x, grad, label=label, linewidth=1.5)
        ax.set(yscale="symlog", xlabel="logit x", ylabel="d loss / d x (symlog)",
               title=f"Gradient at a {kind} pixel (z = {1 if kind == 'positive' else 0})")
        ax.set_yscale("symlog", linthresh=1e-6)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
