"""Working with a finished (or running) training run: its config, its checkpoints, its model.

`scripts/evaluate.py`, `predict.py` and `export.py` all start from `run_dir=DIR` (and optionally
`checkpoint=PATH`); this module turns those into a validated config and a loaded model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from centernet.config import RunConfig, override_keys, validate
from centernet.errors import CheckpointError

CONFIG_FILE = Path(".hydra") / "config.yaml"


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint prefix belongs to (`DIR/checkpoints[/best]/ckpt-N`)."""
    for parent in Path(checkpoint).parents:
        if (parent / CONFIG_FILE).is_file():
            return parent
    raise CheckpointError(f"checkpoint={checkpoint}: no run directory with {CONFIG_FILE} above "
                          f"it; pass run_dir=DIR as well")


def load_run_config(run_dir: Path, composed: DictConfig, overrides: Iterable[str],
                    own_keys: Iterable[str]) -> RunConfig:
    """The run's saved config with the user's explicit `key=value` overrides applied.

    Args:
        run_dir: the training run directory (holds `.hydra/config.yaml`).
        composed: the script's composed config, which holds each override's parsed value.
        overrides: the command-line overrides (`HydraConfig.get().overrides.task`).
        own_keys: the script's own keys (`run_dir`, `checkpoint`, ...), not run settings.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"run_dir={run_dir}: {CONFIG_FILE} not found; is this a training "
                              f"run directory?")
    saved = OmegaConf.load(path)
    own = set(own_keys)
    for key in override_keys(overrides):
        if key.split(".")[0] in own:
            continue
        OmegaConf.update(saved, key, OmegaConf.select(composed, key), merge=False)
    return validate(saved)


def _describe(directory: Path) -> str:
    from centernet.engine.checkpointing import list_checkpoints

    found = [str(p) for d in (directory, directory / "best") for p in list_checkpoints(d)]
    return "existing checkpoints: " + (", ".join(found) if found else f"none in {directory}")


def resolve_checkpoint(run_dir: Path, checkpoint: Optional[str]) -> Path:
    """`checkpoint` (a `ckpt-N` prefix or a folder of them) or the run's best, else latest.

    Raises:
        CheckpointError: the path does not exist; the message lists the checkpoints that do.
    """
    from centernet.engine.checkpointing import list_checkpoints

    checkpoints = Path(run_dir) / "checkpoints"
    if checkpoint:
        path = Path(checkpoint)
        if path.is_dir() and list_checkpoints(path):
            return list_checkpoints(path)[0]
        if Path(f"{path}.index").is_file():
            return path
        raise CheckpointError(f"checkpoint={checkpoint} does not exist; {_describe(checkpoints)}")
    for directory in (checkpoints / "best", checkpoints):
        found = list_checkpoints(directory)
        if found:
            return found[0]
    raise CheckpointError(f"run_dir={run_dir} has no checkpoints yet; {_describe(checkpoints)}")


def locate(run_dir: Optional[str], checkpoint: Optional[str]) -> Tuple[Path, Path]:
    """`(run_dir, checkpoint prefix)` from the `run_dir=` and `checkpoint=` arguments."""
    if not run_dir and not checkpoint:
        raise CheckpointError("pass run_dir=DIR (a training run) or checkpoint=PATH")
    directory = Path(run_dir) if run_dir else run_dir_of(Path(checkpoint))
    if not directory.is_dir():
        raise CheckpointError(f"run_dir={run_dir} does not exist")
    return directory, resolve_checkpoint(directory, checkpoint)


def run_classes(run_dir: Path, run: RunConfig):
    """The run's saved `ClassMap`; for a run saved before classes were kept, its dataset's."""
    from centernet.data.sources import ClassMap, build_source

    return ClassMap.load(run_dir) or build_source(run.dataset).classes


def load_model(run: RunConfig, checkpoint: Path, num_classes: int,
               policy: Optional[str] = None):
    """Build the run's model and load `checkpoint` into it (model weights only; the averaged
    weights when the run kept them, `train.ema_decay`).

    `policy` is the Keras precision policy to build it in; None takes the run's, as training
    resolved it (`precision=auto` picks `mixed_bfloat16` on CPUs that compute in bfloat16).
    Exports pass `float32`: a file is for other machines, and LiteRT and ONNX take no
    bfloat16 ops. The weights are the same either way (mixed policies keep float32 variables).

    Raises:
        CheckpointError: the checkpoint was trained for another model (says what differs).
    """
    import keras
    import tensorflow as tf

    from centernet.engine.checkpointing import model_spec, restore
    from centernet.engine.ema import WeightAverage, ema_objects
    from centernet.engine.hardware import precision_policy
    from centernet.model import build_model

    keras.mixed_precision.set_global_policy(policy or precision_policy(run.precision))
    model = build_model(run.model, num_classes, initial_weights=False,  # all from the checkpoint
                        head_dtype=run.precision.head_dtype)
    ema = WeightAverage(model, run.train.ema_decay) if run.train.ema_decay else None
    restore(tf.train.Checkpoint(model=model, **ema_objects(ema)), checkpoint,
            model_spec(run, num_classes), full=False)
    if ema is not None:
        ema.copy_to_model()
    return model
