"""Bad input in users' folders: every kind of defect is repaired or its image/object left out,
and recorded (split, file, object, kind, action); the usable examples still decode; with
`dataset.strict=true` the first skip or drop is a `DataError` naming the file and the kind;
whole-dataset problems (missing root, a JSON that is not COCO, a split with nothing usable) fail
at once naming the path. Nothing in the dataset folder is written to."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from centernet.config import DatasetConfig
from centernet.data.sources import build_source
from centernet.errors import DataError
from conftest import run_script
from folders import (BACKGROUND, BLUE, GREEN, RED, assert_pixels, assert_ring, encode, examples,
                     picture, snapshot, voc_object, write_coco, write_image, write_voc)

ATOL = 1e-3

# The action each kind gets, from the spec (not read from the implementation).
ACTION = {
    "image_missing": "skipped", "image_unreadable": "skipped",
    "annotation_unparsable": "skipped", "image_converted": "repaired",
    "size_missing": "repaired", "size_mismatch": "repaired", "coordinate_invalid": "dropped",
    "class_unknown": "dropped", "box_inverted": "repaired", "box_clipped": "repaired",
    "box_outside": "dropped", "box_empty": "dropped", "no_objects": "kept",
    "too_many_objects": "kept", "class_excluded": "excluded", "duplicate_image": "skipped",
}


def voc_config(root, **kwargs) -> DatasetConfig:
    return DatasetConfig(**{"source": "voc_xml", "root": str(root), "train_split": "train",
                            "val_split": "val", "classes": ["cat", "dog"], **kwargs})


def coco_config(root, **kwargs) -> DatasetConfig:
    return DatasetConfig(**{"source": "coco_json", "root": str(root), "train_split": "train",
                            "val_split": "val", **kwargs})


def good_voc(folder: Path, stem: str = "a_good") -> None:
    """A clean image: a cat at [10, 30) x [5, 25)."""
    write_image(folder / f"{stem}.png", rects=[(10, 5, 30, 25, RED)])
    write_voc(folder / f"{stem}.xml", f"{stem}.png", (48, 64), [voc_object("cat", 11, 6, 30, 25)])


def check_good(example: dict) -> None:
    np.testing.assert_allclose(example["boxes"], [[10, 5, 30, 25]], atol=ATOL)
    np.testing.assert_array_equal(example["labels"], [0])
    assert_pixels(example["image"], example["boxes"][0], RED)
    assert_ring(example["image"], example["boxes"][0], BACKGROUND)


def only_case(source, kind: str) -> object:
    cases = [case for case in source.report.cases if case.kind == kind]
    assert len(cases) == 1, (kind, source.report.cases)
    case = cases[0]
    assert case.action == ACTION[kind], case
    assert source.report.counts()[kind] == 1
    assert any(kind in line and ACTION[kind] in line for line in source.report.summary())
    assert case.kind in source.report.to_dict()["counts"]
    return case


def read(root: Path, split: str = "train", **kwargs):
    """Build the source, read `split`; returns (source, decoded examples); checks that nothing
    in the folder was written."""
    before = snapshot(root)
    config = kwargs.pop("config", voc_config)
    max_objects = kwargs.pop("max_objects", None)
    source = build_source(config(root, **kwargs), max_objects=max_objects)
    result = examples(source, split)
    assert source.num_examples(split) == len(result)
    assert snapshot(root) == before
    return source, result


def assert_strict_error(root: Path, kind: str, file_name: str, split: str = "train",
                        **kwargs) -> None:
    config = kwargs.pop("config", voc_config)
    max_objects = kwargs.pop("max_objects", None)
    before = snapshot(root)
    with pytest.raises(DataError) as error:
        source = build_source(config(root, strict=True, **kwargs), max_objects=max_objects)
        source.num_examples(split)
    message = str(error.value)
    assert kind in message and file_name in message, message
    assert "\n" not in message
    assert snapshot(root) == before


def assert_strict_accepts(root: Path, kind: str, split: str = "train", **kwargs) -> None:
    """Repairs and notes are not errors under strict: the case is still recorded."""
    config = kwargs.pop("config", voc_config)
    max_objects = kwargs.pop("max_objects", None)
    source = build_source(config(root, strict=True, **kwargs), max_objects=max_objects)
    examples(source, split)
    assert source.report.counts().get(kind) == 1


# ------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------


def _bad_image_folder(tmp_path: Path, name: str, data: bytes) -> Path:
    root = tmp_path / "voc"
    good_voc(root / "train")
    (root / "train" / name).write_bytes(data)
    write_voc(root / "train" / f"{Path(name).stem}.xml", name, (48, 64),
              [voc_object("dog", 11, 6, 30, 25)])
    good_voc(root / "train", "c_good")
    return root


def _corrupt_png() -> bytes:
    data = bytearray(encode(picture(), ".png"))
    start = data.find(b"IDAT") + 8
    for index in range(start, start + 32):
        data[index] ^= 0x5A
    return bytes(data)


@pytest.mark.parametrize("name, data", [
    ("b_corrupt.png", _corrupt_png()),
    ("b_random.jpg", bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))),
    ("b_truncated.jpg", encode(picture(rects=[(10, 5, 30, 25, RED)]), ".jpg")[:700]),
    ("b_text.jpg", b"this is not an image, it is a note somebody saved as .jpg\n"),
    ("b_empty.png", b""),
], ids=["corrupt_png", "random_bytes", "truncated_jpeg", "text_file", "empty_file"])
def test_unreadable_image_is_skipped(tmp_path, name, data):
    root = _bad_image_folder(tmp_path, name, data)
    source, result = read(root)
    case = only_case(source, "image_unreadable")
    assert Path(case.file).name == name and case.split == "train" and case.object is None
    assert [int(e["image_id"]) for e in result] == [0, 2]  # positions in the listing
    for example in result:
        check_good(example)
    assert len(source.report.cases) == 1
    assert_strict_error(root, "image_unreadable", name)


def test_missing_image_is_skipped(tmp_path):
    root = tmp_path / "voc"
    good_voc(root / "train")
    write_voc(root / "train" / "b_missing.xml", "ghost.jpg", (48, 64),
              [voc_object("cat", 11, 6, 30, 25)])
    good_voc(root / "train", "c_good")
    source, result = read(root)
    case = only_case(source, "image_missing")
    assert Path(case.file).name == "b_missing.xml"
    assert [int(e["image_id"]) for e in result] == [0, 2]
    for example in result:
        check_good(example)
    assert_strict_error(root, "image_missing", "b_missing.xml")


def test_missing_image_in_imagesets_layout_is_skipped(tmp_path):
    root = tmp_path / "voc"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("one\ntwo\n")
    write_image(root / "JPEGImages" / "two.png", rects=[(10, 5, 30, 25, RED)])
    write_voc(root / "Annotations" / "one.xml", "one.jpg", (48, 64),
              [voc_object("cat", 11, 6, 30, 25)])
    write_voc(root / "Annotations" / "two.xml", "two.png", (48, 64),
              [voc_object("cat", 11, 6, 30, 25)])
    source, result = read(root)
    assert Path(only_case(source, "image_missing").file).name == "one.xml"
    assert [int(e["image_id"]) for e in result] == [1]
    check_good(result[0])


# ------------------------------------------------------------------------------------------
# Conversions: greyscale, RGBA, palette, 16-bit
# ------------------------------------------------------------------------------------------


def _grey() -> tuple:
    """A greyscale PNG and its RGB reading (grey copied into three channels)."""
    grey = np.full((48, 64), 70, np.uint8)
    grey[5:25, 10:30] = 200
    return encode(grey, ".png"), np.repeat(grey[..., None], 3, axis=2)


def _grey_jpeg() -> tuple:
    """A greyscale JPEG; expected: its grey decoded by PIL in three channels (JPEG decoders may
    differ by a few levels near edges: compared with a tolerance, channels equal exactly)."""
    grey = np.full((48, 64), 70, np.uint8)
    grey[5:25, 10:30] = 200
    data = encode(grey, ".jpg")
    image = Image.open(io.BytesIO(data))
    assert image.mode == "L"
    return data, np.asarray(image.convert("RGB"))


def _rgba() -> tuple:
    rgb = picture(rects=[(10, 5, 30, 25, RED)])
    alpha = np.full((48, 64, 1), 255, np.uint8)
    alpha[:24] = 40  # partly transparent: the RGB values must stay, alpha is dropped
    data = encode(np.concatenate([rgb, alpha], axis=2), ".png")
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return data, expected


def _palette() -> tuple:
    rgb = picture(rects=[(10, 5, 30, 25, RED)])
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(buffer,
                                                                                      "PNG")
    data = buffer.getvalue()
    image = Image.open(io.BytesIO(data))
    assert image.mode == "P"
    return data, np.asarray(image.convert("RGB"))


def _sixteen_bit() -> tuple:
    """A 16-bit RGB PNG whose values are 257 * v + 100 (v < 156): the 8-bit reading is v by
    either usual rule (high byte, or value / 257 rounded) and never the low byte (v + 100)."""
    levels = np.zeros((48, 64, 3), np.int64)
    levels[:] = (20, 60, 100)
    levels[5:25, 10:30] = (150, 10, 40)
    wide = (levels * 257 + 100).astype(np.uint16)
    data = encode(wide, ".png")
    return data, levels.astype(np.uint8)


def _sixteen_bit_grey() -> tuple:
    grey = np.full((48, 64), 30, np.int64)
    grey[5:25, 10:30] = 140
    data = encode((grey * 257 + 100).astype(np.uint16), ".png")
    return data, np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


@pytest.mark.parametrize("make, name", [(_grey, "b_grey.png"), (_grey_jpeg, "b_grey.jpg"),
                                        (_rgba, "b_rgba.png"), (_palette, "b_palette.png"),
                                        (_sixteen_bit, "b_16bit.png"),
                                        (_sixteen_bit_grey, "b_16bit_grey.png")],
                         ids=["grey_png", "grey_jpeg", "rgba", "palette", "16bit_rgb",
                              "16bit_grey"])
def test_converted_image_is_decoded_as_8bit_rgb(tmp_path, make, name):
    data, expected = make()
    root = _bad_image_folder(tmp_path, name, data)
    source, result = read(root)
    case = only_case(source, "image_converted")
    assert Path(case.file).name == name
    assert [int(e["image_id"]) for e in result] == [0, 1, 2]
    check_good(result[0])
    check_good(result[2])
    converted = result[1]
    assert converted["image"].dtype == np.uint8 and converted["image"].shape == (48, 64, 3)
    if name.endswith(".jpg"):
        image = converted["image"].astype(int)
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
        assert np.abs(image - expected).max() <= 16 and np.abs(image - expected).mean() < 1.5
    else:
        np.testing.assert_array_equal(converted["image"], expected)
    np.testing.assert_allclose(converted["boxes"], [[10, 5, 30, 25]], atol=ATOL)
    np.testing.assert_array_equal(converted["labels"], [1])
    assert len(source.report.cases) == 1
    assert_strict_accepts(root, "image_converted")


# ------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------


def test_xml_without_size_uses_the_real_size(tmp_path):
    root = tmp_path / "voc"
    write_image(root / "train" / "a.png", rects=[(10, 5, 30, 25, RED), (40, 30, 64, 48, GREEN)])
    write_voc(root / "train" / "a.xml", "a.png", None, [voc_object("cat", 11, 6, 30, 25),
                                                        voc_object("dog", 41, 31, 64, 48)])
    source, (example,) = read(root)
    case = only_case(source, "size_missing")
    assert Path(case.file).name == "a.xml"
    np.testing.assert_allclose(example["boxes"], [[10, 5, 30, 25], [40, 30, 64, 48]], atol=ATOL)
    assert_pixels(example["image"], example["boxes"][1], GREEN)
    assert len(source.report.cases) == 1
    assert_strict_accepts(root, "size_missing")


def test_size_disagreeing_with_the_image_trusts_the_image(tmp_path):
    """Annotated 96x128, image 48x64: boxes stay pixels of the real image (not rescaled); a box
    beyond the real image is clipped."""
    root = tmp_path / "voc"
    write_image(root / "train" / "a.png", rects=[(10, 5, 30, 25, RED)])
    write_voc(root / "train" / "a.xml", "a.png", (96, 128), [voc_object("cat", 11, 6, 30, 25),
                                                             voc_object("dog", 41, 31, 100, 90)])
    source, (example,) = read(root)
    case = only_case(source, "size_mismatch")
    assert Path(case.file).name == "a.xml"
    only_case(source, "box_clipped")
    assert example["image"].shape == (48, 64, 3)
    np.testing.assert_allclose(example["boxes"], [[10, 5, 30, 25], [40, 30, 64, 48]], atol=ATOL)
    assert_pixels(example["image"], example["boxes"][0], RED)
    assert_ring(example["image"], example["boxes"][0], BACKGROUND)
    assert_strict_accepts(root, "size_mismatch")


# ------------------------------------------------------------------------------------------
# Objects
# ------------------------------------------------------------------------------------------


def _one_image(tmp_path: Path, bad_object: dict, size=(48, 64)) -> Path:
    """a.xml: a good cat (object 0) and `bad_object` (object 1), in a 48x64 image."""
    root = tmp_path / "voc"
    write_image(root / "train" / "a.png", rects=[(10, 5, 30, 25, RED)])
    write_voc(root / "train" / "a.xml", "a.png", size,
              [voc_object("cat", 11, 6, 30, 25), bad_object])
    return root


def _object_dropped(tmp_path, bad_object, kind):
    root = _one_image(tmp_path, bad_object)
    source, (example,) = read(root)
    case = only_case(source, kind)
    assert Path(case.file).name == "a.xml" and case.object == 1
    assert len(source.report.cases) == 1
    check_good(example)
    assert_strict_error(root, kind, "a.xml")


def test_non_numeric_coordinate_drops_the_object(tmp_path):
    _object_dropped(tmp_path, voc_object("dog", "abc", 6, 40, 25), "coordinate_invalid")


def test_missing_coordinate_drops_the_object(tmp_path):
    _object_dropped(tmp_path, voc_object("dog", 35, 6, 40, 25, omit=["ymax"]),
                    "coordinate_invalid")


def test_class_left_out_of_dataset_classes_is_excluded_even_when_strict(tmp_path):
    """dataset.classes chooses the classes: other objects are not used, reported as
    `class_excluded`, and never a strict error (the user asked for it)."""
    root = _one_image(tmp_path, voc_object("horse", 35, 6, 40, 25))
    for strict in (False, True):
        source = build_source(voc_config(root, strict=strict))
        (example,) = examples(source, "train")
        case = only_case(source, "class_excluded")
        assert Path(case.file).name == "a.xml" and case.object == 1
        check_good(example)


def test_box_wholly_outside_is_dropped(tmp_path):
    _object_dropped(tmp_path, voc_object("dog", 70, 6, 90, 25), "box_outside")


def test_zero_area_box_is_dropped(tmp_path):
    _object_dropped(tmp_path, voc_object("dog", 40, 10, 40, 20), "box_empty")


def test_zero_height_box_is_dropped(tmp_path):
    _object_dropped(tmp_path, voc_object("dog", 40, 10, 50, 10), "box_empty")


@pytest.mark.parametrize("corners, expected", [
    ((50, 31, 70, 60), [49, 30, 64, 48]),    # beyond the right and bottom edges
    ((-4, -9, 20, 15), [0, 0, 20, 15]),      # before the left and top edges
])
def test_box_partly_outside_is_clipped(tmp_path, corners, expected):
    root = _one_image(tmp_path, voc_object("dog", *corners))
    source, (example,) = read(root)
    case = only_case(source, "box_clipped")
    assert Path(case.file).name == "a.xml" and case.object == 1
    np.testing.assert_allclose(example["boxes"], [[10, 5, 30, 25], expected], atol=ATOL)
    np.testing.assert_array_equal(example["labels"], [0, 1])
    assert_strict_accepts(root, "box_clipped")


def test_inverted_box_is_swapped(tmp_path):
    """xmin=30, xmax=11 (and ymin=25, ymax=6) annotates the same pixels 11..30 x 6..25
    (1-based inclusive) as the box written the right way round: [10, 30) x [5, 25)."""
    root = tmp_path / "voc"
    write_image(root / "train" / "a.png", rects=[(10, 5, 30, 25, RED)])
    write_voc(root / "train" / "a.xml", "a.png", (48, 64), [voc_object("cat", 30, 25, 11, 6)])
    source, (example,) = read(root)
    case = only_case(source, "box_inverted")
    assert Path(case.file).name == "a.xml" and case.object == 0
    np.testing.assert_allclose(example["boxes"], [[10, 5, 30, 25]], atol=ATOL)
    assert_pixels(example["image"], example["boxes"][0], RED)
    assert_ring(example["image"], example["boxes"][0], BACKGROUND)
    assert_strict_accepts(root, "box_inverted")


def test_inverted_box_one_pixel_apart_is_not_empty(tmp_path):
    """xmin=21, xmax=20 annotates the two columns 20 and 21 (1-based): [19, 21) after the swap."""
    root = _one_image(tmp_path, voc_object("dog", 21, 31, 20, 40))
    source, (example,) = read(root)
    assert source.report.counts() == {"box_inverted": 1}
    np.testing.assert_allclose(example["boxes"], [[10, 5, 30, 25], [19, 30, 21, 40]], atol=ATOL)


def test_coco_inverted_and_empty_boxes(tmp_path):
    root = tmp_path / "coco"
    write_image(root / "train" / "a.png", rects=[(10, 5, 30, 25, RED)])
    write_coco(root / "annotations" / "instances_train.json",
               [{"id": 4, "file_name": "a.png", "height": 48, "width": 64}],
               [{"image_id": 4, "category_id": 9, "bbox": [30, 25, -20, -20]},
                {"image_id": 4, "category_id": 9, "bbox": [40, 10, 0, 10]},
                {"image_id": 4, "category_id": 9, "bbox": [40, 10, "wide", 10]}],
               [{"id": 9, "name": "cat"}])
    source, (example,) = read(root, config=coco_config)
    assert Path(only_case(source, "box_inverted").file).name.startswith("instances_train.json")
    assert only_case(source, "box_empty").object == 1
    assert only_case(source, "coordinate_invalid").object == 2
    np.testing.assert_allclose(example["boxes"], [[10, 5, 30, 25]], atol=ATOL)
    assert_ring(example["image"], example["boxes"][0], BACKGROUND)
    assert int(example["image_id"]) == 4
    assert_strict_error(root, "box_empty", "instances_train.json", config=coco_config)


def test_image_without_objects_is_kept_as_background(tmp_path):
    root = tmp_path / "voc"
    good_voc(root / "train")
    write_image(root / "train" / "b_empty.png")
    write_voc(root / "train" / "b_empty.xml", "b_empty.png", (48, 64), [])
    source, result = read(root)
    case = only_case(source, "no_objects")
    assert Path(case.file).name == "b_empty.xml"
    assert [int(e["image_id"]) for e in result] == [0, 1]
    check_good(result[0])
    assert result[1]["boxes"].shape == (0, 4) and result[1]["labels"].shape == (0,)
    assert result[1]["is_crowd"].shape == (0,)
    assert_strict_accepts(root, "no_objects")


def test_more_objects_than_max_objects_is_kept_and_noted(tmp_path):
    root = tmp_path / "voc"
    objects = [voc_object("cat", 1 + 10 * i, 1, 8 + 10 * i, 8) for i in range(4)]
    write_image(root / "train" / "a.png", rects=[(10 * i, 0, 8 + 10 * i, 8, BLUE)
                                                 for i in range(4)])
    write_voc(root / "train" / "a.xml", "a.png", (48, 64), objects)
    good_voc(root / "train", "b_good")
    source, result = read(root, max_objects=3)
    case = only_case(source, "too_many_objects")
    assert Path(case.file).name == "a.xml"
    assert len(source.report.cases) == 1
    np.testing.assert_allclose(result[0]["boxes"], [[10 * i, 0, 8 + 10 * i, 8] for i in range(4)],
                               atol=ATOL)
    for box in result[0]["boxes"]:
        assert_pixels(result[0]["image"], box, BLUE)
    check_good(result[1])
    assert_strict_accepts(root, "too_many_objects", max_objects=3)


# ------------------------------------------------------------------------------------------
# Annotation files and whole datasets
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["<annotation><filename>b_bad.png</filename><object>",
                                  "\x00\x01 binary junk",
                                  "<html><body>not VOC</body></html>"],
                         ids=["unclosed", "binary", "wrong_root"])
def test_malformed_xml_is_skipped(tmp_path, text):
    root = tmp_path / "voc"
    good_voc(root / "train")
    write_image(root / "train" / "b_bad.png")
    (root / "train" / "b_bad.xml").write_text(text)
    good_voc(root / "train", "c_good")
    source, result = read(root)
    case = only_case(source, "annotation_unparsable")
    assert Path(case.file).name == "b_bad.xml"
    assert [int(e["image_id"]) for e in result] == [0, 2]
    for example in result:
        check_good(example)
    assert_strict_error(root, "annotation_unparsable", "b_bad.xml")


def test_classes_found_in_train_split_drop_unknown_val_classes(tmp_path):
    root = tmp_path / "voc"
    good_voc(root / "train")
    good_voc(root / "val")
    write_image(root / "val" / "b.png")
    write_voc(root / "val" / "b.xml", "b.png", (48, 64), [voc_object("zebra", 2, 2, 9, 9)])
    source, result = read(root, split="val", classes=None)
    assert source.class_names == ["cat"]
    case = only_case(source, "class_unknown")
    assert (case.split, Path(case.file).name, case.object) == ("val", "b.xml", 0)
    assert only_case(source, "no_objects").file == case.file  # b.png kept as background


@pytest.mark.parametrize("content, problem", [
    ('{"info": {}, "licenses": []}', "images"),
    ("[1, 2, 3]", "list"),
    ('{"images": [{"id": 1}], "annotations": [], "categories": []}', "file_name"),
], ids=["no_images", "a_list", "image_without_file_name"])
def test_json_that_is_not_coco_fails_naming_the_file(tmp_path, content, problem):
    root = tmp_path / "coco"
    path = root / "annotations" / "instances_train.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(DataError) as error:
        build_source(coco_config(root))
    assert str(path) in str(error.value) and problem in str(error.value)


@pytest.mark.parametrize("content", ["this is { not json", "", "\xff\xfe"])
def test_json_that_is_not_json_fails_naming_the_file(tmp_path, content):
    root = tmp_path / "coco"
    path = root / "annotations" / "instances_train.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataError) as error:
        build_source(coco_config(root))
    assert str(path) in str(error.value) and "JSON" in str(error.value)


@pytest.mark.parametrize("config", [voc_config, coco_config], ids=["voc", "coco"])
def test_missing_root_fails_naming_the_path(tmp_path, config):
    root = tmp_path / "no" / "such" / "folder"
    with pytest.raises(DataError) as error:
        build_source(config(root))
    assert str(root) in str(error.value)
    assert not root.exists() and not (tmp_path / "no").exists()


def test_split_with_no_usable_image_fails_naming_split_and_path(tmp_path):
    root = tmp_path / "voc"
    write_voc(root / "train" / "a.xml", "a.png", (48, 64), [voc_object("cat", 11, 6, 30, 25)])
    (root / "train" / "b.png").write_bytes(b"not an image")
    write_voc(root / "train" / "b.xml", "b.png", (48, 64), [voc_object("cat", 11, 6, 30, 25)])
    source = build_source(voc_config(root))
    with pytest.raises(DataError) as error:
        source.num_examples("train")
    message = str(error.value)
    assert "train" in message and "image_missing" in message and "image_unreadable" in message
    assert str(root) in message, f"the message does not name the folder: {message}"


def test_coco_split_with_no_usable_image_fails(tmp_path):
    root = tmp_path / "coco"
    write_coco(root / "annotations" / "instances_train.json",
               [{"id": 1, "file_name": "gone.jpg", "height": 48, "width": 64}], [],
               [{"id": 1, "name": "cat"}])
    source = build_source(coco_config(root))
    with pytest.raises(DataError) as error:
        source.num_examples("train")
    assert "image_missing" in str(error.value)
    assert "instances_train.json" in str(error.value) or str(root) in str(error.value), \
        f"the message names neither the file nor the folder: {error.value}"


def test_missing_split_fails_naming_the_places(tmp_path):
    root = tmp_path / "voc"
    good_voc(root / "train")
    source = build_source(voc_config(root))
    with pytest.raises(DataError) as error:
        source.num_examples("val")
    assert "val" in str(error.value) and str(root) in str(error.value)


def test_report_serialises_every_case(tmp_path):
    root = tmp_path / "voc"
    write_image(root / "train" / "a.png", rects=[(10, 5, 30, 25, RED)])
    write_voc(root / "train" / "a.xml", "a.png", None, [
        voc_object("cat", 11, 6, 30, 25), voc_object("dog", 50, 31, 70, 60),
        voc_object("horse", 1, 1, 5, 5), voc_object("dog", 70, 6, 90, 25)])
    source, _ = read(root)
    out = tmp_path / "report.json"
    source.report.write(out)
    saved = json.loads(out.read_text())
    assert saved == source.report.to_dict()
    kinds = {(case["kind"], case["action"], case["object"]) for case in saved["cases"]}
    assert kinds == {("size_missing", "repaired", None), ("box_clipped", "repaired", 1),
                     ("class_excluded", "excluded", 2), ("box_outside", "dropped", 3)}
    assert saved["splits"]["train"] == {"images": 1, "images_used": 1, "objects": 4,
                                        "objects_used": 2}
    assert saved["counts"] == {"size_missing": 1, "box_clipped": 1, "class_excluded": 1,
                               "box_outside": 1}
    assert {case["split"] for case in saved["cases"]} == {"train"}
    assert all(Path(case["file"]).name == "a.xml" for case in saved["cases"])


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------

TINY = ["dataset=voc_xml", "model.input_size=64", "model.neck_channels=[16,16,16]",
        "model.head_conv=8", "train.max_steps=3", "train.batch_size=2", "train.eval_every=0",
        "train.checkpoint_every=3", "eval.k=10", "augment=none",
        "train.jit_compile=false"]  # compiling with XLA would cost more than the 3 steps


def _defective_folder(root: Path) -> set:
    """A VOC folder with several defects; returns the expected report cases as
    (split, file name, kind, action, object)."""
    train, val = root / "train", root / "val"
    good_voc(train, "a_good")
    write_image(train / "b_clipped.png", rects=[(40, 30, 64, 48, GREEN)])
    write_voc(train / "b_clipped.xml", "b_clipped.png", (48, 64),
              [voc_object("dog", 41, 31, 80, 60)])
    (train / "c_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    write_voc(train / "c_corrupt.xml", "c_corrupt.png", (48, 64),
              [voc_object("cat", 11, 6, 30, 25)])
    write_voc(train / "d_missing.xml", "d_missing.jpg", (48, 64),
              [voc_object("cat", 11, 6, 30, 25)])
    (train / "e_grey.png").write_bytes(encode(np.full((48, 64), 90, np.uint8), ".png"))
    write_voc(train / "e_grey.xml", "e_grey.png", (48, 64),
              [voc_object("cat", 11, 6, 30, 25), voc_object("dog", 40, 10, 40, 20)])
    good_voc(val, "v_good")
    write_image(val / "w_unknown.png", rects=[(10, 5, 30, 25, BLUE)])
    write_voc(val / "w_unknown.xml", "w_unknown.png", (48, 64),
              [voc_object("cat", 11, 6, 30, 25), voc_object("horse", 2, 2, 9, 9)])
    return {("train", "b_clipped.xml", "box_clipped", "repaired", 0),
            ("train", "c_corrupt.png", "image_unreadable", "skipped", None),
            ("train", "d_missing.xml", "image_missing", "skipped", None),
            ("train", "e_grey.png", "image_converted", "repaired", None),
            ("train", "e_grey.xml", "box_empty", "dropped", 1),
            ("val", "w_unknown.xml", "class_excluded", "excluded", 1)}


def _error_lines(process) -> list:
    return [line for line in process.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_cli_training_reports_defects_and_strict_fails(tmp_path):
    root = tmp_path / "data"
    expected = _defective_folder(root)
    before = snapshot(root)
    run_dir = tmp_path / "run"
    done = run_script("train.py", *TINY, f"dataset.root={root}", "dataset.classes=[cat,dog]",
                      f"hydra.run.dir={run_dir}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for kind in ("box_clipped", "image_unreadable", "image_missing", "image_converted",
                 "box_empty", "class_excluded"):
        assert re.search(rf"\b1 x {kind} \({ACTION[kind]}\)", output), (kind, output[-3000:])
    report = json.loads((run_dir / "data_report.json").read_text())
    cases = {(c["split"], Path(c["file"]).name, c["kind"], c["action"], c["object"])
             for c in report["cases"]}
    assert cases == expected
    assert len(report["cases"]) == len(expected)
    assert report["splits"]["train"]["images"] == 5
    assert report["splits"]["train"]["images_used"] == 3
    assert json.loads((run_dir / "classes.json").read_text())["names"] == ["cat", "dog"]
    assert snapshot(root) == before

    strict = run_script("train.py", *TINY, f"dataset.root={root}", "dataset.classes=[cat,dog]",
                        "dataset.strict=true", f"hydra.run.dir={tmp_path / 'strict_run'}")
    assert strict.returncode == 2, strict.stderr[-3000:]
    assert "Traceback" not in strict.stdout + strict.stderr
    (line,) = _error_lines(strict)
    assert "c_corrupt.png" in line and "image_unreadable" in line, line
    assert snapshot(root) == before


def test_cli_missing_root_exits_2_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "dataset"
    done = run_script("train.py", *TINY, f"dataset.root={missing}",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    (line,) = _error_lines(done)
    assert str(missing) in line, line
    assert not missing.exists()



# ---- defects found in review: ids, duplicates, areas, saved classes -------------------------


def _coco_folder(tmp_path, images, annotations, categories) -> Path:
    root = tmp_path / "coco"
    for image in images:
        write_image(root / "train" / Path(str(image["file_name"])).name,
                    rects=[(10, 5, 30, 25, RED)])
    write_coco(root / "annotations" / "instances_train.json", images, annotations, categories)
    return root


@pytest.mark.parametrize("images, categories, problem", [
    ([{"id": "a1", "file_name": "a.png"}], [{"id": 1, "name": "cat"}], "id is not an integer"),
    ([{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}],
     [{"id": 1, "name": "cat"}], "two images entries have id 1"),
    ([{"id": 1, "file_name": "a.png"}], [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}],
     "two categories entries have name 'cat'"),
], ids=["string_image_id", "duplicate_image_id", "duplicate_category_name"])
def test_coco_ids_that_cannot_identify_fail_naming_the_file(tmp_path, images, categories,
                                                             problem):
    root = _coco_folder(tmp_path, images, [], categories)
    with pytest.raises(DataError) as error:
        build_source(coco_config(root)).num_examples("train")
    assert "instances_train.json" in str(error.value) and problem in str(error.value)


def test_coco_file_name_with_the_split_folder_is_found(tmp_path):
    images = [{"id": 7, "file_name": "train/a.png", "height": 48, "width": 64}]
    annotations = [{"image_id": 7, "category_id": 3, "bbox": [10, 5, 20, 20]}]
    root = _coco_folder(tmp_path, images, annotations, [{"id": 3, "name": "cat"}])
    source = build_source(coco_config(root))
    (example,) = examples(source, "train")
    assert int(example["image_id"]) == 7 and source.report.cases == []
    np.testing.assert_allclose(example["boxes"], [[10, 5, 30, 25]], atol=ATOL)


def test_coco_evaluation_survives_missing_area_and_broken_boxes(tmp_path):
    """A file without `area` and with a box the source drops still evaluates: the area is
    w * h, the broken annotation is left out (it was reported as coordinate_invalid)."""
    from centernet.evaluation.inference import original_ground_truth
    from centernet.evaluation.metrics import CocoEvaluator

    images = [{"id": 1, "file_name": "a.png", "height": 48, "width": 64}]
    annotations = [{"image_id": 1, "category_id": 5, "bbox": [10, 5, 20, 20]},
                   {"image_id": 1, "category_id": 5, "bbox": None}]
    root = tmp_path / "coco"
    write_image(root / "train" / "a.png", rects=[(10, 5, 30, 25, RED)])
    path = write_coco(root / "annotations" / "instances_train.json", images, annotations,
                      [{"id": 5, "name": "cat"}])
    raw = json.loads(path.read_text())
    for annotation in raw["annotations"]:
        annotation.pop("area", None)
    path.write_text(json.dumps(raw))
    source = build_source(coco_config(root))
    assert source.num_examples("train") == 1
    only_case(source, "coordinate_invalid")
    truth = original_ground_truth(source, "train")
    assert [a["area"] for a in truth["annotations"]] == [400.0]
    evaluator = CocoEvaluator(truth, source.category_ids, source.class_names)
    evaluator.process(np.array([1]), np.array([[[10.0, 5.0, 30.0, 25.0]]]), np.array([[0.9]]),
                      np.array([[0]]))
    assert evaluator.evaluate()["AP50"] == pytest.approx(1.0)


def test_id_listed_twice_in_a_split_is_used_once(tmp_path):
    root = tmp_path / "voc"
    write_image(root / "JPEGImages" / "a.png", rects=[(10, 5, 30, 25, RED)])
    write_voc(root / "Annotations" / "a.xml", "a.png", (48, 64),
              [voc_object("cat", 11, 6, 30, 25)])
    listing = root / "ImageSets" / "Main" / "train.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("a\na\n")
    source = build_source(voc_config(root))
    (example,) = examples(source, "train")
    check_good(example)
    assert "line 2" in only_case(source, "duplicate_image").detail


def test_changed_dataset_classes_against_a_saved_run_fail(tmp_path):
    from centernet.data.sources import ClassMap

    root = _one_image(tmp_path, voc_object("dog", 35, 6, 40, 25))
    with pytest.raises(DataError, match=r"differs from the classes this run was trained with"):
        build_source(voc_config(root, classes=["dog", "cat"]), ClassMap(["cat", "dog"], [0, 1]))
    source = build_source(voc_config(root), ClassMap(["cat", "dog"], [0, 1]))
    assert source.class_names == ["cat", "dog"]
