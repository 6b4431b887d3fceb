"""What the report shows of the data: each split's boxes, read without decoding an image.

`split_boxes(source, split)` gives a split's class labels and normalised boxes, from a
folder source's checked index (no file is read) or from the records of a TFDS source (the
encoded images are read, never decoded). Crowd and difficult boxes are left out.
"""

from __future__ import annotations

from typing import Dict

import numpy as np


def split_boxes(source, split: str) -> Dict[str, np.ndarray]:
    """`{"labels": int [T], "boxes": float [T, 4]}` of `split` in `source` (a
    `centernet.data.sources.Source`): boxes normalised `ymin, xmin, ymax, xmax`, the
    fraction of their image's height and width."""
    if hasattr(source, "index"):
        index = source.index(split)
        used = ~np.asarray(index.is_crowd, bool)
        return {"labels": np.asarray(index.labels)[used],
                "boxes": np.asarray(index.boxes, np.float64).reshape(-1, 4)[used]}
    records = source.read(split).map(
        lambda r: {"labels": r["labels"], "boxes": r["boxes"], "is_crowd": r["is_crowd"]})
    labels, boxes = [], []
    for record in records.as_numpy_iterator():
        used = ~record["is_crowd"]
        labels.append(record["labels"][used])
        boxes.append(record["boxes"].reshape(-1, 4)[used])
    return {"labels": np.concatenate(labels) if labels else np.zeros(0, np.int32),
            "boxes": (np.concatenate(boxes).astype(np.float64) if boxes
                      else np.zeros((0, 4)))}
