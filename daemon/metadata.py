"""Metadata extraction in a worker process (media.md §6): exiftool for the original, `xmp.py` for its sidecar.

`read_metadata` reads a batch of originals with one exiftool execute and maps each file's tags to an `ExifInfo`
with §6.1's first-found-wins orders; a sidecar's values then override the embedded ones field by field (§6.2).

Failures stay per file: an original that cannot be opened gives its OSError, one exiftool cannot read (or that is
not an image or video at all) gives BadMedia naming it. A sidecar that cannot be read or is refused (entities,
not XMP) does not cost the original its metadata: the embedded values are returned and a WARNING names the
sidecar and the reason (§6.4 "nothing else is lost"); the next extraction reads the sidecar again.
"""

from __future__ import annotations

import logging
import math
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from . import exiftool, xmp
from .asset_edits import DATE_FIELDS, MAX_OFFSET_MINUTES, zone_name
from .errors import BadMedia
from .originals import open_original
from .records import ExifInfo

log = logging.getLogger(__name__)

# QuickTime-family files store CreateDate/ModifyDate in UTC (the QuickTime convention); EXIF dates are local.
_QUICKTIME_MIME_TYPES = {"video/mp4", "video/quicktime", "video/3gpp", "video/3gpp2", "video/x-m4v"}
_OTHER_MEDIA_MIME_TYPES = {"application/vnd.adobe.photoshop"}
_DATE = re.compile(
    r"(\d{4})[:-](\d\d)[:-](\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d))?(?:[.,](\d+))?)?\s*(Z|[+-]\d\d:?\d\d)?(?:\s*DST)?",
    re.ASCII | re.IGNORECASE,
)
_OFFSET = re.compile(r"([+-])(\d\d):?(\d\d)", re.ASCII)

Fields = dict[str, Any]
LocalTime = tuple[datetime, int | None]  # naive wall-clock time, its UTC offset in minutes when known


def read_metadata(
    items: list[tuple[bytes, bytes | None, bytes | None]],
) -> list[ExifInfo | BadMedia | OSError]:
    """Metadata of each (original path, confinement root or None, sidecar path or None), in order.

    One result per item: an ExifInfo, BadMedia naming the original and exiftool's reason, or the OSError opening
    it raised (vanished, permission, outside `root`). All originals go to exiftool in one execute, through their
    confined descriptors (`exiftool.read_open_files`); nothing is written anywhere near them. When exiftool
    itself fails (hung past `exiftool.BATCH_TIMEOUT`, died twice) every file of the batch gets an
    `exiftool.ExiftoolFailed` (an OSError: worth retrying later) naming it.
    """
    results: list[ExifInfo | BadMedia | OSError | None] = [None] * len(items)
    opened: list[tuple[int, int]] = []  # (slot, descriptor)
    try:
        for slot, (path, root, _sidecar) in enumerate(items):
            try:
                opened.append((slot, open_original(path, root)))
            except OSError as error:
                results[slot] = error
        files = [
            (descriptor, os.fsdecode(os.path.splitext(items[slot][0])[1])) for slot, descriptor in opened
        ]
        try:
            tags_of_files = exiftool.read_open_files(files)
        except OSError as failure:  # ExiftoolFailed (hung, died), or the links could not be made
            for slot, _descriptor in opened:
                results[slot] = type(failure)(failure.errno, failure.strerror, os.fsdecode(items[slot][0]))
            tags_of_files = []
    finally:
        for _slot, descriptor in opened:
            os.close(descriptor)
    for (slot, _descriptor), tags in zip(opened, tags_of_files, strict=False):
        path, root, sidecar = items[slot]
        results[slot] = _exif_info(path, root, sidecar, tags)
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]


def _exif_info(
    path: bytes, root: bytes | None, sidecar: bytes | None, tags: dict[str, Any]
) -> ExifInfo | BadMedia:
    name = os.fsdecode(path)
    if error := _text(tags.get("Error")):
        return BadMedia(f"{name}: {error}")
    mime_type = _text(tags.get("MIMEType")) or ""
    if not mime_type.startswith(("image/", "video/", "audio/")) and mime_type not in _OTHER_MEDIA_MIME_TYPES:
        return BadMedia(
            f"{name}: not an image or video (exiftool reads it as {mime_type or 'an unknown format'})"
        )
    fields = map_tags(
        tags, quicktime=mime_type in _QUICKTIME_MIME_TYPES, video=mime_type.startswith("video/")
    )
    if sidecar is not None:
        try:
            sidecar_tags = xmp.read_sidecar(sidecar, root)
        except (OSError, BadMedia) as error:
            log.warning("sidecar %s ignored, embedded metadata used: %s", os.fsdecode(sidecar), error)
        else:
            fields = _override(fields, map_tags(sidecar_tags, quicktime=False, video=False))
    return ExifInfo(**fields)


def _override(embedded: Fields, sidecar: Fields) -> Fields:
    """The sidecar's known values replace the embedded ones field by field; a date replaces date, zone and
    local time together, so they always describe one instant."""
    merged = {
        field: sidecar[field] if sidecar[field] is not None else value for field, value in embedded.items()
    }
    if sidecar["date_time_original"] is None:
        merged.update({field: embedded[field] for field in DATE_FIELDS})
    else:
        merged.update({field: sidecar[field] for field in DATE_FIELDS})
    return merged


def map_tags(tags: dict[str, Any], *, quicktime: bool, video: bool) -> Fields:
    """exiftool-style tags (strings, as `exiftool.read_open_files` and `xmp.parse_sidecar` give them) → the
    ExifInfo fields, with §6.1's first-found-wins orders and validation (junk becomes None, never an error)."""
    capture = _capture(tags, quicktime=quicktime)
    modified = _local_time(tags.get("ModifyDate"), None, [tags.get("OffsetTime")])
    latitude, longitude = _position(tags)
    orientation = _integer(tags.get("Orientation"))
    rating = _integer(tags.get("Rating"))
    duration = _number(tags.get("Duration")) if video else None
    rotation = _integer(tags.get("Rotation")) if video else None
    projection = _text(tags.get("ProjectionType"))
    return {
        "date_time_original": _instant(capture),
        "time_zone": None if capture is None else zone_name(capture[1]),
        "local_date_time": None if capture is None else capture[0],
        "modify_date": _instant(modified),
        "latitude": latitude,
        "longitude": longitude,
        "make": _text(tags.get("Make")),
        "model": _text(tags.get("Model")),
        "lens_model": _first(_text(tags.get(tag)) for tag in ("LensModel", "LensID", "Lens")),
        "exposure_time": _exposure_time(_positive(tags.get("ExposureTime"))),
        "f_number": _positive(tags.get("FNumber")),
        "focal_length": _positive(tags.get("FocalLength")),
        "iso": _positive_integer(tags.get("ISO")),
        "orientation": str(orientation) if orientation is not None and 1 <= orientation <= 8 else None,
        "exif_image_width": _positive_integer(tags.get("ImageWidth")),
        "exif_image_height": _positive_integer(tags.get("ImageHeight")),
        "description": _first(
            _text(tags.get(t)) for t in ("Description", "ImageDescription", "Caption-Abstract")
        ),
        "rating": rating if rating is not None and 1 <= rating <= 5 else None,
        "projection_type": projection.upper() if projection else None,
        "duration_ms": round(duration * 1000) if duration is not None and duration >= 0 else None,
        "fps": _positive(tags.get("VideoFrameRate")) if video else None,
        "rotation": rotation % 360 if rotation is not None and rotation % 90 == 0 else None,
    }


def _capture(tags: dict[str, Any], *, quicktime: bool) -> LocalTime | None:
    """The capture time, first found: DateTimeOriginal (+ sub-seconds, offset), then for QuickTime files
    CreationDate (carries its offset) and CreateDate (UTC), for others CreateDate / DateTimeDigitized; then
    DateCreated (XMP photoshop, IPTC)."""
    original = _local_time(
        tags.get("DateTimeOriginal"),
        tags.get("SubSecTimeOriginal"),
        [tags.get("OffsetTimeOriginal"), tags.get("OffsetTime")],
    )
    digitized_offsets = [tags.get("OffsetTimeDigitized"), tags.get("OffsetTime")]
    if quicktime:
        candidates = [
            original,
            _local_time(tags.get("CreationDate")),
            _local_time(tags.get("CreateDate")),  # UTC: with no offset, the wall clock is taken as UTC anyway
            _local_time(tags.get("DateTimeDigitized"), None, digitized_offsets),
        ]
    else:
        candidates = [
            original,
            _local_time(tags.get("CreateDate"), tags.get("SubSecTimeDigitized"), digitized_offsets),
            _local_time(tags.get("DateTimeDigitized"), tags.get("SubSecTimeDigitized"), digitized_offsets),
        ]
    candidates += [_local_time(tags.get("DateCreated")), _local_time(tags.get("CreationDate"))]
    return _first(candidates)


def _local_time(value: Any, subseconds: Any = None, offsets: list[Any] | None = None) -> LocalTime | None:
    """An EXIF ("2021:03:04 05:06:07.5+02:00") or ISO 8601 date → (wall clock, offset minutes or None).

    An offset inside the value wins over the offset tags. Invalid dates ("0000:00:00 00:00:00", garbage) → None.
    """
    text = _text(value)
    match = _DATE.fullmatch(text) if text else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset_text = match.groups()
    fraction = fraction or "".join(re.findall(r"\d", _text(subseconds) or ""))[:6]
    try:
        wall = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
            int(fraction.ljust(6, "0")[:6] or 0),
        )  # fmt: skip
    except ValueError:
        return None
    offset = _offset(offset_text) if offset_text else _first(_offset(_text(o)) for o in offsets or [])
    return wall, offset


def _offset(text: str | None) -> int | None:
    """An offset in minutes: "+05:30" → 330, "Z" → 0; blanks ("   :  ") and impossible offsets → None."""
    if text is None:
        return None
    if text.strip().upper() == "Z":
        return 0
    match = _OFFSET.fullmatch(text.strip())
    if match is None or int(match[3]) >= 60:
        return None
    minutes = int(match[2]) * 60 + int(match[3])
    return None if minutes > MAX_OFFSET_MINUTES else (-minutes if match[1] == "-" else minutes)


def _instant(local: LocalTime | None) -> datetime | None:
    """The UTC instant of a wall-clock time; with no known offset the wall clock is taken as UTC (§6.1)."""
    if local is None:
        return None
    wall, offset = local
    try:
        return (wall - timedelta(minutes=offset or 0)).replace(tzinfo=UTC)
    except OverflowError:
        return None


def _position(tags: dict[str, Any]) -> tuple[float | None, float | None]:
    """Signed decimal degrees (exiftool's composite GPSLatitude/GPSLongitude already apply the S/W references;
    sidecar values are signed by `xmp.py`); (0, 0), one missing or out of range → (None, None)."""
    latitude, longitude = _number(tags.get("GPSLatitude")), _number(tags.get("GPSLongitude"))
    if latitude is None or longitude is None:
        return None, None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180) or (latitude == 0 and longitude == 0):
        return None, None
    return latitude, longitude


def _exposure_time(seconds: float | None) -> str | None:
    """0.00025 → "1/4000", 2.0 → "2", 0.5 → "0.5" (exiftool's own ExposureTime formatting)."""
    if seconds is None:
        return None
    if seconds < 0.25001:
        return f"1/{int(0.5 + 1 / seconds)}"
    return f"{seconds:.1f}".removesuffix(".0")


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or isinstance(value, dict):
        return None
    text = str(value).strip()
    return text if text and not text.startswith("base64:") else None


def _number(value: Any) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        number = float(text.split()[0])
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def _positive_integer(value: Any) -> int | None:
    number = _integer(value)
    return number if number is not None and number > 0 else None


def _first(values: Any) -> Any:
    return next((value for value in values if value is not None), None)
