"""evaluate.py, predict.py, export.py and show_data.py on a real (smoke) training run."""

import json
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from centernet.engine.run_log import read_metrics
from conftest import run_script

pytestmark = pytest.mark.slow

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
              "ARl")


@pytest.fixture(scope="module")
def trained_run(smoke_run) -> Path:
    return smoke_run


@pytest.fixture(scope="module")
def sample_images(trained_run, tmp_path_factory) -> Path:
    """Validation-like RGB images of several sizes (aspect ratios) written as PNG."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(64, 64), (48, 80), (90, 60)]):
        image = rng.integers(40, 120, (height, width, 3), dtype=np.uint8)
        cv2.circle(image, (width // 2, height // 2), min(height, width) // 4, (250, 40, 40), -1)
        cv2.rectangle(image, (2, 2), (width // 3, height // 3), (40, 240, 60), -1)
        cv2.imwrite(str(folder / f"img{index}.png"), image[..., ::-1])
    return folder


def _same(a, b):
    return (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-6)


def _xla_functions(saved_model_dir):
    """Names of the functions a SavedModel marks for XLA compilation."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((saved_model_dir / "saved_model.pb").read_bytes())
    return [function.signature.name for graph in saved.meta_graphs
            for function in graph.graph_def.library.function
            if function.attr["_XlaMustCompile"].b]


def test_evaluate_reproduces_the_ap_training_logged(trained_run):
    """The best checkpoint's logged evaluation is reproduced by evaluate.py (all 12 COCO
    stats within 1e-6), and the output files have the documented formats."""
    best = json.loads((trained_run / "checkpoints" / "best" / "best.json").read_text())
    logged = next(r for r in read_metrics(trained_run)
                  if r["kind"] == "eval" and r["step"] == best["step"])
    result = run_script("evaluate.py", f"run_dir={trained_run}")
    assert result.returncode == 0, result.stderr
    assert "AP50" in result.stdout
    metrics = json.loads((trained_run / "eval" / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith(f"best/ckpt-{best['step']}")
    for key in COCO_STATS:
        expected = float("nan") if logged[key] is None else logged[key]
        assert _same(metrics[key], expected), (key, metrics[key], expected)
    assert metrics["AR100"] > 0  # the comparison is not between two empty results
    detections = json.loads((trained_run / "eval" / "detections.json").read_text())
    assert detections and set(detections[0]) == {"image_id", "category_id", "bbox", "score"}
    assert {d["category_id"] for d in detections} <= {0, 1, 2}
    errors = json.loads((trained_run / "eval" / "errors.json").read_text())
    kinds = ("true_positive", "duplicate", "wrong_class", "localisation", "background",
             "ignored")
    assert errors["detections"] == sum(errors[kind] for kind in kinds)
    assert "recall@0.5" in result.stdout and "wrong_class" in result.stdout
    split = metrics["split"]
    assert f"report: {trained_run / 'report' / split / 'index.html'}" in result.stdout
    analysis = json.loads((trained_run / "report" / split / "analysis.json").read_text())
    assert np.mean([np.mean(c) for c in analysis["pr50"]["precision"].values()
                    if c is not None]) == pytest.approx(metrics["AP50"], abs=1e-9)


def test_evaluate_names_missing_and_mismatched_checkpoints(trained_run):
    missing = run_script("evaluate.py", f"run_dir={trained_run}",
                         f"checkpoint={trained_run}/checkpoints/ckpt-999")
    assert missing.returncode == 2
    assert "ckpt-999 does not exist" in missing.stderr and "ckpt-40" in missing.stderr
    other = run_script("evaluate.py", f"run_dir={trained_run}", "model.name=mobilenetv2")
    assert other.returncode == 2
    assert "does not match the model config" in other.stderr and "mobilenetv2" in other.stderr


def test_predict_writes_pictures_and_export_gives_the_same_boxes(trained_run, sample_images,
                                                                 tmp_path):
    predicted = run_script("predict.py", f"run_dir={trained_run}", f"input={sample_images}",
                           f"output={tmp_path / 'pred'}", "score_threshold=0.0", "eval.k=20",
                           "heatmap=true")
    assert predicted.returncode == 0, predicted.stderr
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())["images"]
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.png")) == [
        "img0.png", "img1.png", "img2.png"]
    exported = run_script("export.py", f"run_dir={trained_run}", f"output={tmp_path / 'sm'}",
                          "eval.k=20")
    assert exported.returncode == 0, exported.stderr
    assert not _xla_functions(tmp_path / "sm")  # servers without XLA can run it
    detector = tf.saved_model.load(str(tmp_path / "sm"))
    for record in records:
        image = cv2.imread(str(sample_images / record["file"]))[..., ::-1]
        out = detector.signatures["serving_default"](images=tf.constant(image[None]))
        np.testing.assert_allclose(out["boxes"].numpy()[0], record["boxes"], atol=1e-4)
        np.testing.assert_allclose(out["scores"].numpy()[0], record["scores"], atol=1e-6)
        np.testing.assert_array_equal(out["classes"].numpy()[0], record["classes"])
        assert np.all(out["boxes"].numpy()[0][:, 2] <= image.shape[1])


def test_predict_on_a_video_writes_a_video(trained_run, tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (80, 48))
    for index in range(4):
        frame = np.full((48, 80, 3), 60, np.uint8)
        cv2.circle(frame, (20 + 10 * index, 24), 10, (40, 40, 250), -1)
        writer.write(frame)
    writer.release()
    result = run_script("predict.py", f"run_dir={trained_run}", f"input={video}",
                        f"output={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions["images"]) == 4 and predictions["skipped"] == []


def test_predict_names_a_missing_input(trained_run, tmp_path):
    result = run_script("predict.py", f"run_dir={trained_run}", f"input={tmp_path / 'nope'}")
    assert result.returncode == 2 and "nope does not exist" in result.stderr


def test_show_data_writes_a_grid(tfds_dir, tmp_path):
    output = tmp_path / "grid.png"
    result = run_script("show_data.py", "experiment=smoke", f"dataset.data_dir={tfds_dir}",
                        f"output={output}", "num_images=6", "columns=3")
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(output))
    assert image.shape == (2 * 64, 3 * 64, 3)


class _Pictures(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_training_writes_the_report_of_its_best_evaluation(trained_run, sample_images,
                                                           tmp_path):
    best = json.loads((trained_run / "best_evaluation.json").read_text())
    report = trained_run / "report" / best["split"]
    pictures = _Pictures()
    pictures.feed((report / "index.html").read_text())
    assert len(pictures.sources) >= 7  # and the gallery's, one per image with an error
    for source in pictures.sources:  # relative links to PNG files beside the page
        assert (report / source).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", source
    # the PR curves are pycocotools' own: each class's mean is the AP50 training logged
    logged = next(r for r in read_metrics(trained_run)
                  if r["kind"] == "eval" and r["step"] == best["step"])
    analysis = json.loads((report / "analysis.json").read_text())
    names = {c["id"]: c["name"] for c in best["ground_truth"]["categories"]}
    for category_id, curve in analysis["pr50"]["precision"].items():
        if curve is not None:
            assert np.mean(curve) == pytest.approx(logged[f"AP50/{names[int(category_id)]}"],
                                                   abs=1e-9)
    threshold = analysis["f1"]["best_threshold"]
    assert analysis["confusion"]["score_threshold"] == threshold
    # predict.py takes that threshold when given none
    predicted = run_script("predict.py", f"run_dir={trained_run}", f"input={sample_images}",
                           f"output={tmp_path}")
    assert predicted.returncode == 0, predicted.stderr
    assert f"score threshold {threshold:.2f} (the best F1 on {best['split']}" in predicted.stdout
    records = json.loads((tmp_path / "predictions.json").read_text())["images"]
    assert all(score >= threshold for record in records for score in record["scores"])


def test_tensorboard_gets_pictures_and_pr_curves_at_each_evaluation(trained_run):
    tags = {}
    for events in (trained_run / "tensorboard").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(
                    (event.step, value.metadata.plugin_data.plugin_name, value))
    evaluations = sorted(r["step"] for r in read_metrics(trained_run) if r["kind"] == "eval")
    classes = json.loads((trained_run / "classes.json").read_text())["names"]
    for name in classes:  # a class without validation objects has no curve
        entries = tags.get(f"pr/{name}/pr_curves", [])  # the plugin's own tag suffix
        assert [step for step, _, _ in entries] in ([], evaluations), name
        assert all(plugin == "pr_curves" for _, plugin, _ in entries)
    assert any(f"pr/{name}/pr_curves" in tags for name in classes)
    for index in range(4):
        entries = tags[f"detections/{index}"]
        assert [step for step, _, _ in entries] == evaluations
        image = tf.make_ndarray(entries[-1][2].tensor)  # [width, height, encoded PNG]
        assert tf.io.decode_png(image[2]).shape[-1] == 3


def test_train_log_holds_what_the_run_printed(trained_run, tmp_path):
    """train.log gets every line the run printed (what it does, evaluations, the report), not
    the progress bar's redraws; a run that stops on bad input logs its error too."""
    log = (trained_run / "train.log").read_text()
    for expected in ("training centernet_resnet18 on shapes", "step 20: AP ", "step 40: AP ",
                     "runtime: distribute=default, 1 replica(s) on ", "report: "):
        assert expected in log, expected
    runtime = json.loads((trained_run / "plan.json").read_text())["runtime"]
    assert (runtime["strategy"], runtime["replicas"]) == ("default", 1)
    assert "\r" not in log and "step/s" not in log and "s/step" not in log
    failed = tmp_path / "failed"
    result = run_script("train.py", "dataset=voc_xml", f"dataset.root={tmp_path / 'nowhere'}",
                        f"hydra.run.dir={failed}")
    assert result.returncode == 2
    assert f"dataset.root={tmp_path / 'nowhere'}: no such folder" in result.stderr
    assert f"error: dataset.root={tmp_path / 'nowhere'}: no such folder" in (
        failed / "train.log").read_text()
