"""Detections drawn on images, folders of images and videos (`scripts/predict.py`).

Every image is decoded as the input pipeline decodes it and goes through the same letterbox,
network and decoding as evaluation (an `ImageDetector`: the Keras model, or a LiteRT or ONNX
file), so the boxes written to `predictions.json` are the ones evaluation would score.

A prediction finishes what it starts: an unreadable, truncated or non-image file in a folder, or
a video frame that does not decode, is skipped, named on the console and listed under `skipped`
in `predictions.json`; only when nothing at all could be processed is it an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from centernet.data.images import read_rgb
from centernet.errors import DataError
from centernet.evaluation.inference import ImageDetector
from centernet.visualize import crop_letterbox, draw_boxes, overlay_heatmap, write_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
OPENCV_ONLY_SUFFIXES = (".tif", ".tiff")
"""Formats TensorFlow's decoder does not read; OpenCV decodes them."""
MAX_BROKEN_FRAMES = 100
"""Consecutive undecodable video frames after which the rest of the video is given up."""


def read_image(path: Path) -> np.ndarray:
    """`[H, W, 3]` uint8 RGB, decoded as the input pipeline decodes (TIFF through OpenCV).

    Raises:
        ValueError: the file cannot be used (unreadable, truncated, corrupt, not an image);
            the message says why.
    """
    if path.suffix.lower() in OPENCV_ONLY_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError("not a readable image")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return read_rgb(path)


def image_files(path: Path) -> List[Path]:
    """The image at `path`, or the files in the folder `path` with image suffixes (sorted)."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"input {path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


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


def _video_frames(path: Path) -> Tuple[Iterator[Tuple[int, Optional[np.ndarray]]], float,
                                       Tuple[int, int]]:
    """`(frames, fps, (width, height))`; `frames` yields `(index, RGB frame)`, with None for
    a frame that does not decode. Reading goes on past a broken frame while the container says
    more frames follow (FFmpeg resumes at the next one), and stops at the end, or after
    `MAX_BROKEN_FRAMES` broken frames in a row, or at the first failure when the container
    does not say how many frames it has."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"input {path}: not a readable video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))

    def frames() -> Iterator[Tuple[int, Optional[np.ndarray]]]:
        broken_in_a_row = 0
        try:
            for index in range(count) if count > 0 else iter(int, 1):
                ok, frame = capture.read()
                if ok:
                    broken_in_a_row = 0
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                elif count <= 0:
                    return
                else:
                    broken_in_a_row += 1
                    if broken_in_a_row > MAX_BROKEN_FRAMES:
                        return
                    yield index, None
        finally:
            capture.release()

    return frames(), fps, size


def predict(detector: ImageDetector, input_path: Path, output_dir: Path,
            class_names: Sequence[str], score_threshold: float, heatmap: bool,
            report: Callable[[str], None] = print) -> Dict[str, List[dict]]:
    """Draw detections for an image, a folder or a video into `output_dir`.

    Writes one picture per image (same name, `.png`) or `<video stem>.mp4`, and
    `predictions.json`: `images`, per image or frame (`<video>#<frame index>`) the boxes (xyxy
    original pixels), scores, classes and class names of the detections with score >=
    `score_threshold`; and `skipped`, per file or frame that could not be used, its name and
    the reason, each also passed to `report` as it happens.

    Returns:
        the `predictions.json` content.

    Raises:
        DataError: the input does not exist, or not one image or frame could be processed
            (the reasons are listed).
    """
    input_path = Path(input_path)
    if not input_path.exists():
        raise DataError(f"input={input_path} does not exist")
    input_size = detector.input_size
    records, skipped = [], []

    def skip(name: str, reason: str) -> None:
        skipped.append({"file": name, "reason": reason})
        report(f"skipped {name}: {reason}")

    output_dir.mkdir(parents=True, exist_ok=True)
    if input_path.is_file() and input_path.suffix.lower() in VIDEO_SUFFIXES:
        frames, fps, size = _video_frames(input_path)
        writer = cv2.VideoWriter(str(output_dir / f"{input_path.stem}.mp4"),
                                 cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        try:
            for index, frame in frames:
                name = f"{input_path.name}#{index}"
                if frame is None:
                    skip(name, "frame does not decode")
                    continue
                detections = detector.detect_image(frame)
                picture = render(frame, detections, class_names, score_threshold, input_size,
                                 heatmap)
                writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                records.append(_record(name, detections, class_names, score_threshold))
        finally:
            writer.release()
    else:
        for path in image_files(input_path):
            try:
                image = read_image(path)
            except ValueError as error:
                skip(path.name, str(error))
                continue
            detections = detector.detect_image(image)
            write_image(output_dir / f"{path.stem}.png",
                        render(image, detections, class_names, score_threshold, input_size,
                               heatmap))
            records.append(_record(path.name, detections, class_names, score_threshold))
    result = {"images": records, "skipped": skipped}
    (output_dir / "predictions.json").write_text(json.dumps(result, indent=1))
    if not records:
        reasons = "; ".join(f"{item['file']}: {item['reason']}" for item in skipped)
        raise DataError(f"input={input_path}: no image could be processed ({reasons})")
    return result
