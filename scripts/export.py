"""Export a SavedModel: `python scripts/export.py run_dir=DIR [checkpoint=PATH] [output=DIR]`.

The SavedModel (default DIR/export) takes uint8 RGB images of any size and returns boxes in
image pixels, scores and classes; letterboxing and decoding happen inside. See the README.
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from centernet.cli import run_command
from centernet.config import SCRIPT_KEYS
from centernet.engine.runs import load_run_config, locate


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    def export() -> None:
        run_dir, checkpoint = locate(cfg.run_dir, cfg.checkpoint)
        run = load_run_config(run_dir, cfg, HydraConfig.get().overrides.task, SCRIPT_KEYS)
        from centernet.export.saved_model import export_saved_model
        from centernet.evaluation.inference import Predictor
        from centernet.engine.runs import load_model, run_classes

        classes = run_classes(run_dir, run)
        model = load_model(run, checkpoint, len(classes.names))
        output_dir = Path(cfg.output) if cfg.output else run_dir / "export"
        export_saved_model(Predictor(model, run.eval.k, run.eval.flip_test), classes.names,
                           classes.category_ids, output_dir)
        print(f"SavedModel of checkpoint {checkpoint} -> {output_dir}")

    run_command(export)


if __name__ == "__main__":
    main()
