"""The config tree composes, and bad values fail before any TensorFlow work, naming the key."""

import pytest

from centernet.config import validate
from centernet.errors import ConfigError
from conftest import compose_config, run_script


def test_default_config_composes_with_shapes():
    run = validate(compose_config([]))
    assert run.dataset.source == "shapes"
    assert run.model.name == "resnet18"
    assert run.loss.impl == "stable"
    assert run.model.input_size % 32 == 0


def test_groups_and_experiment_override():
    run = validate(compose_config(["loss=naive", "model=mobilenetv2", "experiment=smoke",
                                   "optimizer=sgd", "schedule=step"]))
    assert (run.loss.impl, run.model.name, run.optimizer.name, run.schedule.name) == (
        "naive", "mobilenetv2", "sgd", "step")
    assert run.train.max_steps == 40 and run.model.input_size == 64


def test_cfg_job_prints_composed_config_with_shapes():
    result = run_script("train.py", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "source: shapes" in result.stdout and "name: resnet18" in result.stdout


def test_help_lists_the_groups():
    result = run_script("train.py", "--help")
    assert result.returncode == 0
    for group in ("dataset: coco_json, shapes, tfds, voc_xml", "model:", "loss: clamped, naive, per_image, stable", "experiment:",
                  "optimizer:", "schedule:", "precision:"):
        assert group in result.stdout


@pytest.mark.parametrize("override, expected", [
    ("train.batch_size=abc", ["train.batch_size", "abc", "Integer"]),
    ("train.batch_size=0", ["train.batch_size=0", ">= 1"]),
    ("model.input_size=100", ["model.input_size=100", "multiple of 32"]),
    ("loss.impl=fancy", ["loss.impl='fancy'", "stable, naive, clamped"]),
    ("train.on_nonfinite=ignore", ["train.on_nonfinite", "stop, skip"]),
    ("loss=fancy", ["loss/fancy", "clamped", "naive", "per_image", "stable"]),
])
def test_bad_values_fail_naming_the_key(override, expected, tmp_path):
    """Through the real CLI: non-zero exit, the key and the allowed values in the message, and
    no traceback for values the schema rejects."""
    result = run_script("train.py", override, f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    message = result.stderr + result.stdout
    for text in expected:
        assert text in message, message
    assert "Traceback" not in message


@pytest.mark.parametrize("key, value, fragment", [
    ("dataset.max_size", 0.01, "dataset.max_size"),
    ("schedule.milestones", [0.9, 0.5], "increasing"),
    ("targets.max_objects", 0, "targets.max_objects"),
    ("eval.score_threshold", 1.5, "eval.score_threshold"),
    ("eval.cross_class_iou", 1.5, "eval.cross_class_iou"),
    ("eval.cross_class_decay", -0.1, "eval.cross_class_decay"),
    ("model.neck_channels", [64, 32], "three positive"),
    ("dataset.empty_fraction", 1.0, "dataset.empty_fraction"),
    ("precision.heads", "float16", "precision.heads"),
])
def test_validate_rejects_out_of_range_values(key, value, fragment):
    cfg = compose_config([])
    section, name = key.split(".")
    cfg[section][name] = value
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        validate(cfg)


def test_peak_lr_scales_linearly_with_batch():
    run = validate(compose_config(["train.lr=1.25e-4", "train.batch_size=8",
                                   "train.lr_reference_batch=32"]))
    assert run.train.peak_lr == pytest.approx(1.25e-4 / 4)
    run = validate(compose_config(["train.lr=1e-3", "train.scale_lr=false"]))
    assert run.train.peak_lr == pytest.approx(1e-3)
