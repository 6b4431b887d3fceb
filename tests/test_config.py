"""The config tree composes, and bad values fail before any TensorFlow work, naming the key;
each key's default is set in one place per layer, and `--help` is written from the configs and
the schema."""

import dataclasses
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from centernet.config import RunConfig, validate
from centernet.config.commands import SCHEMAS
from centernet.config.help import key_descriptions
from centernet.errors import ConfigError
from conftest import ROOT, compose_config, run_script

# A preset may restore the schema's value over a lower layer that changed it; each one, and why.
RESTORES_THE_SCHEMA = {
    ("experiment/nan_demo.yaml", "schedule.warmup_steps"): "schedule=cosine's warm-up",
    ("experiment/smoke.yaml", "dataset.num_test"): "the shapes preset's test split",
}


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


def test_help_lists_the_groups_one_line_each_and_every_key_with_its_comment():
    result = run_script("train.py", "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for group, options in [("dataset", "coco_json, shapes*, tfds, voc_xml"),
                           ("loss", "clamped, naive, per_image, stable*"),
                           ("recipe", "centernet, ttfnet*"), ("model", ""), ("experiment", ""),
                           ("optimizer", ""), ("schedule", ""), ("precision", "")]:
        found = [line for line in lines if line.startswith(f"  {group}:")]
        assert len(found) == 1 and options in found[0], (group, found)
    assert "recipe_dataset" not in result.stdout  # internal: picked by recipe and dataset
    for section in dataclasses.fields(RunConfig):
        for key in dataclasses.fields(section.default_factory):
            assert any(line.startswith(f"    {section.name}.{key.name}=") for line in lines), key
    lr = next(i for i, line in enumerate(lines) if line.startswith("    train.lr="))
    assert "a rate per 32 images" in lines[lr] and "lr * batch_size / 32" in " ".join(
        lines[lr:lr + 3])


def test_help_shows_the_values_of_the_overrides_beside_it():
    result = run_script("train.py", "dataset=voc_xml", "--help")
    assert result.returncode == 0, result.stderr
    assert "voc_xml<" in result.stdout and "    dataset.val_split=val " in result.stdout


@pytest.mark.parametrize("command", sorted(SCHEMAS))
def test_every_key_of_every_schema_has_its_comment(command):
    """`--help` describes every key from the comment above its field in the schema."""
    def undocumented(schema):
        described = key_descriptions(schema)
        for item in dataclasses.fields(schema):
            factory = item.default_factory
            if isinstance(factory, type) and dataclasses.is_dataclass(factory):
                yield from (f"{item.name}.{key}" for key in undocumented(factory))
            elif item.name not in described:
                yield item.name

    assert list(undocumented(SCHEMAS[command])) == []


def preset_values(path: Path) -> dict:
    """`{full key: value}` a file under configs/ sets (a group option's under its group)."""
    data = yaml.safe_load(path.read_text()) or {}
    data.pop("defaults", None)
    data.pop("hydra", None)
    if "@package _global_" not in path.read_text() and path.parent.name != "configs":
        data = {path.parent.name: data}

    def flat(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return dict(flat(data))


def test_presets_set_only_what_they_change():
    """Every key's default is the schema's; a file under configs/ sets a key to the schema's
    value only to name a group's option for itself (`model/resnet18.yaml`: `name: resnet18`)
    or to restore it over a lower layer (`RESTORES_THE_SCHEMA`, each with its reason)."""
    schema = OmegaConf.structured(RunConfig)
    repeated = []
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        for key, value in preset_values(path).items():
            if OmegaConf.select(schema, key, default="<none>") != value:
                continue
            name = str(path.relative_to(ROOT / "configs"))
            if value == path.stem or (name, key) in RESTORES_THE_SCHEMA:
                continue
            repeated.append(f"{name}: {key}={value!r}")
    assert repeated == []


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
