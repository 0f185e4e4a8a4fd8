"""The owner's edits of an asset (`PUT /api/assets…`, `media.md` §6.3): validation, and how they override metadata.

Edits live in `asset_edits` (asset id -> `AssetEdits`), apart from what extraction reads. Only the fields named in
`AssetEdits.fields` were set, so an edit can set a value to null (a cleared rating). They win over the file and its
sidecar and survive every re-extraction: the metadata job overlays them on what it read before storing
(`overlay`), and an edit overlays itself on the stored `exif` record at once. So `exif` always holds the values
in effect, and readers (the asset response, the timeline, search) never consult edits themselves.

Edits are never written into originals or next to them. Pure logic: no I/O, no index access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from .errors import InvalidInput
from .records import EDITABLE_FIELDS, Asset, AssetEdits, ExifInfo, Visibility

DATE_FIELDS = ("date_time_original", "time_zone", "local_date_time")
"""A date edit sets these three together, so they always describe one instant."""
MAX_OFFSET_MINUTES = 14 * 60

_ISO_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
_DATE_MESSAGE = "dateTimeOriginal must be a valid ISO 8601 date string"


@dataclass(frozen=True)
class AssetChanges:
    """A validated update request, in daemon terms: flags that live on the asset, plus metadata edits (field
    name in `EDITABLE_FIELDS` -> value) and, for bulk updates, a relative date change."""

    is_favorite: bool | None = None
    visibility: Visibility | None = None
    edits: Mapping[str, object] = field(default_factory=dict)
    shift_minutes: int | None = None
    """`dateTimeRelative`: move each asset's capture instant by this many minutes."""
    time_zone: str | None = None
    """`timeZone` (an IANA name, checked by `check_time_zone`): each asset's capture instant seen in this zone."""

    @property
    def is_empty(self) -> bool:
        return (
            self.is_favorite is None
            and self.visibility is None
            and not self.edits
            and not self.shift_minutes
            and self.time_zone is None
        )

    @property
    def moves_dates(self) -> bool:
        return bool(self.shift_minutes) or self.time_zone is not None


@dataclass(frozen=True)
class CaptureTime:
    instant: datetime
    """UTC, aware."""
    local: datetime
    """The wall clock in the capture's own zone, naive (as `ExifInfo.local_date_time`)."""
    zone: str | None
    """`UTC-7` and the like; None when the text gave no offset (the wall clock is then taken as UTC)."""

    def as_edits(self) -> dict[str, object]:
        return {"date_time_original": self.instant, "time_zone": self.zone, "local_date_time": self.local}


def parse_capture_time(text: str) -> CaptureTime:
    """`'2023-11-19T18:11:00.000-07:00'` -> instant 2023-11-20T01:11Z, local 2023-11-19T18:11, zone `UTC-7`.

    Any ISO 8601 date or date-time, with `Z`, an offset or none (then the wall clock is UTC, zone unknown).
    Raises InvalidInput with class-validator's wording otherwise."""
    match = _ISO_DATE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput([_DATE_MESSAGE])
    year, month, day, hour, minute, second, fraction, offset_text = match.groups()
    try:
        local = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
        )  # fmt: skip
    except ValueError:
        raise InvalidInput([_DATE_MESSAGE]) from None
    offset = _offset_minutes(offset_text)
    try:
        instant = (local - timedelta(minutes=offset or 0)).replace(tzinfo=UTC)
    except OverflowError:
        raise InvalidInput([_DATE_MESSAGE]) from None
    return CaptureTime(instant=instant, local=local, zone=zone_name(offset))


def _offset_minutes(text: str | None) -> int | None:
    if text is None:
        return None
    if text in ("Z", "z"):
        return 0
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    total = hours * 60 + minutes
    if minutes >= 60 or total > MAX_OFFSET_MINUTES:
        raise InvalidInput([_DATE_MESSAGE])
    return -total if text[0] == "-" else total


def visibility_of(visibility: str | None, is_archived: bool | None) -> str | None:
    """Immich's visibility from a request: `visibility` when given, else the legacy `isArchived` (true: archive,
    false: timeline), else None (not said)."""
    if visibility is not None or is_archived is None:
        return visibility
    return "archive" if is_archived else "timeline"


def zone_name(offset_minutes: int | None) -> str | None:
    """330 -> `UTC+5:30`, -420 -> `UTC-7`, 0 -> `UTC` (the names metadata extraction gives fixed offsets)."""
    if offset_minutes is None:
        return None
    if offset_minutes == 0:
        return "UTC"
    hours, minutes = divmod(abs(offset_minutes), 60)
    sign = "-" if offset_minutes < 0 else "+"
    return f"UTC{sign}{hours}" + (f":{minutes:02d}" if minutes else "")


def check_position(
    latitude: object, longitude: object, *, latitude_given: bool, longitude_given: bool
) -> None:
    """Latitude and longitude come together and within range (Immich's `IsLatitude`/`IsLongitude` wording)."""
    messages = []
    if (latitude_given or longitude_given) and not _in_range(latitude, 90):
        messages.append("latitude must be a latitude string or number")
    if (latitude_given or longitude_given) and not _in_range(longitude, 180):
        messages.append("longitude must be a longitude string or number")
    if messages:
        raise InvalidInput(messages)


def _in_range(value: object, limit: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and -limit <= value <= limit


def normalize_rating(value: int | None) -> int | None:
    """-1 (rejected) or 1…5; 0 and null mean unrated (0 did before Immich 3, so older clients send it)."""
    if value is None or value == 0:
        return None
    if not -1 <= value <= 5:
        raise InvalidInput(
            ["rating must not be less than -1" if value < -1 else "rating must not be greater than 5"]
        )
    return value


def merge(before: AssetEdits | None, new: Mapping[str, object]) -> AssetEdits:
    """The stored edits with `new` (field -> value) set on top; `fields` names every field ever set."""
    unknown = set(new) - set(EDITABLE_FIELDS) - {"local_date_time"}
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    before = before or AssetEdits()
    fields = tuple(name for name in (*EDITABLE_FIELDS, "local_date_time")
                   if name in before.fields or name in new)  # fmt: skip
    return msgspec.structs.replace(before, fields=fields, **new)


def overlay(info: ExifInfo | None, edits: AssetEdits | None) -> ExifInfo | None:
    """`info` with the edited fields replaced (None stays None when nothing is edited)."""
    if edits is None or not edits.fields:
        return info
    values = {name: getattr(edits, name) for name in edits.fields}
    return msgspec.structs.replace(info or ExifInfo(), **values)


def check_time_zone(name: str) -> str:
    """An IANA time zone name (`Europe/Zurich`), or InvalidInput."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(["timeZone must be a valid IANA time zone"]) from None
    return name


def shifted(
    asset: Asset, info: ExifInfo | None, minutes: int, time_zone: str | None = None
) -> dict[str, object]:
    """A date edit moving the asset's capture instant by `minutes` and, with `time_zone`, showing it in that zone
    (its wall clock follows); without one the zone stays (`dateTimeRelative`, `timeZone`)."""
    delta = timedelta(minutes=minutes)
    try:
        instant = (
            info.date_time_original if info and info.date_time_original else asset.file_created_at
        ) + delta
        (info.local_date_time if info and info.local_date_time else asset.local_date_time) + delta
    except OverflowError:
        raise InvalidInput(["dateTimeRelative moves a date out of range"]) from None
    if time_zone is not None:
        local = instant.astimezone(ZoneInfo(time_zone)).replace(tzinfo=None)
        return {"date_time_original": instant, "time_zone": time_zone, "local_date_time": local}
    local = (info.local_date_time if info and info.local_date_time else asset.local_date_time).replace(
        tzinfo=None
    )
    zone = info.time_zone if info else None
    return {"date_time_original": instant, "time_zone": zone, "local_date_time": local + delta}


def asset_fields(edits: Mapping[str, object]) -> dict[str, object]:
    """What a date edit changes on the asset itself: `fileCreatedAt` and `localDateTime` (`media.md` §6.1)."""
    if "date_time_original" not in edits:
        return {}
    instant = edits["date_time_original"]
    local = edits.get("local_date_time") or instant
    assert isinstance(instant, datetime) and isinstance(local, datetime)
    return {"file_created_at": instant, "local_date_time": local.replace(tzinfo=UTC)}
