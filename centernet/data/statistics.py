"""What a training split's annotations say about the run it needs: `DataProfile`.

The data-aware choices (`centernet/engine/data_choices.py`) read the input size, the zoom-out
limit of the augmentation and the batch size off these figures. They come from a folder
source's checked index (`annotations.SplitIndex`), so no image is decoded: a box's size is its
annotation's, measured as a fraction of its image's longer side, which is what letterboxing
maps onto the network input (an object of fraction `f` is `f * input_size` pixels there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import numpy as np

from centernet.data.annotations import SplitIndex

SMALL_PERCENTILE = 10  # a class's "small" objects: its 10th percentile of shorter sides


@dataclass(frozen=True)
class DataProfile:
    """A training split in a few numbers.

    Attributes:
        images: usable images.
        objects: boxes that train (crowd / difficult boxes left out).
        classes: number of classes.
        long_side: median longer side of the images, pixels.
        small_side: per class name, the `SMALL_PERCENTILE`th percentile of its boxes' shorter
            side as a fraction of their image's longer side (classes without boxes left out).
        smallest_class: the class whose `small_side` is least.
    """

    images: int
    objects: int
    classes: int
    long_side: float
    small_side: Dict[str, float]
    smallest_class: str

    @property
    def small_fraction(self) -> float:
        """The smallest class's small objects, as a fraction of the letterboxed side."""
        return self.small_side[self.smallest_class]

    def to_json(self) -> dict:
        return asdict(self)


def profile_split(index: SplitIndex, class_names: Sequence[str]) -> DataProfile:
    """The `DataProfile` of one checked split.

    Raises:
        ValueError: the split has no image or no box to measure (the caller names the split).
    """
    if len(index) == 0 or not np.any(~index.is_crowd):
        raise ValueError("no annotated object to measure")
    counts = np.diff(index.row_splits)
    image_of = np.repeat(np.arange(len(index)), counts)
    heights = index.sizes[image_of, 0].astype(np.float64)
    widths = index.sizes[image_of, 1].astype(np.float64)
    boxes = index.boxes.reshape(-1, 4).astype(np.float64)  # normalised ymin, xmin, ymax, xmax
    box_heights = (boxes[:, 2] - boxes[:, 0]) * heights
    box_widths = (boxes[:, 3] - boxes[:, 1]) * widths
    shorter = np.minimum(box_heights, box_widths) / np.maximum(heights, widths)
    used = ~index.is_crowd
    small_side: Dict[str, float] = {}
    for class_id, name in enumerate(class_names):
        mine = used & (index.labels == class_id)
        if mine.any():
            small_side[name] = float(np.percentile(shorter[mine], SMALL_PERCENTILE))
    long_sides: List[float] = np.max(index.sizes, axis=1).tolist()
    return DataProfile(images=len(index), objects=int(used.sum()), classes=len(class_names),
                       long_side=float(np.median(long_sides)), small_side=small_side,
                       smallest_class=min(small_side, key=small_side.get))
