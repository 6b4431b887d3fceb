"""The benchmark suite through its real command line: every key written, every figure a
positive number, on a tiny configuration. No timed assertions: speed targets live in the
figures the suite prints, not in tests."""

import json

import pytest
from conftest import run_script

from centernet.engine.hardware import bfloat16_cpu_flags, cpu_flags

SUITE_KEYS = ("train_img_per_s", "train_gflops_per_s", "pipeline_img_per_s", "targets_ms_10",
              "targets_ms_100", "ttf_targets_ms_10", "ttf_targets_ms_100", "decode_ms_b8",
              "pipeline_512_img_per_s_per_core",
              "focal_stable_ms", "focal_naive_ms", "eval_s", "peak_rss_mb",
              "matmul_fp32_gflops", "train_share_of_peak")
# figures a CPU without native bfloat16 does not give (null in the JSON)
BF16_KEYS = ("matmul_bf16_gflops", "train_bf16_img_per_s", "train_bf16_share_of_peak")


def test_suite_writes_every_figure_positive(smoke_overrides, tmp_path):
    out = tmp_path / "suite.json"
    result = run_script("benchmark.py", "suite", "--input-size", "64", "--batch-size", "8",
                        "--classes", "3", "--quick", "--out", str(out), *smoke_overrides)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    for key in SUITE_KEYS:
        assert isinstance(figures[key], float) and figures[key] > 0, key
    # the FLOP count is the profiler's, so it must grow with the input: a 64 px ResNet-18
    # CenterNet forward pass is well under the 6.5 GFLOP counted at 256 px and above zero
    assert 0.05 < figures["forward_gflop_per_image"] < 2.0
    assert figures["config"] == {"model": "resnet18", "input_size": 64, "batch_size": 8,
                                 "classes": 3, "precision": "float32", "jit_compile": False}
    assert figures["quick"] is True
    machine = figures["machine"]
    assert machine["cores"] >= 1 and machine["tensorflow"] and machine["cpu"]
    assert set(machine["flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
    native = bool(bfloat16_cpu_flags(cpu_flags()))
    for key in BF16_KEYS:
        assert (isinstance(figures[key], float) and figures[key] > 0) if native else \
            figures[key] is None, key
    # each share is the step's counted GFLOP/s over the peak measured in the same run
    assert abs(figures["train_share_of_peak"] * figures["matmul_fp32_gflops"]
               - figures["train_gflops_per_s"]) < 1e-6 * figures["train_gflops_per_s"]
    if native:
        assert abs(figures["train_bf16_share_of_peak"] * figures["matmul_bf16_gflops"]
                   - 3 * figures["forward_gflop_per_image"] * figures["train_bf16_img_per_s"]
                   ) < 1e-6 * figures["matmul_bf16_gflops"]
    for key in SUITE_KEYS + BF16_KEYS * native:  # the table names every figure too
        assert f"{figures[key]:.4g}" in result.stdout, key


@pytest.mark.parametrize("kind", ["centernet", "ttfnet"])
def test_target_figures_name_the_renderer_that_ran(kind):
    """The targets benchmark's figures on a tiny grid: positive times from each renderer,
    named as it ran, and a peak memory that holds at least the outputs."""
    from centernet import benchmark
    from centernet.data import native

    for fast in (False, True):
        result = benchmark.render_targets_cost(3, output_size=16, num_classes=3, images=16,
                                               kind=kind, native_kernel=fast)
        assert result["ms_per_image"] > 0 and result["one_image_ms"] > 0
        ran = "native" if fast and native.targets_op() is not None else "tensorflow"
        assert result["renderer"] == ran and result["kind"] == kind
        memory = benchmark.targets_peak_mb(5, 2, 16, 3, kind=kind, native_kernel=fast)
        assert memory["peak_mb"] >= memory["outputs_mb"] > 0 and memory["renderer"] == ran


def test_profile_groups_a_real_trace_by_kind(tmp_path):
    out = tmp_path / "profile.json"
    result = run_script("benchmark.py", "profile", "--input-size", "64", "--batch-size", "2",
                        "--classes", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    profile = json.loads(out.read_text())
    rows = {row["kind"]: row for row in profile["rows"]}
    # a ResNet-18 step runs convolutions both ways, BatchNorm, ReLU, the loss and Adam
    for kind in ("convolutions, forward", "convolutions, backward",
                 "BatchNorm (and its gradient)", "ReLU (and its gradient)",
                 "optimizer update", "loss (and its gradient)"):
        assert rows[kind]["ms_per_step"] > 0, kind
    assert abs(sum(row["share"] for row in rows.values()) - 1) < 1e-9
    assert abs(sum(row["ms_per_step"] for row in rows.values())
               - profile["op_ms_per_step"]) < 1e-6
    assert "| convolutions, backward |" in result.stdout


def test_op_kinds_of_names_from_a_real_profile():
    from centernet.study.step_profile import op_kind

    def kind(name, op_type):
        return op_kind(name, op_type, "centernet_resnet18", "adam")

    # names and types as TensorFlow's profiler recorded them for a ResNet-18 step
    model = "centernet_resnet18_1/resnet18_1/"
    assert kind(model + "stage4_block2_1_conv_1/convolution", "_MklNativeConv2D") == \
        "convolutions, forward"
    assert kind("gradient_tape/" + model + "stem_conv_1/convolution/Conv2DBackpropFilter",
                "_MklNativeConv2DBackpropFilter") == "convolutions, backward"
    assert kind("gradient_tape/" + model + "stem_bn_1/batchnorm/mul_1/Mul", "Mul") == \
        "BatchNorm (and its gradient)"
    assert kind(model + "stage1_block1_1_bn_1/FusedBatchNormV3",
                "_MklNativeFusedBatchNormV3") == "BatchNorm (and its gradient)"
    assert kind("gradient_tape/" + model + "stem_relu_1/ReluGrad", "ReluGrad") == \
        "ReLU (and its gradient)"
    assert kind(model + "stage4_block1_2_conv_1/convolution/Cast", "Cast") == "dtype casts"
    assert kind("adam/Sqrt_79", "Sqrt") == "optimizer update"
    assert kind("adam/AssignSubVariableOp_54", "AssignSubVariableOp") == "optimizer update"
    assert kind("Log1p", "Log1p") == "loss (and its gradient)"
    assert kind("gradient_tape/mul_22/Mul", "Mul") == "loss (and its gradient)"
    assert kind("gradient_tape/" + model + "stem_pool_1/MaxPool/MaxPoolGrad",
                "_MklNativeMaxPoolGrad") == "other network ops (pooling, adds, padding)"


@pytest.mark.slow
def test_starts_check_every_image_then_none_then_the_touched_one(tmp_path):
    """`benchmark start`: three `centernet train` processes on a folder it makes (no small
    folder beside it): the first start decodes every image (12 training images and 16
    validation images), the cached one none (both splits from the split cache), and after one
    file is touched only that file, which the run names; every part of a start is timed."""
    result = run_script("benchmark.py", "start", "--images", "12", "--small", "0", "--size",
                        "64x48", "--dir", str(tmp_path), "experiment=smoke",
                        "model.input_size=64")
    assert result.returncode == 0, result.stderr
    rows = {cells[0]: cells[1:] for cells in (
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in result.stdout.splitlines() if line.startswith("| ") and "s |" not in line)}
    assert {name: (int(row[5]), int(row[6])) for name, row in rows.items()} == {
        "12 first": (28, 28), "12 cached": (28, 0), "12 one touched": (28, 1)}
    for row in rows.values():
        parts = [float(cell) for cell in row[:4]]
        assert all(part > 0 for part in parts) and float(row[4]) == pytest.approx(
            sum(parts), abs=0.02)
    touched = tmp_path / "coco_12_64x48" / "train" / f"{12:012d}.jpg"
    assert (f"12 one touched: index: 28 images, 16 in splits kept by the split cache "
            f"(annotations and images unchanged), 11 from the index cache, 1 checked (new or "
            f"changed: {touched})") in result.stdout  # val unchanged, train parsed again
    assert len(list((tmp_path / "coco_12_64x48" / "train").glob("*.jpg"))) == 12
