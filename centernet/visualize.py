"""Drawing with OpenCV: boxes with class names and scores, heatmap overlays, image grids.

All images are RGB uint8 `[H, W, 3]` NumPy arrays; boxes are `x1, y1, x2, y2` in that image's
pixels. Convert to BGR only when writing with OpenCV (`write_image`).
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import List, Optional, Sequence

import cv2
import numpy as np


def class_color(class_id: int) -> tuple:
    """A distinct, stable RGB colour per class (golden-ratio hues)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
               class_names: Sequence[str], scores: Optional[np.ndarray] = None) -> np.ndarray:
    """A copy of `image` with each box, its class name and (if given) its score.

    Args:
        image: `[H, W, 3]` uint8 RGB.
        boxes: `[N, 4]` xyxy pixels; classes: `[N]` int; scores: `[N]` float or None.
    """
    canvas = np.ascontiguousarray(image.copy())
    scale = max(0.3, min(canvas.shape[:2]) / 600)
    thickness = max(1, int(round(scale * 2)))
    for index, (box, cls) in enumerate(zip(np.asarray(boxes), np.asarray(classes))):
        color = class_color(int(cls))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = class_names[int(cls)] if 0 <= int(cls) < len(class_names) else str(int(cls))
        if scores is not None:
            label = f"{label} {float(scores[index]):.2f}"
        (text_w, text_h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.5, 1)
        top = max(y1 - text_h - base, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + text_w, top + text_h + base), color, -1)
        cv2.putText(canvas, label, (x1, top + text_h), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def draw_coco_detections(image: np.ndarray, detections: Sequence[dict],
                         category_ids: Sequence[int], class_names: Sequence[str],
                         score_threshold: float) -> np.ndarray:
    """`draw_boxes` for COCO results entries (`bbox` `[x, y, w, h]` in `image`'s pixels,
    original `category_id`s, indexed into `class_names` through `category_ids`), those
    scoring at least `score_threshold`."""
    kept = [d for d in detections if d["score"] >= score_threshold]
    index = {int(category_id): i for i, category_id in enumerate(category_ids)}
    boxes = np.asarray([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in kept)],
                       np.float64).reshape(-1, 4)
    classes = np.asarray([index[int(d["category_id"])] for d in kept], np.int64)
    return draw_boxes(image, boxes, classes, class_names,
                      np.asarray([d["score"] for d in kept], np.float64))


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a `[h, w]` or `[h, w, C]` heatmap in `[0, 1]` (max over classes) onto `image`,
    resized to the image with a JET colour map."""
    heat = np.asarray(heatmap, np.float32)
    if heat.ndim == 3:
        heat = heat.max(axis=-1)
    heat = cv2.resize(np.clip(heat, 0.0, 1.0), (image.shape[1], image.shape[0]),
                      interpolation=cv2.INTER_LINEAR)
    colored = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET),
                           cv2.COLOR_BGR2RGB)
    weight = (alpha * heat)[..., None]
    return (image * (1 - weight) + colored * weight).astype(np.uint8)


def crop_letterbox(heatmap: np.ndarray, letterbox: np.ndarray, input_size: int,
                   original_hw: Sequence[int]) -> np.ndarray:
    """The part of an output-grid heatmap `[S/4, S/4, C]` that covers the original image,
    resized to the original `(height, width)`."""
    full = cv2.resize(np.asarray(heatmap, np.float32).max(axis=-1), (input_size, input_size),
                      interpolation=cv2.INTER_LINEAR)
    scale_x, scale_y, pad_x, pad_y = (float(v) for v in letterbox)
    height, width = (int(v) for v in original_hw)
    top, left = int(pad_y), int(pad_x)
    bottom = top + max(int(round(height * scale_y)), 1)
    right = left + max(int(round(width * scale_x)), 1)
    return cv2.resize(full[top:bottom, left:right], (width, height),
                      interpolation=cv2.INTER_LINEAR)


def image_grid(images: List[np.ndarray], columns: int) -> np.ndarray:
    """Tile equally sized RGB images into a grid (row-major), padding with black."""
    rows = -(-len(images) // columns)
    height, width = images[0].shape[:2]
    grid = np.zeros((rows * height, columns * width, 3), np.uint8)
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        grid[row * height:(row + 1) * height, col * width:(col + 1) * width] = image
    return grid


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB image (PNG/JPEG by extension), creating the folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")


def target_boxes(targets: dict, output_width: int, down_ratio: int) -> tuple:
    """Recover what a training example teaches from its rendered targets: boxes `[M, 4]` xyxy
    input pixels (centre cell + `reg` +- `wh` / 2, times the stride) and classes `[M]` (the
    heatmap channel that peaks at 1.0 in that cell), for the `M` used slots."""
    used = np.asarray(targets["mask"]) > 0
    ind = np.asarray(targets["ind"])[used]
    centre = np.stack([ind % output_width, ind // output_width], axis=1) + \
        np.asarray(targets["reg"])[used]
    half = np.asarray(targets["wh"])[used] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1) * down_ratio
    heatmap = np.asarray(targets["heatmap"])
    classes = heatmap[ind // output_width, ind % output_width].argmax(axis=-1)
    return boxes, classes


def draw_training_example(image: np.ndarray, targets: dict, class_names: Sequence[str],
                          down_ratio: int) -> np.ndarray:
    """A pipeline image with its target heatmap overlaid and the boxes its targets encode."""
    heatmap = np.asarray(targets["heatmap"])
    boxes, classes = target_boxes(targets, heatmap.shape[1], down_ratio)
    return draw_boxes(overlay_heatmap(np.asarray(image), heatmap), boxes, classes, class_names)
