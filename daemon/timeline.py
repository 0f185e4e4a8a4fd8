"""The owner's timeline: asset statistics, month buckets and a bucket's assets (`/api/assets/statistics`,
`/api/timeline/buckets`, `/api/timeline/bucket`).

Everything here walks the per-owner `timeline` table (`daemon.assets`: owner + local capture time + id -> flags),
so counting and bucketing never decode asset records; only the assets of the one bucket asked for are read.
Filters are decided per (flags, visibility) pair through a small lookup table (`EntryFilter.accepts`), built once
per filter from `TimelineEntry` itself.

What is shown (api-compat §7, filmroll's choices where Immich leaves it to the client):
- trashed assets only with `isTrashed=true` (and then only those);
- `hidden` and `locked` assets never (filmroll has no PIN-protected locked folder, and hidden assets are parts of
  other assets in Immich);
- archived assets only with `visibility=archive`, except in an album's timeline and in the trash, which show
  archived and timeline assets alike (as Immich's clients expect, since they ask those views without a
  visibility);
- `albumId` must be one of the caller's albums, `userId` the caller.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal

from . import album_index
from . import assets as asset_index
from .access import Principal
from .assets import TimelineEntry, micros
from .errors import InvalidInput, NotFoundOrNoAccess
from .index import EXIF, TIMELINE, Index, Txn
from .records import Asset, ExifInfo

Order = Literal["asc", "desc"]
VISIBILITIES = ("timeline", "archive", "hidden", "locked")
NEVER_SHOWN = frozenset({"hidden", "locked"})

# The timeline key stores the local capture time biased to sort as unsigned bytes (`daemon.assets.timeline_key`);
# the bias is read back from the decoder itself rather than repeated here.
_TIME_BIAS = -TimelineEntry.decode(bytes(40), bytes(2)).local_micros


def time_bytes(local_micros: int) -> bytes:
    """The 8 key bytes of a local capture time, as in `timeline` keys."""
    return (local_micros + _TIME_BIAS).to_bytes(8, "big")


def local_micros_of(key: bytes) -> int:
    return int.from_bytes(key[16:24], "big") - _TIME_BIAS


@dataclass(frozen=True)
class EntryFilter:
    """Which timeline entries pass, by their flags alone. None means "either"."""

    trashed: bool | None = False
    visibilities: frozenset[str] = frozenset({"timeline", "archive"})
    is_favorite: bool | None = None
    is_offline: bool | None = None
    type: Literal["IMAGE", "VIDEO"] | None = None

    def passes(self, entry: TimelineEntry) -> bool:
        return (
            (self.trashed is None or entry.is_trashed == self.trashed)
            and entry.visibility in self.visibilities
            and (self.is_favorite is None or entry.is_favorite == self.is_favorite)
            and (self.is_offline is None or entry.is_offline == self.is_offline)
            and (self.type is None or entry.is_video == (self.type == "VIDEO"))
        )

    def accepts(self, value: bytes) -> bool:
        """Does a `timeline` value (flags, visibility code) pass?"""
        return _acceptance(self)[value[0] * len(VISIBILITIES) + value[1]]


@lru_cache(maxsize=256)
def _acceptance(entry_filter: EntryFilter) -> tuple[bool, ...]:
    """`passes` for every possible (flags, visibility code) value, decoded by `TimelineEntry` itself."""
    key = bytes(40)
    return tuple(
        entry_filter.passes(TimelineEntry.decode(key, bytes([flags, code])))
        for flags in range(256)
        for code in range(len(VISIBILITIES))
    )


@lru_cache(maxsize=1)
def _video_flags() -> tuple[bool, ...]:
    """`is_video` for every value of a `timeline` entry's flag byte, decoded by `TimelineEntry` itself."""
    return tuple(TimelineEntry.decode(bytes(40), bytes([flags, 0])).is_video for flags in range(256))


@dataclass(frozen=True)
class TypeTally:
    """Images and videos among an owner's timeline entries, and their file sizes."""

    images: int
    videos: int
    image_bytes: int
    video_bytes: int


def tally_types(txn: Txn, owner_id: uuid.UUID, entry_filter: EntryFilter) -> TypeTally:
    """The owner's entries that `entry_filter` accepts, counted by type with their sizes, in one walk over the raw
    `timeline` values: neither entries nor asset records are decoded (`/api/assets/statistics` and the server's
    per-user statistics)."""
    images = videos = image_bytes = video_bytes = 0
    accepts, video_flags, size_of = entry_filter.accepts, _video_flags(), asset_index.timeline_file_size
    for _, value in raw_entries(txn, owner_id):
        if accepts(value):
            if video_flags[value[0]]:
                videos += 1
                video_bytes += size_of(value)
            else:
                images += 1
                image_bytes += size_of(value)
    return TypeTally(images, videos, image_bytes, video_bytes)


def raw_entries(
    txn: Txn, owner_id: uuid.UUID, start: int | None = None, end: int | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """The owner's `timeline` (key, value) pairs with `start <= local time < end` (µs), oldest first."""
    prefix = owner_id.bytes
    after = None if start is None else prefix + time_bytes(start)  # every key at `start` sorts after this
    for key, value in txn.items(TIMELINE, prefix, after=after):
        if end is not None and local_micros_of(key) >= end:
            return
        yield key, value


def raw_entries_descending(txn: Txn, owner_id: uuid.UUID) -> Iterator[tuple[bytes, bytes]]:
    """The owner's `timeline` (key, value) pairs, newest first."""
    prefix = owner_id.bytes
    following = int.from_bytes(prefix, "big") + 1
    with txn.cursor(TIMELINE) as cursor:
        if following < 1 << 128 and cursor.set_range(following.to_bytes(16, "big")):
            moved = cursor.prev()
        else:
            moved = cursor.last()
        while moved:
            key = bytes(cursor.key())
            if not key.startswith(prefix):
                return
            yield key, bytes(cursor.value())
            moved = cursor.prev()


def entry_of(asset: Asset) -> tuple[bytes, bytes]:
    """An asset's `timeline` (key, value), computed (for album members, which are walked by album)."""
    return asset_index.timeline_key(asset), asset_index.timeline_entry(asset)


def album_entries(txn: Txn, principal: Principal, album_id: uuid.UUID) -> list[tuple[bytes, bytes]]:
    """The timeline entries of an album's members, oldest first. Raises NotFoundOrNoAccess (`album.read`)
    unless the album is the caller's."""
    album = album_index.get(txn, album_id)
    if album is None:
        raise NotFoundOrNoAccess("album.read")
    principal.require_owner(album.owner_id, "album.read")
    members = (asset_index.get(txn, asset_id) for asset_id in album_index.member_ids(txn, album_id))
    return sorted(entry_of(asset) for asset in members if asset is not None)


# -- statistics ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssetStatistics:
    images: int
    videos: int

    @property
    def total(self) -> int:
        return self.images + self.videos


@dataclass(frozen=True)
class TimelineOptions:
    """The filters of `/api/timeline/buckets` and `/api/timeline/bucket`."""

    album_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    is_favorite: bool | None = None
    is_trashed: bool | None = None
    visibility: str | None = None
    order: Order = "desc"
    person_id: uuid.UUID | None = None
    tag_id: uuid.UUID | None = None

    def entry_filter(self) -> EntryFilter | None:
        """None when nothing can match (people, tags, hidden or locked asked for)."""
        if self.person_id is not None or self.tag_id is not None:
            return None  # filmroll has no people and no tags
        if self.visibility is not None:
            if self.visibility in NEVER_SHOWN:
                return None
            shown = frozenset({self.visibility})
        elif self.album_id is not None or self.is_trashed:
            shown = frozenset({"timeline", "archive"})
        else:
            shown = frozenset({"timeline"})
        return EntryFilter(trashed=bool(self.is_trashed), visibilities=shown, is_favorite=self.is_favorite)


@dataclass(frozen=True)
class TimeBucket:
    time_bucket: str
    """`YYYY-MM-01`: the first day of the local capture month."""
    count: int


@dataclass(frozen=True)
class BucketAsset:
    asset: Asset
    exif: ExifInfo | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BUCKET = re.compile(r"[+-]?(\d{4,6})-(\d{2})(?:-\d{2}(?:[T ].*)?)?")


def parse_time_bucket(text: str) -> tuple[int, int]:
    """`2024-01-01` (or any ISO date-time in that month, as clients echo what buckets gave them) -> (2024, 1)."""
    match = _BUCKET.fullmatch(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12 or not 1 <= int(match[1]) <= 9999:
        raise InvalidInput(["timeBucket must be a valid date (YYYY-MM-DD)"])
    return int(match[1]), int(match[2])


def month_start(year: int, month: int) -> int:
    """µs of the month's first moment; for the month after December 9999 (past `datetime`), just after its end."""
    if year > 9999:
        return micros(datetime.max.replace(tzinfo=UTC)) + 1
    return micros(datetime(year, month, 1, tzinfo=UTC))


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


class TimelineService:
    def __init__(self, index: Index):
        self.index = index

    def statistics(
        self,
        principal: Principal,
        *,
        is_favorite: bool | None = None,
        is_trashed: bool | None = None,
        visibility: str | None = None,
    ) -> AssetStatistics:
        """The caller's images and videos: not trashed (only trashed with `is_trashed`), offline included, any
        visibility but hidden and locked unless one is asked for (api-compat §7 "Statistics")."""
        shown = frozenset({visibility}) if visibility else frozenset({"timeline", "archive"})
        entry_filter = EntryFilter(trashed=bool(is_trashed), visibilities=shown, is_favorite=is_favorite)
        with self.index.read() as txn:
            tally = tally_types(txn, principal.user.id, entry_filter)
        return AssetStatistics(images=tally.images, videos=tally.videos)

    def _check_user(self, principal: Principal, options: TimelineOptions) -> None:
        if options.user_id is not None and options.user_id != principal.user.id:
            raise NotFoundOrNoAccess("timeline.read")

    def buckets(self, principal: Principal, options: TimelineOptions) -> list[TimeBucket]:
        """Months with at least one shown asset and how many, newest first (`order='asc'`: oldest first)."""
        self._check_user(principal, options)
        counts: dict[tuple[int, int], int] = {}
        with self.index.read() as txn:
            entries = (
                album_entries(txn, principal, options.album_id)
                if options.album_id is not None
                else raw_entries(txn, principal.user.id)
            )
            entry_filter = options.entry_filter()
            if entry_filter is None:
                return []
            month, month_end = (0, 0), None
            for key, value in entries:
                if not entry_filter.accepts(value):
                    continue
                local = local_micros_of(key)
                if month_end is None or not month_start(*month) <= local < month_end:
                    moment = _EPOCH + timedelta(microseconds=local)
                    month = (moment.year, moment.month)
                    month_end = month_start(*next_month(*month))
                counts[month] = counts.get(month, 0) + 1
        ordered = sorted(counts.items(), reverse=options.order == "desc")
        return [TimeBucket(f"{year:04d}-{month:02d}-01", count) for (year, month), count in ordered]

    def bucket(self, principal: Principal, time_bucket: str, options: TimelineOptions) -> list[BucketAsset]:
        """The shown assets of one local capture month, by `fileCreatedAt` (newest first unless `asc`)."""
        year, month = parse_time_bucket(time_bucket)
        self._check_user(principal, options)
        start, end = month_start(year, month), month_start(*next_month(year, month))
        found: list[BucketAsset] = []
        with self.index.read() as txn:
            if options.album_id is not None:
                entries: Iterator[tuple[bytes, bytes]] | list[tuple[bytes, bytes]] = [
                    (key, value)
                    for key, value in album_entries(txn, principal, options.album_id)
                    if start <= local_micros_of(key) < end
                ]
            else:
                entries = raw_entries(txn, principal.user.id, start, end)
            entry_filter = options.entry_filter()
            if entry_filter is None:
                return []
            for key, value in entries:
                if entry_filter.accepts(value):
                    asset = asset_index.get_by_key(txn, key[24:40])
                    if asset is not None:
                        found.append(BucketAsset(asset, txn.get(EXIF, key[24:40])))
        found.sort(
            key=lambda item: (item.asset.file_created_at, item.asset.id.bytes),
            reverse=options.order == "desc",
        )
        return found
