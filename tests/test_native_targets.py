"""The native target renderers (`centernet/data/targets_op.cc`, built by `native.py`).

test_targets.py and test_ttfnet.py run every reference test on both renderers; here: the two
renderers give bit-identical targets (CenterNet's and TTFNet's, every output) on random and
crowded batches and single images, the kernel's tables against float64 NumPy, and the build
itself with real compiler processes (a fresh cache, concurrent builds, a broken or missing
compiler falling back to the portable ops with a warning).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from centernet.data import native
from centernet.data import targets as T
from test_targets import ref_radius

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def library():
    if native.targets_op() is None:
        pytest.skip("the native target renderer is unavailable here (see the log's warning)")
    return native.targets_op()


def test_a_machine_with_a_compiler_builds_the_native_renderer():
    """Where `g++` (or `$CXX`) exists the kernel must build and load: otherwise the tests
    below would skip and only the portable path would be tested, silently."""
    try:
        native.compiler_command()
    except native.BuildError:
        pytest.skip("no C++ compiler on this machine")
    assert native.targets_op() is not None


def random_batch(rng, height, width):
    """Boxes of every kind: inside, across and outside the borders, without area, tiny,
    larger than the grid, on half-pixel coordinates; float32 or float64."""
    batch, count = int(rng.integers(1, 5)), int(rng.integers(0, 90))
    centres = rng.uniform(-5, max(height, width) + 5, (batch, count, 2))
    sizes = rng.uniform(0.0, max(height, width) * rng.uniform(0.05, 1.2), (batch, count, 2))
    sizes[rng.random((batch, count)) < 0.05] = 0.0
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1)
    if rng.random() < 0.3:
        boxes = np.round(boxes * 2) / 2
    if rng.random() < 0.5:
        boxes = boxes.astype(np.float32)
    return boxes, rng.integers(0, 7, (batch, count))


def crowded_batch(rng, height, width, count):
    """Crowded images: `count` boxes each, many of equal area (the same few sizes at random
    places, some boxes twice, nested ones), so that windows overlap and ties decide owners."""
    batch = 3
    sizes = rng.uniform(0.5, max(height, width) / 2, (6, 2))[rng.integers(0, 6, (batch, count))]
    centres = rng.uniform(0, max(height, width), (batch, count, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1)
    boxes[:, 1::7] = boxes[:, 0::7][:, :boxes[:, 1::7].shape[1]]  # duplicates
    return boxes, rng.integers(0, 3, (batch, count))


def assert_bit_identical(monkeypatch, render, *args, **kwargs):
    """`render(*args, **kwargs)` gives the same keys, dtypes, shapes and bits on both
    renderers."""
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    portable = render(*args, **kwargs)
    monkeypatch.setenv(native.ENV_SWITCH, "1")
    fast = render(*args, **kwargs)
    assert portable.keys() == fast.keys()
    for key in portable:
        want, got = portable[key].numpy(), fast[key].numpy()
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)


@pytest.mark.parametrize("seed", range(4))
def test_native_equals_portable_bit_for_bit(library, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        height, width = (int(v) for v in rng.choice([8, 37, 64, 128], 2))
        boxes, labels = random_batch(rng, height, width)
        max_objects, clip = int(rng.integers(1, 100)), bool(rng.random() < 0.5)
        assert_bit_identical(monkeypatch, T.render_targets_batch, boxes, labels,
                             (height, width), 7, max_objects, clip_to_edge=clip)


def ttf_options(rng):
    """TTFNet's knobs at random: alpha, beta in (0, 1] (0.54 and 1 often), the stride, the
    clipping."""
    alpha, beta = (float(rng.choice([0.54, 1.0, rng.uniform(0.05, 1.0)])) for _ in range(2))
    return {"alpha": alpha, "beta": beta, "stride": int(rng.choice([1, 4, 8])),
            "clip_to_edge": bool(rng.random() < 0.7)}


@pytest.mark.parametrize("seed", range(4))
def test_native_ttf_equals_portable_bit_for_bit(library, monkeypatch, seed):
    """Every output of TTFNet's targets, batched and one image at a time, on random batches
    (boxes inside, across and outside the borders, without area, tiny, larger than the
    grid)."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(25):
        height, width = (int(v) for v in rng.choice([8, 37, 64, 128], 2))
        boxes, labels = random_batch(rng, height, width)
        max_objects, options = int(rng.integers(1, 100)), ttf_options(rng)
        assert_bit_identical(monkeypatch, T.render_ttf_targets_batch, boxes, labels,
                             (height, width), 7, max_objects, **options)
        assert_bit_identical(monkeypatch, T.render_ttf_targets, boxes[0], labels[0],
                             (height, width), 7, max_objects, **options)


@pytest.mark.parametrize("seed", range(3))
def test_native_ttf_equals_portable_on_crowded_images(library, monkeypatch, seed):
    """Hundreds of overlapping boxes per image, equal areas and exact duplicates among them
    (a later box wins a tie), some of them dropped for want of slots."""
    rng = np.random.default_rng(200 + seed)
    for size, count in ((128, 300), (37, 150)):
        boxes, labels = crowded_batch(rng, size, size, count)
        assert_bit_identical(monkeypatch, T.render_ttf_targets_batch, boxes, labels, size, 3,
                             256, **ttf_options(rng))


def test_native_ttf_equals_portable_on_awkward_boxes(library, monkeypatch):
    """One image of the boxes most likely to differ: sub-pixel, one cell, the whole grid and
    beyond it, across each border and corner, on the last cell, zero width or height."""
    boxes = np.array([[7.2, 7.1, 7.4, 7.3], [3.0, 3.0, 4.0, 4.0], [0.0, 0.0, 32.0, 32.0],
                      [-50.0, -50.0, 90.0, 90.0], [-3.0, 10.0, 4.0, 14.0],
                      [29.0, -2.0, 35.0, 3.0], [30.5, 30.5, 40.0, 40.0], [31.0, 31.0, 32.0, 32.0],
                      [5.0, 5.0, 5.0, 9.0], [6.0, 6.0, 12.0, 6.0], [8.0, 8.0, 20.0, 30.0]])
    labels = np.arange(len(boxes)) % 3
    for clip in (False, True):
        for alpha, beta in ((0.54, 0.54), (1.0, 0.2), (0.01, 1.0)):
            assert_bit_identical(monkeypatch, T.render_ttf_targets, boxes, labels, 32, 3, 16,
                                 alpha=alpha, beta=beta, clip_to_edge=clip)


@pytest.mark.parametrize("render_batch", [T.render_targets_batch, T.render_ttf_targets_batch])
def test_native_in_a_graph_with_unknown_batch_and_count(library, monkeypatch, render_batch):
    """Traced once with `[None, None, 4]` (as `padded_batch` feeds it): static shapes where
    they are known, and the values of the eager portable path."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, 4], tf.float32),
                                  tf.TensorSpec([None, None], tf.int32)])
    def render(boxes, labels):
        out = render_batch(boxes, labels, (20, 24), 5, 6)
        assert out["heatmap"].shape.as_list() == [None, 20, 24, 5]
        assert out["wh"].shape.as_list() == [None, 6, 2]
        if "box_target" in out:
            assert out["box_target"].shape.as_list() == [None, 20, 24, 4]
            assert out["box_weight"].shape.as_list() == [None, 20, 24]
        return out

    rng = np.random.default_rng(7)
    for _ in range(3):
        boxes, labels = random_batch(rng, 20, 24)
        boxes, labels = boxes.astype(np.float32), (labels % 5).astype(np.int32)
        got = render(boxes, labels)
        monkeypatch.setenv(native.ENV_SWITCH, "0")
        want = render_batch(boxes, labels, (20, 24), 5, 6)
        monkeypatch.setenv(native.ENV_SWITCH, "1")
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    assert render.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("clip_to_edge", [False, True])
def test_tables_against_float64_numpy(clip_to_edge):
    """Radius of every clipped box size, and the Gaussian factors, from the formulas."""
    radius, gaussian = T._window_tables(96, 128, 0.7, clip_to_edge)
    max_y, max_x = (96, 128) if clip_to_edge else (95, 127)
    h, w = np.meshgrid(np.arange(max_y + 1.0), np.arange(max_x + 1.0), indexing="ij")
    np.testing.assert_array_equal(radius, np.maximum(np.floor(ref_radius(h, w)), 0))
    r = np.arange(radius.max() + 1.0)[:, None]
    d = np.arange(radius.max() + 1.0)[None, :]
    sigma = (2 * r + 1) / 6
    want = np.where(d <= r, np.exp(-d * d / (2 * sigma * sigma)), 0.0).astype(np.float32)
    np.testing.assert_array_max_ulp(gaussian, want, maxulp=1)
    assert gaussian[:, 0].tolist() == [1.0] * len(gaussian)


@pytest.mark.parametrize("render_batch", [T.render_targets_batch, T.render_ttf_targets_batch])
def test_native_refuses_a_label_naming_it_and_its_box(library, render_batch):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"labels must be in 0..2, got 5 \(image 1, box 0\)"):
        render_batch(np.array([[[1, 1, 5, 5.0]], [[2, 2, 6, 6.0]]]), np.array([[0], [5]]), 16,
                     3, 4)


RENDER_ONCE = """
import logging, sys
import numpy as np
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from centernet.data import native, targets as T
out = T.render_targets(np.array([[2.0, 3.0, 9.0, 8.0]]), np.array([1]), 16, 3, 4)
print("native" if native.targets_op() is not None else "portable", float(out["heatmap"].numpy().sum()))
"""


def run_python(code: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})


@pytest.mark.parametrize("compiler, says", [
    ("false", "the native target renderer is unavailable"),
    ("no-such-compiler-here", "no C++ compiler"),
])
def test_without_a_working_compiler_targets_are_portable_and_a_warning_says_why(
        tmp_path, compiler, says):
    portable = run_python(RENDER_ONCE, CENTERNET_NATIVE_TARGETS="0").communicate()[0].split()
    process = run_python(RENDER_ONCE, CXX=compiler, CENTERNET_CACHE_DIR=str(tmp_path))
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert stdout.split() == portable and portable[0] == "portable"
    assert says in stderr
    assert not list((tmp_path / "ops").glob("*.so"))


@pytest.mark.slow
def test_concurrent_first_uses_build_once_into_a_fresh_cache(tmp_path, library):
    """Two processes start on an empty cache at once: one compiles, the other waits on the
    lock and loads the same library; both render natively, the same targets."""
    processes = [run_python(RENDER_ONCE, CENTERNET_CACHE_DIR=str(tmp_path)) for _ in range(2)]
    results = [process.communicate(timeout=600) for process in processes]
    assert all(process.returncode == 0 for process in processes), results
    outputs = [stdout.split() for stdout, _ in results]
    assert outputs[0] == outputs[1] and outputs[0][0] == "native"
    assert sum("building the native target renderer" in stderr for _, stderr in results) == 1
    assert len(list((tmp_path / "ops").glob("*.so"))) == 1


def test_cxx_is_a_command_with_arguments(monkeypatch):
    monkeypatch.setenv("CXX", "env CENTERNET_TEST=1 g++")
    assert native.compiler_command() == ["env", "CENTERNET_TEST=1", "g++"]
    monkeypatch.setenv("CXX", "no-such-launcher g++")
    with pytest.raises(native.BuildError, match=r"no C\+\+ compiler \(no-such-launcher g\+\+\)"):
        native.compiler_command()
    monkeypatch.delenv("CXX")
    assert native.compiler_command() == ["g++"]


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_build_timeout_that_is_not_a_positive_number_is_named(monkeypatch, value):
    monkeypatch.setenv(native.ENV_TIMEOUT, value)
    with pytest.raises(native.BuildError, match=f"{native.ENV_TIMEOUT}='{value}'"):
        native.build_timeout()


def test_a_compile_over_the_time_limit_is_stopped_and_targets_are_portable(tmp_path):
    """A compiler that hangs: after CENTERNET_NATIVE_BUILD_TIMEOUT seconds it is killed (not
    left running), a warning says why and what to do, and the targets are the portable ones."""
    pid_file = tmp_path / "compiler.pid"
    compiler = tmp_path / "slow-g++"
    compiler.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec sleep 120\n')
    compiler.chmod(0o755)
    portable = run_python(RENDER_ONCE, CENTERNET_NATIVE_TARGETS="0").communicate()[0].split()
    start = time.monotonic()
    process = run_python(RENDER_ONCE, CXX=str(compiler), CENTERNET_CACHE_DIR=str(tmp_path),
                         CENTERNET_NATIVE_BUILD_TIMEOUT="2")
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert time.monotonic() - start < 60
    assert stdout.split() == portable
    assert "compiling it took longer than 2 s (CENTERNET_NATIVE_BUILD_TIMEOUT)" in stderr
    assert "python -m centernet.data.native build" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_waiting_on_another_process_build_gives_up_at_the_time_limit(tmp_path, monkeypatch):
    """Another process holds the build lock and does not finish: the wait ends at the limit,
    with portable targets and a warning."""
    monkeypatch.setenv("CENTERNET_CACHE_DIR", str(tmp_path))
    lock_path = native.library_path().with_suffix(".lock")
    lock_path.parent.mkdir(parents=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        process = run_python(RENDER_ONCE, CENTERNET_CACHE_DIR=str(tmp_path),
                             CENTERNET_NATIVE_BUILD_TIMEOUT="1")
        stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert stdout.split()[0] == "portable"
    assert "another process has been building it for more than 1 s" in stderr


def build_ahead(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "centernet.data.native", "build", *args],
                          cwd=ROOT, text=True, capture_output=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                               "CENTERNET_CACHE_DIR": str(tmp_path), **env})


def test_the_module_command_names_its_usage(capsys):
    assert native.main(["compile"]) == 2
    assert "usage: python -m centernet.data.native build [--force]" in capsys.readouterr().err


def test_building_ahead_of_time_with_a_broken_compiler_fails_with_a_message(tmp_path):
    result = build_ahead(tmp_path, CXX="false")
    assert result.returncode == 2
    assert "error: false failed on " in result.stderr
    assert not list((tmp_path / "ops").glob("*.so"))


@pytest.mark.slow
def test_built_ahead_of_time_the_renderer_loads_without_a_compiler(tmp_path, library):
    """`python -m centernet.data.native build` with a compiler given with arguments; then a
    process without any compiler renders natively from that cache, and building again finds
    the library there."""
    first = build_ahead(tmp_path, CXX="env CENTERNET_TEST=1 g++")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("native target renderer ready: ")
    libraries = list((tmp_path / "ops").glob("*.so"))
    assert len(libraries) == 1 and str(libraries[0]) in first.stdout
    process = run_python(RENDER_ONCE, CXX="no-such-compiler-here",
                         CENTERNET_CACHE_DIR=str(tmp_path))
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0 and stdout.split()[0] == "native", stderr
    again = build_ahead(tmp_path, CXX="no-such-compiler-here")
    assert again.returncode == 0 and str(libraries[0]) in again.stdout, again.stderr
