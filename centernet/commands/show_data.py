"""See what the model is trained on: `centernet show-data [dataset=...] [key=value]` (or
`python scripts/show_data.py ...`).

Writes a PNG grid (`output`, default data_preview.png) of `num_images` training-pipeline
images with the boxes and classes their rendered targets encode and the heatmap overlaid.
"""

from omegaconf import DictConfig

from centernet.cli import hydra_command, run_command
from centernet.config import validate


@hydra_command("show_data")
def main(cfg: DictConfig) -> None:
    def show() -> None:
        run = validate(cfg)
        from centernet.config import DOWN_RATIO
        from centernet.data.pipeline import train_dataset
        from centernet.data.sources import build_source, check_splits
        from centernet.engine.data_choices import resolve_open_settings
        from centernet.visualize import draw_training_example, image_grid, write_image

        source = build_source(run.dataset)
        check_splits(source, [run.dataset.train_split])
        run, choices = resolve_open_settings(run, source, run_dir=None)
        for choice in choices:
            print(choice.line().strip())
        examples = train_dataset(source, run).unbatch().take(cfg.num_images)
        pictures = [draw_training_example(e.pop("image"), e, source.class_names, DOWN_RATIO)
                    for e in examples.as_numpy_iterator()]
        write_image(cfg.output, image_grid(pictures, cfg.columns))
        print(f"wrote {len(pictures)} examples of {run.dataset.name} to {cfg.output}")

    run_command(show)
