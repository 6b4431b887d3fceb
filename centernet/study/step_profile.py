"""Where a train step's time goes: TensorFlow's profiler over a few steps, grouped by kind
of op (`python scripts/benchmark.py profile`).

The step is the benchmark's (`centernet.benchmark.train_step_function`: forward, loss,
backward, optimizer update on random data, so input waits are nil by construction; the
`pipeline` benchmark measures the input side). The profiler writes an XSpace protobuf
(`*.xplane.pb`); every TensorFlow op the executor ran is an event named `NAME:TYPE` on one
of its compute threads, with a duration. Summing those durations per kind gives op time
per step; with two threads running ops side by side it can exceed the step's wall time.
"""

from __future__ import annotations

import collections
import re
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

from centernet.config import ModelConfig

# The kinds, in the order the table lists them.
KINDS = ("convolutions, forward", "convolutions, backward", "BatchNorm (and its gradient)",
         "ReLU (and its gradient)", "dtype casts", "optimizer update", "loss (and its gradient)",
         "other network ops (pooling, adds, padding)")

_BATCH_NORM_NAME = re.compile(r"(^|/)([^/]*_bn(_\d+)?|batchnorm|moments)(/|$)")


def op_kind(name: str, op_type: str, model_name: str, optimizer_name: str) -> str:
    """The kind (one of `KINDS`) of the op `name` of type `op_type` in a step of the model
    `model_name` updated by the optimizer `optimizer_name`."""
    if "Conv2D" in op_type:
        return KINDS[1] if "Backprop" in op_type else KINDS[0]
    if "BatchNorm" in op_type or _BATCH_NORM_NAME.search(name):
        return KINDS[2]
    if op_type in ("Relu", "ReluGrad", "_MklRelu", "_MklReluGrad"):
        return KINDS[3]
    if op_type == "Cast":
        return KINDS[4]
    forward_name = name.removeprefix("gradient_tape/")
    if (forward_name.split("/")[0].startswith(optimizer_name) or op_type.startswith("ResourceApply")
            or op_type.endswith("VariableOp")):
        return KINDS[5]
    if forward_name.split("/")[0].startswith(model_name):
        return KINDS[7]
    return KINDS[6]


def op_times(logdir: Path) -> Dict[Tuple[str, str], float]:
    """Seconds per `(op name, op type)` summed over the compute threads of the profile in
    `logdir` (the newest `*.xplane.pb` under it)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=import-outside-toplevel

    paths = sorted(Path(logdir).rglob("*.xplane.pb"), key=lambda path: path.stat().st_mtime)
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {logdir}: the profiler wrote nothing")
    space = xplane_pb2.XSpace()
    space.ParseFromString(paths[-1].read_bytes())
    seconds: Dict[Tuple[str, str], float] = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name, _, op_type = plane.event_metadata[event.metadata_id].name.rpartition(":")
                if name and op_type != "Process":  # Process: the executor's span, not an op
                    seconds[(name, op_type)] += event.duration_ps * 1e-12
    return seconds


def profile_train_step(model_cfg: ModelConfig, batch_size: int, num_classes: int,
                       precision: str, steps: int = 5) -> Dict[str, object]:
    """Profile `steps` train steps after warm-up: the step's wall time (ms) and, per kind
    (`KINDS`), op time in ms per step and its share of all op time."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from centernet.benchmark import train_step_function  # pylint: disable=import-outside-toplevel

    step, batch, model, optimizer = train_step_function(model_cfg, batch_size, num_classes,
                                                        precision)
    try:
        for _ in range(3):
            step(batch).numpy()
        start = time.perf_counter()
        for _ in range(steps):
            step(batch).numpy()
        wall = (time.perf_counter() - start) / steps
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            try:
                for _ in range(steps):
                    step(batch).numpy()
            finally:
                tf.profiler.experimental.stop()
            seconds = op_times(Path(logdir))
    finally:
        import keras  # pylint: disable=import-outside-toplevel

        keras.mixed_precision.set_global_policy("float32")
    per_kind = collections.Counter()
    for (name, op_type), value in seconds.items():
        per_kind[op_kind(name, op_type, model.name, optimizer.name)] += value / steps
    total = sum(per_kind.values())
    rows: List[Dict[str, object]] = [
        {"kind": kind, "ms_per_step": per_kind[kind] * 1e3,
         "share": per_kind[kind] / total if total else 0.0} for kind in KINDS]
    return {"rows": rows, "op_ms_per_step": total * 1e3, "wall_ms_per_step": wall * 1e3,
            "images_per_sec": batch_size / wall, "model": model_cfg.name,
            "input_size": model_cfg.input_size, "batch_size": batch_size,
            "classes": num_classes, "precision": precision}


def markdown(profile: Dict[str, object]) -> str:
    """The profile as a Markdown table, op time per step by kind."""
    lines = [f"{profile['precision']}: {profile['wall_ms_per_step']:.0f} ms a step "
             f"({profile['images_per_sec']:.1f} images/s), {profile['op_ms_per_step']:.0f} ms "
             f"of op time (summed over TensorFlow's compute threads)", "",
             "| kind of op | ms per step | share |", "|---|---:|---:|"]
    lines += [f"| {row['kind']} | {row['ms_per_step']:.1f} | {row['share']:.0%} |"
              for row in profile["rows"]]
    return "\n".join(lines)
