"""The network alone, at a fixed input size, as LiteRT (TFLite) and ONNX files.

LiteRT and ONNX hold the backbone, neck and heads: one `[1, S, S, 3]` letterboxed RGB image in
(float32 pixel values 0-255; uint8 for the int8 file), `heatmap` logits `[1, S/4, S/4, C]`,
`wh` and `reg` `[1, S/4, S/4, 2]` out. The letterbox before and the decoding after are the
package's own (`centernet.export.runtime`), the ones evaluation uses: they need a dynamic
image size and a top-K that the GPU delegate cannot run, and in TensorFlow they are exact.

Beside each file goes `<file>.json` (`write_sidecar`): input size and type, output names, class
names and category ids, so the file can be used without the run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence

import keras
import numpy as np
import tensorflow as tf

from centernet.config import DOWN_RATIO, Decoding
from centernet.errors import ConfigError

LITERT_PRECISIONS = ("float32", "float16", "int8")
OUTPUTS = ("heatmap", "wh", "reg")


def _saved_network(model: keras.Model, input_size: int, directory: Path) -> Path:
    """Write the bare network as a SavedModel with one `serving_default` signature: `image`
    `[1, S, S, 3]` float32 in, the three heads' outputs as float32 out. Keras' `ExportArchive`
    freezes the weights as the converters need them."""

    def network(image):
        outputs = model(image, training=False)
        return {name: tf.cast(outputs[name], tf.float32) for name in OUTPUTS}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", network, input_signature=[
        tf.TensorSpec([1, input_size, input_size, 3], tf.float32, name="image")])
    archive.write_out(str(directory), verbose=False)
    return directory


def litert_bytes(model: keras.Model, input_size: int, precision: str = "float32",
                 calibration: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """Convert the network to a LiteRT flatbuffer with builtin ops only.

    Args:
        model: the CenterNet Keras model.
        input_size: S, the square input side in pixels.
        precision: `float32`; `float16` (weights stored in float16, computed in float32 on
            the CPU, in float16 on the GPU delegate); `int8` (full-integer quantisation:
            weights and activations int8, uint8 image in, float32 outputs).
        calibration: for `int8`, a callable yielding `[1, S, S, 3]` float32 letterboxed
            images of the training split, to calibrate the activation ranges.
    """
    if precision not in LITERT_PRECISIONS:
        raise ConfigError(f"export.precision={precision}: LiteRT takes "
                          f"{', '.join(LITERT_PRECISIONS)}")
    with tempfile.TemporaryDirectory() as directory:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(_saved_network(model, input_size, Path(directory))))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            if calibration is None:
                raise ValueError("int8 needs calibration images")
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([image] for image in calibration())
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
        return converter.convert()


@contextlib.contextmanager
def _quiet_tensorflow():
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def write_onnx(model: keras.Model, input_size: int, path: Path) -> Path:
    """Write the network as ONNX and check the file with `onnx.checker`.

    Goes through the frozen SavedModel of `_saved_network` and tf2onnx's SavedModel loader
    (what `python -m tf2onnx.convert --saved-model` does): Keras' own ONNX export leaves the
    normalisation layer's constant mean and variance as extra graph inputs without values.
    """
    import onnx
    from tf2onnx import convert, tf_loader

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # not its per-pass chatter
    with tempfile.TemporaryDirectory() as directory:
        saved = _saved_network(model, input_size, Path(directory))
        with _quiet_tensorflow():  # tf2onnx's freezing goes through deprecated TF 1 calls
            graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
                str(saved), None, None, tag="serve", signatures=["serving_default"],
                return_tensors_to_rename=True)
        proto, _ = convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs,
                                          tensors_to_rename=renames)
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def analyzer_report(flatbuffer: bytes) -> str:
    """TensorFlow's LiteRT model analyzer's text, with the GPU-delegate compatibility check."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=flatbuffer, gpu_compatibility=True)
    return text.getvalue()


GPU_DELEGATE_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXP",
    "FULLY_CONNECTED", "LOGICAL_AND", "LOGISTIC", "LSTM", "MAX_POOL_2D", "MAXIMUM", "MINIMUM",
    "MUL", "PAD", "PRELU", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "SOFTMAX",
    "STRIDED_SLICE", "SUB", "TRANSPOSE_CONV",
    "QUANTIZE", "DEQUANTIZE",  # the delegate's support for float16 and int8 quantised models
})
"""The ops the LiteRT GPU delegate documents as supported ("GPU delegates for TensorFlow
Lite", Supported ops)."""


def gpu_incompatible_ops(flatbuffer: bytes) -> List[str]:
    """Why ops would not run on the GPU delegate, one line each (empty when all would):
    TensorFlow's analyzer's complaints (`gpu_compatibility=True`), and ops outside the
    delegate's documented list (`GPU_DELEGATE_OPS`). Both, because the analyzer of
    TensorFlow 2.21's wheels passes every op it is shown (top-K, casts from uint8, 3-D
    convolutions and non-max suppression alike)."""
    report = analyzer_report(flatbuffer)
    complaints = [line.strip() for line in report.splitlines()
                  if "GPU COMPATIBILITY WARNING" in line]
    if "GPU delegate" in report and not complaints and "looks compatible" not in report:
        complaints.append(report.strip())
    complaints += [f"{name}: not among the GPU delegate's documented ops"
                   for name in sorted(litert_ops(flatbuffer)) if name not in GPU_DELEGATE_OPS]
    return complaints


def litert_ops(flatbuffer: bytes) -> Dict[str, int]:
    """How many times each op occurs in the flatbuffer, by the analyzer's op names (builtin
    ops are upper case, e.g. `CONV_2D`; select-TF and custom ops are named otherwise)."""
    ops: Dict[str, int] = {}
    for name in re.findall(r"Op#\d+ (\w+)\(", analyzer_report(flatbuffer)):
        ops[name] = ops.get(name, 0) + 1
    return ops


def non_builtin_ops(flatbuffer: bytes) -> List[str]:
    """Ops that are not LiteRT builtins (select-TF `Flex...` or custom ops)."""
    return sorted(name for name in litert_ops(flatbuffer)
                  if name.startswith("Flex") or name == "CUSTOM" or not name.isupper())


def write_sidecar(path: Path, input_size: int, input_dtype: str, class_names: Sequence[str],
                  category_ids: Sequence[int], source: str, decoding: Decoding) -> Path:
    """`<path>.json`: what a user of the file needs besides the file (module docstring), and
    the run's decoding settings (`k`, `flip_test`, `cross_class_iou`, `cross_class_decay`)
    as the runtime's defaults."""
    sidecar = Path(f"{path}.json")
    sidecar.write_text(json.dumps({
        "input": {"name": "image", "shape": [1, input_size, input_size, 3],
                  "dtype": input_dtype,
                  "content": "RGB pixel values 0-255, letterboxed: longer side resized to "
                             "input size, centred, black padding"},
        "outputs": {"heatmap": "[1, S/4, S/4, C] class logits", "wh": "[1, S/4, S/4, 2] box "
                    "width, height in output pixels", "reg": "[1, S/4, S/4, 2] centre offset "
                    "x, y in output pixels"},
        "stride": DOWN_RATIO, "class_names": list(class_names),
        "category_ids": [int(c) for c in category_ids], "checkpoint": source,
        **dataclasses.asdict(decoding),
    }, indent=1) + "\n")
    return sidecar
