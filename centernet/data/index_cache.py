"""What checking a folder's images learned, kept between starts: `IndexCache` (`dataset.cache`).

Checking decodes every image (`images.probe_images`: about 3 ms per 640x480 JPEG and thread,
minutes for a COCO-sized folder). The cache keeps each image's outcome, its size and the
conversion the pipeline makes or the reason it does not decode, under
`$CENTERNET_CACHE_DIR/index` (default `~/.cache/centernet/index`), never in the dataset folder:
one JSON file per folder of images, named after a hash of the folder's absolute path.

An outcome is used again while its file has the size, modification time and inode change time
(nanoseconds) it was checked at; the change time moves too when a copy keeps the old
modification time (`cp -p`, `rsync -a`). A new or changed file is checked, and only it.
Outcomes of files gone from the folder are dropped whenever the folder's cache file is written
again. Outcomes found by another TensorFlow (whose decoder decides) or another `FORMAT` are not
used. A file that could not be read (permissions, I/O) is checked again every time: that says
nothing about its content. A cache file that does not read as one is ignored, with a warning
naming it, and written anew; a cache directory that cannot be written leaves the checks
uncached, with a warning saying why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from centernet.data.images import ImageInfo, probe_images

log = logging.getLogger(__name__)

FORMAT = 1
"""Version of the cache files and of what an outcome holds; files of another are not used."""

Outcome = ImageInfo | ValueError


def cache_root() -> Path:
    """The project's cache directory: `$CENTERNET_CACHE_DIR`, else `~/.cache/centernet`."""
    return Path(os.environ.get("CENTERNET_CACHE_DIR") or Path.home() / ".cache" / "centernet")


def decoder_version() -> str:
    """TensorFlow's version: its decoder decides what a check finds."""
    import tensorflow as tf

    return tf.__version__


def stamp(stat: os.stat_result) -> List[int]:
    """What says a file is unchanged: `[size in bytes, mtime ns, ctime ns]`."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _entry(file_stamp: List[int], outcome: Outcome) -> Optional[list]:
    """A cache entry `[size, mtime ns, ctime ns, height, width, converted, error]`, or None
    for an outcome that is not kept (the file could not be read)."""
    if isinstance(outcome, ValueError):
        if isinstance(outcome.__cause__, OSError):
            return None
        return file_stamp + [0, 0, None, str(outcome)]
    return file_stamp + [outcome.height, outcome.width, outcome.converted, None]


def _outcome(entry: list) -> Outcome:
    height, width, converted, error = entry[3:]
    return ValueError(error) if error is not None else ImageInfo(height, width, converted)


@dataclass
class _Folder:
    """One folder's cache file: `entries` by file name, and whether they changed."""

    path: str
    file: Path
    entries: Dict[str, list] = field(default_factory=dict)
    changed: bool = False


class IndexCache:
    """`images.probe_images` that probes only the files whose outcome it does not hold
    (module docstring). Use it as the `probe` of `annotations.clean_split`.

    Args:
        directory: where the cache files live (default `cache_root() / "index"`).
        probe: checks what the cache does not hold: image paths -> an `ImageInfo` or a
            `ValueError` each (default `images.probe_images`).
    """

    def __init__(self, directory: Optional[Path] = None,
                 probe: Callable[[Sequence[Path]], List[Outcome]] = probe_images):
        self.directory = Path(directory) if directory else cache_root() / "index"
        self._probe = probe
        self._decoder = decoder_version()
        self.checked: List[Path] = []  # the files this object checked (not in the cache)

    def __call__(self, paths: Sequence[Path]) -> List[Outcome]:
        """The outcome of each of `paths`, in order: an `ImageInfo`, or the `ValueError`
        saying why the file is unusable (the message `probe` gave when it was checked)."""
        outcomes: List[Optional[Outcome]] = [None] * len(paths)
        folders: Dict[str, _Folder] = {}
        unknown = []  # (position, folder, file name, stamp or None)
        for position, path in enumerate(paths):
            directory, name = os.path.split(os.path.abspath(path))
            if directory not in folders:
                folders[directory] = self._load(directory)
            folder = folders[directory]
            try:
                file_stamp = stamp(os.stat(path))
            except OSError:
                file_stamp = None  # the probe says why
            entry = folder.entries.get(name)
            if file_stamp is not None and entry is not None and entry[:3] == file_stamp:
                outcomes[position] = _outcome(entry)
            else:
                unknown.append((position, folder, name, file_stamp))
        unknown_paths = [Path(paths[position]) for position, *_ in unknown]
        probed = self._probe(unknown_paths) if unknown else []
        self.checked.extend(unknown_paths)
        for (position, folder, name, file_stamp), outcome in zip(unknown, probed):
            outcomes[position] = outcome
            entry = _entry(file_stamp, outcome) if file_stamp is not None else None
            if entry is not None:
                folder.entries[name] = entry
            elif folder.entries.pop(name, None) is None:
                continue
            folder.changed = True
        for folder in folders.values():
            if folder.changed:
                self._save(folder)
        return outcomes

    def file_for(self, directory: str) -> Path:
        """The cache file of the images in `directory` (an absolute path)."""
        digest = hashlib.sha256(directory.encode("utf-8", "surrogateescape")).hexdigest()
        return self.directory / f"{digest[:24]}.json"

    def _load(self, directory: str) -> _Folder:
        """The folder's cache file as it is, or empty (none yet, another TensorFlow or
        format, or a file that does not read: that one with a warning)."""
        folder = _Folder(directory, self.file_for(directory))
        try:
            saved = json.loads(folder.file.read_text())
            if (saved["format"], saved["tensorflow"], saved["folder"]) == (
                    FORMAT, self._decoder, directory):
                folder.entries = {str(name): list(entry)
                                  for name, entry in saved["entries"].items()}
                if not all(len(entry) == 7 for entry in folder.entries.values()):
                    raise ValueError("an entry is not [size, mtime, ctime, height, width, "
                                     "converted, error]")
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("ignoring the index cache %s (%s: %s): the images of %s are checked "
                        "again", folder.file, type(error).__name__, error, directory)
            folder.entries = {}
        return folder

    def _save(self, folder: _Folder) -> None:
        """Write the folder's entries, less those of files no longer there, through a
        temporary file and a rename (a concurrent start reads the old file or the new one)."""
        try:
            present = set(os.listdir(folder.path))
        except OSError:
            present = set(folder.entries)
        payload = {"format": FORMAT, "tensorflow": self._decoder, "folder": folder.path,
                   "entries": {name: entry for name, entry in folder.entries.items()
                               if name in present}}
        temporary = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.directory, suffix=".tmp",
                                             delete=False) as file:
                temporary = Path(file.name)
                json.dump(payload, file, separators=(",", ":"))
            os.replace(temporary, folder.file)
        except OSError as error:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            log.warning("cannot write the index cache %s (%s): the next start checks these "
                        "images again", folder.file, error.strerror or error)
