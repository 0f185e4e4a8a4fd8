"""Asset records in the index: the one place that keeps `assets` and its secondary tables in step.

Every change of an asset goes through these functions, inside the caller's write transaction, so
`asset_by_path` and `offline_by_signature` always agree with `assets` (`check_index` verifies it).

`timeline` is the per-owner index (owner + capture time + id), its value the flags that filters need (trashed,
visibility, favourite, offline, type) and the file size, so statistics, usage and timeline buckets never decode
asset records.
`asset_by_checksum` holds upload-library assets only: the upload path creates the entry (`add_checksum`); these
functions move or drop it with the asset and never create one.

`asset_by_path` values carry what a rescan compares — id, size, mtime, a sidecar fingerprint and the offline flag
(`PathEntry`, 41 bytes) — so a scan of an unchanged library never reads the asset records themselves.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from . import album_index, job_queue
from .crawl import FoundFile
from .ids import as_uuids, new_raw_ids
from .index import (
    ASSET_BY_CHECKSUM,
    ASSET_BY_PATH,
    ASSET_EDITS,
    ASSETS,
    EXIF,
    LIBRARIES,
    LIBRARY_TALLIES,
    OFFLINE_BY_SIGNATURE,
    TIMELINE,
    Txn,
)
from .records import Asset, Library

log = logging.getLogger(__name__)

_MTIME_OFFSET = 1 << 63  # mtimes may be negative; keys must sort as unsigned bytes
_OFFLINE = 1


@dataclass(frozen=True, slots=True)
class PathEntry:
    asset_id: uuid.UUID
    size: int
    mtime_ns: int
    sidecar: int
    offline: bool

    @classmethod
    def decode(cls, value: bytes) -> PathEntry:
        return cls(
            asset_id=uuid.UUID(bytes=value[:16]),
            size=int.from_bytes(value[16:24], "big"),
            mtime_ns=int.from_bytes(value[24:32], "big") - _MTIME_OFFSET,
            sidecar=int.from_bytes(value[32:40], "big"),
            offline=bool(value[40] & _OFFLINE),
        )


def sidecar_fingerprint(path: bytes | None, mtime_ns: int | None) -> int:
    """0 without a sidecar; otherwise 8 bytes of a hash of its path and mtime (a change of either shows)."""
    if path is None:
        return 0
    digest = hashlib.blake2b(path + b"\0" + str(mtime_ns).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


_COMPARED = struct.Struct(">QQQ")  # size, biased mtime, sidecar fingerprint: bytes 16-40 of a path entry
_PATH_ENTRY = struct.Struct(">16sQQQB")  # id + the compared fields + flags (`PathEntry`)


def compared_fields(
    size: int, mtime_ns: int, sidecar_path: bytes | None, sidecar_mtime_ns: int | None
) -> bytes:
    """Bytes 16-40 of a path entry: what a rescan compares with the file it finds."""
    return _COMPARED.pack(size, mtime_ns + _MTIME_OFFSET, sidecar_fingerprint(sidecar_path, sidecar_mtime_ns))


def path_entry(asset: Asset, asset_key: bytes | None = None) -> bytes:
    return _path_value(asset_key or asset.id.bytes, asset.file_size, asset.file_mtime_ns, asset.sidecar_path,
                       asset.sidecar_mtime_ns, asset.is_offline)  # fmt: skip


def _path_value(
    key: bytes, size: int, mtime_ns: int, sidecar_path: bytes | None, sidecar_mtime_ns: int | None, offline: bool
) -> bytes:
    fingerprint = sidecar_fingerprint(sidecar_path, sidecar_mtime_ns)
    return _PATH_ENTRY.pack(key, size, mtime_ns + _MTIME_OFFSET, fingerprint, _OFFLINE if offline else 0)


def path_key(library_id: uuid.UUID, path: bytes) -> bytes:
    return library_id.bytes + path


def signature_prefix(library_id: uuid.UUID, size: int, mtime_ns: int) -> bytes:
    return library_id.bytes + size.to_bytes(8, "big") + (mtime_ns + _MTIME_OFFSET).to_bytes(8, "big")


def signature_key(asset: Asset) -> bytes:
    return signature_prefix(asset.library_id, asset.file_size, asset.file_mtime_ns) + asset.id.bytes


_TIME_OFFSET = 1 << 63
_VISIBILITY_CODES = {"timeline": 0, "archive": 1, "hidden": 2, "locked": 3}
_VISIBILITIES = {code: name for name, code in _VISIBILITY_CODES.items()}
_VIDEO, _FAVORITE, _TRASHED, _OFFLINE_FLAG = 1, 2, 4, 8


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One `timeline` entry, decoded: enough to filter and count without reading the asset record."""

    owner_id: uuid.UUID
    local_micros: int
    asset_id: uuid.UUID
    is_video: bool
    is_favorite: bool
    is_trashed: bool
    is_offline: bool
    visibility: str
    file_size: int

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> TimelineEntry:
        flags = value[0]
        return cls(
            owner_id=uuid.UUID(bytes=key[:16]),
            local_micros=int.from_bytes(key[16:24], "big") - _TIME_OFFSET,
            asset_id=uuid.UUID(bytes=key[24:40]),
            is_video=bool(flags & _VIDEO),
            is_favorite=bool(flags & _FAVORITE),
            is_trashed=bool(flags & _TRASHED),
            is_offline=bool(flags & _OFFLINE_FLAG),
            visibility=_VISIBILITIES[value[1]],
            file_size=timeline_file_size(value),
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """µs since the epoch, exactly (integer arithmetic: no float steps near year 9999, flooring before 1970). A
    naive value counts as UTC: the timeline keys naive local capture times this way."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


_TIMELINE_KEY = struct.Struct(">16sQ16s")  # owner, biased local capture time in µs, asset id
_TIMELINE_VALUE = struct.Struct(">BBQ")  # flags, visibility code, file size


def timeline_key(asset: Asset, owner_key: bytes | None = None, asset_key: bytes | None = None) -> bytes:
    """(`owner_key`/`asset_key`: the raw ids, when the caller has them: bulk inserts skip the UUID conversions.)"""
    return _TIMELINE_KEY.pack(
        owner_key or asset.owner_id.bytes,
        micros(asset.local_date_time) + _TIME_OFFSET,
        asset_key or asset.id.bytes,
    )


def timeline_entry(asset: Asset) -> bytes:
    flags = (
        (_VIDEO if asset.type == "VIDEO" else 0)
        | (_FAVORITE if asset.is_favorite else 0)
        | (_TRASHED if asset.trashed_at is not None else 0)
        | (_OFFLINE_FLAG if asset.is_offline else 0)
    )
    return _TIMELINE_VALUE.pack(flags, _VISIBILITY_CODES[asset.visibility], asset.file_size)


def timeline_file_size(value: bytes) -> int:
    """The file size in a raw `timeline` value (for walks that skip decoding whole entries)."""
    return int.from_bytes(value[2:10], "big")


def timeline_seek_key(owner_id: uuid.UUID, local_micros: int) -> bytes:
    """The first possible `timeline` key of the owner at `local_micros` (µs since the epoch of the naive local
    capture time, as `TimelineEntry.local_micros`): where a walk from that moment starts."""
    return owner_id.bytes + (local_micros + _TIME_OFFSET).to_bytes(8, "big")


def timeline_of(txn: Txn, owner_id: uuid.UUID) -> Iterator[TimelineEntry]:
    """Every asset of the owner, oldest capture time first."""
    for key, value in txn.items(TIMELINE, owner_id.bytes):
        yield TimelineEntry.decode(key, value)


@dataclass(frozen=True, slots=True)
class LibraryTally:
    """A library's assets that are not trashed (offline ones included): what `assetCount` and the library
    statistics report, kept up to date by every change here instead of counted by walking the library."""

    photos: int = 0
    videos: int = 0
    usage: int = 0

    @property
    def assets(self) -> int:
        return self.photos + self.videos


_TALLY = struct.Struct(">QQQ")


def _counted(asset: Asset) -> tuple[uuid.UUID, bool, int] | None:
    """What an asset adds to its library's tally: (library, is a video, bytes), or None while trashed."""
    return None if asset.trashed_at is not None else (asset.library_id, asset.type == "VIDEO", asset.file_size)


def tally_of(txn: Txn, library_id: uuid.UUID) -> LibraryTally:
    raw = txn.get(LIBRARY_TALLIES, library_id.bytes)
    return LibraryTally() if raw is None else LibraryTally(*_TALLY.unpack(raw))


def _add_tally(txn: Txn, library_id: uuid.UUID, photos: int, videos: int, usage: int) -> None:
    now = tally_of(txn, library_id)
    photos, videos, usage = now.photos + photos, now.videos + videos, now.usage + usage
    if min(photos, videos, usage) < 0:  # a bug somewhere: never fail the change for it (`filmroll check` tells)
        log.error("library %s: its tally would go negative (%d, %d, %d); kept at 0", library_id, photos, videos, usage)
        photos, videos, usage = max(photos, 0), max(videos, 0), max(usage, 0)
    if photos or videos or usage:
        txn.put(LIBRARY_TALLIES, library_id.bytes, _TALLY.pack(photos, videos, usage))
    else:
        txn.delete(LIBRARY_TALLIES, library_id.bytes)


def add_to_tallies(txn: Txn, added: Iterable[Asset]) -> None:
    """Count new assets in their libraries' tallies: one update per library."""
    deltas: dict[uuid.UUID, list[int]] = {}
    for asset in added:
        counted = _counted(asset)
        if counted is not None:
            library_id, is_video, size = counted
            delta = deltas.get(library_id) or deltas.setdefault(library_id, [0, 0, 0])
            delta[1 if is_video else 0] += 1
            delta[2] += size
    for library_id, (photos, videos, usage) in deltas.items():
        _add_tally(txn, library_id, photos, videos, usage)


def _retally(txn: Txn, before: Asset | None, after: Asset | None) -> None:
    old, new = (None if before is None else _counted(before)), (None if after is None else _counted(after))
    if old == new:
        return
    if old is not None:
        _add_tally(txn, old[0], -(not old[1]), -old[1], -old[2])
    if new is not None:
        _add_tally(txn, new[0], int(not new[1]), int(new[1]), new[2])


def checksum_key(owner_id: uuid.UUID, sha1: bytes) -> bytes:
    return owner_id.bytes + sha1


def by_checksum(txn: Txn, owner_id: uuid.UUID, sha1: bytes) -> Asset | None:
    """The owner's upload-library asset with this content SHA-1 (trashed ones included), if any. An asset of a
    library being deleted does not count: it is about to go, so the file must be accepted again (its entry is
    then taken over by the new asset; `remove` leaves an entry that points elsewhere alone)."""
    key = txn.get(ASSET_BY_CHECKSUM, checksum_key(owner_id, sha1))
    asset = None if key is None else txn.get(ASSETS, key)
    if asset is None:
        return None
    library = txn.get(LIBRARIES, asset.library_id.bytes)
    return asset if library is not None and library.deleted_at is None else None


def add_checksum(txn: Txn, asset: Asset) -> None:
    """Register an upload-library asset under its content SHA-1 (the upload path does, once)."""
    assert asset.content_sha1 is not None
    txn.put(ASSET_BY_CHECKSUM, checksum_key(asset.owner_id, asset.content_sha1), asset.id.bytes)


def _has_checksum_entry(txn: Txn, asset: Asset) -> bool:
    return asset.content_sha1 is not None and (
        txn.get(ASSET_BY_CHECKSUM, checksum_key(asset.owner_id, asset.content_sha1)) == asset.id.bytes
    )


def immich_checksum(asset: Asset, *, in_upload_library: bool) -> bytes:
    """The SHA-1 Immich reports as `checksum`: of the content for uploads, of `path:` + path for external assets
    (api-compat §7; an external asset's content hash, when known, is filmroll's own, for moves)."""
    if in_upload_library and asset.content_sha1 is not None:
        return asset.content_sha1
    return hashlib.sha1(b"path:" + asset.original_path, usedforsecurity=False).digest()


class Checksums:
    """Immich's `checksum` of assets (`immich_checksum`) read in the caller's transaction, each
    library's type looked up once: a response listing a thousand assets costs one transaction and a look-up per
    library, not a transaction per asset. Valid while `txn` is."""

    def __init__(self, txn: Txn):
        self._txn = txn
        self._in_upload_library: dict[uuid.UUID, bool] = {}

    def of(self, asset: Asset) -> bytes:
        in_upload_library = self._in_upload_library.get(asset.library_id)
        if in_upload_library is None:
            library = self._txn.get(LIBRARIES, asset.library_id.bytes)
            in_upload_library = library is not None and library.type == "UPLOAD"
            self._in_upload_library[asset.library_id] = in_upload_library
        return immich_checksum(asset, in_upload_library=in_upload_library)


def file_name(asset: Asset) -> str:
    """`originalFileName`: the name an upload was sent with, else the original's own name (undecodable bytes
    shown as U+FFFD)."""
    return asset.original_file_name or os.path.basename(asset.original_path).decode("utf-8", "replace")


def thumbhash_text(asset: Asset) -> str | None:
    """`thumbhash`: the raw ThumbHash in base64, None before the first render. Also the thumbnail's cache key:
    clients send it back as `?c=`."""
    return base64.b64encode(asset.thumbhash).decode() if asset.thumbhash else None


def mtime_datetime(mtime_ns: int) -> datetime:
    """The moment of an mtime, to the microsecond below it (exact integer arithmetic, no float rounding)."""
    return _EPOCH + timedelta(microseconds=mtime_ns // 1000)


def new_external_asset(
    library_id: uuid.UUID, owner_id: uuid.UUID, found: FoundFile, now: datetime, asset_id: uuid.UUID
) -> Asset:
    """A crawled file's new asset (§4.11): times from the mtime until metadata extraction replaces them."""
    taken = mtime_datetime(found.mtime_ns)
    return Asset(id=asset_id, owner_id=owner_id, library_id=library_id, type="VIDEO" if found.is_video else "IMAGE",
                 original_path=found.path, file_size=found.size, file_mtime_ns=found.mtime_ns,
                 sidecar_path=found.sidecar_path, sidecar_mtime_ns=found.sidecar_mtime_ns, file_created_at=taken,
                 local_date_time=taken, created_at=now, updated_at=now)  # fmt: skip


def encode_new_external(
    library_id: uuid.UUID, owner_id: uuid.UUID, found: list[FoundFile], now: datetime
) -> tuple[list[bytes], list[bytes]]:
    """New assets for crawled files, ready for `insert_new_external`: (raw ids, encoded records). A scan worker
    builds them, so the daemon's write transaction only stores bytes."""
    keys = new_raw_ids(len(found))
    encode = ASSETS.encode
    records = [encode(new_external_asset(library_id, owner_id, one, now, asset_id))
               for one, asset_id in zip(found, as_uuids(keys), strict=True)]  # fmt: skip
    return keys, records


def insert_new_external(
    txn: Txn, library: Library, found: list[FoundFile], keys: list[bytes], records: list[bytes]
) -> None:
    """`insert_many` for the records `encode_new_external` made for `library` (as stored now, with the same
    owner): the timeline and path entries come straight from the crawled files' fields."""
    txn.put_many(ASSETS, list(zip(keys, records, strict=True)), encoded=True)
    owner_key, library_key, visible = library.owner_id.bytes, library.id.bytes, _VISIBILITY_CODES["timeline"]
    txn.put_many(TIMELINE, sorted([
        (_TIMELINE_KEY.pack(owner_key, one.mtime_ns // 1000 + _TIME_OFFSET, key),
         _TIMELINE_VALUE.pack(_VIDEO if one.is_video else 0, visible, one.size))
        for one, key in zip(found, keys, strict=True)
    ]))  # fmt: skip
    txn.put_many(ASSET_BY_PATH, [
        (library_key + one.path,
         _path_value(key, one.size, one.mtime_ns, one.sidecar_path, one.sidecar_mtime_ns, False))
        for one, key in zip(found, keys, strict=True)
    ])  # fmt: skip
    videos = sum(1 for one in found if one.is_video)
    _add_tally(txn, library.id, len(found) - videos, videos, sum(one.size for one in found))


def get(txn: Txn, asset_id: uuid.UUID) -> Asset | None:
    return txn.get(ASSETS, asset_id.bytes)


def get_by_key(txn: Txn, key: bytes) -> Asset | None:
    """By the raw 16 bytes of the id (as stored in `asset_by_path` values)."""
    return txn.get(ASSETS, key)


def insert_many(txn: Txn, new: list[Asset], keys: list[bytes] | None = None) -> list[bytes]:
    """Store new, online assets (a scan's new files), one bulk put per table. `keys`: their raw ids, if the caller
    has them (else taken from the records). Returns the raw ids."""
    if keys is None:
        keys = [asset.id.bytes for asset in new]
    txn.put_many(ASSETS, list(zip(keys, new, strict=True)))
    timeline, paths = [], []
    owner = library = None
    for key, asset in zip(keys, new, strict=True):
        if asset.owner_id is not owner:  # a batch is usually one library's: convert its ids once
            owner, owner_key = asset.owner_id, asset.owner_id.bytes
        if asset.library_id is not library:
            library, library_key = asset.library_id, asset.library_id.bytes
        timeline.append((timeline_key(asset, owner_key, key), timeline_entry(asset)))
        paths.append((library_key + asset.original_path, path_entry(asset, key)))
    timeline.sort()  # capture times are not in path order: sorted, the bulk put walks the B-tree once
    txn.put_many(TIMELINE, timeline)
    txn.put_many(ASSET_BY_PATH, paths)
    add_to_tallies(txn, new)
    return keys


def update(txn: Txn, before: Asset, **changes: object) -> Asset:
    """Store `before` with `changes`, moving its path key and offline signature as needed."""
    after = msgspec.structs.replace(before, **changes)
    if _has_checksum_entry(txn, before) and (
        after.owner_id != before.owner_id or after.content_sha1 != before.content_sha1
    ):
        txn.delete(ASSET_BY_CHECKSUM, checksum_key(before.owner_id, before.content_sha1 or b""))
        if after.content_sha1 is not None:
            add_checksum(txn, after)
    old_timeline, new_timeline = timeline_key(before), timeline_key(after)
    if old_timeline != new_timeline:
        txn.delete(TIMELINE, old_timeline)
    txn.put(TIMELINE, new_timeline, timeline_entry(after))
    if after.original_path != before.original_path or after.library_id != before.library_id:
        txn.delete(ASSET_BY_PATH, path_key(before.library_id, before.original_path))
    txn.put(ASSET_BY_PATH, path_key(after.library_id, after.original_path), path_entry(after))
    if before.is_offline:
        txn.delete(OFFLINE_BY_SIGNATURE, signature_key(before))
    if after.is_offline:
        txn.put(OFFLINE_BY_SIGNATURE, signature_key(after), b"")
    _retally(txn, before, after)
    txn.put(ASSETS, after.id.bytes, after)
    return after


def remove(txn: Txn, asset: Asset) -> None:
    """Drop an asset's index entries, metadata, edits, album memberships and pending work. Files on disk are the
    caller's business: its derived files (`DerivedFiles.remove_all`, after the commit) and, for uploads only, its
    original; never originals of external libraries."""
    if _has_checksum_entry(txn, asset):
        txn.delete(ASSET_BY_CHECKSUM, checksum_key(asset.owner_id, asset.content_sha1 or b""))
    txn.delete(TIMELINE, timeline_key(asset))
    album_index.forget_asset(txn, asset.id)
    _retally(txn, asset, None)
    txn.delete(ASSETS, asset.id.bytes)
    txn.delete(EXIF, asset.id.bytes)
    txn.delete(ASSET_EDITS, asset.id.bytes)
    txn.delete(ASSET_BY_PATH, path_key(asset.library_id, asset.original_path))
    if asset.is_offline:
        txn.delete(OFFLINE_BY_SIGNATURE, signature_key(asset))
    job_queue.drop_all(txn, asset.id)


def of_library(txn: Txn, library_id: uuid.UUID) -> Iterator[tuple[bytes, PathEntry]]:
    """(path, entry) of every asset of the library, in path order."""
    prefix = library_id.bytes
    for key, value in txn.items(ASSET_BY_PATH, prefix):
        yield key[len(prefix) :], PathEntry.decode(value)
