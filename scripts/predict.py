"""Draw detections: `python scripts/predict.py run_dir=DIR input=PATH [output=DIR]`.

`input` is an image, a folder of images or a video file. Pictures (or `<name>.mp4`) and
`predictions.json` go to `output` (default DIR/predictions). Options: `score_threshold=0.3`,
`eval.k=100`, `heatmap=true` (overlay the class heatmap), `eval.flip_test=true`,
`checkpoint=PATH`.
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from centernet.cli import run_command
from centernet.config import SCRIPT_KEYS
from centernet.errors import DataError
from centernet.engine.runs import load_run_config, locate


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    def predict() -> None:
        if not cfg.input:
            raise DataError("pass input=PATH (an image, a folder of images or a video)")
        run_dir, checkpoint = locate(cfg.run_dir, cfg.checkpoint)
        run = load_run_config(run_dir, cfg, HydraConfig.get().overrides.task, SCRIPT_KEYS)
        from centernet.evaluation.inference import Predictor
        from centernet.evaluation.predict import predict as draw_predictions
        from centernet.engine.runs import load_model, run_classes

        classes = run_classes(run_dir, run)
        model = load_model(run, checkpoint, len(classes.names))
        predictor = Predictor(model, run.eval.k, run.eval.flip_test, with_heatmap=cfg.heatmap)
        output_dir = Path(cfg.output) if cfg.output else run_dir / "predictions"
        records = draw_predictions(predictor, Path(cfg.input), output_dir, classes.names,
                                   cfg.score_threshold, cfg.heatmap)
        print(f"{len(records)} image(s) from checkpoint {checkpoint} -> {output_dir}")

    run_command(predict)


if __name__ == "__main__":
    main()
