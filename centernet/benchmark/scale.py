"""Costs that grow with the data and with the accelerator (`centernet benchmark start|resume|
pipeline`): how long a training process takes to reach its first step on a folder of N images
(imports, index, model and step, first step), what a resumed run reads before its first batch,
and how many augmented images per second one core of the input pipeline delivers.

Every figure comes from real files (`jpeg_folder` writes a COCO folder of JPEGs) and real
processes: a start is a `centernet train` process of its own; the pipeline's figure comes from a
process that the kernel lets run on `cores` CPUs only (`os.sched_setaffinity`, which
TensorFlow's thread pools follow).
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from omegaconf import OmegaConf

from centernet.config import RunConfig, validate
from centernet.data.pipeline import train_dataset
from centernet.data.sources import build_source
from centernet.engine.data_choices import resolve_open_settings

CATEGORIES = 80
"""Classes of the synthetic folders (COCO's number, with non-contiguous ids)."""


def synthetic_coco_file(path, images: int, objects_per_image: int = 7,
                        categories: int = CATEGORIES, seed: int = 0, size=(640, 480),
                        first_id: int = 1) -> None:
    """Write a COCO instances file of `images` images of `size` (width, height) pixels named
    `{id:012d}.jpg` from `first_id` on, with `objects_per_image` boxes each and
    non-contiguous category ids, the same for every `first_id` of one `seed` (the images
    themselves are not written)."""
    width, height = size
    category_ids = np.sort(np.random.default_rng(seed).choice(
        np.arange(1, 3 * categories), categories, replace=False))
    rng = np.random.default_rng([seed, first_id])  # each split's boxes differ
    count = images * objects_per_image
    wh = rng.uniform(0.01, 0.3, (count, 2)) * (width, height)
    xy = rng.uniform(0, 1, (count, 2)) * ((width, height) - wh)
    xy, wh = xy.round(2), wh.round(2)
    labels = rng.choice(category_ids, count)
    dataset = {
        "images": [{"id": first_id + i, "file_name": f"{first_id + i:012d}.jpg",
                    "height": height, "width": width} for i in range(images)],
        "annotations": [{"id": a + 1, "image_id": first_id + a // objects_per_image,
                         "category_id": int(labels[a]), "bbox": [*xy[a].tolist(), *wh[a].tolist()],
                         "area": float(wh[a, 0] * wh[a, 1]), "iscrowd": 0}
                        for a in range(count)],
        "categories": [{"id": int(c), "name": f"class_{c}"} for c in category_ids],
    }
    with open(path, "w", encoding="utf-8") as file:
        json.dump(dataset, file)


def coco_index_cost(images: int, directory) -> Dict[str, float]:
    """Seconds to index a synthetic `images`-image COCO file: pycocotools loads it
    (`load_s`), the source finds each image and reads its annotations (`parse_s`), and checks
    and repairs every box into the split index (`check_s`). The image files exist but are
    empty, and decoding them is replaced by their annotated size: decoding costs about 3 ms
    per 640x480 JPEG and per thread on top of this."""
    # pylint: disable=import-outside-toplevel
    from centernet.data import coco
    from centernet.data.annotations import clean_split
    from centernet.data.images import ImageInfo
    from centernet.data.report import DataReport

    path = Path(directory) / "instances_bench.json"
    image_dir = Path(directory) / "images"
    image_dir.mkdir()
    synthetic_coco_file(path, images)
    for i in range(images):
        (image_dir / f"{i + 1:012d}.jpg").touch()
    start = time.perf_counter()
    index = coco.load(path)
    loaded = time.perf_counter()
    raw = coco.read_split(index, path, image_dir)
    parsed = time.perf_counter()
    names, ids = coco.categories(index)
    split = clean_split("bench", raw, {cid: c for c, cid in enumerate(ids)}, DataReport(),
                        probe=lambda paths: [ImageInfo(480, 640)] * len(paths))
    done = time.perf_counter()
    return {"images": len(split), "objects": int(split.row_splits[-1]),
            "file_mb": path.stat().st_size / 2 ** 20, "load_s": loaded - start,
            "parse_s": parsed - loaded, "check_s": done - parsed, "total_s": done - start}


def jpeg_folder(directory, images: int, size=(640, 480), val_images: int = 0,
                distinct: int = 32, seed: int = 0) -> Path:
    """A COCO folder in `directory` of `images` JPEG files of `size` (width, height) in
    `train/` and `val_images` more in `val/`, with `annotations/instances_{split}.json`
    (`synthetic_coco_file`'s boxes); returns its root. `distinct` pictures (smooth colour
    fields with noise, as photos compress: about 85 KB at 640x480 and quality 90) are written
    in turn. A folder that already holds every file is kept as it is."""
    import cv2  # pylint: disable=import-outside-toplevel

    root = Path(directory)
    rng = np.random.default_rng(seed)
    pictures = []
    for _ in range(distinct):
        field = cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.float32), tuple(size),
                           interpolation=cv2.INTER_CUBIC)
        noisy = np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8)
        pictures.append(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    first_id = 1
    for split, count in (("train", images), ("val", val_images)):
        if not count:
            continue
        image_dir, annotations = root / split, root / "annotations" / f"instances_{split}.json"
        names = [f"{first_id + i:012d}.jpg" for i in range(count)]
        if not (annotations.is_file() and all((image_dir / name).is_file() for name in names)):
            image_dir.mkdir(parents=True, exist_ok=True)
            annotations.parent.mkdir(parents=True, exist_ok=True)
            synthetic_coco_file(annotations, count, seed=seed, size=size,
                                first_id=first_id)
            for i, name in enumerate(names):
                (image_dir / name).write_bytes(pictures[i % distinct])
        first_id += count
    return root


def train_start(root: Path, run_dir: Path, cache_dir: Path,
                overrides: Sequence[str] = ()) -> Dict[str, float]:
    """One `centernet train` process on the COCO folder at `root` that stops after its first
    step (`train.stop_at_step=1`), with the index cache in `cache_dir`: the seconds of its
    start by part as the run logged them (`imports_s`: the interpreter, TensorFlow and the
    project; `index_s`: the splits' indexes, checks included; `build_s`: model, optimizer,
    evaluator and compiled step; `first_step_s`: the input pipeline's first batch and the
    step's tracing and run), the images indexed and how many were checked (decoded), and the
    wall seconds of the whole process (`process_s`, exit included)."""
    command = [sys.executable, "-m", "centernet", "train", *folder_overrides(root, 256, 8),
               "train.stop_at_step=1", "train.progress_bar=false", f"hydra.run.dir={run_dir}",
               *overrides]
    env = {**os.environ, "CENTERNET_CACHE_DIR": str(cache_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.time()
    finished = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    process_s = time.time() - started
    if finished.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stderr[-3000:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    start = next(r for r in reversed(records) if r["kind"] == "start")
    said = next((line for line in finished.stderr.splitlines() if line.startswith("index: ")),
                "")
    return {key: value for key, value in start.items() if key not in ("step", "kind")} | {
        "process_s": process_s, "index_line": said}


def starts(images: int, directory: Path, small: int = 300, size=(320, 240),
           overrides: Sequence[str] = ()) -> Dict[str, Dict[str, float]]:
    """`train_start` on a `jpeg_folder` of `images` JPEGs of `size` and on one of `small`, in
    `directory` (kept there for the next call: writing 100,000 files takes minutes), each with a new
    index cache: the small folder's first and second start, then the large one's first (every image
    checked), second (the cache) and a third after one file was touched (that file alone checked
    again). `small` 0: the large folder only. The files were just written or read, so the page cache
    holds them: the figures are decoding and checking, not the disk."""
    directory = Path(directory)
    results = {}
    with tempfile.TemporaryDirectory(prefix="centernet-starts-") as scratch:
        scratch = Path(scratch)
        for name, count in [(f"{small}", small)] * bool(small) + [(f"{images}", images)]:
            root = jpeg_folder(directory / f"coco_{count}_{size[0]}x{size[1]}", count, size,
                               val_images=16)
            cache = scratch / f"cache_{count}"
            labels = ["first", "cached"] + (["one touched"] if count == images else [])
            for label in labels:
                if label == "one touched":
                    touched = root / "train" / f"{count:012d}.jpg"
                    stat = touched.stat()
                    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
                results[f"{name} {label}"] = train_start(
                    root, scratch / f"run_{count}_{label.replace(' ', '_')}", cache, overrides)
    return results


class OpenedFiles:
    """The names of the files opened in `directory` (by any thread or process: TensorFlow's
    own reads too) while the `with` block runs, as the kernel reports them (Linux inotify).

    Example:
        with OpenedFiles(root / "JPEGImages") as opened:
            ...
        assert opened.names == set()
    """

    IN_OPEN, IN_Q_OVERFLOW, IN_ISDIR = 0x20, 0x4000, 0x40000000

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.names: set = set()
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._fd = -1

    def __enter__(self) -> "OpenedFiles":
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK)
        if self._fd < 0 or self._libc.inotify_add_watch(
                self._fd, os.fsencode(self.directory), self.IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), f"inotify cannot watch {self.directory}")
        return self

    def __exit__(self, *exc) -> None:
        try:
            while True:
                try:
                    data = os.read(self._fd, 1 << 16)
                except BlockingIOError:
                    break
                offset = 0
                while offset < len(data):
                    _, mask, _, length = struct.unpack_from("iIII", data, offset)
                    name = data[offset + 16:offset + 16 + length].rstrip(b"\0")
                    offset += 16 + length
                    if mask & self.IN_Q_OVERFLOW:
                        raise AssertionError("inotify dropped events: too many opens to count")
                    if name and not mask & self.IN_ISDIR:
                        self.names.add(os.fsdecode(name))
        finally:
            os.close(self._fd)


def folder_overrides(root: Path, input_size: int, batch_size: int) -> List[str]:
    """The overrides that train on the COCO folder at `root` (a `jpeg_folder`: splits
    `train` and `val`) at `input_size` px, `batch_size` images a step, for a fixed length."""
    return ["dataset=coco_json", f"dataset.root={root}", "dataset.train_split=train",
            "dataset.val_split=val", f"model.input_size={input_size}",
            f"train.batch_size={batch_size}", "train.max_steps=1000"]


def resume_reads(cfg: RunConfig, resume_at: int) -> Dict[str, float]:
    """What the training stream of `cfg`'s folder opens before its first batch when a run
    resumes at step `resume_at` (`train_dataset(start_step=resume_at)`), counted by the
    kernel (`OpenedFiles` on the training split's image folder): files opened, against the
    images one batch holds and the images the resume skipped."""
    source = build_source(cfg.dataset)
    index = source.index(cfg.dataset.train_split)  # the index first: it reads no image file
    with OpenedFiles(Path(index.paths[0]).parent) as opened:
        started = time.perf_counter()
        next(iter(train_dataset(source, cfg, start_step=resume_at)))
        first_batch_s = time.perf_counter() - started
    per_example = 4 if cfg.augment.mosaic else 1
    per_example *= 2 if cfg.augment.mixup > 0 else 1
    return {"resume_at": resume_at, "files_opened": len(opened.names),
            "images_per_batch_at_most": cfg.train.batch_size * per_example,
            "images_skipped": resume_at * cfg.train.batch_size * per_example,
            "first_batch_s": first_batch_s}


def pipeline_per_core(cfg: RunConfig, cores: int = 1, batches: int = 20) -> Dict[str, float]:
    """The full training input pipeline of `cfg` (read, decode, augment, letterbox, targets,
    batch; the settings it leaves open chosen from the data as a run chooses them) in a new
    process that may run on `cores` CPUs only: images per second, and per core. No model
    runs."""
    available = sorted(os.sched_getaffinity(0))
    if cores > len(available):
        raise ValueError(f"pipeline_per_core: {cores} cores asked, {len(available)} available")
    program = (f"import os, sys, json; os.sched_setaffinity(0, {set(available[:cores])!r}); "
               "from centernet.benchmark.scale import _pipeline_figure; "
               "print(json.dumps(_pipeline_figure(sys.argv[1], int(sys.argv[2]))))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    finished = subprocess.run(
        [sys.executable, "-c", program, OmegaConf.to_yaml(OmegaConf.structured(cfg)),
         str(batches)], capture_output=True, text=True, env=env, check=False)
    if finished.returncode:
        raise RuntimeError(f"the pipeline process failed:\n{finished.stderr[-3000:]}")
    figure = json.loads(finished.stdout.strip().splitlines()[-1])
    return figure | {"cores": cores, "images_per_sec_per_core": figure["images_per_sec"] / cores}


def _pipeline_figure(config_yaml: str, batches: int) -> Dict[str, float]:
    """`pipeline_per_core`'s child: the pipeline's figure in this (CPU-restricted) process."""
    from centernet.benchmark import pipeline_throughput  # pylint: disable=import-outside-toplevel

    cfg = validate(OmegaConf.create(config_yaml))
    cfg, choices = resolve_open_settings(cfg, build_source(cfg.dataset), None)
    return pipeline_throughput(cfg, batches=batches) | {
        "cpus_seen": len(os.sched_getaffinity(0)),
        "chosen": {choice.key: choice.value for choice in choices}}


GPU_TRAINING_SPEEDS = [
    # (GPU, published figure, images per second per GPU, where it is from)
    ("TITAN V", "CenterNet ResDCN-18, COCO 512 px: 140 epochs of 118,287 images in 28 h on 4",
     140 * 118_287 / (28 * 3600) / 4, "xingyizhou/CenterNet readme/MODEL_ZOO.md"),
    ("TITAN V", "CenterNet ResDCN-18, VOC 512 px: 70 epochs of 16,551 images in 5 h on 1",
     70 * 16_551 / (5 * 3600), "xingyizhou/CenterNet readme/MODEL_ZOO.md"),
    ("GTX 1080 Ti", "TTFNet-18, COCO 512 px: 12 epochs of 118,287 images in 1.8 h on 8",
     12 * 118_287 / (1.8 * 3600) / 8, "ZJULearning/ttfnet README.md, configs/ttfnet_r18_1x.py"),
]


GPU_PEAKS = [
    # (GPU, dense bfloat16 tensor-core peak, TFLOP/s, from the vendor's data sheet)
    ("A100", 312.0),
    ("H100 SXM", 989.0),
]
GPU_UTILISATION = 0.4
"""The share of its matrix peak a training step is assumed to reach on a GPU, for the
estimates (this project's bfloat16 CPU step reaches about that share of the CPU's)."""


def cores_needed(per_core: float, train_gflop_per_image: float) -> List[Dict[str, object]]:
    """The input cores (rounded up) that feed one GPU at `per_core` images per second per
    core: for each published training speed, and estimated for newer GPUs from their peak,
    `GPU_UTILISATION` and `train_gflop_per_image` (forward and backward)."""
    rows = [{"gpu": gpu, "source": f"{what} ({where})", "images_per_sec": speed}
            for gpu, what, speed, where in GPU_TRAINING_SPEEDS]
    rows += [{"gpu": gpu, "source": f"estimate: {peak:.0f} TFLOP/s bfloat16 x "
                                    f"{GPU_UTILISATION:.0%} / {train_gflop_per_image:.1f} "
                                    f"GFLOP per image", "images_per_sec":
              peak * 1e3 * GPU_UTILISATION / train_gflop_per_image}
             for gpu, peak in GPU_PEAKS]
    return [row | {"cores": int(np.ceil(row["images_per_sec"] / per_core))} for row in rows]
