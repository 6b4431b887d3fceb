"""What a run reports: `metrics.jsonl`, TensorBoard events and the progress bar.

`metrics.jsonl` holds one JSON object per line: `{"step", "kind": "train", "loss", "heatmap",
"wh", "offset", "giou", "lr", "images_per_sec", "skipped", "dropped_objects"}` every
`train.log_every` steps and `{"step", "kind": "eval", "AP", "AP50", ...}` after each evaluation.
When a run resumes from step N, records after N (written after its last checkpoint) are removed
first, so the log reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: Path) -> List[dict]:
    """The records of `<run_dir>/metrics.jsonl`; a torn last line (killed mid-write) is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _json_number(value: float) -> Optional[float]:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class RunLog:
    """Appends records to `metrics.jsonl` and TensorBoard, keeping both consistent on resume.

    Args:
        run_dir: the run directory.
        resume_step: the step the run restarts from (0 for a new run).
    """

    def __init__(self, run_dir: Path, resume_step: int):
        self.path = Path(run_dir) / METRICS_FILE
        self.records = [r for r in read_metrics(run_dir) if r.get("step", 0) <= resume_step]
        tmp = self.path.with_name(METRICS_FILE + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        os.replace(tmp, self.path)
        self._file = self.path.open("a")
        self._writer = tf.summary.create_file_writer(str(Path(run_dir) / "tensorboard"))

    def last(self, kind: str) -> Optional[dict]:
        """The newest record of `kind` (`train` or `eval`), if any."""
        return next((r for r in reversed(self.records) if r.get("kind") == kind), None)

    def write(self, kind: str, step: int, values: Dict[str, float]) -> dict:
        """Append one record; numbers also go to TensorBoard as `<kind>/<name>`."""
        record = {"step": step, "kind": kind,
                  **{key: _json_number(value) for key, value in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.records.append(record)
        with self._writer.as_default(step=step):
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    tf.summary.scalar(f"{kind}/{key}", value)
        self._writer.flush()
        return record

    def write_pr_curves(self, step: int, counts: Dict[int, Dict[str, np.ndarray]],
                        names: Dict[int, str]) -> None:
        """TensorBoard PR curves (its `pr_curve` plugin), one per class as `pr/<name>`, from
        each category id's `true_positives`, `false_positives` and `missed` counts over
        rising score thresholds (`centernet.evaluation.curves.threshold_counts` at IoU 0.5:
        thresholds 0, 0.01, ..., 1)."""
        from tensorboard.plugins.pr_curve import summary as pr_summary  # pylint: disable=import-outside-toplevel

        with self._writer.as_default(step=step):
            for category, count in counts.items():
                num_thresholds = len(count["missed"])
                true_positives = count["true_positives"].astype(np.float64)
                detected = true_positives + count["false_positives"]
                proto = pr_summary.raw_data_pb(
                    f"pr/{names.get(category, category)}", true_positive_counts=true_positives,
                    false_positive_counts=count["false_positives"],
                    true_negative_counts=np.zeros(num_thresholds),
                    false_negative_counts=count["missed"],
                    precision=np.where(detected > 0, true_positives / np.maximum(detected, 1),
                                       1.0),
                    recall=true_positives / (true_positives + count["missed"]),
                    num_thresholds=num_thresholds)
                tf.summary.experimental.write_raw_pb(proto.SerializeToString(), step=step)
        self._writer.flush()

    def write_images(self, step: int, name: str, images: List[np.ndarray]) -> None:
        """RGB uint8 `[H, W, 3]` images to TensorBoard as `name` (one entry per image)."""
        if not images:
            return
        with self._writer.as_default(step=step):
            for index, image in enumerate(images):
                tf.summary.image(f"{name}/{index}", image[None], step=step)
        self._writer.flush()

    def close(self) -> None:
        self._file.close()
        self._writer.close()


class Progress:
    """A tqdm bar over training steps; shows the latest loss parts, lr, images/s and AP."""

    def __init__(self, total: int, initial: int, enabled: bool):
        interactive = sys.stderr.isatty()
        self._bar = tqdm(total=total, initial=initial, disable=not enabled, unit="step",
                         dynamic_ncols=True, mininterval=0.5 if interactive else 30.0,
                         file=sys.stderr)
        self._postfix: Dict[str, str] = {}

    def advance(self) -> None:
        self._bar.update(1)

    def set_total(self, total: int) -> None:
        self._bar.total = total
        self._bar.refresh()

    def show(self, **values: float) -> None:
        for key, value in values.items():
            self._postfix[key] = f"{value:.3g}" if isinstance(value, float) else str(value)
        self._bar.set_postfix(self._postfix, refresh=False)

    def message(self, text: str) -> None:
        self._bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
