"""The split cache (`centernet/data/split_cache.py`): a start whose annotation files, folders
and images are unchanged takes each split's checked index, report cases and class names from
it without parsing a file or decoding an image, and gets exactly what parsing gives; any
change to an input (an annotation file edited in place, an image touched, an image added
where an annotation named a missing one, a VOC XML rewritten with its folder's times kept)
or other settings parse the split again; a damaged cache file is named and replaced."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from centernet.config import DatasetConfig
from centernet.data import coco, voc
from centernet.data.sources import build_source, check_splits
from folders import RED, voc_object, write_coco, write_image, write_voc


@pytest.fixture
def parsed(monkeypatch) -> List[str]:
    """The annotation sources parsed (COCO files loaded, VOC XML files read), in order."""
    names: List[str] = []
    load, parse_xml = coco.load, voc.parse_xml

    def counted_load(path, *args, **kwargs):
        names.append(Path(path).name)
        return load(path, *args, **kwargs)

    def counted_parse(path, *args, **kwargs):
        names.append(Path(path).name)
        return parse_xml(path, *args, **kwargs)

    monkeypatch.setattr(coco, "load", counted_load)
    monkeypatch.setattr(voc, "parse_xml", counted_parse)
    return names


def coco_folder(root: Path, missing: str = "") -> None:
    """Train: three images with a box each, `missing` (a file name) annotated but not written;
    val: one image. Category ids 3 and 7."""
    for split, names in (("train", ["a.jpg", "b.jpg", "c.jpg"]), ("val", ["v.jpg"])):
        images, annotations = [], []
        for k, name in enumerate(names):
            if name != missing:
                write_image(root / split / name, rects=[(10, 5, 30, 25, RED)])
            images.append({"id": k + 1, "file_name": name, "height": 48, "width": 64})
            annotations.append({"image_id": k + 1, "category_id": 3 if k % 2 else 7,
                                "bbox": [10, 5, 20, 20]})
        write_coco(root / "annotations" / f"instances_{split}.json", images, annotations,
                   [{"id": 3, "name": "three"}, {"id": 7, "name": "seven"}])


def start(config: DatasetConfig) -> Dict[str, object]:
    """What a start learns: the class names, the report and each split's index, and the
    line it prints about them."""
    source = build_source(config)
    check_splits(source, [config.train_split, config.val_split])
    return {"names": source.class_names, "ids": source.category_ids,
            "report": json.dumps(source.report.to_dict(), sort_keys=True),
            **{split: {key: np.asarray(value).tolist()
                       for key, value in vars(source.index(split)).items()}
               for split in (config.train_split, config.val_split)},
            "line": source.index_line()}


def coco_config(root: Path, **kwargs) -> DatasetConfig:
    return DatasetConfig(source="coco_json", root=str(root), val_split="val", **kwargs)


def without_line(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "line"}


def test_an_unchanged_coco_folder_starts_from_the_cache_with_what_parsing_gives(
        tmp_path, cache_dir, parsed):
    root = tmp_path / "data"
    coco_folder(root, missing="b.jpg")
    first = start(coco_config(root))
    assert parsed == ["instances_train.json", "instances_val.json"]
    assert "image_missing" in first["report"]
    parsed.clear()
    second = start(coco_config(root))
    assert parsed == []  # neither file loaded: categories and splits from the cache
    assert without_line(second) == without_line(first)
    assert second["line"] == ("index: 4 images, 4 in splits kept by the split cache "
                              "(annotations and images unchanged)")
    assert without_line(start(coco_config(root, cache=False))) == without_line(first)
    assert list((cache_dir / "splits").glob("*.npz"))


def test_any_changed_input_parses_the_split_again(tmp_path, cache_dir, parsed):
    root = tmp_path / "data"
    coco_folder(root, missing="b.jpg")
    first = start(coco_config(root))
    annotation = root / "annotations" / "instances_train.json"
    edited = json.loads(annotation.read_text())
    edited["annotations"][0]["bbox"] = [20, 10, 10, 10]
    stat = annotation.stat()
    annotation.write_text(json.dumps(edited))
    os.utime(annotation, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # only its ctime tells
    parsed.clear()
    moved = start(coco_config(root))
    assert parsed == ["instances_train.json"]  # val unchanged: from the cache
    assert moved["train"] == without_line(start(coco_config(root, cache=False)))["train"]
    np.testing.assert_allclose(first["train"]["boxes"][0], [5 / 48, 10 / 64, 25 / 48, 30 / 64])
    np.testing.assert_allclose(moved["train"]["boxes"][0],
                               [10 / 48, 20 / 64, 20 / 48, 30 / 64])  # the edited box

    write_image(root / "train" / "b.jpg")  # the missing image appears: its folder changed
    parsed.clear()
    found = start(coco_config(root))
    assert parsed == ["instances_train.json"] and "image_missing" not in found["report"]
    assert len(found["train"]["paths"]) == 3

    touched = root / "train" / "c.jpg"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    parsed.clear()
    again = start(coco_config(root))
    assert parsed == ["instances_train.json"]
    assert "1 checked (new or changed: " in again["line"]

    parsed.clear()
    start(coco_config(root, classes=["seven"]))  # other settings: another entry
    assert parsed == ["instances_train.json", "instances_val.json"]


def test_a_voc_xml_rewritten_in_place_is_parsed_again(tmp_path, cache_dir, parsed):
    root = tmp_path / "voc"
    for stem, split in (("one", "train"), ("two", "train"), ("three", "val")):
        path = root / "JPEGImages" / f"{stem}.jpg"
        write_image(path, rects=[(10, 5, 30, 25, RED)])
        write_voc(root / "Annotations" / f"{stem}.xml", path.name, (48, 64),
                  [voc_object("cat", 11, 6, 30, 25)])
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        with open(listing, "a") as file:
            file.write(f"{stem}\n")
    config = DatasetConfig(source="voc_xml", root=str(root), val_split="val")
    first = start(config)
    assert first["names"] == ["cat"]
    parsed.clear()
    assert without_line(start(config)) == without_line(first) and parsed == []
    folder = (root / "Annotations").stat()
    write_voc(root / "Annotations" / "two.xml", "two.jpg", (48, 64),
              [voc_object("dog", 11, 6, 30, 25)])
    os.utime(root / "Annotations", ns=(folder.st_atime_ns, folder.st_mtime_ns))
    parsed.clear()
    renamed = start(config)
    assert "two.xml" in parsed
    assert renamed["names"] == ["cat", "dog"]


def test_a_damaged_split_cache_file_is_named_and_written_anew(tmp_path, cache_dir, parsed,
                                                              caplog):
    root = tmp_path / "data"
    coco_folder(root)
    first = start(coco_config(root))
    damaged = sorted((cache_dir / "splits").glob("*.npz"))
    for path in damaged:
        path.write_bytes(path.read_bytes()[:200])
    parsed.clear()
    assert without_line(start(coco_config(root))) == without_line(first)
    assert "instances_train.json" in parsed
    assert f"ignoring the split cache {damaged[0]}" in caplog.text or \
        f"ignoring the split cache {damaged[1]}" in caplog.text
    parsed.clear()
    start(coco_config(root))
    assert parsed == []
