"""LiteRT and ONNX exports of a real (smoke) run against its SavedModel; the LiteRT checks; and
prediction that skips unusable files and video frames."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from centernet.config import DECODING_KEYS, SCRIPT_KEYS, Decoding
from centernet.engine.run_log import read_metrics
from centernet.engine.runs import load_model, load_run_config, locate, run_classes
from centernet.evaluation.inference import image_batch
from centernet.export import network
from centernet.export.files import export
from centernet.export.runtime import SavedModelDetector, load_detector
from conftest import run_script

pytestmark = pytest.mark.slow

SIZES = [(64, 64), (48, 80), (90, 60), (33, 120)]  # (height, width): several aspect ratios


@pytest.fixture(scope="module")
def images() -> list:
    """RGB images with shapes on them, of several sizes."""
    rng = np.random.default_rng(1)
    result = []
    for height, width in SIZES:
        image = rng.integers(30, 110, (height, width, 3), dtype=np.uint8)
        cv2.circle(image, (width // 2, height // 2), min(height, width) // 4, (250, 40, 40), -1)
        cv2.rectangle(image, (2, 2), (width // 3, height // 3), (40, 240, 60), -1)
        result.append(image)
    return result


@pytest.fixture(scope="module")
def exported(smoke_run, tmp_path_factory) -> dict:
    """Every format of the smoke run's best checkpoint, written in this process by the code
    `scripts/export.py` calls (`centernet.export.files.export`, the run's model loaded once:
    five processes cost a minute more; the command itself runs in
    `test_a_run_trained_in_bfloat16_exports_the_same_float32_network` and test_run_tools)."""
    folder = tmp_path_factory.mktemp("exported")
    run_dir, checkpoint = locate(str(smoke_run), None)
    run = load_run_config(run_dir, OmegaConf.create(), [], SCRIPT_KEYS)
    classes = run_classes(run_dir, run)
    model = load_model(run, checkpoint, len(classes.names), policy="float32")
    formats = {"saved_model": ("saved_model", "float32", folder / "saved_model"),
               "float32": ("litert", "float32", folder / "f32.tflite"),
               "float16": ("litert", "float16", folder / "f16.tflite"),
               "int8": ("litert", "int8", folder / "i8.tflite"),
               "onnx": ("onnx", "float32", folder / "model.onnx")}
    for file_format, precision, output in formats.values():
        export(model, run, classes.names, classes.category_ids, file_format, output,
               str(checkpoint), precision, calibration_count=16, report=lambda *_: None)
    return {name: output for name, (_, _, output) in formats.items()}


def _matched(reference: dict, other: dict, threshold: float, box_tolerance: float,
             score_tolerance: float) -> None:
    """Every reference detection scoring above `threshold` has one in `other` with the same
    class, a box within `box_tolerance` pixels and a score within `score_tolerance` (matched
    by content, not rank: near-equal scores may swap places)."""
    keep = reference["scores"] > threshold
    assert keep.sum() >= 3, "too few detections to compare"
    for box, score, label in zip(reference["boxes"][keep], reference["scores"][keep],
                                 reference["classes"][keep]):
        close = ((other["classes"] == label)
                 & (np.abs(other["boxes"] - box).max(axis=1) <= box_tolerance)
                 & (np.abs(other["scores"] - score) <= score_tolerance))
        assert close.any(), (box, score, label)
    # and nothing extra above the threshold (away from it, where rounding could cross it)
    clear = threshold + score_tolerance
    assert (other["scores"] > clear).sum() <= keep.sum()


@pytest.mark.parametrize("name", ["float32", "onnx"])
def test_exported_files_detect_what_the_saved_model_detects(exported, images, name):
    saved_model = SavedModelDetector(exported["saved_model"])
    detector = load_detector(exported[name])
    assert detector.class_names == saved_model.class_names == ["circle", "rectangle", "triangle"]
    for image in images:
        reference = saved_model.detect_image(image)
        found = detector.detect_image(image)
        assert found["boxes"].shape == reference["boxes"].shape  # the sidecar's k (the run's)
        _matched(reference, found, 0.05, box_tolerance=1e-3, score_tolerance=1e-5)


def test_float16_file_outputs_are_the_float32_files_within_float16_rounding(exported, images):
    """float16 changes only the network's weights (rounded to 11 significant bits; the
    decoding around them is the same code as float32's, checked exactly above), so it is
    checked where the rounding acts: each output (`heatmap` logits, `wh`, `reg`) within 0.5%
    of that output's largest magnitude of the float32 file's (rounding the weights moved them
    by 0.05-0.11% on the smoke run; the int8 file's by 1.5-85%). Decoded boxes are not
    compared: a peak between two near-equal neighbours may move by one cell under any
    rounding."""
    float32, float16 = load_detector(exported["float32"]), load_detector(exported["float16"])
    assert Path(exported["float16"]).stat().st_size < 0.6 * Path(exported["float32"]).stat().st_size
    for image in images:
        letterboxed = image_batch(image, float32.input_size)["image"].numpy()
        reference, rounded = float32.network(letterboxed), float16.network(letterboxed)
        for name in ("heatmap", "wh", "reg"):
            scale = np.abs(reference[name]).max()
            difference = np.abs(rounded[name] - reference[name]).max()
            assert 0 < difference <= 5e-3 * scale, (name, difference, scale)


def test_a_run_trained_in_bfloat16_exports_the_same_float32_network(smoke_run, exported, images,
                                                                   tmp_path):
    """A run whose policy is `mixed_bfloat16` (what `precision=auto` picks on CPUs with
    bfloat16 units) exports a float32 network: LiteRT takes no bfloat16 ops (the conversion
    used to fail there), and its weights are float32 variables under either policy, so the
    file computes exactly what the float32 run's file computes."""
    output = tmp_path / "from_bfloat16.tflite"
    result = run_script("export.py", f"run_dir={smoke_run}", f"output={output}", "format=litert",
                        "precision.policy=mixed_bfloat16")
    assert result.returncode == 0, result.stderr
    float32, from_bfloat16 = load_detector(exported["float32"]), load_detector(output)
    for image in images:
        letterboxed = image_batch(image, float32.input_size)["image"].numpy()
        reference, got = float32.network(letterboxed), from_bfloat16.network(letterboxed)
        for name in ("heatmap", "wh", "reg"):
            np.testing.assert_array_equal(got[name], reference[name], err_msg=name)


def test_sidecar_carries_the_runs_decoding_and_overrides_replace_it(exported, smoke_run,
                                                                    images):
    run_eval = OmegaConf.load(Path(smoke_run) / ".hydra" / "config.yaml").eval
    sidecar = json.loads(Path(f"{exported['onnx']}.json").read_text())
    assert {key: sidecar[key] for key in DECODING_KEYS} == {key: run_eval[key]
                                                           for key in DECODING_KEYS}
    detector = load_detector(exported["onnx"], {"k": 7, "cross_class_iou": None})
    assert detector.decoding == Decoding(7, run_eval.flip_test, None, run_eval.cross_class_decay)
    assert detector.detect_image(images[0])["boxes"].shape == (7, 4)


def test_int8_file_takes_uint8_and_returns_boxes_inside_the_image(exported, images):
    detector = load_detector(exported["int8"])
    interpreter_input = detector.network.runner.get_input_details()["image"]
    assert np.dtype(interpreter_input["dtype"]) == np.uint8
    assert tuple(interpreter_input["quantization"]) == (1.0, 0)  # raw pixel values
    assert json.loads(Path(f"{exported['int8']}.json").read_text())["input"]["dtype"] == "uint8"
    assert Path(exported["int8"]).stat().st_size < 0.3 * Path(exported["float32"]).stat().st_size
    for image in images:
        found = detector.detect_image(image)
        height, width = image.shape[:2]
        assert np.isfinite(found["boxes"]).all() and np.isfinite(found["scores"]).all()
        assert (found["boxes"] >= 0).all()
        assert (found["boxes"][:, [0, 2]] <= width).all()
        assert (found["boxes"][:, [1, 3]] <= height).all()
        assert (found["boxes"][:, 2] >= found["boxes"][:, 0]).all()


@pytest.mark.parametrize("name", ["float32", "float16", "int8"])
def test_litert_files_use_builtin_ops_that_all_run_on_the_gpu_delegate(exported, name):
    flatbuffer = Path(exported[name]).read_bytes()
    ops = network.litert_ops(flatbuffer)
    assert ops["CONV_2D"] >= 20 and "TRANSPOSE_CONV" in ops  # the analyzer's list was read
    assert network.non_builtin_ops(flatbuffer) == []
    assert network.gpu_incompatible_ops(flatbuffer) == []


def _flatbuffer(function, spec, select_tf_ops: bool = False) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(function).get_concrete_function(spec)])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if select_tf_ops else [])
    return converter.convert()


def test_the_litert_checks_catch_what_they_look_for():
    """The checks are not vacuous: top-K and a cast from uint8 are builtins the GPU delegate
    does not run, and a determinant needs a select-TF op."""
    top_k = _flatbuffer(lambda x: tf.math.top_k(x, k=3).values, tf.TensorSpec([1, 10]))
    assert network.non_builtin_ops(top_k) == []
    assert network.gpu_incompatible_ops(top_k) == [
        "TOPK_V2: not among the GPU delegate's documented ops"]
    cast = _flatbuffer(lambda x: tf.cast(x, tf.float32) * 2.0,
                       tf.TensorSpec([1, 8, 8, 3], tf.uint8))
    assert network.gpu_incompatible_ops(cast) == [
        "CAST: not among the GPU delegate's documented ops"]
    determinant = _flatbuffer(lambda x: tf.linalg.det(tf.reshape(x, [1, 3, 3])),
                              tf.TensorSpec([1, 9]), select_tf_ops=True)
    assert network.non_builtin_ops(determinant) == ["FlexMatrixDeterminant"]


@pytest.fixture(scope="module")
def mixed_folder(images, tmp_path_factory) -> Path:
    """Two good images, and a corrupt PNG, a truncated JPEG and a text file named .jpg."""
    folder = tmp_path_factory.mktemp("mixed")
    cv2.imwrite(str(folder / "a_good.png"), images[0][..., ::-1])
    cv2.imwrite(str(folder / "b_good.jpg"), images[1][..., ::-1])
    whole = (folder / "b_good.jpg").read_bytes()
    (folder / "c_truncated.jpg").write_bytes(whole[:len(whole) // 2])
    (folder / "d_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2)
    (folder / "e_notes.jpg").write_text("not an image\n")
    return folder


@pytest.mark.parametrize("how", ["checkpoint", "litert"])
def test_predict_skips_unusable_files_and_finishes_the_folder(smoke_run, exported, mixed_folder,
                                                               tmp_path, how):
    source = ([f"run_dir={smoke_run}"] if how == "checkpoint"
              else ["format=litert", f"model_file={exported['float32']}"])
    result = run_script("predict.py", *source, f"input={mixed_folder}", f"output={tmp_path}")
    assert result.returncode == 0, result.stderr
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert [record["file"] for record in predictions["images"]] == ["a_good.png", "b_good.jpg"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["a_good.png", "b_good.png"]
    skipped = {item["file"]: item["reason"] for item in predictions["skipped"]}
    assert set(skipped) == {"c_truncated.jpg", "d_corrupt.png", "e_notes.jpg"}
    assert "Invalid JPEG data" in skipped["c_truncated.jpg"]
    assert "Unknown image file format" in skipped["e_notes.jpg"]
    for name in skipped:
        assert f"skipped {name}: " in result.stdout
    assert "2 image(s), 3 skipped" in result.stdout


def test_predict_with_no_usable_file_fails_naming_each(smoke_run, mixed_folder, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("c_truncated.jpg", "e_notes.jpg"):
        (bad / name).write_bytes((mixed_folder / name).read_bytes())
    result = run_script("predict.py", f"run_dir={smoke_run}", f"input={bad}",
                        f"output={tmp_path / 'out'}")
    assert result.returncode == 2
    assert "no image could be processed" in result.stderr
    assert "c_truncated.jpg" in result.stderr and "e_notes.jpg" in result.stderr


def test_predict_keeps_going_after_a_broken_video_frame(smoke_run, tmp_path):
    """An MJPEG video whose fifth frame's JPEG header is zeroed: the other nine are drawn."""
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for index in range(10):
        frame = np.full((48, 64, 3), 20 * index, np.uint8)
        cv2.rectangle(frame, (5 + index, 5), (30 + index, 30), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == 10  # one JPEG per frame
    data[starts[4]:starts[4] + 200] = bytes(200)
    video.write_bytes(bytes(data))
    result = run_script("predict.py", f"run_dir={smoke_run}", f"input={video}",
                        f"output={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [record["file"] for record in predictions["images"]] == [
        f"clip.avi#{index}" for index in range(10) if index != 4]
    assert predictions["skipped"] == [{"file": "clip.avi#4", "reason": "frame does not decode"}]
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 9


def test_export_benchmark_reports_every_variant_and_onnx_reproduces_the_logged_ap(smoke_run):
    """`benchmark.py export` (two variants, in process): positive sizes and latencies, and the
    ONNX file's AP on the validation split is the AP training logged for that checkpoint."""
    from omegaconf import OmegaConf

    from centernet.config import validate
    from centernet.engine.runs import load_model, resolve_checkpoint, run_classes
    from centernet.export.measure import export_figures

    run = validate(OmegaConf.load(smoke_run / ".hydra" / "config.yaml"))
    run.export.calibration_images = 8
    checkpoint = resolve_checkpoint(smoke_run, None)
    classes = run_classes(smoke_run, run)
    model = load_model(run, checkpoint, len(classes.names), policy="float32")
    rows = export_figures(model, run, classes.names, classes.category_ids, str(checkpoint),
                          repeats=3, variants=(("onnx", "float32"), ("litert", "int8")),
                          progress=lambda stage: None)
    assert [(row["format"], row["precision"]) for row in rows] == [("onnx", "float32"),
                                                                  ("litert", "int8")]
    for row in rows:
        assert row["size_mb"] > 0 and row["latency_ms"] > 0 and 0 <= row["ap50"] <= 1
    best = json.loads((smoke_run / "checkpoints" / "best" / "best.json").read_text())
    logged = next(r for r in read_metrics(smoke_run)
                  if r["kind"] == "eval" and r["step"] == best["step"])
    assert rows[0]["ap"] == pytest.approx(logged["AP"], abs=1e-3)
    assert rows[0]["ap50"] == pytest.approx(logged["AP50"], abs=1e-3)
