"""The run report's numbers on a case counted by hand, its PR curves against the metrics
table pycocotools gives, and the report written from them (figures and a page whose every
picture exists)."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from centernet.evaluation.metrics import coco_metrics, run_cocoeval
from centernet.evaluation.error_analysis import analyze_errors
from centernet.report import best_threshold, report_dir, write_report
from centernet.evaluation.curves import f1_by_threshold, pr_curves
from centernet.report.analysis import analyze, confusion_matrix

# two classes, two images: class a (id 1) twice, class b (id 2) once
GROUND_TRUTH = {
    "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
         "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10], "area": 100,
         "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
         "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
}
DETECTIONS = [
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},    # a: hit
    {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "score": 0.8},  # a on b
    {"image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10], "score": 0.7},  # b: hit
    {"image_id": 1, "category_id": 2, "bbox": [50, 50, 5, 5], "score": 0.6},    # b on nothing
    {"image_id": 2, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.4},    # a: IoU 90/110
    {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.3},    # b on a
]


def test_f1_by_threshold_counts_as_by_hand():
    f1 = f1_by_threshold(run_cocoeval(GROUND_TRUTH, DETECTIONS, print_summary=False))
    thresholds = np.asarray(f1["thresholds"])
    at = {t: int(np.argmin(np.abs(thresholds - t))) for t in (0.3, 0.35, 0.5, 0.65, 0.75, 0.85,
                                                             0.95)}
    a, b = f1["per_class"][1], f1["per_class"][2]
    # class a: 0.9 hit, 0.8 false, 0.4 hit; 2 boxes
    want_a = {0.3: (2 / 3, 1.0), 0.5: (0.5, 0.5), 0.85: (1.0, 0.5), 0.95: (1.0, 0.0)}
    # class b: 0.7 hit, 0.6 and 0.3 false; 1 box
    want_b = {0.3: (1 / 3, 1.0), 0.5: (0.5, 1.0), 0.65: (1.0, 1.0), 0.75: (1.0, 0.0)}
    for curve, want in ((a, want_a), (b, want_b)):
        for threshold, (precision, recall) in want.items():
            index = at[threshold]
            assert curve["precision"][index] == pytest.approx(precision)
            assert curve["recall"][index] == pytest.approx(recall)
            f1_score = 2 * precision * recall / (precision + recall) if recall else 0.0
            assert curve["f1"][index] == pytest.approx(f1_score)
    # mean F1: 0.65 up to 0.3, 0.733 to 0.4, 0.583 to 0.6, 0.75 over (0.6, 0.7], then lower
    assert f1["best_threshold"] == pytest.approx(0.61)
    assert f1["best_mean_f1"] == pytest.approx(0.75)
    assert f1["mean_f1"][at[0.35]] == pytest.approx((0.8 + 2 / 3) / 2)


def test_confusion_matrix_counts_as_by_hand():
    high = confusion_matrix(GROUND_TRUTH, DETECTIONS, score_threshold=0.61)
    assert high["labels"] == ["a", "b", "background"]
    # image 1: a hit, b hit (preferred to the equally overlapping a on b), a on b left over
    # as a false box; image 2: its a missed (0.4 is below the threshold)
    assert high["counts"] == [[1, 0, 1],
                              [0, 1, 0],
                              [1, 0, 0]]
    low = confusion_matrix(GROUND_TRUTH, DETECTIONS, score_threshold=0.0)
    # now also b on nothing (false b), image 2's a found by a (IoU 0.82, same class first)
    # and b on a (IoU 1.0) left over as a false b
    assert low["counts"] == [[2, 0, 0],
                             [0, 1, 0],
                             [1, 2, 0]]


def test_confusion_matrix_pairs_across_classes_when_no_same_class_box_fits():
    detections = [{"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.9}]
    counts = confusion_matrix(GROUND_TRUTH, detections, score_threshold=0.5)["counts"]
    assert counts[0] == [0, 1, 1]  # image 2's a taken for b; image 1's a missed
    assert counts[1] == [0, 0, 1]  # image 1's b missed


def test_pr_curves_average_to_the_tables_ap():
    rng = np.random.default_rng(0)
    detections = [dict(d, score=float(s)) for d, s in zip(DETECTIONS,
                                                          rng.uniform(0.1, 1, len(DETECTIONS)))]
    metrics = coco_metrics(GROUND_TRUTH, detections)
    evaluation = run_cocoeval(GROUND_TRUTH, detections, print_summary=False)
    curves = pr_curves(evaluation, 0.5)
    assert len(curves["recall"]) == 101
    for category_id, name in ((1, "a"), (2, "b")):
        assert np.mean(curves["precision"][category_id]) == pytest.approx(
            metrics[f"AP50/{name}"])
    assert np.mean([np.mean(c) for c in curves["precision"].values()]) == pytest.approx(
        metrics["AP50"])
    strict = pr_curves(evaluation, 0.75)
    assert np.mean([np.mean(c) for c in strict["precision"].values()]) == pytest.approx(
        metrics["AP75"])


def test_analyze_draws_the_confusion_at_the_best_threshold():
    analysis = analyze(GROUND_TRUTH, DETECTIONS)
    assert analysis["confusion"]["score_threshold"] == analysis["f1"]["best_threshold"]
    assert set(analysis) == {"pr50", "pr75", "f1", "confusion", "worst_images"}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.pictures, self.cells = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.pictures.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.cells.append(data.strip())


def test_write_report_links_every_figure_and_shows_the_metrics(tmp_path):
    records = [{"kind": "train", "step": s, "loss": 5.0 / s, "heatmap": 4.0 / s, "wh": 1.0,
                "offset": 0.2, "lr": 1e-3 * s / 10} for s in range(1, 11)]
    records += [{"kind": "eval", "step": 5, "AP": 0.3, "AP50": 0.5},
                {"kind": "eval", "step": 10, "AP": 0.4, "AP50": 0.6}]
    metrics = coco_metrics(GROUND_TRUTH, DETECTIONS)
    directory = report_dir(tmp_path, "val")
    asked = []

    def load_images(image_ids):
        asked.extend(image_ids)
        return {image_id: np.full((100, 100, 3), 90, np.uint8) for image_id in image_ids}

    index = write_report(directory, "a <run>", [("split", "val")], GROUND_TRUTH, DETECTIONS,
                         metrics, analyze_errors(GROUND_TRUTH, DETECTIONS), records,
                         load_images)
    assert index == tmp_path / "report" / "val" / "index.html"
    assert sorted(asked) == [1, 2]  # both images have an error at the best threshold
    page = _Page()
    page.feed(index.read_text())
    assert len(page.pictures) == 9 and len(set(page.pictures)) == 9
    assert page.pictures[-2:] == ["gallery_01.png", "gallery_02.png"]
    for picture in page.pictures:
        assert (directory / picture).read_bytes()[:4] == b"\x89PNG", picture
    assert "a <run>" in page.cells  # escaped in the page, the same text once parsed
    assert f"{metrics['AP50']:.4f}" in page.cells
    assert best_threshold(tmp_path, "val") == pytest.approx(0.61)
    assert best_threshold(tmp_path, "test") is None
    assert json.loads((directory / "analysis.json").read_text())["f1"]["best_threshold"] == \
        pytest.approx(0.61)


def test_worst_images_rank_by_errors_as_counted_by_hand():
    from centernet.report.analysis import image_outcomes, worst_images

    high = worst_images(image_outcomes(GROUND_TRUTH, DETECTIONS, 0.61), 8)
    # image 1: a on b left over (1 false); image 2: its a missed; a tie goes by image id
    assert high == [{"image_id": 1, "missed": 0, "confused": 0, "false": 1},
                    {"image_id": 2, "missed": 1, "confused": 0, "false": 0}]
    low = worst_images(image_outcomes(GROUND_TRUTH, DETECTIONS, 0.0), 1)
    assert low == [{"image_id": 1, "missed": 0, "confused": 0, "false": 2}]
    confused = image_outcomes(GROUND_TRUTH, [{"image_id": 2, "category_id": 2,
                                              "bbox": [0, 0, 10, 10], "score": 0.9}], 0.5)
    assert worst_images(confused, 8) == [{"image_id": 1, "missed": 2, "confused": 0,
                                          "false": 0},
                                         {"image_id": 2, "missed": 0, "confused": 1,
                                          "false": 0}]


def test_the_gallery_draws_each_kind_of_error_in_its_colour(tmp_path):
    from centernet.report import gallery
    from centernet.report.analysis import image_outcomes

    outcomes = image_outcomes(GROUND_TRUTH, DETECTIONS, 0.3)  # image 1: found a, b; false a, b
    image = np.full((100, 100, 3), 128, np.uint8)
    names = {1: "a", 2: "b"}
    drawn = gallery.draw_outcome(image, outcomes[2], names)  # image 2: found a, false b on it
    assert drawn.shape == (640, 640, 3)  # scaled to the longest side
    colours = {tuple(pixel) for pixel in drawn.reshape(-1, 3)}
    assert gallery.FOUND in colours and gallery.FALSE in colours
    assert gallery.MISSED not in colours and gallery.CONFUSED not in colours
    missed = gallery.draw_outcome(image, image_outcomes(GROUND_TRUTH, [], 0.5)[1], names)
    assert gallery.MISSED in {tuple(pixel) for pixel in missed.reshape(-1, 3)}
    files = gallery.write_gallery({1: image}, [{"image_id": 2}, {"image_id": 1}], outcomes,
                                  names, tmp_path)
    assert files == ["gallery_02.png"] and (tmp_path / "gallery_02.png").exists()


def test_split_boxes_of_bccd_agree_with_its_xml_files(tmp_path):
    """BCCD's train split as the report reads it (the folder index, no image decoded)
    against its XML files read with xml.etree: the same boxes per class, as fractions of
    each image; and the data figure drawn from them."""
    from pathlib import Path

    from conftest import compose_config
    from folders import parse_voc_independently

    from centernet.config import validate
    from centernet.data.sources import build_source
    from centernet.report.data import split_boxes
    from centernet.report.figures import data

    root = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bccd"
    run = validate(compose_config(["dataset=voc_xml", f"dataset.root={root}"]))
    source = build_source(run.dataset)
    boxes = split_boxes(source, "train")
    names = list(source.class_names)
    counts = np.zeros(len(names), np.int64)
    fractions = []
    for stem in (root / "ImageSets" / "Main" / "train.txt").read_text().split():
        parsed = parse_voc_independently(root / "Annotations" / f"{stem}.xml", names)
        keep = ~parsed["difficult"] & (parsed["boxes"][:, 2] > parsed["boxes"][:, 0])
        counts += np.bincount(parsed["labels"][keep], minlength=len(names))
        x1, y1, x2, y2 = parsed["boxes"][keep].T
        fractions += list(zip((x2 - x1) / parsed["width"], (y2 - y1) / parsed["height"]))
    np.testing.assert_array_equal(np.bincount(boxes["labels"], minlength=len(names)), counts)
    widths = boxes["boxes"][:, 3] - boxes["boxes"][:, 1]
    heights = boxes["boxes"][:, 2] - boxes["boxes"][:, 0]
    np.testing.assert_allclose(np.sort(widths), np.sort([w for w, _ in fractions]), atol=1e-6)
    np.testing.assert_allclose(np.sort(heights), np.sort([h for _, h in fractions]), atol=1e-6)
    path = data({"train": boxes, "val": split_boxes(source, "val")}, names, tmp_path / "d.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def _random_case(seed, images=12, classes=3):
    """Random ground truth (some crowd) and detections near and away from it."""
    rng = np.random.default_rng(seed)
    truth = {"images": [{"id": i, "width": 200, "height": 200} for i in range(1, images + 1)],
             "annotations": [], "categories": [{"id": c + 1, "name": f"c{c}"}
                                               for c in range(classes)]}
    detections = []
    for image in truth["images"]:
        for _ in range(rng.integers(0, 6)):
            x, y, w, h = rng.uniform(0, 150, 2).tolist() + rng.uniform(8, 50, 2).tolist()
            category = int(rng.integers(1, classes + 1))
            truth["annotations"].append({
                "id": len(truth["annotations"]) + 1, "image_id": image["id"],
                "category_id": category, "bbox": [x, y, w, h], "area": w * h,
                "iscrowd": int(rng.uniform() < 0.05)})
            if rng.uniform() < 0.8:  # a detection near it, sometimes of another class
                jitter = rng.normal(0, 4, 4)
                detections.append({"image_id": image["id"], "score": float(rng.uniform()),
                                   "category_id": category if rng.uniform() < 0.85
                                   else int(rng.integers(1, classes + 1)),
                                   "bbox": [x + jitter[0], y + jitter[1],
                                            max(w + jitter[2], 2), max(h + jitter[3], 2)]})
        for _ in range(rng.integers(0, 3)):  # boxes on nothing
            detections.append({"image_id": image["id"], "score": float(rng.uniform()),
                               "category_id": int(rng.integers(1, classes + 1)),
                               "bbox": rng.uniform(0, 150, 2).tolist() + [20.0, 20.0]})
    return truth, detections


@pytest.mark.parametrize("seed", range(5))
def test_pr_areas_and_confusion_sums_on_random_cases(seed):
    truth, detections = _random_case(seed)
    metrics = coco_metrics(truth, detections)
    curves = pr_curves(run_cocoeval(truth, detections, print_summary=False), 0.5)
    for category in truth["categories"]:
        curve = curves["precision"][category["id"]]
        expected = metrics[f"AP50/{category['name']}"]
        if curve is None:
            assert np.isnan(expected)
        else:
            assert abs(np.mean(curve) - expected) < 1e-6
    threshold = 0.3
    counts = np.asarray(confusion_matrix(truth, detections, threshold)["counts"])
    objects = [a for a in truth["annotations"] if not a["iscrowd"]]
    per_class = [sum(a["category_id"] == c["id"] for a in objects) for c in truth["categories"]]
    np.testing.assert_array_equal(counts[:-1].sum(axis=1), per_class)  # every object once
    kept = sum(d["score"] >= threshold for d in detections)
    # every kept detection once: paired with an object (rows of classes) or false (last row)
    assert counts[:, :-1].sum() == kept
    assert counts[-1, -1] == 0
