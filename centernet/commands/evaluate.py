"""COCO-evaluate a checkpoint: `centernet evaluate run_dir=DIR [checkpoint=PATH]` (or `python
scripts/evaluate.py ...`).

Rebuilds the model from DIR's own saved config, loads its best (else latest) checkpoint, prints
the metrics table and where the errors are (`centernet.evaluation.error_analysis`), and writes
DIR/eval/metrics.json, DIR/eval/detections.json and DIR/eval/errors.json, and the split's
report (`centernet.report`) into DIR/report/<split>/index.html. Any dataset or eval key can
be overridden, e.g. `dataset.val_split=test eval.flip_test=true`.
"""

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from centernet.cli import hydra_command, run_command
from centernet.config import SCRIPT_KEYS
from centernet.engine.runs import load_run_config, locate


@hydra_command("evaluate")
def main(cfg: DictConfig) -> None:
    def evaluate() -> dict:
        run_dir, checkpoint = locate(cfg.run_dir, cfg.checkpoint)
        run = load_run_config(run_dir, cfg, HydraConfig.get().overrides.task, SCRIPT_KEYS)
        from centernet.evaluation.error_analysis import format_error_table
        from centernet.evaluation.metrics import format_metrics_table
        from centernet.evaluation.runs import evaluate_run

        from centernet.engine.run_log import read_metrics
        from centernet.report import report_dir, run_images, run_splits, write_report

        output_dir = run_dir / "eval"
        metrics, errors, ground_truth, detections = evaluate_run(run, run_dir, checkpoint,
                                                                 output_dir)
        split = run.dataset.val_split
        print(f"checkpoint {checkpoint}, split {split}")
        print(format_metrics_table(metrics))
        print("\nerrors (IoU 0.5, detections scoring >= 0.3):")
        print(format_error_table(errors))
        print(f"wrote metrics.json, detections.json and errors.json in {output_dir}")
        facts = [("run", str(run_dir)), ("split", split), ("checkpoint", str(checkpoint)),
                 ("flip test", str(run.eval.flip_test).lower())]
        index = write_report(report_dir(run_dir, split), f"Evaluation report: {run_dir.name}, "
                             f"{split}", facts, ground_truth, detections, metrics, errors,
                             read_metrics(run_dir), run_images(run_dir, split, run),
                             run_splits(run_dir, split, run))
        print(f"report: {index}")
        return metrics

    run_command(evaluate)
