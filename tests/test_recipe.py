"""The recipes, the weight average and the `auto` choices of precision and XLA.

- `recipe=centernet` composes to exactly the original CenterNet's pieces, the default to the
  fast recipe's;
- `WeightAverage` against a hand-computed sequence, and through a checkpoint;
- `precision=auto` / `train.jit_compile=auto` against mocked machines.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from centernet.config import Decoding, validate
from centernet.engine.ema import WeightAverage, ema_objects
from centernet.engine.data_choices import choose_settings
from centernet.engine.hardware import (Machine, choose_jit, choose_precision, cpu_flags,
                                       float16_without_onednn, precision_warning)
from conftest import compose_config


def composed(*overrides):
    return validate(compose_config(list(overrides)))


def test_default_run_uses_the_fast_recipe():
    cfg = composed()
    assert cfg.model.neck == "shortcut"
    assert cfg.targets.kind == "ttfnet"
    assert cfg.loss.giou_weight > 0


def test_fast_recipe_tuning_for_shapes_applies_to_shapes_only():
    on_shapes = composed()
    assert on_shapes.loss.heatmap_weight == 2.0
    assert on_shapes.eval.decoding == Decoding(100, True, 0.7, 0.3)
    assert (on_shapes.train.max_steps, on_shapes.train.eval_every) == (1100, 0)
    elsewhere = composed("dataset=voc_xml", "dataset.root=somewhere")
    assert elsewhere.loss.heatmap_weight == 1.0
    assert elsewhere.eval.decoding == Decoding()
    original = composed("recipe=centernet")
    assert original.eval.decoding == Decoding()  # k 100, no flip, no cross-class decay
    assert (original.train.max_steps, original.train.eval_every) == (1000, 500)


def test_recipe_centernet_is_the_original_centernet():
    cfg = composed("recipe=centernet")
    assert cfg.model.neck == "deconv"
    assert cfg.targets.kind == "centernet"
    assert (cfg.targets.dense_wh, cfg.targets.dense_reg) == (False, False)
    assert cfg.loss.giou_weight == 0.0
    assert (cfg.loss.heatmap_weight, cfg.loss.wh_weight, cfg.loss.offset_weight) == (1, 0.1, 1)
    assert cfg.train.ema_decay is None


def test_recipe_centernet_keeps_the_default_runs_data_and_schedule():
    fast, original = composed(), composed("recipe=centernet")
    assert fast.dataset == original.dataset
    assert fast.augment == original.augment
    assert fast.model.input_size == original.model.input_size


# --------------------------------------------------------------------------------------------
# weight average
# --------------------------------------------------------------------------------------------


def test_weight_average_follows_the_hand_computed_sequence():
    """decay 0.9 with TensorFlow's warm-up d_n = min(0.9, (1 + n) / (10 + n)): by hand,
    a1 = 1 - (1 - 2/11)(1 - 2) = 1.818181..., a2 = a1 - (1 - 3/12)(a1 - 3) = 2.704545..."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    weight = model.weights[0]
    weight.assign([[1.0]])
    average = WeightAverage(model, decay=0.9)
    expected = [20 / 11, 20 / 11 - 0.75 * (20 / 11 - 3)]
    a3 = expected[1] - (1 - 4 / 13) * (expected[1] - 4)
    expected.append(a3)
    for n in range(1, 20):
        expected.append(expected[-1] - (1 - min(0.9, (1 + n + 3) / (10 + n + 3)))
                        * (expected[-1] - (n + 4)))

    @tf.function(jit_compile=True)
    def step():
        weight.assign_add([[1.0]])
        average.update()

    for value in expected:
        step()
        np.testing.assert_allclose(average.variables[0].numpy()[0, 0], value, rtol=1e-6)
    assert int(average.updates.numpy()) == len(expected)


def test_weight_average_is_swapped_in_and_out_and_survives_a_checkpoint(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    average = WeightAverage(model, decay=0.5)
    for weight in model.weights:
        weight.assign(weight + 1.0)
    average.update()
    raw = [w.numpy().copy() for w in model.weights]
    with average.applied():
        inside = [w.numpy().copy() for w in model.weights]
    for r, i, a in zip(raw, inside, average.variables):
        np.testing.assert_array_equal(i, a.numpy())
        assert not np.array_equal(r, i)
    for r, w in zip(raw, model.weights):
        np.testing.assert_array_equal(w.numpy(), r)
    path = tf.train.Checkpoint(model=model, **ema_objects(average)).save(str(tmp_path / "c"))
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    restored = WeightAverage(other, decay=0.5)
    tf.train.Checkpoint(model=other, **ema_objects(restored)).restore(path).assert_consumed()
    for a, b in zip(average.variables, restored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(restored.updates.numpy()) == 1


# --------------------------------------------------------------------------------------------
# auto precision and XLA
# --------------------------------------------------------------------------------------------

EPYC_AVX2 = Machine(frozenset({"sse4_2", "avx", "avx2", "fma"}))
EPYC_AVX512_BF16 = Machine(frozenset({"avx2", "avx512f", "avx512bw", "avx512_bf16"}))
XEON_AMX = Machine(frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"}))
AVX512_NO_BF16 = Machine(frozenset({"avx2", "avx512f", "avx512bw"}))


@pytest.mark.parametrize("machine, policy", [
    (EPYC_AVX2, "float32"), (AVX512_NO_BF16, "float32"),
    (EPYC_AVX512_BF16, "mixed_bfloat16"), (XEON_AMX, "mixed_bfloat16"),
    (Machine(frozenset(), ((7, 5),)), "float32"),
    (Machine(frozenset(), ((8, 0),)), "mixed_bfloat16")])
def test_auto_precision_picks_bfloat16_only_with_native_bfloat16(machine, policy):
    assert choose_precision(machine)[0] == policy


@pytest.mark.parametrize("machine, xla", [
    (EPYC_AVX2, True), (EPYC_AVX512_BF16, False), (AVX512_NO_BF16, False),
    (Machine(frozenset({"avx512f"}), ((8, 6),)), True)])
def test_auto_jit_follows_the_measurements(machine, xla):
    assert choose_jit(machine)[0] is xla


def test_auto_choices_say_what_they_picked_and_why():
    cfg = validate(compose_config([]))
    choices = choose_settings(cfg, None, EPYC_AVX2)
    assert [c.line() for c in choices] == [
        "  precision.policy=float32: the CPU has no bfloat16 units: no avx512_bf16 or amx_bf16",
        "  train.jit_compile=true: the CPU has no AVX-512, where XLA measured faster"]
    explicit = validate(compose_config(["precision=float32", "train.jit_compile=false"]))
    assert choose_settings(explicit, None, EPYC_AVX2) == []


def test_float16_is_warned_about_only_on_a_cpu_running_onednn():
    onednn = Machine(XEON_AMX.cpu_flags, onednn=True)
    assert "100x slower than float32" in precision_warning("mixed_float16", onednn)
    assert precision_warning("mixed_float16", XEON_AMX) is None  # TF_ENABLE_ONEDNN_OPTS=0
    assert precision_warning("mixed_float16", Machine(frozenset(), ((7, 5),), True)) is None
    for policy in ("float32", "mixed_bfloat16"):
        assert precision_warning(policy, onednn) is None


def test_auto_resolves_on_this_machine(monkeypatch):
    import centernet.engine.hardware as hardware
    monkeypatch.setattr(hardware, "this_machine", lambda: EPYC_AVX512_BF16)
    cfg = composed("precision=auto", "train.jit_compile=auto")
    assert hardware.precision_policy(cfg.precision) == "mixed_bfloat16"
    assert hardware.uses_xla(cfg.train) is False
    monkeypatch.setattr(hardware, "this_machine", lambda: EPYC_AVX2)
    assert hardware.precision_policy(cfg.precision) == "float32"
    assert hardware.uses_xla(cfg.train) is True
    assert hardware.uses_xla(composed("train.jit_compile=false").train) is False


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_flags(cpuinfo) == frozenset({"fpu", "avx2", "avx512f", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_float16_runs_turn_onednn_off_unless_the_user_chose():
    environ = {}
    note = float16_without_onednn("mixed_float16", environ, tensorflow_imported=False)
    assert environ == {"TF_ENABLE_ONEDNN_OPTS": "0"} and "TF_ENABLE_ONEDNN_OPTS=1" in note
    assert float16_without_onednn("mixed_float16", {"TF_ENABLE_ONEDNN_OPTS": "1"},
                                  tensorflow_imported=False) is None
    late = {}  # TensorFlow read the variable when it was imported: too late to change it
    assert float16_without_onednn("mixed_float16", late) is None and late == {}
    for policy in ("float32", "mixed_bfloat16", "auto"):
        untouched = {}
        assert float16_without_onednn(policy, untouched, tensorflow_imported=False) is None
        assert untouched == {}
