"""The command-line entry points, one module each, and the installed `centernet` command that runs
them: `centernet COMMAND [arguments]` (also `python -m centernet COMMAND ...`) is
`python scripts/<module>.py [arguments]` from a source checkout, the same `main` with the same
arguments. The Hydra commands take `group=option` and `key=value` overrides and Hydra's own
options (`--help`, `--cfg job`, `--config-dir DIR` for a folder of the user's own configs, `-m`);
`centernet.cli` holds what they share.

Importing this package or a command module has no side effects: each `main` starts quietly
(`centernet.cli.configure_quiet_start`) before it imports TensorFlow.
"""

from __future__ import annotations

import importlib
import sys
from typing import List, Optional

# name: (module in this package, what it does); `centernet --help` lists them in this order
COMMANDS = {
    "train": ("train", "train a detector; a run directory under outputs/train/"),
    "evaluate": ("evaluate", "COCO-evaluate a run: run_dir=DIR [checkpoint=PATH]"),
    "predict": ("predict", "draw detections: run_dir=DIR input=IMAGE|FOLDER|VIDEO"),
    "export": ("export", "write a run's detector as SavedModel, LiteRT or ONNX: run_dir=DIR"),
    "audit-labels": ("audit_labels", "find likely label errors with cleanlab: run_dir=DIR"),
    "label-noise": ("label_noise", "measure the audit: clean shapes, injected errors, scores"),
    "show-data": ("show_data", "a picture of training-pipeline images and their targets"),
    "benchmark": ("benchmark", "performance figures: benchmark WHAT (see benchmark --help)"),
    "compare-losses": ("compare_losses", "train every focal-loss form side by side"),
    "loss-numerics": ("loss_numerics", "where each focal-loss form breaks, by dtype"),
    "build-ops": ("build_ops", "compile the native target renderers ahead of time"),
    "data-service": ("data_service", "serve training batches from other machines (tf.data)"),
}


def usage() -> str:
    """`centernet --help`: the commands, one line each."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join([
        "usage: centernet COMMAND [group=option ...] [key=value ...]", "",
        "CenterNet object detection (TensorFlow 2 / Keras 3, configured with Hydra).", "",
        "commands:", *lines, "",
        "`centernet COMMAND --help` tells more; `--config-dir DIR` adds a folder of your own",
        "configs (DIR/experiment/NAME.yaml -> experiment=NAME); verbose=true shows",
        "TensorFlow's start-up lines."])


def main(argv: Optional[List[str]] = None) -> None:
    """Run `centernet COMMAND ARGS...` (`argv`, default `sys.argv[1:]`): the command's `main`
    with `sys.argv` set to `["centernet COMMAND", *ARGS]`, as Hydra and argparse read it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    name, arguments = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)} "
              f"(centernet --help)", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    sys.argv = [f"centernet {name}", *arguments]
    module.main()
