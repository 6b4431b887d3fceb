"""Train every focal-loss form side by side: `centernet compare-losses [overrides]` (or `python
scripts/compare_losses.py ...`).

Trains `loss=stable`, `per_image`, `clamped` and `naive` on the same data, seed and schedule
(`experiment=nan_demo` unless the overrides name another experiment, or `~experiment` for the
plain default run), then `stable` and `naive` at each other precision the machine runs
natively, each as its own `centernet train` process in `<run dir>/runs/<loss>_<precision>`.
Writes `comparison.md` and `comparison.png` into the run directory: `hydra.run.dir=DIR` sets it
(default `outputs/compare_losses/<time>`); running the same command again resumes unfinished
runs. Every other `key=value` goes to each run.

Options of its own: `compare.losses=stable,naive` (the forms to run) and
`compare.precisions=float32,mixed_bfloat16` (the extra precisions; `none` for none).
"""

import os
import sys
import time
from pathlib import Path

from centernet.cli import command_line, compose_config, configure_quiet_start, run_command
from centernet.config import override_keys, validate
from centernet.engine.hardware import cpu_flags, cpu_model, precision_policy
from centernet.errors import ConfigError


def _split_arguments(argv):
    """(overrides for every run, run directory, losses, precisions or None)."""
    from centernet.study.comparison import LOSSES, PRECISIONS

    overrides, run_dir, losses, precisions = [], None, list(LOSSES), None
    for argument in argv:
        key, _, value = argument.partition("=")
        if key == "hydra.run.dir":
            run_dir = Path(value)
        elif key == "compare.losses":
            losses = [v for v in value.split(",") if v]
            bad = [v for v in losses if v not in LOSSES]
            if bad or not losses:
                raise ConfigError(f"compare.losses={value!r} is invalid: choose from "
                                  f"{', '.join(LOSSES)}")
        elif key == "compare.precisions":
            precisions = [] if value == "none" else [v for v in value.split(",") if v]
            bad = [v for v in precisions if v not in PRECISIONS]
            if bad:
                raise ConfigError(f"compare.precisions={value!r} is invalid: choose from "
                                  f"{', '.join(PRECISIONS)} or none")
        elif key in ("loss", "precision", "loss.impl", "precision.policy"):
            raise ConfigError(f"{argument} is invalid here: compare-losses sets {key} for "
                              f"each run (use compare.losses / compare.precisions)")
        else:
            overrides.append(argument)
    if "experiment" not in override_keys(overrides):
        overrides.insert(0, "experiment=nan_demo")
    if run_dir is None:
        run_dir = Path("outputs/compare_losses") / time.strftime("%Y-%m-%d_%H-%M-%S")
    return overrides, run_dir, losses, precisions


def _machine() -> str:
    flags = cpu_flags()
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16")
              if f in flags]
    return f"{cpu_model()}, {os.cpu_count()} cores, flags: {' '.join(wanted) or 'none of note'}"


def compare() -> dict:
    overrides, run_dir, losses, precisions = _split_arguments(sys.argv[1:])
    # bad overrides fail here, before anything trains
    base = validate(compose_config("train", overrides))
    from centernet.study import comparison, numerics

    run_dir.mkdir(parents=True, exist_ok=True)
    chosen = comparison.variants(precision_policy(base.precision), losses, precisions)
    print(f"comparing {', '.join(v.name for v in chosen)} in {run_dir}", flush=True)
    rows = [comparison.run_variant(v, overrides, run_dir) for v in chosen]
    (run_dir / "comparison.md").write_text(comparison.markdown(rows, command_line(sys.argv),
                                                               _machine()))
    comparison.plot(rows, run_dir / "comparison.png", numerics.gradient_curves())
    print((run_dir / "comparison.md").read_text())
    print(f"wrote {run_dir / 'comparison.md'} and {run_dir / 'comparison.png'}")
    return {}


def main() -> None:
    """`centernet compare-losses`: train and compare the forms `sys.argv` asks for."""
    configure_quiet_start(sys.argv)
    run_command(compare)
