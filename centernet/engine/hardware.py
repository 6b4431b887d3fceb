"""`precision=auto` and `train.jit_compile=auto`: what is fastest on the machine a run starts on.

The rules come from side-by-side measurements of the ResNet-18 train step (docs/results.md,
"Time to a good detector"):

- bfloat16 only where the hardware computes in it natively: a CPU with AVX512-BF16 or AMX
  (measured 1.2-1.7x over float32 there) or an NVIDIA GPU of compute capability 8.0 or later.
  Elsewhere it is emulated and slow (measured 0.14x on an AMD EPYC without it), so float32.
- XLA on a GPU, and on a CPU without AVX-512 (measured 1.2-1.25x on an AMD EPYC with AVX2);
  not on a CPU with AVX-512, where TensorFlow's own oneDNN kernels beat XLA's (0.76-0.84x).
- A warning for float16 on a CPU where TensorFlow runs oneDNN, which has no fast float16
  convolution gradient (`precision_warning`).
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, MutableMapping, Optional, Tuple

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Machine:
    """What the choices depend on: the CPU's feature flags (as `/proc/cpuinfo` names them),
    the compute capabilities `(major, minor)` of the visible GPUs, and whether TensorFlow runs
    its oneDNN CPU kernels (its default on CPUs with AVX-512 VNNI, BF16 or AMX;
    `TF_ENABLE_ONEDNN_OPTS` switches them)."""

    cpu_flags: FrozenSet[str]
    gpu_capabilities: Tuple[Tuple[int, int], ...] = ()
    onednn: bool = False


CPUINFO = Path("/proc/cpuinfo")


def cpu_fields(cpuinfo: Path = CPUINFO) -> Dict[str, str]:
    """The first processor's `name: value` lines of `/proc/cpuinfo` (`"model name"`, `"flags"`,
    ...); empty where the file does not exist. The one place the project reads it."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {}
    found: Dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if found:
                break  # the first processor's block ends
            continue
        name, sep, value = line.partition(":")
        if sep:
            found.setdefault(name.strip(), value.strip())
    return found


def cpu_flags(cpuinfo: Path = CPUINFO) -> FrozenSet[str]:
    """The CPU's feature flags (empty where `/proc/cpuinfo` does not exist)."""
    return frozenset(cpu_fields(cpuinfo).get("flags", "").split())


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (`/proc/cpuinfo`), else what `platform` knows, else `unknown`."""
    return (cpu_fields(cpuinfo).get("model name") or platform.processor()
            or platform.machine() or "unknown")


def bfloat16_cpu_flags(flags: FrozenSet[str]) -> Tuple[str, ...]:
    """Which of `BF16_CPU_FLAGS` (the CPU computes bfloat16 natively) `flags` has."""
    return tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)


def this_machine() -> Machine:
    """The machine this process runs on."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return Machine(cpu_flags(), tuple(capabilities), _onednn_enabled())


def _onednn_enabled() -> bool:
    try:  # TensorFlow says so only through a module of its own; False if that ever moves
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


def choose_precision(machine: Machine) -> Tuple[str, str]:
    """`(policy, why)` for `precision.policy=auto`."""
    if machine.gpu_capabilities:
        if min(machine.gpu_capabilities) >= (8, 0):
            return "mixed_bfloat16", "the GPU computes in bfloat16 (compute capability >= 8.0)"
        return "float32", "the GPU has no bfloat16 units (compute capability < 8.0)"
    native = bfloat16_cpu_flags(machine.cpu_flags)
    if native:
        return "mixed_bfloat16", f"the CPU computes in bfloat16 ({', '.join(native)})"
    return "float32", "the CPU has no bfloat16 units: no avx512_bf16 or amx_bf16"


def choose_jit(machine: Machine) -> Tuple[bool, str]:
    """`(use XLA, why)` for `train.jit_compile=auto`."""
    if machine.gpu_capabilities:
        return True, "XLA on a GPU"
    if "avx512f" in machine.cpu_flags:
        return False, "the CPU has AVX-512, where oneDNN's kernels beat XLA's"
    return True, "the CPU has no AVX-512, where XLA measured faster"


def precision_policy(precision) -> str:
    """The Keras policy a `PrecisionConfig` asks for: its `policy`, or for `auto` what
    `choose_precision` picks on this machine (bfloat16 only with native bfloat16 arithmetic)."""
    if precision.policy != "auto":
        return precision.policy
    return choose_precision(this_machine())[0]


def uses_xla(train) -> bool:
    """Whether a `TrainConfig`'s train step compiles with XLA: `jit_compile`, or for `auto`
    what `choose_jit` picks on this machine; always with `deterministic`."""
    if train.deterministic:
        return True
    if train.jit_compile != "auto":
        return train.jit_compile == "true"
    return choose_jit(this_machine())[0]


def precision_warning(policy: str, machine: Machine | None = None) -> str | None:
    """A warning for a policy that trains far slower than float32 here, else None: float16
    on a CPU with TensorFlow's oneDNN kernels, which have no fast float16 convolution
    gradient (without oneDNN, float16 measured 4x float32's time, not 200x)."""
    machine = machine or this_machine()
    if policy != "mixed_float16" or machine.gpu_capabilities or not machine.onednn:
        return None
    return ("warning: precision=mixed_float16 trains about 100x slower than float32 on this "
            "CPU: TensorFlow's oneDNN kernels (on here) have no fast float16 convolution "
            "gradient (a 3x3, 64-channel convolution's forward and backward pass on 8 images "
            "of 32x32 took 1.17 s against 5 ms in float32 and 2.5 ms in bfloat16, Xeon with "
            "AMX, 2026-12-03); use precision=float32 or precision=mixed_bfloat16, or "
            "TF_ENABLE_ONEDNN_OPTS=0 (float16 67 ms there)")


def float16_without_onednn(policy: str, environ: MutableMapping[str, str] = os.environ,
                           tensorflow_imported: Optional[bool] = None) -> Optional[str]:
    """Before TensorFlow is imported, for a `mixed_float16` run: turn TensorFlow's oneDNN CPU
    kernels off (`TF_ENABLE_ONEDNN_OPTS=0`), whose float16 convolution gradients are about 100x
    float32's (`precision_warning`), unless the user set that variable. Returns the line that says
    so, or None when nothing changed (another policy, the variable set, or TensorFlow already
    imported: `tensorflow_imported`, None to look). GPUs do not use oneDNN: only the CPU's share of
    the work changes."""
    if tensorflow_imported is None:
        tensorflow_imported = "tensorflow" in sys.modules
    if policy != "mixed_float16" or "TF_ENABLE_ONEDNN_OPTS" in environ or tensorflow_imported:
        return None
    environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    return ("precision=mixed_float16: TensorFlow's oneDNN CPU kernels off for this run "
            "(TF_ENABLE_ONEDNN_OPTS=0): their float16 convolution gradients are about 100x "
            "slower than float32's; set TF_ENABLE_ONEDNN_OPTS=1 to keep them")
