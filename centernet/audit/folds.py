"""Out-of-sample predictions for the label audit: K short runs of a run's own configuration,
each trained on the other folds of its training split and evaluated once, at its end, on its
own held-out fold.

Each fold is described to the run as a COCO-JSON dataset written under `DIR/audit/folds/`
(`fold<k>_train.json`, `fold<k>_heldout.json`: the cleaned objects of the training split, the
images named by their absolute paths), so the dataset folder itself is only read. A fold's
run lives in `DIR/audit/folds/<k>/`: an interrupted audit resumes each fold from its last
checkpoint, and a finished fold (its held-out evaluation written) is not trained again.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np

from centernet.config import RunConfig, validate
from centernet.data.annotations import SplitIndex

FOLDS_DIR = "folds"


def assign_folds(num_images: int, folds: int, seed: int) -> np.ndarray:
    """int64 `[num_images]`: each image's fold, `0..folds-1`, sizes as equal as they can be,
    from a seeded permutation (the same audit gives the same folds)."""
    order = np.random.default_rng(seed).permutation(num_images)
    fold = np.empty(num_images, np.int64)
    fold[order] = np.arange(num_images) % folds
    return fold


def pixel_boxes(index: SplitIndex) -> np.ndarray:
    """float64 `[T, 4]`: the index's objects as `x1, y1, x2, y2` in their image's pixels."""
    image_of = np.repeat(np.arange(len(index)), np.diff(index.row_splits))
    height = index.sizes[image_of, 0].astype(np.float64)
    width = index.sizes[image_of, 1].astype(np.float64)
    ymin, xmin, ymax, xmax = index.boxes.astype(np.float64).T
    return np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)


def coco_dataset(index: SplitIndex, images: Iterable[int], class_names: List[str]) -> dict:
    """A COCO instances dict of the index's `images` (positions into the index), category id
    `c + 1` for class `c`, image ids and files (absolute paths) as the index has them."""
    boxes = pixel_boxes(index)
    entries, annotations = [], []
    for i in images:
        height, width = (int(v) for v in index.sizes[i])
        entries.append({"id": int(index.image_ids[i]), "file_name": str(Path(index.paths[i])
                                                                         .resolve()),
                        "height": height, "width": width})
        for t in range(index.row_splits[i], index.row_splits[i + 1]):
            x1, y1, x2, y2 = boxes[t]
            annotations.append({"id": len(annotations) + 1, "image_id": int(index.image_ids[i]),
                                "category_id": int(index.labels[t]) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": int(index.is_crowd[t])})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(class_names)]
    return {"images": entries, "annotations": annotations, "categories": categories}


def split_name(fold: int, part: str) -> str:
    """The split name of `fold`'s `part` (`train` or `heldout`) in the fold files."""
    return f"fold{fold}_{part}"


def write_fold_files(index: SplitIndex, fold_of: np.ndarray, class_names: List[str],
                     directory: Path) -> None:
    """`directory/fold<k>_train.json` (every image outside fold k) and `fold<k>_heldout.json`
    (the images of fold k) for each fold."""
    directory.mkdir(parents=True, exist_ok=True)
    for fold in range(int(fold_of.max()) + 1):
        for part, chosen in (("train", fold_of != fold), ("heldout", fold_of == fold)):
            dataset = coco_dataset(index, np.flatnonzero(chosen), class_names)
            (directory / f"{split_name(fold, part)}.json").write_text(json.dumps(dataset))


def fold_config(run: RunConfig, directory: Path, fold: int, class_names: List[str],
                budget: Optional[str], max_steps: Optional[int]) -> RunConfig:
    """`run`'s configuration for fold `fold`: the same model, recipe, input size, batch,
    augmentation and precision, trained on the fold's COCO files in `directory` for `budget`
    (a duration) or `max_steps`, with one evaluation (on the held-out fold) at the end and no
    early stop: nothing is selected on the held-out images."""
    dataset = replace(run.dataset, source="coco_json", name=f"audit_fold{fold}",
                      root=str(directory), annotation_file=str(directory / "{split}.json"),
                      image_dir=str(directory), classes=list(class_names), strict=False,
                      train_split=split_name(fold, "train"),
                      val_split=split_name(fold, "heldout"))
    train = replace(run.train, time_budget=budget if max_steps is None else None,
                    max_steps=max_steps, epochs=None, evaluations=1, eval_every=0,
                    patience=None, stop_at_step=None, tensorboard_images=0)
    return validate(replace(run, dataset=dataset, train=train))


def train_folds(run: RunConfig, index: SplitIndex, class_names: List[str], directory: Path,
                folds: int, seed: int, budget: Optional[str],
                max_steps: Optional[int]) -> Dict[int, List[dict]]:
    """Train each fold's run (or resume it; skip it when its held-out evaluation exists) and
    return the held-out detections of every image, by image id.

    Args:
        run: the audited run's configuration.
        index: the run's training split (`SplitIndex`).
        class_names: the run's `C` classes.
        directory: `DIR/audit/folds/`.
        folds: K >= 2.
        seed: the fold assignment's seed.
        budget: each fold's time budget (a duration), unless `max_steps` is given.

    Returns:
        image id -> that image's detections (COCO results: `category_id` = class + 1, `bbox`
        `[x, y, w, h]` in the image's pixels, `score`), from the run that did not train on it.
    """
    from centernet.engine.evaluations import BEST_EVALUATION
    from centernet.training import train

    fold_of = assign_folds(len(index), folds, seed)
    write_fold_files(index, fold_of, class_names, directory)
    detections: Dict[int, List[dict]] = {int(i): [] for i in index.image_ids}
    for fold in range(folds):
        run_dir = directory / str(fold)
        evaluation = run_dir / BEST_EVALUATION  # the fold's one evaluation, on its held-out
        if not evaluation.exists():
            print(f"audit: fold {fold + 1}/{folds}: training on {int((fold_of != fold).sum())} "
                  f"images, predicting {int((fold_of == fold).sum())} held-out images "
                  f"({run_dir})")
            train(fold_config(run, directory, fold, class_names, budget, max_steps), run_dir,
                  started_at=time.time())
        for detection in json.loads(evaluation.read_text())["detections"]:
            detections[int(detection["image_id"])].append(detection)
    return detections
