"""Draw detections: `centernet predict run_dir=DIR input=PATH [output=DIR]` (or `python
scripts/predict.py ...`).

`input` is an image, a folder of images or a video file. Pictures (or `<name>.mp4`) and
`predictions.json` go to `output` (default DIR/predictions, or beside `model_file`). Files and
frames that cannot be read are skipped and listed. Options: `score_threshold=0.3` (default:
the threshold with the best F1 on the run's validation split, from its report, else 0.3),
`eval.k=100`, `heatmap=true` (overlay the class heatmap), `eval.flip_test=true`,
`checkpoint=PATH`; `format=litert|onnx model_file=FILE` runs an exported file instead of the
checkpoint (no run directory needed: the file's `.json` has the class names).
"""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from centernet.cli import hydra_command, run_command
from centernet.config import DECODING_KEYS, SCRIPT_KEYS, override_keys
from centernet.errors import DataError
from centernet.engine.runs import load_run_config, locate


FALLBACK_SCORE_THRESHOLD = 0.3  # without a run report to take the best threshold from


def _checkpoint_detector(cfg: DictConfig):
    """`(detector, class names, default output, what runs, score threshold)` from the run's
    checkpoint; the threshold is `score_threshold` if given, else the best-F1 one of the
    run's validation report (`centernet.report`), else `FALLBACK_SCORE_THRESHOLD`."""
    run_dir, checkpoint = locate(cfg.run_dir, cfg.checkpoint)
    run = load_run_config(run_dir, cfg, HydraConfig.get().overrides.task, SCRIPT_KEYS)
    from centernet.engine.runs import load_model, run_classes
    from centernet.evaluation.inference import Predictor

    classes = run_classes(run_dir, run)
    model = load_model(run, checkpoint, len(classes.names))
    detector = Predictor(model, run.eval.decoding, with_heatmap=cfg.heatmap)
    threshold, why = cfg.score_threshold, "given"
    if threshold is None:
        from centernet.report import best_threshold

        threshold = best_threshold(run_dir, run.dataset.val_split)
        why = (f"the best F1 on {run.dataset.val_split} (run report)" if threshold is not None
               else "no run report")
        threshold = FALLBACK_SCORE_THRESHOLD if threshold is None else threshold
    return (detector, classes.names, run_dir / "predictions", f"checkpoint {checkpoint}",
            (threshold, why))


def _exported_detector(cfg: DictConfig):
    """The same from an exported LiteRT or ONNX file (`model_file`)."""
    if not cfg.model_file:
        raise DataError(f"format={cfg.format} runs an exported file: pass model_file=FILE")
    from centernet.export.runtime import load_detector

    model_file = Path(cfg.model_file)
    suffix = {"litert": ".tflite", "onnx": ".onnx"}[cfg.format]
    if model_file.suffix != suffix:
        raise DataError(f"model_file={model_file}: format={cfg.format} takes a {suffix} file")
    given = set(override_keys(HydraConfig.get().overrides.task))
    overrides = {key: cfg.eval[key] for key in DECODING_KEYS if f"eval.{key}" in given}
    detector = load_detector(model_file, overrides, cfg.heatmap)
    threshold = ((cfg.score_threshold, "given") if cfg.score_threshold is not None
                 else (FALLBACK_SCORE_THRESHOLD, "an exported file has no run report"))
    return (detector, detector.class_names, model_file.parent / "predictions",
            f"{cfg.format} file {model_file}", threshold)


@hydra_command("predict")
def main(cfg: DictConfig) -> None:
    def predict() -> None:
        OmegaConf.to_object(cfg)  # checks format= and the other values
        if not cfg.input:
            raise DataError("pass input=PATH (an image, a folder of images or a video)")
        from centernet.evaluation.predict import predict as draw_predictions

        build = _checkpoint_detector if cfg.format == "checkpoint" else _exported_detector
        detector, class_names, default_output, source, (threshold, why) = build(cfg)
        print(f"score threshold {threshold:.2f} ({why})")
        output_dir = Path(cfg.output) if cfg.output else default_output
        result = draw_predictions(detector, Path(cfg.input), output_dir, class_names,
                                  threshold, cfg.heatmap)
        skipped = f", {len(result['skipped'])} skipped" if result["skipped"] else ""
        print(f"{len(result['images'])} image(s){skipped} from {source} -> {output_dir}")

    run_command(predict)
