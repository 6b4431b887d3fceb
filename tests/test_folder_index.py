"""A folder's index at scale: the image checks kept between starts (`dataset.cache`, the index
cache), so a second start decodes and opens no image it checked before and the data report is
the same byte for byte; and a resumed run that skips on the index, opening no file of the
examples it skips while continuing exactly the stream of an uninterrupted run.

Which images were checked is counted by wrapping the probe (`images.probe_image`); which files
were opened, by the kernel (inotify, `folders.OpenedFiles`); which images an example came from,
by the colour each image is painted."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from centernet.config import DatasetConfig, validate
from centernet.data import images
from centernet.data.pipeline import train_dataset
from centernet.data.sources import build_source, check_splits
from centernet.engine.training import Trainer
from centernet.evaluation.inference import SplitEvaluator, ground_truth
from centernet.benchmark.scale import OpenedFiles
from conftest import SHARED_DATASETS, compose_config
from folders import (RED, encode, examples, picture, snapshot, voc_object,
                     write_image, write_voc)

BCCD = SHARED_DATASETS / "bccd"


@pytest.fixture
def probed(monkeypatch) -> List[str]:
    """The names of the image files decoded to check them, in the order asked for."""
    names: List[str] = []
    probe_image = images.probe_image

    def counted(path):
        names.append(Path(path).name)
        return probe_image(path)

    monkeypatch.setattr(images, "probe_image", counted)
    return names


def voc_config(root: Path, **kwargs) -> DatasetConfig:
    return DatasetConfig(**{"source": "voc_xml", "root": str(root), "train_split": "train",
                            "val_split": "val", "classes": ["cat"], **kwargs})


def add_image(root: Path, stem: str, split: str, image_size=(48, 64),
              annotated_size=(48, 64), suffix: str = ".jpg", box=(11, 6, 30, 25)) -> Path:
    """An image with one cat (VOC pixels `box`) in `root`'s ImageSets layout, listed in
    `split`; returns the image's path."""
    path = root / "JPEGImages" / f"{stem}{suffix}"
    write_image(path, *image_size, rects=[(box[0] - 1, box[1] - 1, box[2], box[3], RED)])
    write_voc(root / "Annotations" / f"{stem}.xml", path.name, annotated_size,
              [voc_object("cat", *box)])
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    with open(listing, "a") as file:
        file.write(f"{stem}\n")
    return path


def defective_folder(root: Path) -> None:
    """Seven good images and one of each image defect the checks find, in two splits that
    share the image folder: a greyscale PNG (converted), a truncated JPEG (unreadable), an
    image of another size than annotated (size mismatch), an annotation without its image
    (missing), and an empty box."""
    for k in range(7):
        add_image(root, f"img_{k:02d}", "train")
    grey = add_image(root, "grey", "train", suffix=".png")
    grey.write_bytes(encode(picture()[..., 0], ".png"))
    truncated = add_image(root, "truncated", "train")
    truncated.write_bytes(truncated.read_bytes()[:200])
    add_image(root, "larger", "val", image_size=(60, 80))
    add_image(root, "missing", "val").unlink()
    add_image(root, "empty_box", "val", box=(11, 6, 11, 25))


def image_files(root: Path) -> List[str]:
    return sorted(os.listdir(root / "JPEGImages"))


def start(root: Path, report: Path, **kwargs) -> Dict[str, object]:
    """What a run's start learns of the folder: its `data_report.json` (written to `report`,
    as training writes it) and each split's index."""
    source = build_source(voc_config(root, **kwargs))
    check_splits(source, ["train", "val"])
    source.report.write(report)
    return {"report": report.read_bytes(),
            **{split: {key: np.asarray(value).tolist()
                       for key, value in vars(source.index(split)).items()}
               for split in ("train", "val")}}


def test_a_second_start_checks_no_image_and_opens_none(tmp_path, cache_dir, probed):
    root = tmp_path / "data"
    defective_folder(root)
    before = snapshot(root)
    first = start(root, tmp_path / "first.json")
    assert sorted(probed) == image_files(root)
    kinds = {case["kind"] for case in json.loads(first["report"])["cases"]}
    assert {"image_converted", "image_unreadable", "size_mismatch", "image_missing",
            "box_empty"} <= kinds
    probed.clear()
    with OpenedFiles(root / "JPEGImages") as opened:
        second = start(root, tmp_path / "second.json")
    assert probed == [] and opened.names == set()
    assert second == first
    assert snapshot(root) == before  # the cache is not in the dataset folder
    assert list((cache_dir / "index").glob("*.json"))


def test_a_touched_changed_or_added_file_is_checked_again_and_only_it(tmp_path, cache_dir,
                                                                       probed):
    root = tmp_path / "data"
    defective_folder(root)
    start(root, tmp_path / "first.json")
    touched, changed = root / "JPEGImages" / "img_01.jpg", root / "JPEGImages" / "img_02.jpg"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    write_image(changed, 60, 80)  # another size than annotated: a new size_mismatch
    add_image(root, "added", "train")
    (root / "JPEGImages" / "img_03.jpg").unlink()  # now missing
    # img_05 changed in place, same size, its modification time put back (as `rsync -a`
    # leaves a file): only its change time tells
    rewritten = root / "JPEGImages" / "img_05.jpg"
    stat = rewritten.stat()
    data = bytearray(rewritten.read_bytes())
    data[-10] ^= 0xFF
    rewritten.write_bytes(bytes(data))
    os.utime(rewritten, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (rewritten.stat().st_size, rewritten.stat().st_mtime_ns) == (stat.st_size,
                                                                          stat.st_mtime_ns)
    probed.clear()
    cached = start(root, tmp_path / "cached.json")
    assert sorted(probed) == ["added.jpg", "img_01.jpg", "img_02.jpg", "img_05.jpg"]
    probed.clear()
    uncached = start(root, tmp_path / "uncached.json", cache=False)
    assert cached == uncached
    cases = {(Path(case["file"]).stem, case["kind"])
             for case in json.loads(cached["report"])["cases"]}
    assert {("img_02", "size_mismatch"), ("img_03", "image_missing")} <= cases
    probed.clear()
    start(root, tmp_path / "third.json")
    assert probed == []


def test_a_file_that_cannot_be_read_is_checked_at_every_start(tmp_path, cache_dir, probed):
    """Reading failed (here: a folder where the image should be) says nothing about the
    file's content: never kept."""
    root = tmp_path / "data"
    add_image(root, "good", "train")
    add_image(root, "good", "val")
    unreadable = add_image(root, "folder", "train")
    unreadable.unlink()
    unreadable.mkdir()
    first = start(root, tmp_path / "first.json")
    assert sorted(probed) == ["folder.jpg", "good.jpg"]  # val's image was checked for train
    probed.clear()
    assert start(root, tmp_path / "second.json") == first
    assert probed == ["folder.jpg"]


def test_cache_false_checks_every_image_and_writes_no_cache(tmp_path, cache_dir, probed):
    root = tmp_path / "data"
    defective_folder(root)
    cached = start(root, tmp_path / "cached.json")
    files = sorted((cache_dir / "index").iterdir())
    contents = [path.read_bytes() for path in files]
    probed.clear()
    assert start(root, tmp_path / "uncached.json", cache=False) == cached
    assert sorted(probed) == image_files(root)
    assert sorted((cache_dir / "index").iterdir()) == files
    assert [path.read_bytes() for path in files] == contents


def test_a_damaged_cache_file_is_named_and_the_images_checked_again(tmp_path, cache_dir,
                                                                   probed, caplog):
    root = tmp_path / "data"
    defective_folder(root)
    first = start(root, tmp_path / "first.json")
    (cache_file,) = (cache_dir / "index").glob("*.json")
    cache_file.write_text(cache_file.read_text()[:100])
    shutil.rmtree(cache_dir / "splits")  # else the split cache answers without the images
    probed.clear()
    assert start(root, tmp_path / "second.json") == first
    assert sorted(probed) == image_files(root)
    assert f"ignoring the index cache {cache_file}" in caplog.text
    probed.clear()
    start(root, tmp_path / "third.json")  # written anew
    assert probed == []


@pytest.mark.skipif(not BCCD.is_dir(), reason=f"the shared BCCD dataset is not at {BCCD}")
def test_bccd_with_defects_reports_the_same_with_and_without_the_cache(tmp_path, cache_dir,
                                                                      probed):
    root = tmp_path / "bccd"
    shutil.copytree(BCCD, root)
    jpegs = root / "JPEGImages"
    (jpegs / "BloodImage_00001.jpg").write_bytes((jpegs / "BloodImage_00001.jpg")
                                                 .read_bytes()[:5000])  # truncated
    (jpegs / "BloodImage_00002.jpg").unlink()  # missing
    write_image(jpegs / "BloodImage_00003.jpg", 240, 320)  # smaller than annotated
    grey = picture(480, 640)[..., 0]
    (jpegs / "BloodImage_00004.jpg").write_bytes(encode(grey, ".jpg"))  # greyscale

    def bccd_start(name: str, **kwargs):
        return start(root, tmp_path / name, train_split="trainval", val_split="test",
                     classes=None, **kwargs)

    uncached = bccd_start("uncached.json", cache=False)
    cold = bccd_start("cold.json")
    probed.clear()
    warm = bccd_start("warm.json")
    assert probed == []
    assert uncached == cold == warm
    kinds = set(json.loads(warm["report"])["counts"])
    assert {"box_empty", "image_unreadable", "image_missing", "size_mismatch",
            "image_converted"} <= kinds


def test_evaluation_ground_truth_comes_from_the_index_without_reading_an_image(tmp_path,
                                                                             cache_dir):
    """The same image sizes and boxes, bit for bit, as from the decoded images."""
    root = tmp_path / "data"
    defective_folder(root)
    source = build_source(voc_config(root))
    for split in ("train", "val"):
        decoded = examples(source, split)
        with OpenedFiles(root / "JPEGImages") as opened:
            truth = ground_truth(source, split)
        assert opened.names == set()
        assert [(t.image_id, t.height, t.width) for t in truth] == [
            (int(e["image_id"]), *e["image"].shape[:2]) for e in decoded]
        for image, example in zip(truth, decoded):
            np.testing.assert_array_equal(image.boxes, example["boxes"].astype(np.float64))
            np.testing.assert_array_equal(image.labels, example["labels"])
            np.testing.assert_array_equal(image.is_crowd, example["is_crowd"])


def test_a_second_training_start_opens_no_image(tmp_path, cache_dir):
    """Everything a run does before its first step (index, data-aware choices, model,
    evaluation's ground truth) opens no image file once the index cache holds the folder."""
    root = tmp_path / "data"
    defective_folder(root)
    cfg = validate(compose_config([
        "experiment=smoke", "dataset=voc_xml", f"dataset.root={root}",
        "dataset.classes=[cat]", "model.input_size=64", "train.batch_size=2"]))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    Trainer(cfg, run_dir, SplitEvaluator)
    with OpenedFiles(root / "JPEGImages") as opened:
        Trainer(cfg, run_dir, SplitEvaluator)
    assert opened.names == set()


# ------------------------------------------------------------------------------------------
# Resume on the index
# ------------------------------------------------------------------------------------------

IMAGES = 96  # more than the stream reads ahead: the skipped ones come back in the next epoch


def colour(k: int) -> Tuple[int, int, int]:
    """Image `k`'s own background colour (RGB; the red levels of two images differ by 2)."""
    return (40 + 2 * k, 255 - 2 * k, 37 * k % 256)


def painted_folder(root: Path) -> None:
    """`IMAGES` PNG images, each painted its own `colour` with a small white cat in the
    middle; val holds the first."""
    for k in range(IMAGES):
        path = root / "JPEGImages" / f"img_{k:02d}.png"
        write_image(path, rects=[(30, 22, 34, 26, (250, 250, 250))], background=colour(k))
        write_voc(root / "Annotations" / f"img_{k:02d}.xml", path.name, (48, 64),
                  [voc_object("cat", 31, 23, 34, 26)])
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("".join(f"img_{k:02d}\n" for k in range(IMAGES)))
    (main / "val.txt").write_text("img_00\n")


def painted_in(image: np.ndarray, least: int = 64) -> set:
    """The images whose colour (within 1 level: resampling rounds) covers at least `least`
    pixels of `image` (`[S, S, 3]` uint8)."""
    pixels = image.reshape(-1, 3).astype(int)
    return {f"img_{k:02d}.png" for k in range(IMAGES)
            if (np.abs(pixels - colour(k)).max(axis=1) <= 1).sum() >= least}


@pytest.mark.parametrize("mosaic", [False, True], ids=["single", "mosaic"])
def test_a_resumed_run_opens_no_file_it_skips_and_continues_the_same_stream(
        tmp_path, cache_dir, mosaic):
    """Step 3 of batch 2: the uninterrupted stream's first 6 examples (24 images in
    mosaics) are skipped without opening their files; the next batches equal the
    uninterrupted stream's, and do open theirs (the watch sees reads)."""
    root = tmp_path / "data"
    painted_folder(root)
    cfg = validate(compose_config([
        "dataset=voc_xml", f"dataset.root={root}", "dataset.classes=[cat]", "augment=none",
        f"augment.mosaic={str(mosaic).lower()}", "augment.max_scale=1.0",
        "model.input_size=64", "train.batch_size=2", "train.seed=3",
        "dataset.shuffle_buffer=64"]))
    source = build_source(cfg.dataset)
    resume_at, steps = 3, 3
    whole = [{key: value.numpy() for key, value in batch.items()}
             for batch in train_dataset(source, cfg).take(resume_at + steps)]
    per_example = [painted_in(image) for batch in whole for image in batch["image"]]
    group = 4 if mosaic else 1
    assert all(len(found) == group for found in per_example)
    skipped = set().union(*per_example[:resume_at * 2])
    kept = set().union(*per_example[resume_at * 2:])
    assert len(skipped) == resume_at * 2 * group  # one epoch: each image once
    with OpenedFiles(root / "JPEGImages") as opened:
        resumed = [{key: value.numpy() for key, value in batch.items()}
                   for batch in train_dataset(source, cfg, start_step=resume_at).take(steps)]
    assert not opened.names & skipped
    assert kept <= opened.names
    for batch, expected in zip(resumed, whole[resume_at:]):
        assert batch.keys() == expected.keys()
        for key in batch:
            np.testing.assert_array_equal(batch[key], expected[key])
