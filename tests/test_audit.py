"""The label audit (`centernet/audit/`, `scripts/audit_labels.py`) and its measurement
(`centernet/study/label_noise.py`).

Hand-made images whose every label's error is known check that each kind is found and told
apart with the right suggestion; a tiny copy of BCCD is audited end to end with two folds (a
real process: `scripts/audit_labels.py`, on a run directory as training leaves it) and the
file's contents are checked against the XML files themselves; the injection of known errors
is checked against the XML it rewrites, and its scoring against precision and recall counted
by hand; the shapes folder with complete labels is read back through the VOC source against
its scenes. One object detected in two classes is checked against cleanlab's own swap score.
"""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from centernet.audit.issues import (BADLY_PLACED, CONFIDENT, MISSING, ON_NOTHING, WRONG_CLASS,
                                    cleanlab_inputs, iou_matrix, one_class_per_place,
                                    score_labels, to_probability)
from centernet.data.annotations import SplitIndex
from centernet.study import label_noise
from conftest import SHARED_DATASETS, compose_config, run_script
from folders import snapshot

BCCD = SHARED_DATASETS / "bccd"
NAMES = ["cat", "dog"]


def _index(height: int, width: int, objects) -> SplitIndex:
    """One image per entry of `objects`: a list of `(label, x1, y1, x2, y2)` in pixels."""
    boxes = [[y1 / height, x1 / width, y2 / height, x2 / width]
             for image in objects for _, x1, y1, x2, y2 in image]
    counts = [len(image) for image in objects]
    return SplitIndex(paths=[f"/data/{i}.jpg" for i in range(len(objects))],
                      image_ids=np.arange(len(objects), dtype=np.int64) + 100,
                      sizes=np.array([[height, width]] * len(objects), np.int64),
                      boxes=np.array(boxes, np.float32).reshape(-1, 4),
                      labels=np.array([o[0] for image in objects for o in image], np.int32),
                      is_crowd=np.zeros(sum(counts), bool),
                      row_splits=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                      annotations=[f"/data/{i}.xml" for i in range(len(objects))],
                      object_index=np.array([n + 1 for c in counts for n in range(c)], np.int64))


def _detection(image_id: int, label: int, x1, y1, x2, y2, score: float) -> dict:
    return {"image_id": image_id, "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score}


def test_iou_and_the_probability_scale_by_hand():
    assert iou_matrix([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]).tolist() == [
        [50 / 150, 0.0]]
    scores = np.array([0.0, 0.2, 0.4, 0.7, 1.0])
    mapped = to_probability(scores, 0.4)
    np.testing.assert_allclose(mapped, [0.0, CONFIDENT / 2, CONFIDENT,
                                        CONFIDENT + (1 - CONFIDENT) * 0.5, 1.0])
    assert np.all(np.diff(mapped) > 0)


def test_each_kind_of_error_is_found_and_told_apart():
    """Image 0: a good label (detected), a cat the model calls a dog, a label on nothing, a
    label shifted by half its size from its detection, and a detected dog nobody labelled.
    Image 1: two good labels. Image 2: a cat the model calls a dog below cleanlab's
    confidence (so cleanlab sees a bad location, its own class's detection being elsewhere)."""
    index = _index(200, 300, [
        [(0, 10, 10, 60, 60), (0, 100, 10, 150, 60), (1, 200, 120, 240, 160),
         (1, 25, 130, 75, 180)],
        [(0, 10, 10, 60, 60), (1, 100, 100, 160, 160)],
        [(0, 10, 10, 60, 60)]])
    detections = {100: [_detection(100, 0, 11, 10, 60, 61, 0.8),
                        _detection(100, 1, 100, 11, 151, 60, 0.85),
                        _detection(100, 1, 0, 105, 50, 155, 0.8),
                        _detection(100, 1, 230, 20, 280, 70, 0.9),
                        _detection(100, 0, 200, 120, 240, 160, 0.02)],
                  101: [_detection(101, 0, 10, 10, 60, 61, 0.9),
                        _detection(101, 1, 101, 100, 160, 160, 0.9)],
                  102: [_detection(102, 1, 10, 10, 60, 62, 0.35),
                        _detection(102, 0, 50, 50, 100, 100, 0.45)]}
    found = score_labels(index, detections, NAMES, confident_score=0.5)
    (second_look,) = [issue for issue in found["issues"] if issue["image_id"] == 102]
    assert found["objects"][-1]["swap"] == 1.0  # cleanlab: no confident other class ...
    assert found["objects"][-1]["badloc"] <= 0.5  # ... but a bad location
    assert second_look["kind"] == WRONG_CLASS and second_look["object_index"] == 1
    assert second_look["suggestion"]["class"] == "dog"
    assert second_look["suggestion"]["box"] == [10.0, 10.0, 60.0, 62.0]
    assert [issue["rank"] for issue in found["issues"]] == [1, 2, 3, 4, 5]
    scores = [issue["score"] for issue in found["issues"]]
    assert scores == sorted(scores)
    first = [issue for issue in found["issues"] if issue["image_id"] == 100]
    by_kind = {issue["kind"]: issue for issue in first}
    assert sorted(by_kind) == sorted([MISSING, WRONG_CLASS, ON_NOTHING, BADLY_PLACED])
    assert len(first) == 4  # and the good labels of images 0 and 1 are not findings
    assert by_kind[WRONG_CLASS]["object_index"] == 2  # index.object_index of the second label
    assert by_kind[WRONG_CLASS]["class"] == "cat"
    assert by_kind[WRONG_CLASS]["suggestion"]["action"] == "relabel"
    assert by_kind[WRONG_CLASS]["suggestion"]["class"] == "dog"
    assert by_kind[ON_NOTHING]["object_index"] == 3
    assert by_kind[ON_NOTHING]["suggestion"] == {"action": "remove"}
    assert by_kind[BADLY_PLACED]["object_index"] == 4
    assert by_kind[BADLY_PLACED]["box"] == [25.0, 130.0, 75.0, 180.0]
    assert by_kind[BADLY_PLACED]["suggestion"]["box"] == [0.0, 105.0, 50.0, 155.0]
    assert by_kind[MISSING]["object_index"] is None
    assert by_kind[MISSING]["suggestion"]["box"] == [230.0, 20.0, 280.0, 70.0]
    assert by_kind[MISSING]["suggestion"]["class"] == "dog"
    assert {issue["annotation"] for issue in first} == {"/data/0.xml"}
    quality = {image["image_id"]: image for image in found["images"]}
    assert quality[100]["label_quality"] < quality[101]["label_quality"]
    assert quality[100]["flagged"] and not quality[101]["flagged"]
    assert found["images"][-1]["image_id"] == 101  # worst first
    assert [(o["object_index"], o["class"]) for o in found["objects"]] == [
        (1, "cat"), (2, "cat"), (3, "dog"), (4, "dog"), (1, "cat"), (2, "dog"), (1, "cat")]


def test_one_place_keeps_its_likeliest_class():
    """From the most probable down (D, A, B, C, F, E): A stays beside D (IoU 1/3); B (another
    class on A's box, IoU 100/110), F (a third class there) and E (another class on D's box)
    give way; C stays: of its class A, and B, whose box it shares, gave way before it."""
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [0, 0, 10, 11], [5, 0, 15, 10],
                      [5, 0, 15, 10], [0, 0, 10, 11]], np.float64)
    classes = np.array([0, 1, 0, 1, 0, 2])
    probabilities = np.array([0.9, 0.8, 0.7, 0.95, 0.5, 0.6])
    assert one_class_per_place(boxes, classes, probabilities).tolist() == [
        True, False, True, True, False, False]
    assert one_class_per_place(boxes[:0], classes[:0], probabilities[:0]).tolist() == []


def test_an_object_detected_in_two_classes_votes_for_the_likelier():
    """Image 0: a cat labelled a cat, detected as a cat (0.7) and on nearly the same box as a
    dog (0.6, still confident). cleanlab's swap score looks only at the other classes'
    detections, so on the detections as they are it calls the label a likely wrong class; the
    dog detection gives way and nothing is reported. Labelled a dog, the same object is a wrong
    class with "cat" suggested. Image 1: a cat found where it is labelled, and a detection far
    from it below cleanlab's evidence (cleanlab scales its similarities by the least of them)."""
    from cleanlab.object_detection.rank import compute_swap_box_scores

    found = {100: [_detection(100, 0, 10, 10, 60, 60, 0.7),
                   _detection(100, 1, 10, 10, 60, 61, 0.6)],
             101: [_detection(101, 0, 0, 0, 20, 20, 0.9),
                   _detection(101, 1, 70, 70, 90, 90, 0.2)]}
    as_cat = _index(100, 100, [[(0, 10, 10, 60, 60)], [(0, 0, 0, 20, 20)]])
    labels, predictions, _ = cleanlab_inputs(as_cat, found, 2, confident_score=0.5)
    assert [len(p) for p in predictions[0]] == [1, 0]  # the dog gave way
    both = [np.array([[10, 10, 60, 60, to_probability(0.7, 0.5)]]),
            np.array([[10, 10, 60, 61, to_probability(0.6, 0.5)]])]
    swap = compute_swap_box_scores(labels=labels, predictions=[both, predictions[1]])
    assert swap[0][0] <= 0.5 and swap[1][0] == 1.0
    assert score_labels(as_cat, found, NAMES, confident_score=0.5)["issues"] == []
    as_dog = _index(100, 100, [[(1, 10, 10, 60, 60)], [(0, 0, 0, 20, 20)]])
    (issue,) = score_labels(as_dog, found, NAMES, confident_score=0.5)["issues"]
    assert issue["kind"] == WRONG_CLASS and issue["image_id"] == 100
    assert issue["suggestion"]["class"] == "cat"


def test_a_missing_box_in_a_crowd_is_found_where_cleanlab_looks_away():
    """Three touching cells, the middle one unlabelled: its confident detection overlaps both
    labelled neighbours a little (IoU 1/7 each), so cleanlab gives it no overlooked score; the
    audit reports it (that best IoU its `fit`), and nothing else."""
    index = _index(100, 300, [[(0, 0, 0, 80, 80), (0, 120, 0, 200, 80)]])
    detections = {100: [_detection(100, 0, 0, 0, 80, 80, 0.9),
                         _detection(100, 0, 60, 0, 140, 80, 0.9),
                         _detection(100, 0, 120, 0, 200, 80, 0.9)]}
    found = score_labels(index, detections, NAMES, confident_score=0.5)
    (issue,) = found["issues"]
    assert issue["kind"] == MISSING and issue["suggestion"]["box"] == [60.0, 0.0, 140.0, 80.0]
    assert issue["fit"] == pytest.approx(20 * 80 / (2 * 80 * 80 - 20 * 80))
    assert issue["score"] == pytest.approx((1 - issue["suggestion"]["probability"]) / 0.05)


def test_the_split_habits_weigh_a_box_on_nothing_and_an_object_is_one_finding():
    """Image 0 (200 x 300 px; a box within 1% of a side from an edge is cut by it): cats
    inside the image, one detected confidently, one less so (0.4: it covers its label without
    being confident) and one not (the fifth label: a weak detection, 0.2, overlaps it by a
    third); cats cut by the edge, one detected and one not (the third); an unlabelled cat.
    Image 1: a detected dog and an unlabelled object detected as a dog (0.9) and as a cat
    (0.8). The detector covers 2 of 3 inside labels and 1 of 2 cut ones: the undetected
    inside cat is the likelier box on nothing. The two detections of the unlabelled object
    are one object: the cat detection gives way to the likelier dog on the same place, so
    the habits count no confident cat there and the missing-box finding is a dog."""
    index = _index(200, 300, [
        [(0, 50, 50, 100, 100), (0, 150, 50, 200, 100), (0, 240, 150, 300, 200),
         (0, 0, 120, 40, 170), (0, 150, 130, 190, 170)],
        [(1, 20, 20, 80, 80)]])
    detections = {100: [_detection(100, 0, 50, 50, 100, 100, 0.9),
                        _detection(100, 0, 150, 50, 200, 100, 0.4),
                        _detection(100, 0, 0, 120, 40, 170, 0.9),
                        _detection(100, 0, 170, 130, 210, 170, 0.2),
                        _detection(100, 0, 220, 10, 260, 40, 0.9)],
                  101: [_detection(101, 1, 20, 20, 80, 80, 0.9),
                        _detection(101, 0, 150, 100, 200, 150, 0.8),
                        _detection(101, 1, 151, 100, 200, 151, 0.9)]}
    found = score_labels(index, detections, NAMES, confident_score=0.5)
    habits = {(h["class"], h["cut_by_edge"]): h for h in found["habits"]}
    # (k + 1) / (n + 2): confident detections (0.9 -> 0.99; not 0.4 -> 0.76; image 1's cat
    # gave way) fitting a label; labels a detection above 0.5 covers
    assert habits["cat", False] == {"class": "cat", "cut_by_edge": False,
                                    "labelled": (1 + 1) / (2 + 2), "detections": 2,
                                    "covered": (2 + 1) / (3 + 2), "labels": 3}
    assert habits["cat", True]["labelled"] == (1 + 1) / (1 + 2)
    assert habits["cat", True]["covered"] == (1 + 1) / (2 + 2)
    assert habits["dog", False]["labelled"] == (1 + 1) / (2 + 2)
    assert habits["dog", False]["covered"] == (1 + 1) / (1 + 2)
    assert habits["dog", True] == {"class": "dog", "cut_by_edge": True, "labelled": 0.5,
                                   "detections": 0, "covered": 0.5, "labels": 0}
    nothing = [issue for issue in found["issues"] if issue["kind"] == ON_NOTHING]
    assert [issue["object_index"] for issue in nothing] == [5, 3]  # inside first
    support = to_probability(0.2, 0.5) * 800 / 2400  # probability times IoU
    assert nothing[0]["score"] == pytest.approx(1 - 3 / 5 * (1 - support))
    assert nothing[1]["score"] == pytest.approx(1 - 2 / 4)  # no detection touches it
    missing = [issue for issue in found["issues"] if issue["kind"] == MISSING]
    assert [(issue["image_id"], issue["suggestion"]["class"]) for issue in missing] == [
        (100, "cat"), (101, "dog")]
    assert missing[1]["suggestion"]["box"] == [151.0, 100.0, 200.0, 151.0]


def _tiny_bccd(root: Path, train: int, val: int) -> Path:
    """A copy of BCCD's first `train` training and `val` validation images."""
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for folder in ("Annotations", "JPEGImages"):
        (root / folder).mkdir()
    for split, count in (("train", train), ("val", val)):
        ids = (BCCD / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:count]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for image_id in ids:
            shutil.copy(BCCD / "Annotations" / f"{image_id}.xml", root / "Annotations")
            shutil.copy(BCCD / "JPEGImages" / f"{image_id}.jpg", root / "JPEGImages")
    return root


@pytest.mark.slow
def test_the_audit_end_to_end_on_a_tiny_bccd_copy(tmp_path):
    data = _tiny_bccd(tmp_path / "bccd", train=6, val=2)
    run_dir = tmp_path / "run"  # a run directory as training leaves it: its composed config
    config = compose_config(["dataset=voc_xml", f"dataset.root={data}", "model.input_size=64",
                             "train.batch_size=2", "precision=float32",
                             "train.progress_bar=false"])
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")
    before = snapshot(data)
    result = run_script("audit_labels.py", f"run_dir={run_dir}", "audit.folds=2",
                        "audit.max_steps=1", "audit.top=3")
    assert result.returncode == 0, result.stderr
    assert snapshot(data) == before  # the dataset folder is only read
    assert "audit: 6 images" in result.stdout
    payload = json.loads((run_dir / "audit" / "label_issues.json").read_text())
    assert payload["split"] == "train" and payload["folds"] == 2
    assert payload["images_scored"] == 6
    xml = {path: ET.parse(path).getroot().findall("object")
           for path in (data / "Annotations").glob("*.xml")}
    train_files = {str(data / "Annotations" / f"{i}.xml") for i in
                   (data / "ImageSets" / "Main" / "train.txt").read_text().split()}
    assert payload["objects_scored"] == sum(len(xml[Path(p)]) for p in train_files)
    assert sum(habit["labels"] for habit in payload["habits"]) == payload["objects_scored"]
    assert "confident detections the labels have, inside the image / cut by its edge: " \
        "Platelets " in result.stdout
    assert {image["annotation"] for image in payload["images"]} == train_files
    quality = [image["label_quality"] for image in payload["images"]]
    assert quality == sorted(quality) and all(0 <= q <= 1 for q in quality)
    issues = payload["issues"]
    assert [issue["rank"] for issue in issues] == list(range(1, len(issues) + 1))
    assert [issue["score"] for issue in issues] == sorted(issue["score"] for issue in issues)
    assert payload["summary"] == {kind: sum(i["kind"] == kind for i in issues)
                                  for kind in payload["summary"]}
    for issue in issues:
        assert issue["annotation"] in train_files
        if issue["object_index"] is not None:  # the label it names is in the file as given
            obj = xml[Path(issue["annotation"])][issue["object_index"]]
            assert obj.findtext("name") == issue["class"]
            box = [float(obj.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax",
                                                                   "ymax")]
            np.testing.assert_allclose(issue["box"], box, atol=1.0)
    pictured = [issue for issue in issues if "picture" in issue]
    assert len(pictured) == min(3, len(issues))
    for issue in pictured:
        with Image.open(run_dir / "audit" / issue["picture"]) as picture:
            assert max(picture.size) == 640
    # the held-out predictions come from runs that did not train on them
    for fold in (0, 1):
        held = json.loads((run_dir / "audit" / "folds" / f"fold{fold}_heldout.json")
                          .read_text())["images"]
        trained = json.loads((run_dir / "audit" / "folds" / f"fold{fold}_train.json")
                             .read_text())["images"]
        assert not {i["file_name"] for i in held} & {i["file_name"] for i in trained}
        assert len(held) == 3
    # run again: the folds are done, so nothing is trained and the findings are the same
    again = run_script("audit_labels.py", f"run_dir={run_dir}", "audit.folds=2",
                       "audit.max_steps=1", "audit.top=3")
    assert again.returncode == 0, again.stderr
    assert "training" not in again.stdout
    assert json.loads((run_dir / "audit" / "label_issues.json").read_text())["issues"] == issues


def test_injected_errors_are_what_the_copy_says(tmp_path):
    data = _tiny_bccd(tmp_path / "bccd", train=6, val=2)
    before = snapshot(data)
    records = label_noise.inject(data, tmp_path / "noisy", fraction=0.1, on_background=2)
    assert snapshot(data) == before
    kinds = [r["kind"] for r in records]
    per_kind = kinds.count(MISSING)
    assert per_kind > 0 and kinds.count(WRONG_CLASS) == kinds.count(BADLY_PLACED) == per_kind
    assert kinds.count(ON_NOTHING) == 2
    for record in records:
        copy = ET.parse(record["annotation"]).getroot().findall("object")
        original = ET.parse(data / "Annotations" / Path(record["annotation"]).name) \
            .getroot().findall("object")
        boxes = [[float(o.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax",
                                                                "ymax")] for o in copy]
        size = ET.parse(record["annotation"]).getroot().find("size")
        width, height = int(size.findtext("width")), int(size.findtext("height"))
        for x1, y1, x2, y2 in boxes:  # VOC's 1-based inclusive corners, inside the image
            assert 1 <= x1 < x2 <= width and 1 <= y1 < y2 <= height, (record, boxes)
        changes = [r["kind"] for r in records if r["annotation"] == record["annotation"]]
        assert len(copy) == len(original) - changes.count(MISSING) + changes.count(ON_NOTHING)
        if record["kind"] == MISSING:
            assert record["box"] not in boxes
            continue
        obj = copy[record["object_index"]]
        assert obj.findtext("name") == record["class"]
        assert boxes[record["object_index"]] == record["box"]
        if record["kind"] == WRONG_CLASS:
            assert record["class"] != record["original"]["class"]
            assert record["box"] == record["original"]["box"]
        elif record["kind"] == BADLY_PLACED:
            x1, y1, x2, y2 = record["original"]["box"]
            dx, dy = record["box"][0] - x1, record["box"][1] - y1
            assert abs(dx) <= (x2 - x1) / 2 + 0.5 and abs(dy) <= (y2 - y1) / 2 + 0.5
            assert (dx, dy) != (0, 0)
        else:
            others = [b for n, b in enumerate(boxes) if n != record["object_index"]]
            assert iou_matrix([record["box"]], others).max() == 0


def test_scoring_counts_precision_and_recall_by_hand():
    truths = [{"kind": WRONG_CLASS, "annotation": "/a/1.xml", "object_index": 3},
              {"kind": WRONG_CLASS, "annotation": "/a/2.xml", "object_index": 0},
              {"kind": MISSING, "annotation": "/a/1.xml", "object_index": None,
               "box": [0, 0, 10, 10]}]

    def issue(kind, name, index, box=None):
        return {"kind": kind, "annotation": f"/run/{name}", "object_index": index,
                "suggestion": {"box": box} if box else {}}

    issues = {"issues": [issue(WRONG_CLASS, "1.xml", 3),  # hit
                         issue(MISSING, "1.xml", None, [0, 0, 10, 12]),  # IoU 0.83: hit
                         issue(WRONG_CLASS, "2.xml", 1),  # other object: miss
                         issue(WRONG_CLASS, "2.xml", 0)]}  # beyond the top 2 of its kind
    result = label_noise.score(issues, truths)
    assert result[WRONG_CLASS] == {"injected": 2, "top": 2, "precision": 0.5, "recall": 0.5}
    assert result[MISSING] == {"injected": 1, "top": 1, "precision": 1.0, "recall": 1.0}
    assert result["overall"] == {"injected": 3, "top": 3, "precision": 2 / 3,
                                 "recall": 2 / 3}


def test_the_shapes_folder_reads_back_as_the_scenes_themselves(tmp_path):
    """`centernet label-noise shapes`: read through the Pascal VOC source (1-based corners),
    every image holds its scene's own boxes (the TFDS example's normalised `ymin, xmin, ymax,
    xmax` times 128) and classes, and its pixels within JPEG's rounding; a second call into
    the same folder is refused, the folder kept."""
    from centernet.config import DatasetConfig, validate
    from centernet.data.shapes import SPLITS, shapes_config
    from centernet.data.shapes_scene import CLASS_NAMES, generate_example
    from centernet.data.sources import build_source
    from folders import examples

    root = label_noise.shapes_folder(tmp_path / "shapes", {"train": 6, "val": 2}, seed=3)
    source = build_source(DatasetConfig(source="voc_xml", root=str(root), train_split="train",
                                        val_split="val"))
    preset = validate(compose_config(["dataset=shapes"])).dataset  # the folder's settings
    assert label_noise.SHAPES_PRESET == {key: getattr(preset, key)
                                         for key in label_noise.SHAPES_PRESET}
    scenes = shapes_config(**label_noise.SHAPES_PRESET, seed=3)
    for split, split_index in (("train", SPLITS["train"]), ("val", SPLITS["validation"])):
        read = examples(source, split)
        assert len(read) == {"train": 6, "val": 2}[split]
        for i, example in enumerate(read):
            truth = generate_example(scenes, split_index, i)
            boxes = truth["objects"]["bbox"][:, [1, 0, 3, 2]] * 128
            np.testing.assert_allclose(example["boxes"], boxes, atol=1e-4)
            assert [source.class_names[c] for c in example["labels"]] == [
                CLASS_NAMES[c] for c in truth["objects"]["label"]]
            pixels = np.asarray(Image.open(io.BytesIO(truth["image"])))
            # JPEG at quality 95 on the scenes' textured backgrounds: about 5 levels off on
            # average; with red and blue swapped, about 20
            error = np.abs(example["image"].astype(int) - pixels)
            assert error.mean() < 8 and error.mean() < np.abs(
                example["image"][..., ::-1].astype(int) - pixels).mean() / 2
    with pytest.raises(FileExistsError, match="exists"):
        label_noise.shapes_folder(root, {"train": 1})
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 8
