"""Run an exported LiteRT or ONNX file as a detector: the package's letterbox before the
network and its decoding after, the same functions evaluation uses.

    from centernet.export.runtime import load_detector
    detector = load_detector("DIR/export/model_int8.tflite")   # or model.onnx
    found = detector.detect_image(rgb)        # [H, W, 3] uint8
    found["boxes"]    # [K, 4] float32 x1, y1, x2, y2 pixels of the image
    found["scores"]   # [K] descending;  found["classes"]: [K] int32
    detector.class_names[found["classes"][0]]

LiteRT runs with `ai-edge-litert`, ONNX with `onnxruntime`: the optional extra
`pip install 'centernet[export]'`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf

from centernet.config import DECODING_KEYS, Decoding
from centernet.errors import ConfigError, DataError
from centernet.evaluation.inference import ImageDetector, detections_from_outputs
from centernet.export.network import OUTPUTS

EXTRA = "pip install 'centernet[export]'"


def _require(module: str, package: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ConfigError(f"running this file needs {package}, which is not installed: "
                          f"{EXTRA}") from None


class LiteRTNetwork:
    """A `.tflite` network under `ai-edge-litert`: `[1, S, S, 3]` uint8 image -> `heatmap`,
    `wh`, `reg` float32 arrays (`centernet.export.network`)."""

    def __init__(self, path: Path, threads: int = 2):
        interpreter = _require("ai_edge_litert.interpreter", "ai-edge-litert")
        self.interpreter = interpreter.Interpreter(model_path=str(path), num_threads=threads)
        self.runner = self.interpreter.get_signature_runner("serving_default")
        image = self.runner.get_input_details()["image"]
        self.input_dtype = np.dtype(image["dtype"])
        self.input_size = int(image["shape"][1])
        self.input_scale, self.input_zero_point = image["quantization"]

    def __call__(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        image = np.asarray(image)
        if self.input_dtype.kind in "iu" and (self.input_scale, self.input_zero_point) != (1, 0):
            # a quantised input whose values are not the pixels themselves
            limits = np.iinfo(self.input_dtype)
            image = np.clip(np.round(image / self.input_scale + self.input_zero_point),
                            limits.min, limits.max)
        outputs = self.runner(image=image.astype(self.input_dtype))
        return {name: outputs[name] for name in OUTPUTS}


class OnnxNetwork:
    """A `.onnx` network under `onnxruntime` (CPU): the same contract as `LiteRTNetwork`."""

    def __init__(self, path: Path, threads: int = 2):
        ort = _require("onnxruntime", "onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        image = self.session.get_inputs()[0]
        self.input_dtype = np.dtype(np.float32)
        self.input_size = int(image.shape[1])
        self.output_names = [output.name for output in self.session.get_outputs()]

    def __call__(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        values = self.session.run(None, {"image": np.asarray(image).astype(self.input_dtype)})
        return dict(zip(self.output_names, values))


NETWORKS = {".tflite": LiteRTNetwork, ".onnx": OnnxNetwork}


def open_network(path: Path, threads: int = 2):
    """The runner for `path` by its suffix (`.tflite` or `.onnx`)."""
    path = Path(path)
    if path.suffix not in NETWORKS:
        raise ConfigError(f"model_file={path}: not a LiteRT (.tflite) or ONNX (.onnx) file")
    if not path.is_file():
        raise DataError(f"model_file={path} does not exist")
    return NETWORKS[path.suffix](path, threads)


def read_sidecar(path: Path) -> dict:
    """The `<file>.json` written beside an exported file (`network.write_sidecar`)."""
    sidecar = Path(f"{path}.json")
    if not sidecar.is_file():
        raise DataError(f"model_file={path}: {sidecar.name} (class names, input size) is not "
                        f"beside it; export writes both")
    return json.loads(sidecar.read_text())


class ExportedDetector(ImageDetector):
    """An exported network with the package's letterbox and decoding around it.

    Args:
        network: a `LiteRTNetwork` or `OnnxNetwork`.
        class_names: the class names, in class-id order.
        decoding: `k`, `flip_test` (also run the mirrored image and average), the cross-class
            twin decay, as the run's `eval` keys do.
        with_heatmap: also return the heatmap probabilities (`heatmap`).
    """

    def __init__(self, network, class_names: List[str], decoding: Decoding = Decoding(),
                 with_heatmap: bool = False):
        self.network = network
        self.class_names = list(class_names)
        self.input_size = network.input_size
        self.decoding = decoding
        self._decode = tf.function(
            lambda outputs, mirrored, letterbox, size: detections_from_outputs(
                outputs, mirrored, letterbox, size, decoding, with_heatmap))

    def _outputs(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        """The network's outputs for a batch, one image at a time (the files take batch 1)."""
        each = [self.network(images[index:index + 1]) for index in range(len(images))]
        return {name: np.concatenate([outputs[name] for outputs in each]) for name in OUTPUTS}

    def __call__(self, batch: Dict[str, tf.Tensor]) -> Dict[str, np.ndarray]:
        images = np.asarray(batch["image"])
        outputs = self._outputs(images)
        mirrored = self._outputs(images[:, :, ::-1]) if self.decoding.flip_test else None
        result = self._decode(outputs, mirrored, tf.cast(batch["letterbox"], tf.float32),
                              tf.cast(batch["original_size"], tf.int32))
        return {"image_id": np.asarray(batch["image_id"]),
                **{key: value.numpy() for key, value in result.items()}}


def load_detector(path: Path, overrides: Optional[Mapping[str, Any]] = None,
                  with_heatmap: bool = False, threads: int = 2) -> ExportedDetector:
    """An `ExportedDetector` for a `.tflite` or `.onnx` file: class names and decoding from
    the sidecar `<file>.json` (the run's `eval` settings), the `Decoding` keys in `overrides`
    (e.g. `{"k": 50}`) replacing the sidecar's. A sidecar written before a key existed
    gives that key's default."""
    network = open_network(path, threads)
    sidecar = read_sidecar(path)
    decoding = Decoding(**{key: sidecar[key] for key in DECODING_KEYS if key in sidecar})
    return ExportedDetector(network, sidecar["class_names"],
                            dataclasses.replace(decoding, **(overrides or {})), with_heatmap)


class SavedModelDetector:
    """The exported SavedModel (letterbox and decoding inside) behind the same `detect_image`
    as the other formats, for comparing them (`benchmark.py export`)."""

    def __init__(self, path: Path):
        self.module = tf.saved_model.load(str(path))
        self.serve = self.module.signatures["serving_default"]
        self.class_names = [name.decode() for name in self.module.class_names.numpy()]

    def detect_image(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """`boxes` `[K, 4]` xyxy pixels of `image` (`[H, W, 3]` uint8), `scores`, `classes`."""
        result = self.serve(images=tf.convert_to_tensor(image[np.newaxis]))
        return {key: value.numpy()[0] for key, value in result.items()}
