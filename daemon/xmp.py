"""XMP sidecars: where filmroll keeps one (`sidecar_of`), and reading them safely (media.md §6.2): defusedxml, a
size limit, and only the properties §6.1 maps.

The result uses exiftool's tag names and value forms (text as written, numbers as decimal strings, GPS as signed
decimal degrees, dates as the ISO 8601 text), so `metadata.py` maps a sidecar with the same code as exiftool's
output of the original.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeVar
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree
from defusedxml import DefusedXmlException

from .errors import BadMedia
from .originals import open_original

MAX_SIDECAR_BYTES = 16 << 20
SIDECAR_SUFFIX = ".xmp"

_PathOrBytes = TypeVar("_PathOrBytes", Path, bytes)


def sidecar_of(original: _PathOrBytes) -> _PathOrBytes:
    """`<original>.xmp`: the sidecar of an original filmroll stores (an upload, a storage move), Immich's name for
    an uploaded sidecar; as a Path or as the index's bytes. (A scan also accepts `<name>.xmp` beside an external
    original: `crawl.py` decides which counts.)"""
    if isinstance(original, bytes):
        return original + SIDECAR_SUFFIX.encode()
    return original.with_name(original.name + SIDECAR_SUFFIX)


_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_EXIF = "http://ns.adobe.com/exif/1.0/"
_EXIF_EX = "http://cipa.jp/exif/1.0/"
_AUX = "http://ns.adobe.com/exif/1.0/aux/"
_TIFF = "http://ns.adobe.com/tiff/1.0/"
_XMP = "http://ns.adobe.com/xap/1.0/"
_PHOTOSHOP = "http://ns.adobe.com/photoshop/1.0/"
_DC = "http://purl.org/dc/elements/1.1/"
_GPANO = "http://ns.google.com/photos/1.0/panorama/"

# XMP property → the exiftool tag name metadata.py maps. Where two properties give one tag (ISO), the first
# found in the document wins; fallbacks between tags (LensModel, then Lens) are metadata.py's.
_PROPERTIES = {
    f"{{{_EXIF}}}DateTimeOriginal": "DateTimeOriginal",
    f"{{{_EXIF}}}DateTimeDigitized": "DateTimeDigitized",
    f"{{{_XMP}}}CreateDate": "CreateDate",
    f"{{{_PHOTOSHOP}}}DateCreated": "DateCreated",
    f"{{{_XMP}}}ModifyDate": "ModifyDate",
    f"{{{_EXIF}}}GPSLatitude": "GPSLatitude",
    f"{{{_EXIF}}}GPSLongitude": "GPSLongitude",
    f"{{{_TIFF}}}Make": "Make",
    f"{{{_TIFF}}}Model": "Model",
    f"{{{_EXIF_EX}}}LensModel": "LensModel",
    f"{{{_AUX}}}Lens": "Lens",
    f"{{{_EXIF}}}ExposureTime": "ExposureTime",
    f"{{{_EXIF}}}FNumber": "FNumber",
    f"{{{_EXIF}}}FocalLength": "FocalLength",
    f"{{{_EXIF}}}ISOSpeedRatings": "ISO",
    f"{{{_EXIF_EX}}}PhotographicSensitivity": "ISO",
    f"{{{_TIFF}}}Orientation": "Orientation",
    f"{{{_DC}}}description": "Description",
    f"{{{_XMP}}}Rating": "Rating",
    f"{{{_GPANO}}}ProjectionType": "ProjectionType",
}
_RATIONALS = {"ExposureTime", "FNumber", "FocalLength"}
_COORDINATE = re.compile(
    r"(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?(?:,(\d+(?:\.\d+)?))?\s*([NSEW])", re.ASCII | re.IGNORECASE
)
_DECIMAL = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?", re.ASCII)


def read_sidecar(path: bytes, root: bytes | None) -> dict[str, str]:
    """The mapped properties of the XMP sidecar at `path`, opened confined to `root` like an original.

    Raises OSError when it cannot be opened (vanished, outside `root`), BadMedia naming the sidecar when it is
    too large, not XMP, or uses entities or external references (refused: billion laughs, XXE).
    """
    with open(open_original(path, root), "rb", closefd=True) as stream:
        data = stream.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise BadMedia(f"{os.fsdecode(path)}: XMP sidecar larger than {MAX_SIDECAR_BYTES >> 20} MiB")
    return parse_sidecar(data, os.fsdecode(path))


def parse_sidecar(data: bytes, name: str) -> dict[str, str]:
    """Parse XMP text into {exiftool tag name: value}; `name` only labels errors (BadMedia "<name>: <reason>").

    Values may be attributes of rdf:Description or child elements (plain text, or the first rdf:li of an
    rdf:Seq/rdf:Bag, or the x-default item of an rdf:Alt). Properties with unusable values are left out.
    """
    try:
        document = defusedxml.ElementTree.fromstring(data)
    except DefusedXmlException as refused:
        raise BadMedia(
            f"{name}: XMP sidecar refused ({type(refused).__name__}: entities are not allowed)"
        ) from None
    except (ParseError, ValueError, LookupError) as error:  # LookupError: an unknown encoding="…" declared
        raise BadMedia(f"{name}: not a readable XMP sidecar ({error})") from None
    found: dict[str, str] = {}
    for rdf in _elements(document, f"{{{_RDF}}}RDF"):
        for description in rdf.iterfind(f"{{{_RDF}}}Description"):
            properties = [*description.attrib.items(), *((child.tag, _text(child)) for child in description)]
            for prop, raw in properties:
                tag = _PROPERTIES.get(prop)
                if tag is None or tag in found or raw is None:
                    continue
                value = _convert(tag, raw.strip())
                if value is not None:
                    found[tag] = value
    return found


def _elements(document: Element, tag: str) -> list[Element]:
    return [document] if document.tag == tag else list(document.iter(tag))


def _text(element: Element) -> str | None:
    """A property element's value: its text, or the first (x-default for rdf:Alt) item of its rdf container."""
    for container in element:
        items = container.findall(f"{{{_RDF}}}li")
        if container.tag == f"{{{_RDF}}}Alt":
            items.sort(key=lambda item: item.get(_XML_LANG) != "x-default")
        if container.tag in (f"{{{_RDF}}}Alt", f"{{{_RDF}}}Seq", f"{{{_RDF}}}Bag"):
            return items[0].text if items else None
        return None  # a structure: nothing §6.1 maps
    return element.text


def _convert(tag: str, value: str) -> str | None:
    if not value:
        return None
    if tag in ("GPSLatitude", "GPSLongitude"):
        degrees = _coordinate(value, "NS" if tag == "GPSLatitude" else "EW")
        return None if degrees is None else repr(degrees)
    if tag in _RATIONALS:
        number = _rational(value)
        return None if number is None else repr(number)
    return value


def _coordinate(value: str, references: str) -> float | None:
    """XMP GPS "47,3.25N" / "8,30,15W" (degrees, minutes[, seconds], reference) or signed decimal degrees."""
    if _DECIMAL.fullmatch(value):
        return float(value)
    match = _COORDINATE.fullmatch(value)
    if match is None or match[4].upper() not in references:
        return None
    degrees = float(match[1]) + float(match[2] or 0) / 60 + float(match[3] or 0) / 3600
    return -degrees if match[4].upper() in "SW" else degrees


def _rational(value: str) -> float | None:
    numerator, slash, denominator = value.partition("/")
    try:
        if not slash:
            return float(value)
        return float(numerator) / float(denominator)
    except (ValueError, ZeroDivisionError):
        return None
