"""Detections drawn on images, folders of images and videos (`scripts/predict.py`).

Every frame goes through the same letterbox, model and decoding as evaluation (`Predictor`), so
the boxes written to `predictions.json` are the ones evaluation would score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import cv2
import numpy as np
import tensorflow as tf

from centernet.data.letterbox import letterbox_image
from centernet.errors import DataError
from centernet.evaluation.inference import Predictor
from centernet.visualize import crop_letterbox, draw_boxes, overlay_heatmap, write_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def read_image(path: Path) -> np.ndarray:
    """`[H, W, 3]` uint8 RGB, or a DataError naming the file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"input {path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_files(path: Path) -> List[Path]:
    """The image at `path`, or the images in the folder `path` (sorted)."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"input {path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def detect_image(predictor: Predictor, image: np.ndarray, input_size: int
                 ) -> Dict[str, np.ndarray]:
    """Detections of one RGB image: `boxes` `[K, 4]` xyxy pixels, `scores` `[K]`,
    `classes` `[K]`, and `heatmap` (`[S/4, S/4, C]` probabilities) when the predictor has it."""
    letterboxed, params = letterbox_image(tf.convert_to_tensor(image), input_size)
    batch = {"image": letterboxed[tf.newaxis], "letterbox": params[tf.newaxis],
             "original_size": tf.constant([image.shape[:2]], tf.int32),
             "image_id": np.zeros([1], np.int64)}
    result = predictor(batch)
    return {key: value[0] for key, value in result.items() if key != "image_id"} | {
        "letterbox": params.numpy()}


def render(image: np.ndarray, detections: Dict[str, np.ndarray], class_names: Sequence[str],
           score_threshold: float, input_size: int, heatmap: bool) -> np.ndarray:
    """The picture a user sees: the (optional) heatmap overlay, then boxes above threshold."""
    keep = detections["scores"] >= score_threshold
    canvas = image
    if heatmap:
        canvas = overlay_heatmap(image, crop_letterbox(detections["heatmap"],
                                                       detections["letterbox"], input_size,
                                                       image.shape[:2]))
    return draw_boxes(canvas, detections["boxes"][keep], detections["classes"][keep],
                      class_names, detections["scores"][keep])


def _record(name: str, detections: Dict[str, np.ndarray], class_names: Sequence[str],
            score_threshold: float) -> dict:
    keep = detections["scores"] >= score_threshold
    classes = detections["classes"][keep]
    return {"file": name, "boxes": detections["boxes"][keep].tolist(),
            "scores": detections["scores"][keep].tolist(), "classes": classes.tolist(),
            "class_names": [class_names[int(c)] for c in classes]}


def _video_frames(path: Path) -> Tuple[Iterator[np.ndarray], float, Tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"input {path}: not a readable video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    return frames(), fps, size


def predict(predictor: Predictor, input_path: Path, output_dir: Path,
            class_names: Sequence[str], score_threshold: float, heatmap: bool) -> List[dict]:
    """Draw detections for an image, a folder or a video into `output_dir`.

    Writes one picture per image (same name, `.png`) or `<video stem>.mp4`, and
    `predictions.json`: per image or frame, boxes (xyxy original pixels), scores, classes and
    class names of the detections with score >= `score_threshold`.

    Returns:
        the `predictions.json` records.
    """
    input_path = Path(input_path)
    if not input_path.exists():
        raise DataError(f"input={input_path} does not exist")
    input_size = predictor.model.input_shape[1]
    records = []
    if input_path.is_file() and input_path.suffix.lower() in VIDEO_SUFFIXES:
        frames, fps, size = _video_frames(input_path)
        output_dir.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(output_dir / f"{input_path.stem}.mp4"),
                                 cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        try:
            for index, frame in enumerate(frames):
                detections = detect_image(predictor, frame, input_size)
                picture = render(frame, detections, class_names, score_threshold, input_size,
                                 heatmap)
                writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                records.append(_record(f"{input_path.name}#{index}", detections, class_names,
                                       score_threshold))
        finally:
            writer.release()
    else:
        for path in image_files(input_path):
            image = read_image(path)
            detections = detect_image(predictor, image, input_size)
            write_image(output_dir / f"{path.stem}.png",
                        render(image, detections, class_names, score_threshold, input_size,
                               heatmap))
            records.append(_record(path.name, detections, class_names, score_threshold))
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "predictions.json").write_text(json.dumps(records, indent=1))
    return records
