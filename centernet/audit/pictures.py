"""A picture of each of the audit's top findings: the image (scaled as the report's gallery
scales it) with the label as given and what the out-of-sample model suggests.

Colours (RGB): the given label red (a box on nothing, a badly placed box) or orange (a wrong
class), its number in the annotation file and the kind of error above it; the model's
suggestion green, its class and probability below it; a missing box's suggestion magenta.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import cv2
import numpy as np

from centernet.audit.issues import MISSING, WRONG_CLASS
from centernet.evaluation.predict import read_image
from centernet.report.gallery import LONGEST_SIDE, draw_box
from centernet.visualize import write_image

GIVEN, GIVEN_CLASS, SUGGESTED, MISSING_COLOR = (230, 30, 30), (255, 150, 0), (40, 200, 60), (
    220, 0, 220)


def _coco(box: Sequence[float]) -> List[float]:
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def draw_issue(image: np.ndarray, issue: dict) -> np.ndarray:
    """`image` (RGB uint8 `[H, W, 3]`) scaled to `LONGEST_SIDE` with one finding drawn."""
    scale = LONGEST_SIDE / max(image.shape[:2])
    canvas = np.ascontiguousarray(cv2.resize(
        image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
    suggestion = issue["suggestion"]
    if issue["kind"] == MISSING:
        draw_box(canvas, _coco(suggestion["box"]), scale, MISSING_COLOR,
                 f"missing {suggestion['class']}? {suggestion['probability']:.2f}", 2)
        return canvas
    color = GIVEN_CLASS if issue["kind"] == WRONG_CLASS else GIVEN
    draw_box(canvas, _coco(issue["box"]), scale, color,
             f"#{issue['object_index']} {issue['class']}: {issue['kind']}", 2)
    if "box" in suggestion:
        draw_box(canvas, _coco(suggestion["box"]), scale, SUGGESTED,
                 f"model: {suggestion['class']} {suggestion['probability']:.2f}", 1, below=True)
    return canvas


def write_pictures(issues: Sequence[dict], directory: Path) -> None:
    """Draw each finding of `issues` into `directory/issue_NNN.jpg` (NNN its rank) and set
    its `picture` to that file's name relative to the audit folder."""
    for issue in issues:
        name = f"issue_{issue['rank']:03d}.jpg"
        write_image(directory / name, draw_issue(read_image(Path(issue["image"])), issue))
        issue["picture"] = f"{directory.name}/{name}"
