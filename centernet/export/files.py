"""Write a trained run's detector in one format (`scripts/export.py`, `benchmark.py export`).

| format | file (default under `<run_dir>/export`) | holds |
|---|---|---|
| `saved_model` | the directory itself | letterbox, network and decoding; any image size |
| `litert` | `model_<export.precision>.tflite` + `.json` | the network, `[1, S, S, 3]` |
| `onnx` | `model.onnx` + `.json` | the network, `[1, S, S, 3]` |
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import keras
import numpy as np

from centernet.config import RunConfig
from centernet.errors import ConfigError

FORMATS = ("saved_model", "litert", "onnx")


def default_output(run_dir: Path, file_format: str, precision: str) -> Path:
    """Where a format goes when `output` is not given."""
    directory = Path(run_dir) / "export"
    return {"saved_model": directory, "litert": directory / f"model_{precision}.tflite",
            "onnx": directory / "model.onnx"}[file_format]


def calibration_images(run: RunConfig, count: int) -> Iterator[np.ndarray]:
    """Up to `count` letterboxed `[1, S, S, 3]` float32 images of the run's training split
    (its first images in file order, not augmented), for int8 calibration; the first has one
    pixel set to 0 and one to 255 (below)."""
    from centernet.data.pipeline import eval_dataset
    from centernet.data.sources import build_source

    source = build_source(run.dataset)
    batches = eval_dataset(source, run.dataset.train_split, run.model.input_size, 1)
    for index, batch in enumerate(batches.take(count).as_numpy_iterator()):
        image = batch["image"].astype(np.float32)
        if index == 0:
            # One black and one white pixel pin the input's range to 0-255, so the int8 file's
            # uint8 input is the pixel values themselves (scale 1, zero point 0).
            image[0, 0, 0] = 0.0
            image[0, 0, 1] = 255.0
        yield image


def export(model: keras.Model, run: RunConfig, class_names, category_ids, file_format: str,
           output: Path, checkpoint: str, precision: str = "float32",
           calibration_count: int = 200, report=print) -> Path:
    """Write `model` (the run's, its checkpoint loaded) as `file_format` to `output`.

    LiteRT files are checked before they are written: builtin ops only, and every op on the
    GPU delegate (TensorFlow's analyzer); a failed check is an error naming the ops.

    Returns:
        the path written (a directory for `saved_model`, else the file; a `.json` sidecar
        goes beside a file).
    """
    from centernet.export import network

    if file_format not in FORMATS:
        raise ConfigError(f"format={file_format}: choose one of {', '.join(FORMATS)}")
    output = Path(output)
    size = run.model.input_size
    if file_format == "saved_model":
        from centernet.evaluation.inference import Predictor
        from centernet.export.saved_model import export_saved_model

        return export_saved_model(Predictor(model, run.eval.decoding), class_names,
                                  category_ids, output)
    if file_format == "onnx":
        if precision != "float32":
            raise ConfigError(f"export.precision={precision}: the ONNX export is float32 only")
        network.write_onnx(model, size, output)
        network.write_sidecar(output, size, "float32", class_names, category_ids, checkpoint,
                              run.eval.decoding)
        return output
    calibrated = []

    def calibration() -> Iterator[np.ndarray]:
        for image in calibration_images(run, calibration_count):
            calibrated.append(1)
            yield image

    flatbuffer = network.litert_bytes(model, size, precision, calibration)
    foreign = network.non_builtin_ops(flatbuffer)
    if foreign:
        raise ConfigError(f"the LiteRT conversion needs ops that are not builtin: {foreign}")
    off_gpu = network.gpu_incompatible_ops(flatbuffer)
    if off_gpu:
        raise ConfigError("the LiteRT network does not pass the GPU-delegate compatibility "
                          "check: " + "; ".join(off_gpu))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(flatbuffer)
    network.write_sidecar(output, size, "uint8" if precision == "int8" else "float32",
                          class_names, category_ids, checkpoint, run.eval.decoding)
    if precision == "int8":
        report(f"int8 calibrated on {len(calibrated)} image(s) of the "
               f"{run.dataset.train_split} split")
    return output
