"""Deployment figures of a trained run (`python scripts/benchmark.py export run_dir=DIR`):
for each format and precision, the file size, the single-image latency and AP / AP50 on the
validation split, every format going through its whole image -> detections path."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from centernet.config import RunConfig

VARIANTS: Tuple[Tuple[str, str], ...] = (("saved_model", "float32"), ("litert", "float32"),
                                         ("litert", "float16"), ("litert", "int8"),
                                         ("onnx", "float32"))


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2 ** 20


def _validation_images(run: RunConfig) -> Iterator[Tuple[int, np.ndarray]]:
    """`(image_id, [H, W, 3] uint8 original image)` of the validation split, in file order,
    read as they are used (a large split is never held in memory)."""
    from centernet.data.sources import build_source, decode_record

    source = build_source(run.dataset)
    images = source.read(run.dataset.val_split).map(
        lambda record: {key: value for key, value in decode_record(record).items()
                        if key in ("image_id", "image")})
    for item in images.as_numpy_iterator():
        yield int(item["image_id"]), item["image"]


def _evaluator(run: RunConfig):
    from centernet.data.sources import build_source
    from centernet.evaluation.inference import ground_truth, original_ground_truth
    from centernet.evaluation.coco_format import coco_ground_truth
    from centernet.evaluation.metrics import CocoEvaluator

    source = build_source(run.dataset)
    split = run.dataset.val_split
    truth = original_ground_truth(source, split) or coco_ground_truth(
        ground_truth(source, split), source.class_names, source.category_ids)
    return CocoEvaluator(truth, source.category_ids, source.class_names)


def _latency_ms(detect: Callable[[np.ndarray], object], image: np.ndarray,
                repeats: int) -> float:
    for _ in range(3):
        detect(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detect(image)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def export_figures(model, run: RunConfig, class_names: Sequence[str],
                   category_ids: Sequence[int], checkpoint: str, repeats: int = 50,
                   variants: Sequence[Tuple[str, str]] = VARIANTS,
                   progress: Callable[[str], None] = print) -> List[Dict[str, object]]:
    """One row per `(format, precision)`: `format`, `precision`, `size_mb`, `latency_ms`
    (median of `repeats` single-image detections after warm-up: letterbox, network, decoding;
    2 threads), `ap`, `ap50` on the validation split (decoding keeps `eval.k`)."""
    from centernet.export.files import export
    from centernet.export.runtime import SavedModelDetector, load_detector

    first_image = next(_validation_images(run))[1]
    evaluator = _evaluator(run)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for file_format, precision in variants:
            progress(f"{file_format} {precision}: export")
            name = "saved_model" if file_format == "saved_model" else (
                f"model_{precision}.tflite" if file_format == "litert" else "model.onnx")
            path = export(model, run, class_names, category_ids, file_format,
                          Path(directory) / name, checkpoint, precision,
                          run.export.calibration_images, report=progress)
            detector = (SavedModelDetector(path) if file_format == "saved_model"
                        else load_detector(path, dataclasses.asdict(run.eval.decoding)))
            progress(f"{file_format} {precision}: latency, evaluation")
            latency = _latency_ms(detector.detect_image, first_image, repeats)
            evaluator.reset()
            for image_id, image in _validation_images(run):
                found = detector.detect_image(image)
                evaluator.process(np.array([image_id]), found["boxes"][np.newaxis],
                                  found["scores"][np.newaxis], found["classes"][np.newaxis])
            metrics = evaluator.evaluate()
            rows.append({"format": file_format, "precision": precision,
                         "size_mb": round(_size_mb(path), 2), "latency_ms": round(latency, 2),
                         "ap": round(metrics["AP"], 4), "ap50": round(metrics["AP50"], 4)})
    return rows


def markdown(rows: Sequence[Dict[str, object]], command: str, machine: str) -> str:
    """The rows as the table of docs/evaluation.md ("Deployment figures")."""
    lines = [f"`{command}` on {machine}:", "",
             "| format | precision | file MB | latency ms (1 image) | AP | AP50 |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['format']} | {r['precision']} | {r['size_mb']:.1f} | "
              f"{r['latency_ms']:.1f} | {r['ap']:.3f} | {r['ap50']:.3f} |" for r in rows]
    return "\n".join(lines)
