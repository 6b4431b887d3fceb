"""A folder split's checked index, kept between starts (`dataset.cache`): `SplitCache`.

The index cache (`index_cache.py`) spares a start the decoding of unchanged images; what is
left grows with the annotations: parsing a COCO file of 100,000 images and 700,000 boxes and
checking every box in Python takes tens of seconds at every start. So the finished
`SplitIndex` of a split and its data-report cases and counts are kept too (and, as `facts`,
what a source reads from an annotation file before any split, such as COCO's categories), under
`$CENTERNET_CACHE_DIR/splits` (never in the dataset folder), one `.npz` file per split and
settings, and used while **every input is unchanged**: the annotation files and folders the
source read, each image file the split names (size, modification and inode change time in
nanoseconds, as `index_cache` stamps them), and the folders the images were looked for in (a
file added to or removed from a folder changes its times). Any change, or other settings
(classes, `targets.max_objects`, `dataset.strict`, this module's `FORMAT`, TensorFlow's
version, whose decoder decided the checks), and the split is parsed and checked again, its
unchanged images still coming from the index cache. A cache file that does not read is
ignored with a warning and written anew; one that cannot be written leaves the split
uncached, with a warning saying why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np

from centernet.data.annotations import SplitIndex
from centernet.data.index_cache import cache_root, decoder_version, stamp
from centernet.data.report import Case, SplitCounts

log = logging.getLogger(__name__)

FORMAT = 1
"""Version of the cache files; files of another are not used."""

_ARRAYS = ("image_ids", "sizes", "boxes", "labels", "is_crowd", "row_splits", "object_index")


@dataclass
class CachedSplit:
    """A split as a start found it: its `index`, its report `cases` and `counts`, and the
    `inputs` it depends on (path -> stamp, None for a path that does not exist)."""

    index: SplitIndex
    cases: List[Case]
    counts: SplitCounts
    inputs: Dict[str, Optional[List[int]]]


def stamps(paths: Iterable[str]) -> Dict[str, Optional[List[int]]]:
    """Each path's stamp (`index_cache.stamp`), None for a path that does not exist now."""
    result = {}
    for path in paths:
        try:
            result[path] = stamp(os.stat(path))
        except OSError:
            result[path] = None
    return result


def _unchanged(paths: List[str], kept: List[List[int]]) -> bool:
    now = stamps(paths)
    return all(now[path] is not None and now[path] == list(then)
               for path, then in zip(paths, kept))


class SplitCache:
    """Finished split indexes by the settings that made them (module docstring).

    Args:
        directory: where the cache files live (default `cache_root() / "splits"`).
    """

    def __init__(self, directory: Optional[Path] = None):
        self.directory = Path(directory) if directory else cache_root() / "splits"

    def file_for(self, settings: dict) -> Path:
        """The cache file of a split made with `settings` (JSON-able: the source's inputs it
        was asked for, the split, classes and checks)."""
        key = json.dumps({"format": FORMAT, "decoder": decoder_version(), **settings},
                         sort_keys=True, default=str)
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"

    def load(self, settings: dict) -> Optional[CachedSplit]:
        """The split made with `settings`, if it was kept and none of its inputs changed."""
        path = self.file_for(settings)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                meta = json.loads(str(stored["meta"]))
                input_paths = [str(p) for p in stored["input_paths"]]
                input_stamps = stored["input_stamps"].tolist()
                if not _unchanged(input_paths, input_stamps):
                    return None
                index = SplitIndex(paths=[str(p) for p in stored["paths"]],
                                   annotations=[str(a) for a in stored["annotations"]],
                                   **{name: stored[name] for name in _ARRAYS})
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
            log.warning("ignoring the split cache %s (%s: %s): the split is parsed and checked "
                        "again", path, type(error).__name__, error)
            return None
        return CachedSplit(index, [Case(**case) for case in meta["cases"]],
                           SplitCounts(**meta["counts"]), dict(zip(input_paths, input_stamps)))

    def save(self, settings: dict, split: CachedSplit) -> None:
        """Keep `split` for `settings` (through a temporary file, so a reader never sees half
        of one); inputs that do not exist are not kept (the split is then never used again
        as it is)."""
        if any(value is None for value in split.inputs.values()):
            return
        path = self.file_for(settings)
        meta = {"cases": [asdict(case) for case in split.cases],
                "counts": asdict(split.counts)}
        index = split.index
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz",
                                             delete=False) as file:
                np.savez(file, meta=np.array(json.dumps(meta)),
                         input_paths=np.array(list(split.inputs), dtype=str),
                         input_stamps=np.array(list(split.inputs.values()), np.int64).reshape(
                             -1, 3),
                         paths=np.array(index.paths, dtype=str),
                         annotations=np.array(index.annotations, dtype=str),
                         **{name: getattr(index, name) for name in _ARRAYS})
            os.replace(file.name, path)
        except OSError as error:
            log.warning("cannot write the split cache %s (%s): the split will be parsed and "
                        "checked at every start", path, error)

    def load_facts(self, settings: dict) -> Optional[dict]:
        """The facts kept for `settings` (`save_facts`), if none of their inputs changed."""
        path = self.file_for(settings).with_suffix(".json")
        try:
            kept = json.loads(path.read_text())
            if not _unchanged(list(kept["inputs"]), list(kept["inputs"].values())):
                return None
            return kept["facts"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("ignoring the split cache %s (%s: %s)", path, type(error).__name__,
                        error)
            return None

    def save_facts(self, settings: dict, facts: dict, inputs: Iterable[str]) -> None:
        """Keep `facts` (JSON-able) for `settings` while `inputs` (paths) are unchanged."""
        path = self.file_for(settings).with_suffix(".json")
        now = stamps(inputs)
        if any(value is None for value in now.values()):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".json",
                                             delete=False) as file:
                json.dump({"inputs": now, "facts": facts}, file)
            os.replace(file.name, path)
        except OSError as error:
            log.warning("cannot write the split cache %s (%s)", path, error)
