"""How well the label audit finds known errors: inject them into a copy of a Pascal VOC
folder's training split, audit, and score the audit's findings against what was injected.
`shapes_folder` writes a folder to inject into whose labels are complete and exact (the
built-in shapes scenes), so that a real dataset's own omissions can be told from the audit's.

`inject` writes the copy (annotations rewritten, images linked, other splits untouched) and
`injected.json`: with a fixed seed, `fraction` of the split's objects (difficult ones aside)
removed, as many given another class, as many shifted by half their width and half their height
(clipped to the image), and `on_background` boxes of a random class and a typical size placed on the
flattest of a few random places that overlap no labelled box. `score` takes the audit's
`label_issues.json` and, per kind, the top N findings of that kind (N the number injected):
precision (of those N, how many are an injected error of that kind) and recall (of the injected, how
many are among them), and overall the top N findings of any kind against every injected error.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np

from centernet.audit.issues import (BADLY_PLACED, KINDS, MISSING, ON_NOTHING, WRONG_CLASS,
                                    iou_matrix)
from centernet.data import voc
from centernet.data.shapes_scene import CLASS_NAMES, generate_example

TRUTH_FILE = "injected.json"
MATCH_IOU = 0.5  # a missing-box finding finds a removed box when their IoU is at least this
CANDIDATES = 50  # random places tried for each label put on background
# the scenes of the `dataset=shapes` preset (configs/dataset/shapes.yaml), written by
# `shapes_folder`
SHAPES_PRESET = {"image_size": 128, "max_shapes": 10, "max_size": 0.4}


def shapes_folder(out: Path, images: Dict[str, int], seed: int = 0) -> Path:
    """Write the built-in `shapes` scenes of the `dataset=shapes` preset (`SHAPES_PRESET`:
    128 px, 1-10 objects of 0.08-0.4 of the side; dataset seed `seed`) as a Pascal VOC folder
    in `out`: `images` per split (`train`, `val`, `test`), each example `i` as
    `<split>_<i:05d>.jpg` (JPEG quality 95, like a folder of photographs) and `.xml`, and
    `ImageSets/Main/<split>.txt`. Its labels are complete and exact by construction (the
    scenes' own boxes, whole pixels), so an audit of an injected copy measures the audit,
    not the annotators' omissions. A folder left half-written by a failure is refused as
    existing: delete it and call again."""
    from centernet.data.shapes import SPLITS, shapes_config  # TFDS: only for this folder

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; give a new folder")
    lists = out / "ImageSets" / "Main"
    for folder in (out / "JPEGImages", out / "Annotations", lists):
        folder.mkdir(parents=True)
    tfds_split = {"train": "train", "val": "validation", "test": "test"}
    config = shapes_config(**SHAPES_PRESET, seed=seed)
    for split, count in images.items():
        names = [f"{split}_{i:05d}" for i in range(count)]
        for i, name in enumerate(names):
            example = generate_example(config, SPLITS[tfds_split[split]], i)
            bgr = cv2.imdecode(np.frombuffer(example["image"], np.uint8), cv2.IMREAD_COLOR)
            cv2.imwrite(str(out / "JPEGImages" / f"{name}.jpg"), bgr,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            root = ET.fromstring(f"<annotation><filename>{name}.jpg</filename><size><width>"
                                 f"{config.image_size}</width><height>{config.image_size}"
                                 "</height><depth>3</depth></size></annotation>")
            boxes = example["objects"]["bbox"] * config.image_size  # ymin xmin ymax xmax
            for (y1, x1, y2, x2), label in zip(boxes, example["objects"]["label"]):
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = CLASS_NAMES[label]
                ET.SubElement(obj, "difficult").text = "0"
                box = ET.SubElement(obj, "bndbox")  # continuous [x1, x2) -> 1-based x1 + 1..x2
                for tag, value in zip(("xmin", "ymin", "xmax", "ymax"),
                                      (x1 + 1, y1 + 1, x2, y2)):
                    ET.SubElement(box, tag).text = np.format_float_positional(value, trim="-")
            ET.ElementTree(root).write(out / "Annotations" / f"{name}.xml")
        (lists / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
    return out


def _box(element: ET.Element) -> List[float]:
    box = element.find("bndbox")
    return [float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax")]


def _set_box(element: ET.Element, box: List[float]) -> None:
    for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
        element.find("bndbox").find(tag).text = str(int(round(value)))


def _size(tree: ET.ElementTree) -> tuple:
    size = tree.getroot().find("size")
    return int(size.findtext("width")), int(size.findtext("height"))


def inject(root: Path, out: Path, split: str = "train", fraction: float = 0.05,
           on_background: int = 10, seed: int = 0) -> List[dict]:
    """Write the corrupted copy of `root` into `out` and return (and write into
    `out/injected.json`) one record per injected error: `kind`, `annotation` (the copy's XML),
    `object_index` (in the copy's file; null for a removed box), `class`, `box` (the removed
    box, or the label as it now stands) and `original` (class and box before)."""
    root, out = Path(root), Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; give a new folder")
    rng = np.random.default_rng(seed)
    files, image_dir = voc.annotation_files(root, split)
    trees = {path: ET.parse(path) for path in files}
    names = sorted({obj.findtext("name") for tree in trees.values()
                    for obj in tree.getroot().findall("object")})
    eligible = [(path, n) for path, tree in trees.items()
                for n, obj in enumerate(tree.getroot().findall("object"))
                if obj.findtext("difficult", "0").strip() != "1"]
    count = int(round(fraction * len(eligible)))
    chosen = rng.permutation(len(eligible))[:3 * count]
    plan = {eligible[i]: kind for kinds, kind in ((chosen[:count], MISSING),
                                                  (chosen[count:2 * count], WRONG_CLASS),
                                                  (chosen[2 * count:], BADLY_PLACED))
            for i in kinds}
    records = []
    shutil.copytree(root, out, ignore=shutil.ignore_patterns("JPEGImages"))
    for folder, _, names_in in os.walk(out):  # a read-only source gives a read-only copy
        for path in [folder] + [os.path.join(folder, n) for n in names_in]:
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)
    os.symlink((root / "JPEGImages").resolve(), out / "JPEGImages")
    copy_of = {path: out / path.relative_to(root) for path in files}
    for path, tree in trees.items():
        objects = tree.getroot().findall("object")
        kept = 0
        width, height = _size(tree)
        for n, obj in enumerate(objects):
            kind = plan.get((path, n))
            original = {"class": obj.findtext("name"), "box": _box(obj)}
            if kind == MISSING:
                tree.getroot().remove(obj)
                records.append({"kind": kind, "annotation": str(copy_of[path]),
                                "object_index": None, **original, "original": original})
                continue
            if kind == WRONG_CLASS:
                obj.find("name").text = str(rng.choice([c for c in names
                                                        if c != original["class"]]))
            elif kind == BADLY_PLACED:
                x1, y1, x2, y2 = original["box"]
                dx = (x2 - x1) / 2 * rng.choice([-1, 1])
                dy = (y2 - y1) / 2 * rng.choice([-1, 1])
                # VOC corners are 1-based and inclusive: a box stays within 1..width
                shift_x = float(np.clip(dx, 1 - x1, width - x2))
                shift_y = float(np.clip(dy, 1 - y1, height - y2))
                _set_box(obj, [x1 + shift_x, y1 + shift_y, x2 + shift_x, y2 + shift_y])
            if kind is not None:
                records.append({"kind": kind, "annotation": str(copy_of[path]),
                                "object_index": kept, "class": obj.findtext("name"),
                                "box": _box(obj), "original": original})
            kept += 1
    records += _add_background_boxes(trees, copy_of, image_dir, names, on_background, rng)
    for path, tree in trees.items():
        tree.write(copy_of[path])
    (out / TRUTH_FILE).write_text(json.dumps(records, indent=1))
    return records


def _add_background_boxes(trees: Dict[Path, ET.ElementTree], copy_of: Dict[Path, Path],
                          image_dir: Optional[Path], names: List[str], count: int,
                          rng) -> List[dict]:
    """`count` labels of a random class, each the size of a random existing label, put on
    background: of `CANDIDATES` random places (random image, random size) that overlap no
    label, the flattest (least grey-level deviation), since unlabelled objects lie between the
    labelled ones in some datasets (BCCD's red cells)."""
    sizes = [(b[2] - b[0], b[3] - b[1]) for tree in trees.values()
             for b in map(_box, tree.getroot().findall("object"))]
    paths = list(trees)
    grey: Dict[Path, np.ndarray] = {}
    records = []
    while len(records) < count:
        places = []
        for _ in range(CANDIDATES):
            path = paths[rng.integers(len(paths))]
            width, height = _size(trees[path])
            w, h = sizes[rng.integers(len(sizes))]
            x1, y1 = rng.uniform(1, width - w), rng.uniform(1, height - h)  # VOC: 1..width
            box = [x1, y1, x1 + w, y1 + h]
            existing = np.array([_box(o) for o in trees[path].getroot().findall("object")])
            if len(existing) and iou_matrix([box], existing.reshape(-1, 4)).max() > 0:
                continue
            if path not in grey:
                image = (image_dir or path.parent) / trees[path].getroot().findtext("filename")
                grey[path] = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE).astype(np.float64)
            patch = grey[path][int(y1) - 1:int(y1 + h), int(x1) - 1:int(x1 + w)]
            places.append((float(patch.std()), path, box))
        if not places:
            continue
        _, path, box = min(places, key=lambda place: place[0])
        tree = trees[path]
        obj = ET.fromstring(ET.tostring(tree.getroot().findall("object")[0]))
        obj.find("name").text = str(rng.choice(names))
        _set_box(obj, box)
        if obj.find("difficult") is not None:
            obj.find("difficult").text = "0"
        index = len(tree.getroot().findall("object"))
        tree.getroot().append(obj)
        records.append({"kind": ON_NOTHING, "annotation": str(copy_of[path]),
                        "object_index": index, "class": obj.findtext("name"), "box": _box(obj),
                        "original": None})
    return records


def _finds(issue: dict, truth: dict) -> bool:
    """Whether a finding points at an injected error (same file; the same object, or for a
    removed box a suggested box at IoU >= `MATCH_IOU`)."""
    if Path(issue["annotation"]).name != Path(truth["annotation"]).name:
        return False
    if truth["object_index"] is None:
        return (issue["kind"] == MISSING and
                iou_matrix([issue["suggestion"]["box"]], [truth["box"]])[0, 0] >= MATCH_IOU)
    return issue["object_index"] == truth["object_index"]


def _precision_recall(findings: List[dict], truths: List[dict]) -> dict:
    found = [[t for t, truth in enumerate(truths) if _finds(issue, truth)]
             for issue in findings]
    hits = sum(bool(f) for f in found)
    recalled = len({t for f in found for t in f})
    return {"injected": len(truths), "top": len(findings),
            "precision": hits / len(findings) if findings else float("nan"),
            "recall": recalled / len(truths) if truths else float("nan")}


def score(issues: dict, truths: List[dict]) -> Dict[str, dict]:
    """Per kind and `overall`: precision and recall of the top N findings (N = injected)."""
    result = {}
    for kind in KINDS:
        wanted = [t for t in truths if t["kind"] == kind]
        of_kind = [i for i in issues["issues"] if i["kind"] == kind][:len(wanted)]
        result[kind] = _precision_recall(of_kind, wanted)
    result["overall"] = _precision_recall(issues["issues"][:len(truths)], truths)
    return result
