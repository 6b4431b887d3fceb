"""COCO-JSON folders, parsed with pycocotools' `COCO`.

    ROOT/annotations/instances_<split>.json    images, annotations, categories
    ROOT/<split>/<file_name>                   the images

`dataset.annotation_file` and `dataset.image_dir` replace both paths (`{split}` in them becomes
the split's name). Boxes are COCO's `[x, y, width, height]` in pixels; image ids are the file's
own; category ids need not be contiguous (the source maps them to `0..C-1` and back).
`iscrowd` boxes become ignore regions.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from pycocotools.coco import COCO

from centernet.data.annotations import RawImage, RawObject
from centernet.data.images import ImageFinder
from centernet.errors import DataError


def split_paths(root: Optional[str], split: str, annotation_file: Optional[str],
                image_dir: Optional[str]) -> Tuple[Path, Path]:
    """`(annotation file, image folder)` of `split`."""
    annotations = (Path(annotation_file.replace("{split}", split)) if annotation_file
                   else Path(root) / "annotations" / f"instances_{split}.json")
    images = (Path(image_dir.replace("{split}", split)) if image_dir
              else Path(root) / split)
    return annotations, images


def load(path: Path) -> COCO:
    """The annotation file as a pycocotools `COCO` index.

    Raises:
        DataError: the file is missing, is not JSON, or is not a COCO instances file (the
            message names the file and what is wrong).
    """
    if not path.is_file():
        raise DataError(f"{path}: COCO annotation file not found")
    coco = COCO()
    try:
        with open(path, "rb") as file:
            dataset = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a JSON file ({error})") from error
    problem = _structure_problem(dataset)
    if problem:
        raise DataError(f"{path}: not a COCO instances file: {problem}")
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _structure_problem(dataset) -> str:
    """What keeps `dataset` from being a COCO instances dict ('' when nothing)."""
    if not isinstance(dataset, dict):
        return f"the top level is a {type(dataset).__name__}, not an object"
    for key in ("images", "categories"):
        if not isinstance(dataset.get(key), list):
            return f"it has no {key!r} list"
    if not isinstance(dataset.get("annotations", []), list):
        return "'annotations' is not a list"
    for key, required in (("images", ("id", "file_name")), ("categories", ("id", "name")),
                          ("annotations", ("image_id", "category_id"))):
        for entry in dataset.get(key, []):
            if not isinstance(entry, dict) or any(field not in entry for field in required):
                return f"an entry of {key!r} lacks {', '.join(required)}: {str(entry)[:80]}"
            for field in required:
                if field.endswith("id") and not _is_int(entry[field]):
                    return f"{key} entry {str(entry)[:80]}: {field} is not an integer"
    for key, field in (("images", "id"), ("categories", "id"), ("categories", "name")):
        seen = {}
        for entry in dataset[key]:
            value = entry[field]
            if value in seen:
                return (f"two {key} entries have {field} {value!r}: {str(seen[value])[:60]} "
                        f"and {str(entry)[:60]}")
            seen[value] = entry
    return ""


def _is_int(value) -> bool:
    """A JSON integer (not a bool, a float with a fraction, a string or a list)."""
    return isinstance(value, int) and not isinstance(value, bool) or (
        isinstance(value, float) and value.is_integer())


def categories(coco: COCO) -> Tuple[List[str], List[int]]:
    """Category names and ids, in id order."""
    ordered = sorted(coco.dataset["categories"], key=lambda c: int(c["id"]))
    return [str(c["name"]) for c in ordered], [int(c["id"]) for c in ordered]


def _box(annotation: dict) -> Tuple[Optional[Tuple[float, float, float, float]], str]:
    bbox = annotation.get("bbox")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None, f"bbox={bbox!r} is not four numbers"
    if any(v != v or abs(v) == float("inf") for v in (x, y, w, h)):
        return None, f"bbox={bbox!r} is not finite"
    return (x, y, x + w, y + h), ""


def _size(image: dict) -> Optional[Tuple[int, int]]:
    try:
        height, width = int(image["height"]), int(image["width"])
    except (KeyError, TypeError, ValueError):
        return None
    return (height, width) if height > 0 and width > 0 else None


def read_split(coco: COCO, annotation_file: Path, image_dir: Path) -> List[RawImage]:
    """Every image of the file, in file order, with its annotations (class key: category id).
    An object's index is its position among its image's annotations."""
    finder = ImageFinder()
    images = []
    by_image: Dict[int, list] = coco.imgToAnns
    for image in coco.dataset["images"]:
        file_name = str(image["file_name"])
        name = Path(file_name)
        # Some files name the split folder too ("train/0001.jpg" with images in DIR/train/).
        path = (finder.find(image_dir / name.parent, name.name, name.stem) or
                finder.find(image_dir, name.name, name.stem))
        objects = []
        for index, annotation in enumerate(by_image.get(image["id"], [])):
            box, problem = _box(annotation)
            objects.append(RawObject(index, int(annotation["category_id"]), box,
                                     bool(annotation.get("iscrowd", 0)), problem))
        images.append(RawImage(f"{annotation_file} (image id {int(image['id'])}, {file_name})",
                               path, int(image["id"]), _size(image), objects))
    return images
