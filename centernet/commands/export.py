"""Export a trained detector: `centernet export run_dir=DIR [format=FORMAT] ...` (or `python
scripts/export.py ...`).

`format=saved_model` (default, DIR/export): uint8 RGB images of any size in, boxes in image
pixels, scores and classes out; letterboxing and decoding inside. `format=litert`
(DIR/export/model_<export.precision>.tflite; `export.precision=float32|float16|int8`,
`export.calibration_images=200`) and `format=onnx` (DIR/export/model.onnx): the network at
the run's input size, with `<file>.json` beside it; `centernet.export.runtime` runs them.
Options: `checkpoint=PATH`, `output=PATH`. See the README.
"""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from centernet.cli import hydra_command, run_command
from centernet.config import SCRIPT_KEYS
from centernet.engine.runs import load_run_config, locate


@hydra_command("export")
def main(cfg: DictConfig) -> None:
    def export() -> None:
        OmegaConf.to_object(cfg)  # checks format= and the other values
        run_dir, checkpoint = locate(cfg.run_dir, cfg.checkpoint)
        run = load_run_config(run_dir, cfg, HydraConfig.get().overrides.task, SCRIPT_KEYS)
        from centernet.engine.runs import load_model, run_classes
        from centernet.export.files import default_output, export as write

        classes = run_classes(run_dir, run)
        model = load_model(run, checkpoint, len(classes.names), policy="float32")
        output = (Path(cfg.output) if cfg.output
                  else default_output(run_dir, cfg.format, run.export.precision))
        written = write(model, run, classes.names, classes.category_ids, cfg.format, output,
                        str(checkpoint), run.export.precision, run.export.calibration_images)
        kind = {"saved_model": "SavedModel", "litert": f"LiteRT {run.export.precision}",
                "onnx": "ONNX"}[cfg.format]
        print(f"{kind} of checkpoint {checkpoint} -> {written}")

    run_command(export)
