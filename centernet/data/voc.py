"""Pascal VOC XML folders, parsed with `xml.etree`.

Two layouts, told apart by `ImageSets/Main/<split>.txt`:

    ROOT/ImageSets/Main/<split>.txt   ids, one per line
    ROOT/Annotations/<id>.xml         the image is ROOT/JPEGImages/<filename>

    ROOT/<split>/*.xml                (labelImg and most tutorials) the image lies beside its
                                      XML file, named by <filename>

The image is found from the XML's `<filename>`, its extension matched in any case, else by the
XML's stem (`ImageFinder`). VOC coordinates are 1-based pixel indices, inclusive: a box
`xmin..xmax` covers `[xmin - 1, xmax)` in continuous pixels (as detectron2 reads them); a box
whose annotated corners coincide stays empty. Objects
marked `<difficult>1</difficult>` become ignore regions. Image ids are positions in the split.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import List, Optional, Tuple

from centernet.data.annotations import RawImage, RawObject
from centernet.data.images import ImageFinder
from centernet.errors import DataError

COORDINATES = ("xmin", "ymin", "xmax", "ymax")


def split_list(root: Path, split: str) -> Path:
    return root / "ImageSets" / "Main" / f"{split}.txt"


def annotation_files(root: Path, split: str) -> Tuple[List[Path], Optional[Path]]:
    """The split's XML files, and the image folder of the ImageSets layout (None: beside each
    XML file).

    Raises:
        DataError: the split exists in neither layout (naming both places looked at).
    """
    listing = split_list(root, split)
    if listing.is_file():
        try:
            ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{listing}: cannot be read as a list of ids ({error})") from error
        return [root / "Annotations" / f"{image_id}.xml" for image_id in ids], \
            root / "JPEGImages"
    folder = root / split
    if folder.is_dir():
        return sorted(folder.glob("*.xml")), None
    raise DataError(f"dataset.root={root}: split {split!r} not found: neither {listing} nor a "
                    f"folder {folder} of XML files exists")


def _number(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _size(root: ET.Element) -> Optional[Tuple[int, int]]:
    """`(height, width)` from `<size>`, None when absent, not a number or not positive."""
    height, width = _number(root.findtext("size/height")), _number(root.findtext("size/width"))
    if height is None or width is None or height < 1 or width < 1:
        return None
    return int(height), int(width)


def _object(index: int, element: ET.Element) -> RawObject:
    name = (element.findtext("name") or "").strip()
    difficult = (element.findtext("difficult") or "0").strip().lower() in ("1", "true")
    values = {key: _number(element.findtext(f"bndbox/{key}")) for key in COORDINATES}
    bad = [key for key, value in values.items() if value is None]
    if bad:
        raw = {key: element.findtext(f"bndbox/{key}") for key in bad}
        return RawObject(index, name, None, difficult,
                         problem="missing or non-numeric " + ", ".join(
                             f"{key}={raw[key]!r}" for key in bad))
    (x1, x2), (y1, y2) = (_continuous(values["xmin"], values["xmax"]),
                          _continuous(values["ymin"], values["ymax"]))
    return RawObject(index, name, (x1, y1, x2, y2), difficult)


def _continuous(low: float, high: float) -> Tuple[float, float]:
    """Inclusive 1-based pixel indices `low..high` -> continuous `(start, end)`.

    `low < high` covers `[low - 1, high)`. Inverted corners (`low > high`) cover
    `[high - 1, low)` and are returned still inverted, `(low, high - 1)`, for the box check to
    swap and report. Coinciding corners (`low == high`) were drawn with no size: `(low, low)`
    stays empty, so it is reported and dropped rather than becoming one pixel wide."""
    if low < high:
        return low - 1.0, high
    if low > high:
        return low, high - 1.0
    return low, high


def parse_xml(path: Path, image_id: int, image_dir: Optional[Path],
              finder: ImageFinder) -> RawImage:
    """One annotation file -> `RawImage` (`unparsable` set when it is not VOC XML)."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        return RawImage(str(path), None, image_id, None, unparsable="annotation file missing")
    except (ET.ParseError, OSError) as error:
        return RawImage(str(path), None, image_id, None, unparsable=f"not valid XML: {error}")
    if root.tag != "annotation":
        return RawImage(str(path), None, image_id, None,
                        unparsable=f"root element <{root.tag}>, not <annotation>")
    filename = (root.findtext("filename") or "").strip() or None
    image = finder.find(image_dir or path.parent, filename, path.stem)
    objects = [_object(index, element) for index, element in enumerate(root.findall("object"))]
    return RawImage(str(path), image, image_id, _size(root), objects)


def read_split(root: Path, split: str) -> List[RawImage]:
    """Every annotation of `split`, in listing order (ids are positions). An id listed again
    comes back marked `duplicate`, so it is reported and skipped rather than used twice."""
    files, image_dir = annotation_files(root, split)
    finder = ImageFinder()
    images, seen = [], set()
    for index, path in enumerate(files):
        if path in seen:
            images.append(RawImage(str(path), None, index, None,
                                   unparsable=f"listed again at line {index + 1}",
                                   duplicate=True))
            continue
        seen.add(path)
        images.append(parse_xml(path, index, image_dir, finder))
    return images


def class_names(images: List[RawImage]) -> List[str]:
    """The sorted class names found in parsed annotations."""
    return sorted({obj.class_key for image in images for obj in image.objects
                   if obj.class_key})
