"""Data-aware defaults: the profile of a split against NumPy on hand-made boxes, each rule on
hand-computed cases, explicit settings kept, and a real run on a folder that prints, records
and keeps its choices."""

from __future__ import annotations

import json

import numpy as np
import pytest

from centernet.config import validate
from centernet.data.annotations import SplitIndex
from centernet.data.statistics import DataProfile, profile_split
from centernet.engine.data_choices import (apply_choices, choose_batch_size, choose_input_size,
                                           choose_max_scale, choose_settings)
from centernet.engine.hardware import Machine, choose_precision, this_machine
from centernet.engine import data_choices
from centernet.training import train
from centernet.errors import ConfigError
from conftest import compose_config
from folders import RED, write_image, write_voc, voc_object

CPU = Machine(frozenset({"avx2"}))
GPU = Machine(frozenset({"avx2"}), gpu_capabilities=((8, 0),))


def _index(images, objects) -> SplitIndex:
    """`images`: (height, width); `objects`: (image, label, x1, y1, x2, y2, crowd) in pixels."""
    sizes = np.array(images, np.int64)
    rows = sorted(objects)
    boxes = np.array([[y1 / sizes[i, 0], x1 / sizes[i, 1], y2 / sizes[i, 0], x2 / sizes[i, 1]]
                      for i, _, x1, y1, x2, y2, _ in rows], np.float32)
    counts = np.bincount([r[0] for r in rows], minlength=len(images))
    return SplitIndex(paths=[f"{i}.jpg" for i in range(len(images))],
                      image_ids=np.arange(len(images)), sizes=sizes, boxes=boxes,
                      labels=np.array([r[1] for r in rows], np.int32),
                      is_crowd=np.array([r[6] for r in rows], bool),
                      row_splits=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                      annotations=[f"{i}.xml" for i in range(len(images))],
                      object_index=np.zeros(len(rows), np.int64))


def test_profile_against_numpy_on_hand_made_boxes():
    """Two images (landscape 480x640, portrait 1000x500); shorter box sides over the longer
    image side, per class, 10th percentile; the crowd box is left out."""
    rng = np.random.default_rng(3)
    objects, shorter = [], {0: [], 1: []}
    for n in range(40):
        image = n % 2
        height, width = [(480, 640), (1000, 500)][image]
        label = int(n % 5 == 0)
        w, h = rng.uniform(8, 200, size=2).round()
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        objects.append((image, label, x1, y1, x1 + w, y1 + h, False))
        shorter[label].append(min(w, h) / max(height, width))
    objects.append((0, 1, 0.0, 0.0, 3.0, 3.0, True))  # crowd: not measured
    profile = profile_split(_index([(480, 640), (1000, 500)], objects), ["cat", "dog"])
    assert (profile.images, profile.objects, profile.classes) == (2, 40, 2)
    assert profile.long_side == 820.0  # median of 640 and 1000
    for label, name in enumerate(["cat", "dog"]):
        assert profile.small_side[name] == pytest.approx(np.percentile(shorter[label], 10),
                                                         rel=1e-5)
    assert profile.smallest_class == min(profile.small_side, key=profile.small_side.get)


def test_profile_of_a_split_without_boxes_is_refused():
    with pytest.raises(ValueError, match="no annotated object"):
        profile_split(_index([(10, 10)], [(0, 0, 1, 1, 5, 5, True)]), ["a"])


def _profile(small_px: float, long_side: float = 640.0, images: int = 300) -> DataProfile:
    return DataProfile(images=images, objects=10 * images, classes=3, long_side=long_side,
                       small_side={"Platelets": small_px / long_side, "RBC": 0.15},
                       smallest_class="Platelets")


@pytest.mark.parametrize("small_px, long_side, machine, expected", [
    (30, 640, CPU, 352),   # 16 / (30 / 640) = 341.3 px: nearest multiple of 32
    (30, 640, GPU, 352),
    (5, 640, CPU, 512),    # 2048 px wanted: the CPU's largest
    (5, 640, GPU, 640),    # the GPU's 768 is above the images' own 640
    (5, 1600, GPU, 768),
    (200, 640, CPU, 256),  # 51 px wanted: the smallest
    (10, 200, CPU, 224),   # small images: never above their own size
])
def test_input_size_rule(small_px, long_side, machine, expected):
    choice = choose_input_size(_profile(small_px, long_side), machine)
    assert choice.key == "model.input_size" and choice.value == expected
    assert "Platelets" in choice.why
    assert choose_input_size(None, machine).value == 512


@pytest.mark.parametrize("images, machine, replicas, expected", [
    (300, CPU, 1, 16), (300, GPU, 1, 32), (50, CPU, 1, 4), (10, CPU, 1, 2), (300, CPU, 3, 18)])
def test_batch_rule(images, machine, replicas, expected):
    assert choose_batch_size(_profile(30, images=images), machine, replicas).value == expected


@pytest.mark.parametrize("small_px, input_size, expected", [
    (30, 352, 1.4),    # 16.5 px: 2.06 allowed, the original's 1.4
    (30, 192, 1.12),   # 9 px: keep 2 cells (8 px)
    (10, 256, 1.0),    # 4 px: never zoom in by default instead
])
def test_zoom_out_rule(small_px, input_size, expected):
    assert choose_max_scale(_profile(small_px), input_size, 0.6).value == expected


def test_only_open_settings_are_chosen_and_explicit_ones_kept():
    folder = validate(compose_config(["dataset=voc_xml", "dataset.root=/data"]))
    chosen = {c.key: c.value for c in choose_settings(folder, _profile(30), CPU)}
    assert chosen == {"model.input_size": 352, "train.batch_size": 16,
                      "augment.max_scale": 1.4, "train.time_budget": "60m",
                      "precision.policy": "float32", "train.jit_compile": "true"}
    assert {c.key: c.value for c in choose_settings(folder, _profile(30), GPU)} == {
        "model.input_size": 352, "train.batch_size": 32, "augment.max_scale": 1.4,
        "train.time_budget": None, "train.epochs": 100, "precision.policy": "mixed_bfloat16",
        "train.jit_compile": "true"}
    explicit = validate(compose_config(["dataset=voc_xml", "dataset.root=/data",
                                        "model.input_size=192", "train.max_steps=500",
                                        "precision=float32", "train.jit_compile=false"]))
    chosen = {c.key: c.value for c in choose_settings(explicit, _profile(30), CPU)}
    assert chosen == {"train.batch_size": 16, "augment.max_scale": 1.12}
    resolved = apply_choices(explicit, choose_settings(explicit, _profile(30), CPU))
    assert (resolved.model.input_size, resolved.train.batch_size, resolved.train.max_steps) == (
        192, 16, 500)
    shapes = validate(compose_config([]))  # the preset's settings keep their meaning
    assert [c.key for c in choose_settings(shapes, None, CPU)] == [
        "precision.policy", "train.jit_compile"]


def _voc_folder(root, images_per_split=16):
    for split in ("train", "val"):
        for i in range(images_per_split):
            x = 4 * (i % 8)
            write_image(root / split / f"{split}{i}.jpg", 96, 128, [(x, 8, x + 24, 40, RED)])
            write_voc(root / split / f"{split}{i}.xml", f"{split}{i}.jpg", (96, 128),
                      [voc_object("box", x, 8, x + 24, 40)])


TINY = ["model.neck_channels=[16,16,16]", "model.head_conv=8", "train.max_steps=2",
        "train.eval_every=0", "train.checkpoint_every=2", "eval.k=10",
        "train.jit_compile=false", "train.progress_bar=false"]


@pytest.mark.slow
def test_a_folder_run_prints_records_and_keeps_its_choices(tmp_path, capsys):
    """The run on a folder of 128x96 images picks 128 px (their own size), batch 2 (an
    eighth of 16), says so, writes the choices to plan.json and the resolved config; resumed
    after the folder has grown, it keeps what it chose."""
    root, run_dir = tmp_path / "voc", tmp_path / "run"
    _voc_folder(root)
    cfg = compose_config(["dataset=voc_xml", f"dataset.root={root}", *TINY])
    train(cfg, run_dir)
    printed = capsys.readouterr().err
    assert "chosen for this data and machine" in printed
    assert "model.input_size=128: box, the smallest class" in printed
    assert "train.batch_size=2" in printed and "peak 0.00025 at batch 2" in printed
    plan = json.loads((run_dir / "plan.json").read_text())
    assert {c["key"]: c["value"] for c in plan["choices"]} == {
        "model.input_size": 128, "train.batch_size": 2, "augment.max_scale": 1.4,
        "precision.policy": choose_precision(this_machine())[0]}
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "input_size: 128" in saved and "batch_size: 2" in saved

    _voc_folder(root, images_per_split=64)  # would now choose batch 8
    resumed = compose_config(["dataset=voc_xml", f"dataset.root={root}", *TINY[:2],
                              "train.max_steps=4", *TINY[3:]])
    result = train(resumed, run_dir)
    assert result["step"] == 4
    plan = json.loads((run_dir / "plan.json").read_text())
    assert {c["key"]: c["value"] for c in plan["choices"]}["train.batch_size"] == 2
    assert "batch_size: 2" in (run_dir / ".hydra" / "config.yaml").read_text()


AVX2_ONLY = Machine(frozenset({"avx2", "avx512f"}))
AMX = Machine(frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))


@pytest.mark.slow
def test_a_resumed_run_keeps_the_precision_it_recorded(tmp_path, monkeypatch, capsys):
    """precision=auto resolved on one kind of CPU is recorded; resumed where auto would pick
    otherwise, the run keeps it (float32 begun without bfloat16 units stays float32 on AMX),
    and a bfloat16 run resumed where bfloat16 is missing stops naming the key and the two
    overrides, one of which then resumes it (the machine's features are faked)."""
    root = tmp_path / "voc"
    _voc_folder(root)
    base = ["dataset=voc_xml", f"dataset.root={root}", *TINY]

    def run(machine: Machine, run_dir, steps: int, *extra: str) -> dict:
        monkeypatch.setattr(data_choices, "this_machine", lambda: machine)
        overrides = [o for o in base if not o.startswith("train.max_steps")]
        return train(compose_config([*overrides, f"train.max_steps={steps}", *extra]), run_dir)

    def recorded(run_dir) -> str:
        plan = json.loads((run_dir / "plan.json").read_text())
        return {c["key"]: c["value"] for c in plan["choices"]}["precision.policy"]

    kept = tmp_path / "float32_run"
    run(AVX2_ONLY, kept, 2)
    assert recorded(kept) == "float32"
    assert run(AMX, kept, 4)["step"] == 4  # where auto would now pick bfloat16
    assert recorded(kept) == "float32"
    assert "policy: float32" in (kept / ".hydra" / "config.yaml").read_text()
    assert "precision.policy=float32: the CPU has no bfloat16 units" in capsys.readouterr().err

    stopped = tmp_path / "bfloat16_run"
    run(AMX, stopped, 2)
    assert recorded(stopped) == "mixed_bfloat16"
    with pytest.raises(ConfigError) as error:
        run(AVX2_ONLY, stopped, 4)
    message = str(error.value)
    assert "\n" not in message and message.startswith("precision.policy:")
    assert "precision=float32" in message and "precision=mixed_bfloat16" in message
    assert run(AVX2_ONLY, stopped, 4, "precision=float32")["step"] == 4


def test_experiment_bccd_is_the_one_folder_command_on_an_honest_protocol():
    """experiment=bccd trains on train and selects on val (never test, never trainval, which
    contains val), with exactly the settings of the one command a user types."""
    bccd = validate(compose_config(["experiment=bccd"]))
    typed = validate(compose_config(["dataset=voc_xml", "dataset.root=../shared/datasets/bccd"]))
    assert bccd == typed
    assert (bccd.dataset.train_split, bccd.dataset.val_split) == ("train", "val")
