"""The benchmark suite through its real command line: every key written, every figure a
positive number, on a tiny configuration. No timed assertions: speed targets live in the
figures the suite prints, not in tests."""

import json

from conftest import run_script

SUITE_KEYS = ("train_img_per_s", "train_gflops_per_s", "pipeline_img_per_s", "targets_ms_10",
              "targets_ms_100", "decode_ms_b8", "focal_stable_ms", "focal_naive_ms", "eval_s",
              "peak_rss_mb")


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
    for key in SUITE_KEYS:  # the table names every figure too
        assert f"{figures[key]:.4g}" in result.stdout, key
