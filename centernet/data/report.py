"""What a folder source found wrong with its data, and what it did about each case.

Real annotation folders have defects. A source never crashes on one and never hides one: each
case is repaired (clipped, swapped, converted, the real image size trusted) or its image or
object is left out, and recorded here as `(split, file, object, kind, action, detail)`.
`DataReport.summary()` is printed before training and `DataReport.write()` saves every case to
`<run_dir>/data_report.json`. With `strict`, the first case that leaves something out raises a
`DataError` naming the file and the defect instead.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from centernet.errors import DataError

# Kinds of defect (the `kind` of a case) and the action each one always gets.
IMAGE_MISSING = "image_missing"            # the annotation names an image that does not exist
IMAGE_UNREADABLE = "image_unreadable"      # corrupt, truncated or not an image
ANNOTATION_UNPARSABLE = "annotation_unparsable"  # an XML file that is not well-formed
IMAGE_CONVERTED = "image_converted"        # greyscale, RGBA, palette or 16-bit -> 8-bit RGB
SIZE_MISSING = "size_missing"              # no (usable) size in the annotation
SIZE_MISMATCH = "size_mismatch"            # annotated size differs from the image's
COORDINATE_INVALID = "coordinate_invalid"  # a missing or non-numeric box coordinate
CLASS_UNKNOWN = "class_unknown"            # a class outside the run's classes
CLASS_EXCLUDED = "class_excluded"          # a class left out on purpose (dataset.classes)
DUPLICATE_IMAGE = "duplicate_image"        # an id listed twice in a split
BOX_INVERTED = "box_inverted"              # x2 < x1 or y2 < y1
BOX_CLIPPED = "box_clipped"                # partly outside the image
BOX_OUTSIDE = "box_outside"                # wholly outside the image
BOX_EMPTY = "box_empty"                    # no area
NO_OBJECTS = "no_objects"                  # an image without objects (a background example)
TOO_MANY_OBJECTS = "too_many_objects"      # more objects than targets.max_objects

SKIPPED = "skipped"      # the image is left out of the split
DROPPED = "dropped"      # the object is left out of its image
REPAIRED = "repaired"    # fixed; the example is used
KEPT = "kept"            # noted; the example is used as it is
EXCLUDED = "excluded"    # not used, as the config asks (never an error under strict)

ACTIONS = {
    IMAGE_MISSING: SKIPPED, IMAGE_UNREADABLE: SKIPPED, ANNOTATION_UNPARSABLE: SKIPPED,
    IMAGE_CONVERTED: REPAIRED, SIZE_MISSING: REPAIRED, SIZE_MISMATCH: REPAIRED,
    COORDINATE_INVALID: DROPPED, CLASS_UNKNOWN: DROPPED, CLASS_EXCLUDED: EXCLUDED,
    DUPLICATE_IMAGE: SKIPPED, BOX_INVERTED: REPAIRED,
    BOX_CLIPPED: REPAIRED, BOX_OUTSIDE: DROPPED, BOX_EMPTY: DROPPED,
    NO_OBJECTS: KEPT, TOO_MANY_OBJECTS: KEPT,
}


@dataclass
class Case:
    """One defect: where (`split`, `file`, `object`: the object's index in its annotation, or
    None for the whole image), what (`kind`), what was done (`action`) and the details."""

    split: str
    file: str
    kind: str
    action: str
    object: Optional[int] = None
    detail: str = ""


@dataclass
class SplitCounts:
    """Images and objects of one split: annotated, and used after the repairs and skips."""

    images: int = 0
    images_used: int = 0
    objects: int = 0
    objects_used: int = 0


@dataclass
class DataReport:
    """Every defect case of a source's splits (module docstring)."""

    strict: bool = False
    cases: List[Case] = field(default_factory=list)
    splits: Dict[str, SplitCounts] = field(default_factory=dict)

    def add(self, split: str, file: str | Path, kind: str, detail: str = "",
            object_index: Optional[int] = None) -> None:
        """Record one case; with `strict`, raise instead when it leaves something out.

        Raises:
            DataError: `strict` and the kind's action is `skipped` or `dropped`.
        """
        action = ACTIONS[kind]
        if self.strict and action in (SKIPPED, DROPPED):
            what = "image" if action == SKIPPED else f"object {object_index}"
            raise DataError(f"{file}: {kind} ({detail}); the {what} would be {action}, and "
                            f"dataset.strict=true makes that an error")
        self.cases.append(Case(split, str(file), kind, action, object_index, detail))

    def counts(self) -> Dict[str, int]:
        """Cases per kind, most frequent first."""
        return dict(Counter(case.kind for case in self.cases).most_common())

    def summary(self) -> List[str]:
        """Lines for the console: images and objects used per split, cases per kind."""
        lines = [f"{split}: {c.images_used} of {c.images} images, {c.objects_used} of "
                 f"{c.objects} objects used" for split, c in self.splits.items()]
        for kind, count in self.counts().items():
            lines.append(f"  {count} x {kind} ({ACTIONS[kind]})")
        return lines

    def to_dict(self) -> dict:
        return {"splits": {split: asdict(c) for split, c in self.splits.items()},
                "counts": self.counts(),
                "cases": [asdict(case) for case in self.cases]}

    def write(self, path: Path) -> None:
        """Save as JSON (through a temporary file, so it is never half-written)."""
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
