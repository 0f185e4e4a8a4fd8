"""Asset records in the index: the one place that keeps `assets` and its secondary tables in step.

Every change of an asset goes through these functions, inside the caller's write transaction, so
`asset_by_path` and `offline_by_signature` always agree with `assets` (`check_index` verifies it).

`asset_by_path` values carry what a rescan compares — id, size, mtime, a sidecar fingerprint and the offline flag
(`PathEntry`, 41 bytes) — so a scan of an unchanged library never reads the asset records themselves.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from . import job_queue
from .index import ASSET_BY_PATH, ASSETS, EXIF, OFFLINE_BY_SIGNATURE, Txn
from .records import Asset

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


def compared_fields(
    size: int, mtime_ns: int, sidecar_path: bytes | None, sidecar_mtime_ns: int | None
) -> bytes:
    """Bytes 16-40 of a path entry: what a rescan compares with the file it finds."""
    return (
        size.to_bytes(8, "big")
        + (mtime_ns + _MTIME_OFFSET).to_bytes(8, "big")
        + sidecar_fingerprint(sidecar_path, sidecar_mtime_ns).to_bytes(8, "big")
    )


def path_entry(asset: Asset, asset_key: bytes | None = None) -> bytes:
    return (
        (asset_key or asset.id.bytes)
        + compared_fields(asset.file_size, asset.file_mtime_ns, asset.sidecar_path, asset.sidecar_mtime_ns)
        + bytes([_OFFLINE if asset.is_offline else 0])
    )


def path_key(library_id: uuid.UUID, path: bytes) -> bytes:
    return library_id.bytes + path


def signature_prefix(library_id: uuid.UUID, size: int, mtime_ns: int) -> bytes:
    return library_id.bytes + size.to_bytes(8, "big") + (mtime_ns + _MTIME_OFFSET).to_bytes(8, "big")


def signature_key(asset: Asset) -> bytes:
    return signature_prefix(asset.library_id, asset.file_size, asset.file_mtime_ns) + asset.id.bytes


def mtime_datetime(mtime_ns: int) -> datetime:
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC)


def get(txn: Txn, asset_id: uuid.UUID) -> Asset | None:
    return txn.get(ASSETS, asset_id.bytes)


def get_by_key(txn: Txn, key: bytes) -> Asset | None:
    """By the raw 16 bytes of the id (as stored in `asset_by_path` values)."""
    return txn.get(ASSETS, key)


def insert_many(txn: Txn, new: list[Asset]) -> list[bytes]:
    """Store new, online assets (a scan's new files), one bulk put per table. Returns their raw ids."""
    keys = [asset.id.bytes for asset in new]
    txn.put_many(ASSETS, list(zip(keys, new, strict=True)))
    library_keys: dict[uuid.UUID, bytes] = {}
    txn.put_many(ASSET_BY_PATH, [
        (library_keys.setdefault(a.library_id, a.library_id.bytes) + a.original_path, path_entry(a, key))
        for key, a in zip(keys, new, strict=True)
    ])  # fmt: skip
    return keys


def update(txn: Txn, before: Asset, **changes: object) -> Asset:
    """Store `before` with `changes`, moving its path key and offline signature as needed."""
    after = msgspec.structs.replace(before, **changes)
    if after.original_path != before.original_path or after.library_id != before.library_id:
        txn.delete(ASSET_BY_PATH, path_key(before.library_id, before.original_path))
    txn.put(ASSET_BY_PATH, path_key(after.library_id, after.original_path), path_entry(after))
    if before.is_offline:
        txn.delete(OFFLINE_BY_SIGNATURE, signature_key(before))
    if after.is_offline:
        txn.put(OFFLINE_BY_SIGNATURE, signature_key(after), b"")
    txn.put(ASSETS, after.id.bytes, after)
    return after


def remove(txn: Txn, asset: Asset) -> None:
    """Drop an asset's index entries, metadata and pending work. Files on disk are the caller's business: its
    derived files (`DerivedFiles.remove_all`, after the commit), never originals of external libraries."""
    txn.delete(ASSETS, asset.id.bytes)
    txn.delete(EXIF, asset.id.bytes)
    txn.delete(ASSET_BY_PATH, path_key(asset.library_id, asset.original_path))
    if asset.is_offline:
        txn.delete(OFFLINE_BY_SIGNATURE, signature_key(asset))
    job_queue.drop_all(txn, asset.id)


def of_library(txn: Txn, library_id: uuid.UUID) -> Iterator[tuple[bytes, PathEntry]]:
    """(path, entry) of every asset of the library, in path order."""
    prefix = library_id.bytes
    for key, value in txn.items(ASSET_BY_PATH, prefix):
        yield key[len(prefix) :], PathEntry.decode(value)
