"""Performance figures of the project's hot paths (`scripts/benchmark.py`).

Each function warms up (tracing, first allocations) and then times repeated runs with
`time.perf_counter`, returning a dict of figures; nothing here asserts a target.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import time
from typing import Callable, Dict, Iterator, Optional

import keras
import numpy as np
import tensorflow as tf

from centernet.config import (DOWN_RATIO, ModelConfig, OptimizerConfig, PrecisionConfig,
                              RunConfig)
from centernet.data.pipeline import train_dataset
from centernet.data.sources import build_source
from centernet.data import native
from centernet.data.targets import (render_targets, render_targets_batch, render_ttf_targets,
                                    render_ttf_targets_batch)
from centernet.engine.hardware import bfloat16_cpu_flags, cpu_flags, cpu_model
from centernet.evaluation.decode import decode
from centernet.model import build_model
from centernet.benchmark import scale


def _time(function: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds per call of `function` after `warmup` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def pipeline_throughput(cfg: RunConfig, batches: int = 30) -> Dict[str, float]:
    """Training-pipeline images/s (decode, augment, letterbox, targets, batch) with no model."""
    source = build_source(cfg.dataset)
    iterator = iter(train_dataset(source, cfg))
    for _ in range(3):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    return {"images_per_sec": batches * cfg.train.batch_size / elapsed,
            "batch_size": cfg.train.batch_size, "input_size": cfg.model.input_size}


TARGET_RENDERERS = {  # targets.kind: (a batch, one image), the recipes' defaults otherwise
    "centernet": (render_targets_batch, render_targets),
    "ttfnet": (render_ttf_targets_batch, render_ttf_targets),
}


@contextlib.contextmanager
def _renderer(native_kernel: bool) -> Iterator[str]:
    """Targets traced inside the block use the native kernel (where it is available) or, with
    `native_kernel` False, the TensorFlow ops (`CENTERNET_NATIVE_TARGETS`, read when a map is
    traced); yields which one it is: "native" or "tensorflow"."""
    before = os.environ.get(native.ENV_SWITCH)
    os.environ[native.ENV_SWITCH] = "1" if native_kernel else "0"
    try:
        yield "native" if native.targets_op() is not None else "tensorflow"
    finally:
        if before is None:
            del os.environ[native.ENV_SWITCH]
        else:
            os.environ[native.ENV_SWITCH] = before


def _random_objects(num_objects: int, output_size: int, num_classes: int):
    """`num_objects` random boxes `[N, 4]` float32 (sides 2 to a third of the grid, centres
    anywhere on it) and labels `[N]` int32, the same for every call."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, output_size, (num_objects, 2))
    sizes = rng.uniform(2, output_size / 3, (num_objects, 2))
    boxes = tf.constant(np.concatenate([centres - sizes / 2, centres + sizes / 2], 1),
                        tf.float32)
    return boxes, tf.constant(rng.integers(0, num_classes, num_objects), tf.int32)


def render_targets_cost(num_objects: int, output_size: int = 128, num_classes: int = 80,
                        max_objects: int = 128, images: int = 320, batch_size: int = 8,
                        kind: str = "centernet", native_kernel: bool = True
                        ) -> Dict[str, float]:
    """Milliseconds per image of target rendering as the training pipeline runs it: the
    `kind` recipe's batch renderer (`TARGET_RENDERERS`) on batches of `batch_size` images of
    `num_objects` random boxes on an `output_size` grid, in a single-threaded `tf.data` map
    whose elements are consumed inside TensorFlow (`Dataset.reduce`), as training's
    prefetching does (handing each element to Python would add 0.2-0.3 ms that training never
    pays). `native_kernel` False times the TensorFlow ops; `renderer` says which one ran.
    `one_image_ms` renders each image alone (a map per image before `batch()`, the pipeline's
    way until 2026-11-30) the same way, for comparison; it leaves out the copy `batch()` then
    makes. The median of 5 passes after a warm-up pass."""
    images = max(images // batch_size, 1) * batch_size  # whole batches
    boxes, labels = _random_objects(num_objects, output_size, num_classes)
    render_batch, render_one = TARGET_RENDERERS[kind]
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1

    def ms_per_image(dataset: tf.data.Dataset) -> float:
        dataset = dataset.with_options(options)
        seconds = _time(lambda: dataset.reduce(tf.constant(0, tf.int64),
                                               lambda count, _: count + 1).numpy(),
                        repeats=5, warmup=1)
        return seconds / images * 1e3

    batch = (tf.tile(boxes[tf.newaxis], [batch_size, 1, 1]),
             tf.tile(labels[tf.newaxis], [batch_size, 1]))
    with _renderer(native_kernel) as renderer:  # the maps are traced here
        batched = tf.data.Dataset.from_tensors(batch).repeat(images // batch_size).map(
            lambda b, l: render_batch(b, l, output_size, num_classes, max_objects),
            num_parallel_calls=1, deterministic=True)
        alone = tf.data.Dataset.from_tensors((boxes, labels)).repeat(images).map(
            lambda b, l: render_one(b, l, output_size, num_classes, max_objects),
            num_parallel_calls=1, deterministic=True)
    return {"ms_per_image": ms_per_image(batched), "one_image_ms": ms_per_image(alone),
            "kind": kind, "renderer": renderer, "objects": num_objects,
            "batch_size": batch_size, "output_size": output_size, "classes": num_classes}


def targets_peak_mb(num_objects: int = 100, batch_size: int = 16, output_size: int = 128,
                    num_classes: int = 80, max_objects: int = 128, kind: str = "ttfnet",
                    native_kernel: bool = True) -> Dict[str, Optional[float]]:
    """MiB that TensorFlow's pooled CPU allocator holds at the peak while one batch's targets
    render in a `tf.function` (as in the pipeline's map; by default a 512 px batch of 16 with
    100 random objects each), above what it held before (`peak_mb`, the outputs included),
    and the outputs alone (`outputs_mb`). None where the allocator keeps no statistics
    (`TF_CPU_ALLOCATOR_USE_BFC=false`)."""
    boxes, labels = _random_objects(num_objects, output_size, num_classes)
    boxes = tf.tile(boxes[tf.newaxis], [batch_size, 1, 1])
    labels = tf.tile(labels[tf.newaxis], [batch_size, 1])
    with _renderer(native_kernel) as renderer:
        render = tf.function(
            lambda b, l: TARGET_RENDERERS[kind][0](b, l, output_size, num_classes, max_objects),
            input_signature=[tf.TensorSpec([None, None, 4], tf.float32),
                             tf.TensorSpec([None, None], tf.int32)])
        render(boxes[:, :1], labels[:, :1])  # traced, on one object per image
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    except ValueError:  # an allocator without statistics
        return {"peak_mb": None, "outputs_mb": None, "renderer": renderer, "kind": kind}
    outputs = render(boxes, labels)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
    size = sum(value.numpy().nbytes for value in outputs.values())
    return {"peak_mb": peak / 2 ** 20, "outputs_mb": size / 2 ** 20, "renderer": renderer,
            "kind": kind, "objects": num_objects, "batch_size": batch_size,
            "output_size": output_size, "classes": num_classes}


def train_step_function(model_cfg: ModelConfig, batch_size: int, num_classes: int,
                        precision: str = "float32", jit_compile: bool = False):
    """`(step, batch, model, optimizer)`: a compiled CenterNet train step (forward, stable
    loss, backward, the project's Adam) of `model_cfg` under the Keras policy `precision`
    (which this sets globally: the caller puts "float32" back), and a batch of random data
    for it."""
    from centernet.engine.optim import build_optimizer
    from centernet.losses import centernet_loss

    keras.mixed_precision.set_global_policy(precision)
    model = build_model(model_cfg, num_classes)
    optimizer = build_optimizer(OptimizerConfig(name="adam"), 1e-4, PrecisionConfig())
    size, grid = model_cfg.input_size, model_cfg.input_size // DOWN_RATIO
    rng = np.random.default_rng(0)
    batch = {
        "image": tf.constant(rng.integers(0, 256, (batch_size, size, size, 3)), tf.uint8),
        "heatmap": tf.constant(rng.uniform(0, 0.9, (batch_size, grid, grid, num_classes)),
                               tf.float32),
        "wh": tf.ones([batch_size, 128, 2]), "reg": tf.zeros([batch_size, 128, 2]),
        "ind": tf.zeros([batch_size, 128], tf.int32), "mask": tf.ones([batch_size, 128]),
    }

    @tf.function(jit_compile=jit_compile)
    def step(batch):
        with tf.GradientTape() as tape:
            loss = centernet_loss(model(batch["image"], training=True), batch)["loss"]
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step, batch, model, optimizer


def train_step_throughput(model_cfg: ModelConfig, batch_size: int, num_classes: int,
                          precision: str = "float32", jit_compile: bool = False,
                          repeats: int = 5) -> Dict[str, float]:
    """Images/s of a full CenterNet train step (forward, stable loss, backward, Adam) on
    random data, the model's own compute without the input pipeline."""
    try:
        step, batch, _, _ = train_step_function(model_cfg, batch_size, num_classes, precision,
                                                jit_compile)
        seconds = _time(lambda: step(batch).numpy(), repeats)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {"images_per_sec": batch_size / seconds, "ms_per_step": seconds * 1e3,
            "model": model_cfg.name, "input_size": model_cfg.input_size,
            "batch_size": batch_size, "classes": num_classes, "precision": precision,
            "jit_compile": jit_compile}


def matmul_gflops(dtype: str = "float32", size: int = 2048, repeats: int = 7) -> float:
    """GFLOP/s of a compiled `tf.matmul` of two `[size, size]` matrices of `dtype`
    (2 size^3 FLOP each): the machine's practical matrix peak, the roofline the train
    step's share is taken against. Median of `repeats` rounds of 10 products."""
    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.normal(size=(size, size)), tf.float32), dtype)
    b = tf.cast(tf.constant(rng.normal(size=(size, size)), tf.float32), dtype)
    product = tf.function(tf.matmul)

    def ten():
        for _ in range(9):
            product(a, b)
        product(a, b).numpy()

    return 2 * size ** 3 * 10 / _time(ten, repeats) / 1e9


def decode_cost(batch_size: int = 8, output_size: int = 128, num_classes: int = 80,
                k: int = 100, repeats: int = 20) -> Dict[str, float]:
    """Milliseconds of compiled `decode` for a batch of random outputs."""
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(-4, 2, (batch_size, output_size, output_size, num_classes)),
                         tf.float32)
    wh = tf.constant(rng.uniform(1, 30, (batch_size, output_size, output_size, 2)), tf.float32)
    reg = tf.constant(rng.uniform(0, 1, (batch_size, output_size, output_size, 2)), tf.float32)
    run = tf.function(lambda a, b, c: decode(a, b, c, k))
    seconds = _time(lambda: [t.numpy() for t in run(logits, wh, reg)], repeats)
    return {"ms_per_batch": seconds * 1e3, "batch_size": batch_size, "output_size": output_size,
            "classes": num_classes, "k": k}


def focal_loss_cost(batch_size: int = 16, output_size: int = 128, num_classes: int = 80,
                    jit_compile: bool = False, repeats: int = 15,
                    rounds: int = 3) -> Dict[str, float]:
    """Milliseconds of one compiled forward + backward pass of each focal-loss form on a
    `[batch, output_size, output_size, classes]` float32 batch (logits ~ N(-4, 2), a target
    heatmap with 10 Gaussian peaks per image), and `stable`'s cost relative to `naive`'s.
    The forms are timed in turn, `rounds` rounds, keeping each form's best median."""
    from centernet.losses import FOCAL_IMPLS, focal_loss

    rng = np.random.default_rng(0)
    shape = (batch_size, output_size, output_size, num_classes)
    logits = tf.constant(rng.normal(-4, 2, shape), tf.float32)
    heatmap = np.zeros(shape, np.float32)
    grid = np.arange(output_size)
    for b in range(batch_size):
        for _ in range(10):
            y, x, c = rng.integers(0, output_size, 2).tolist() + [int(rng.integers(num_classes))]
            bump = np.exp(-((grid[:, None] - y) ** 2 + (grid[None, :] - x) ** 2) / 8.0)
            heatmap[b, :, :, c] = np.maximum(heatmap[b, :, :, c], bump)
            heatmap[b, y, x, c] = 1.0
    heatmap = tf.constant(heatmap)

    def step_for(impl):
        @tf.function(jit_compile=jit_compile)
        def step(x, z):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = focal_loss(x, z, impl)
            return value, tape.gradient(value, x)
        return step

    steps = {impl: step_for(impl) for impl in FOCAL_IMPLS}
    best = {impl: float("inf") for impl in FOCAL_IMPLS}
    for _ in range(rounds):
        for impl, step in steps.items():
            seconds = _time(lambda s=step: [t.numpy() for t in s(logits, heatmap)], repeats)
            best[impl] = min(best[impl], seconds * 1e3)
    return {**{f"{impl}_ms": ms for impl, ms in best.items()},
            "stable_over_naive": best["stable"] / best["naive"],
            "shape": list(shape), "jit_compile": jit_compile}


def evaluation_cost(cfg: RunConfig) -> Dict[str, float]:
    """Seconds to evaluate the validation split (predict, decode, pycocotools), with freshly
    initialised weights (K detections per image, as a trained model gives)."""
    from centernet.evaluation.inference import SplitEvaluator

    source = build_source(cfg.dataset)
    start = time.perf_counter()
    evaluate = SplitEvaluator(build_model(cfg.model, source.num_classes), source, cfg)
    setup = time.perf_counter() - start
    first = _time(evaluate, repeats=1, warmup=0)
    second = _time(evaluate, repeats=1, warmup=0)
    return {"setup_sec": setup, "first_sec": first, "steady_sec": second,
            "images": source.num_examples(cfg.dataset.val_split)}


def forward_gflops(model_cfg: ModelConfig, num_classes: int) -> float:
    """GFLOP of one image's forward pass (inference mode), counted by TensorFlow's profiler
    on the model's graph (a multiply-add counts 2)."""
    from tensorflow.python.framework.convert_to_constants import (  # pylint: disable=import-outside-toplevel
        convert_variables_to_constants_v2)

    model = build_model(model_cfg, num_classes, initial_weights=False)
    size = model_cfg.input_size
    forward = tf.function(lambda image: model(image, training=False)).get_concrete_function(
        tf.TensorSpec([1, size, size, 3], tf.uint8))
    graph = convert_variables_to_constants_v2(forward).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, options=options)
    return profile.total_float_ops / 1e9


def machine() -> Dict[str, object]:
    """The CPU model, core count, the instruction-set flags that decide speed here (avx2,
    avx512f, avx512_bf16, amx), and the TensorFlow and Python versions."""
    flags = cpu_flags()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    return {"cpu": cpu_model(), "cores": os.cpu_count(),
            "flags": {flag: flag in flags for flag in wanted},
            "tensorflow": tf.__version__, "python": platform.python_version()}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def suite(cfg: RunConfig, feed_cfg: RunConfig, model_name: str, input_size: int,
          batch_size: int, num_classes: int, precision: str = "float32",
          jit_compile: bool = False, progress: Callable[[str], None] = lambda _: None,
          quick: bool = False) -> Dict[str, object]:
    """Every figure of the project's hot paths in one process, each the median of repeated
    timings after warm-up (the keys of `SUITE_KEYS`).

    `cfg` configures the input pipeline and the evaluation (dataset, validation split, and the same
    `input_size` and `batch_size` as the train step, which runs `model_name` on random data of
    `num_classes` classes); `feed_cfg` the pipeline timed on one core (a folder of COCO-like JPEGs
    at 512 px, `scale.folder_overrides`). Targets, decode and the focal loss use the fixed shapes
    their keys name. `quick` times every figure at the same shapes with a few repeats
    instead of many (a check that everything runs, not figures to quote)."""
    if (cfg.model.input_size, cfg.train.batch_size) != (input_size, batch_size):
        raise ValueError(f"suite: cfg has input {cfg.model.input_size}, batch "
                         f"{cfg.train.batch_size}; the train step {input_size}, {batch_size}")
    model_cfg = ModelConfig(name=model_name, input_size=input_size)
    run = cfg
    figures: Dict[str, object] = {}
    progress("matrix peak")
    matrix_size = 512 if quick else 2048
    peaks = {"float32": matmul_gflops("float32", matrix_size, 3 if quick else 7)}
    if bfloat16_cpu_flags(cpu_flags()):
        peaks["bfloat16"] = matmul_gflops("bfloat16", matrix_size, 3 if quick else 7)
    figures["matmul_fp32_gflops"] = peaks["float32"]
    figures["matmul_bf16_gflops"] = peaks.get("bfloat16")
    progress("train step")
    gflops = forward_gflops(model_cfg, num_classes)
    flop_per_image = 3 * gflops  # forward, and twice that for the backward pass
    train = train_step_throughput(model_cfg, batch_size, num_classes, precision, jit_compile,
                                  repeats=2 if quick else 5)
    figures["train_img_per_s"] = train["images_per_sec"]
    figures["train_gflops_per_s"] = flop_per_image * train["images_per_sec"]
    compute = "bfloat16" if "bfloat16" in precision else "float32"
    figures["train_share_of_peak"] = (figures["train_gflops_per_s"] / peaks[compute]
                                      if compute in peaks else None)
    figures["train_bf16_img_per_s"] = figures["train_bf16_share_of_peak"] = None
    if "bfloat16" in peaks:
        bf16 = (train if precision == "mixed_bfloat16" else train_step_throughput(
            model_cfg, batch_size, num_classes, "mixed_bfloat16", jit_compile,
            repeats=2 if quick else 5))
        figures["train_bf16_img_per_s"] = bf16["images_per_sec"]
        figures["train_bf16_share_of_peak"] = (flop_per_image * bf16["images_per_sec"]
                                               / peaks["bfloat16"])
    progress("input pipeline")
    figures["pipeline_img_per_s"] = pipeline_throughput(
        run, batches=5 if quick else 30)["images_per_sec"]
    progress("input pipeline, one core, 512 px COCO-like JPEGs")
    figures["pipeline_512_img_per_s_per_core"] = scale.pipeline_per_core(
        feed_cfg, cores=1, batches=2 if quick else 20)["images_per_sec_per_core"]
    progress("targets")
    images = 32 if quick else 320
    for kind, prefix in (("centernet", "targets"), ("ttfnet", "ttf_targets")):
        for objects in (10, 100):
            figures[f"{prefix}_ms_{objects}"] = render_targets_cost(
                objects, images=images, kind=kind)["ms_per_image"]
    progress("decode")
    figures["decode_ms_b8"] = decode_cost(8, 128, 80, 100,
                                          repeats=3 if quick else 20)["ms_per_batch"]
    progress("focal loss")
    focal = focal_loss_cost(repeats=2 if quick else 15, rounds=1 if quick else 3)
    figures["focal_stable_ms"], figures["focal_naive_ms"] = focal["stable_ms"], focal["naive_ms"]
    progress("evaluation")
    figures["eval_s"] = evaluation_cost(run)["steady_sec"]
    figures["peak_rss_mb"] = peak_rss_mb()
    figures["forward_gflop_per_image"] = gflops
    figures["config"] = {"model": model_name, "input_size": input_size,
                         "batch_size": batch_size, "classes": num_classes,
                         "precision": precision, "jit_compile": jit_compile}
    figures["machine"] = machine()
    figures["quick"] = quick
    return figures
