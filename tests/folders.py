"""Builders of small dataset folders (Pascal VOC XML and COCO JSON) for the folder-source tests,
and independent ways to look at what a source returns.

Images are solid-colour pictures written with OpenCV in which every object's box is a filled
rectangle of a known colour, so a test can check the decoded pixels inside each returned box.
Rectangles are given in continuous pixel coordinates `(x1, y1, x2, y2)`: they fill columns
`x1 .. x2 - 1` and rows `y1 .. y2 - 1`.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

BACKGROUND = (40, 80, 120)  # RGB
RED = (220, 30, 30)
GREEN = (30, 200, 60)
BLUE = (30, 60, 220)
YELLOW = (230, 220, 40)
WHITE = (250, 250, 250)

Rect = Tuple[int, int, int, int, Tuple[int, int, int]]


def picture(height: int = 48, width: int = 64, rects: Iterable[Rect] = (),
            background=BACKGROUND) -> np.ndarray:
    """An RGB uint8 image: `background` with each `(x1, y1, x2, y2, rgb)` filled."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = background
    for x1, y1, x2, y2, rgb in rects:
        image[y1:y2, x1:x2] = rgb
    return image


def encode(image: np.ndarray, fmt: str) -> bytes:
    """RGB (or greyscale / 4-channel / uint16) array -> file bytes of format `.jpg` / `.png`
    (best JPEG quality), written by OpenCV."""
    array = image
    if image.ndim == 3 and image.shape[2] == 3:
        array = image[..., ::-1]
    elif image.ndim == 3 and image.shape[2] == 4:
        array = image[..., [2, 1, 0, 3]]
    params = [cv2.IMWRITE_JPEG_QUALITY, 100] if fmt in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(fmt, np.ascontiguousarray(array), params)
    assert ok, fmt
    return data.tobytes()


def write_image(path: Path, height: int = 48, width: int = 64, rects: Iterable[Rect] = (),
                background=BACKGROUND) -> np.ndarray:
    """Write a `picture` to `path` (JPEG for .jpg/.jpeg in any case, else PNG); returns the
    RGB array written."""
    image = picture(height, width, rects, background)
    fmt = ".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else ".png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(image, fmt))
    return image


def voc_object(name: str, xmin=None, ymin=None, xmax=None, ymax=None, difficult=0,
               omit: Sequence[str] = ()) -> dict:
    return {"name": name, "bndbox": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
            "difficult": difficult, "omit": tuple(omit)}


def voc_xml(filename: Optional[str], size: Optional[Tuple[int, int]], objects: List[dict],
            folder: str = "JPEGImages") -> str:
    """A Pascal VOC annotation. `size` is `(height, width)` (None: no <size> element)."""
    lines = ["<annotation>", f"  <folder>{folder}</folder>"]
    if filename is not None:
        lines.append(f"  <filename>{filename}</filename>")
    if size is not None:
        lines += ["  <size>", f"    <width>{size[1]}</width>", f"    <height>{size[0]}</height>",
                  "    <depth>3</depth>", "  </size>"]
    for obj in objects:
        lines += ["  <object>", f"    <name>{obj['name']}</name>", "    <pose>Unspecified</pose>",
                  "    <truncated>0</truncated>", f"    <difficult>{obj['difficult']}</difficult>",
                  "    <bndbox>"]
        for key in ("xmin", "ymin", "xmax", "ymax"):
            if key not in obj["omit"]:
                lines.append(f"      <{key}>{obj['bndbox'][key]}</{key}>")
        lines += ["    </bndbox>", "  </object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def write_voc(path: Path, filename: Optional[str], size: Optional[Tuple[int, int]],
              objects: List[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(voc_xml(filename, size, objects))
    return path


def write_coco(path: Path, images: List[dict], annotations: List[dict],
               categories: List[dict]) -> Path:
    """An instances file; annotations get an `id` and `iscrowd` 0 unless given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    annotations = [{"id": index + 1, "iscrowd": 0, **annotation}
                   for index, annotation in enumerate(annotations)]
    for annotation in annotations:
        try:
            annotation.setdefault("area", abs(float(annotation["bbox"][2]) *
                                              float(annotation["bbox"][3])))
        except (KeyError, TypeError, ValueError, IndexError):
            pass  # a deliberately broken bbox
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return path


def snapshot(root: Path) -> Dict[str, tuple]:
    """Every entry under `root` (and `root` itself): relative path -> (is_dir, size, mtime_ns),
    to check that reading a dataset wrote nothing into its folder."""
    entries = {".": (True, 0, os.stat(root).st_mtime_ns)}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            stat = os.stat(path)
            entries[str(path.relative_to(root))] = (
                path.is_dir(), 0 if path.is_dir() else stat.st_size, stat.st_mtime_ns)
    return entries


def examples(source, split: str) -> List[dict]:
    """The decoded examples of `split` as NumPy dicts, in the source's order."""
    from centernet.data.sources import decode_record

    return [{key: np.asarray(value) for key, value in example.items()}
            for example in source.read(split).map(decode_record).as_numpy_iterator()]


def assert_pixels(image: np.ndarray, box, rgb, tolerance: int = 0, margin: int = 0) -> None:
    """Every pixel inside integer box `(x1, y1, x2, y2)` (shrunk by `margin`) is `rgb`
    within `tolerance`."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    inside = image[y1 + margin:y2 - margin, x1 + margin:x2 - margin].astype(int)
    assert inside.size, box
    difference = np.abs(inside - np.asarray(rgb)).max()
    assert difference <= tolerance, f"pixels of box {box} differ from {rgb} by {difference}"


def assert_ring(image: np.ndarray, box, rgb) -> None:
    """The one-pixel ring just outside integer box `(x1, y1, x2, y2)` (where it lies inside the
    image) is exactly `rgb` (the background), so the box neither overshoots nor undershoots
    the drawn rectangle."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    height, width = image.shape[:2]
    ring = []
    if y1 - 1 >= 0:
        ring.append(image[y1 - 1, x1:x2])
    if y2 < height:
        ring.append(image[y2, x1:x2])
    if x1 - 1 >= 0:
        ring.append(image[y1:y2, x1 - 1])
    if x2 < width:
        ring.append(image[y1:y2, x2])
    for pixels in ring:
        assert (pixels == np.asarray(rgb, np.uint8)).all(), f"ring of box {box} is not {rgb}"


def parse_voc_independently(path: Path, class_names: Sequence[str]) -> dict:
    """Boxes (spec: x1 = xmin - 1, x2 = xmax), labels and difficult flags of a VOC XML file,
    read with xml.etree only."""
    root = ET.parse(path).getroot()
    boxes, labels, difficult = [], [], []
    for obj in root.findall("object"):
        xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{key}"))
                                  for key in ("xmin", "ymin", "xmax", "ymax"))
        if xmin == xmax or ymin == ymax:
            continue
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
        labels.append(class_names.index(obj.findtext("name").strip()))
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
    return {"boxes": np.asarray(boxes, np.float64).reshape(-1, 4),
            "labels": np.asarray(labels), "difficult": np.asarray(difficult, bool),
            "height": int(root.findtext("size/height")),
            "width": int(root.findtext("size/width"))}
