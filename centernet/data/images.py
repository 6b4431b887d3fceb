"""Image files of folder datasets: finding them from an annotation, and checking that they decode.

Checking decodes every image once with the same TensorFlow decoder the input pipeline uses
(`tf.io.decode_image`), so an image that passes here cannot fail inside tf.data, and the size
found is the image's real one. Greyscale, grey+alpha, RGBA, palette and 16-bit images are noted
as conversions: the pipeline's `decode_image(channels=3)` turns them into 8-bit RGB (dropping
alpha, expanding palettes, scaling 16-bit values by 1/257).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
"""Image formats `tf.io.decode_image` reads."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
_CHANNEL_MODES = {1: "greyscale", 2: "greyscale+alpha", 3: "RGB", 4: "RGBA"}


@dataclass
class ImageInfo:
    """A decodable image: `height`, `width` in pixels, and `converted`, what the pipeline's
    8-bit RGB decoding changes (e.g. "16-bit RGBA"), or None for an 8-bit RGB file."""

    height: int
    width: int
    converted: Optional[str] = None


def _png_mode(header: bytes) -> Optional[str]:
    """Bit depth and colour type from a PNG's IHDR chunk (None if not a PNG)."""
    if not header.startswith(_PNG_SIGNATURE) or len(header) < 26:
        return None
    depth, colour = header[24], header[25]
    mode = _PNG_COLOUR_TYPES.get(colour, f"colour type {colour}")
    return f"{depth}-bit {mode}" if depth == 16 else mode


def _decoder_reason(error: Exception) -> str:
    """The decoder's own words from a TensorFlow error, without the op and device noise."""
    text = getattr(error, "message", "") or str(error)
    text = text.split("}}", 1)[-1].split("[Op:", 1)[0].strip()
    return text.splitlines()[0].strip() if text.strip() else type(error).__name__


def _decode(path: Path, channels: int):
    """`tf.io.decode_image` of the file at `path` (`[H, W, channels or the file's]` uint8
    tensor), or a ValueError saying why not."""
    import tensorflow as tf

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot be read: {error.strerror or error}") from error
    if not data:
        raise ValueError("empty file")
    try:
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        raise ValueError(f"not a decodable image ({_decoder_reason(error)})") from error
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"decodes to an empty {image.shape[0]}x{image.shape[1]} image")
    return image, data


def probe_image(path: Path) -> ImageInfo:
    """Decode `path` fully and describe it.

    Raises:
        ValueError: the file cannot be read or decoded (corrupt, truncated, not an image); the
            message says why.
    """
    image, data = _decode(path, channels=0)
    height, width, channels = (int(n) for n in image.shape)
    mode = _png_mode(data[:32]) or _CHANNEL_MODES.get(channels, f"{channels} channels")
    return ImageInfo(height, width, None if mode == "RGB" else mode)


def read_rgb(path: Path) -> np.ndarray:
    """`[H, W, 3]` uint8 RGB pixels of an image file, decoded as the input pipeline decodes
    (`tf.io.decode_image`, which refuses a truncated JPEG or PNG instead of filling it in).

    Raises:
        ValueError: the file cannot be read or decoded; the message says why.
    """
    image, _ = _decode(path, channels=3)
    return image.numpy()


def probe_images(paths: Sequence[Path], threads: int = 4) -> List[ImageInfo | ValueError]:
    """`probe_image` for many files (the decoder releases the GIL, so threads overlap);
    each result is the `ImageInfo` or the `ValueError` saying why the file is unusable."""

    def probe(path: Path) -> ImageInfo | ValueError:
        try:
            return probe_image(path)
        except ValueError as error:
            return error

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(probe, paths))


class ImageFinder:
    """Finds an annotation's image in a folder: the exact name, else the same name with its
    extension in any case (`a.JPG` for `a.jpg`), else any image file with the same stem (`a.png`
    for `a.jpg`, or for an annotation without a file name). Each folder is listed once."""

    def __init__(self) -> None:
        self._listings: Dict[Path, Tuple[Dict[str, str], Dict[str, str]]] = {}

    def _listing(self, directory: Path) -> Tuple[Dict[str, str], Dict[str, str]]:
        if directory not in self._listings:
            names = sorted(os.listdir(directory)) if directory.is_dir() else []
            images = [n for n in names if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES]
            self._listings[directory] = ({n.lower(): n for n in images},
                                         {os.path.splitext(n)[0].lower(): n for n in images})
        return self._listings[directory]

    def find(self, directory: Path, filename: Optional[str], stem: str) -> Optional[Path]:
        """The image for `filename` (may be None) in `directory`, `stem` as the last resort."""
        if filename and (directory / filename).is_file():
            return directory / filename
        by_name, by_stem = self._listing(directory)
        if filename:
            base = os.path.basename(filename)
            for key in (base.lower(), os.path.splitext(base)[0].lower()):
                match = by_name.get(key) or by_stem.get(key)
                if match:
                    return directory / match
        match = by_stem.get(stem.lower())
        return directory / match if match else None
