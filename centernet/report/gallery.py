"""The report's gallery: the images the detector gets most wrong, each error drawn so that
its kind shows (`analysis.image_outcomes` says which box is which).

Colours (RGB): a found object's detection green; a detection of the wrong class orange,
labelled with both classes; a missed object red (its ground-truth box); a false box (a
detection on nothing) magenta. Boxes are COCO `[x, y, w, h]` in original-image pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Sequence

import cv2
import numpy as np

from centernet.visualize import write_image

FOUND, CONFUSED, MISSED, FALSE = (40, 200, 60), (255, 150, 0), (230, 30, 30), (220, 0, 220)
LONGEST_SIDE = 640  # pictures are scaled so that their longer side has this many pixels


def draw_box(canvas: np.ndarray, bbox: Sequence[float], scale: float, color, label: str,
             thickness: int, below: bool = False) -> None:
    """Draw COCO box `bbox` (`[x, y, w, h]` in original-image pixels, times `scale` on
    `canvas`) in `color` (RGB) with `label` on a filled tab above it (`below`: under it)."""
    x, y, w, h = (v * scale for v in bbox)
    top_left, bottom_right = (int(round(x)), int(round(y))), (int(round(x + w)),
                                                              int(round(y + h)))
    cv2.rectangle(canvas, top_left, bottom_right, color, thickness)
    (text_w, text_h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    if below:
        top = min(bottom_right[1], canvas.shape[0] - text_h - base)
    else:
        top = max(top_left[1] - text_h - base, 0)
    cv2.rectangle(canvas, (top_left[0], top), (top_left[0] + text_w, top + text_h + base), color,
                  -1)
    cv2.putText(canvas, label, (top_left[0], top + text_h), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (0, 0, 0), 1, cv2.LINE_AA)


def draw_outcome(image: np.ndarray, outcome: Dict[str, list], names: Dict[int, str]) -> np.ndarray:
    """`image` (RGB uint8 `[H, W, 3]`) scaled to `LONGEST_SIDE`, with one image's outcome
    (`analysis.image_outcomes`) drawn in the module's colours."""
    scale = LONGEST_SIDE / max(image.shape[:2])
    canvas = np.ascontiguousarray(cv2.resize(
        image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
    for truth, detection in outcome["truths"]:
        true_name = names[int(truth["category_id"])]
        if detection is None:
            draw_box(canvas, truth["bbox"], scale, MISSED, f"missed {true_name}", 2)
        elif detection["category_id"] == truth["category_id"]:
            draw_box(canvas, detection["bbox"], scale, FOUND,
                 f"{true_name} {detection['score']:.2f}", 1)
        else:
            draw_box(canvas, detection["bbox"], scale, CONFUSED,
                 f"{names[int(detection['category_id'])]} {detection['score']:.2f} "
                 f"(is {true_name})", 2)
    for detection in outcome["false"]:
        draw_box(canvas, detection["bbox"], scale, FALSE,
             f"false {names[int(detection['category_id'])]} {detection['score']:.2f}", 2)
    return canvas


def write_gallery(images: Dict[int, np.ndarray], worst: Iterable[Dict[str, int]],
                  outcomes: Dict[int, Dict[str, list]], names: Dict[int, str],
                  directory: Path) -> List[str]:
    """Draw each of the `worst` images (`analysis.worst_images`) found in `images` (image id
    -> RGB array) into `directory/gallery_NN.png`; returns the file names, worst first."""
    files = []
    for rank, row in enumerate(worst, start=1):
        image = images.get(row["image_id"])
        if image is None:
            continue
        name = f"gallery_{rank:02d}.png"
        write_image(Path(directory) / name,
                    draw_outcome(image, outcomes[row["image_id"]], names))
        files.append(name)
    return files


def split_images(source, split: str, image_ids: Iterable[int]) -> Dict[int, np.ndarray]:
    """The images of `image_ids` from `source`'s `split` (a `centernet.data.sources.Source`),
    decoded to RGB uint8; only those are decoded."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    wanted = set(int(i) for i in image_ids)
    images = {}
    for record in source.read(split):
        image_id = int(record["image_id"].numpy())
        if image_id in wanted:
            images[image_id] = tf.io.decode_image(record["image"], channels=3,
                                                  expand_animations=False).numpy()
            if len(images) == len(wanted):
                break
    return images
