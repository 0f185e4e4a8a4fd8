"""Albums in the index: the one place that keeps `albums`, `album_by_owner`, `album_assets` and `asset_albums` in
step, inside the caller's write transaction.

Membership is stored both ways (album + asset and asset + album), so "what is in this album" and "which albums hold
this asset" are both prefix walks. An album's thumbnail is always one of its members, or None.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import msgspec

from .index import ALBUM_ASSETS, ALBUM_BY_OWNER, ALBUMS, ASSET_ALBUMS, Txn
from .records import Album


def get(txn: Txn, album_id: uuid.UUID) -> Album | None:
    return txn.get(ALBUMS, album_id.bytes)


def of_owner(txn: Txn, owner_id: uuid.UUID) -> Iterator[Album]:
    """The owner's albums, in id order."""
    for key, _ in txn.items(ALBUM_BY_OWNER, owner_id.bytes):
        album = txn.get(ALBUMS, key[16:])
        if album is not None:
            yield album


def put(txn: Txn, album: Album) -> None:
    """Store a new or changed album (its owner may change: a user transfer)."""
    before = txn.get(ALBUMS, album.id.bytes)
    if before is not None and before.owner_id != album.owner_id:
        txn.delete(ALBUM_BY_OWNER, before.owner_id.bytes + album.id.bytes)
    txn.put(ALBUMS, album.id.bytes, album)
    txn.put(ALBUM_BY_OWNER, album.owner_id.bytes + album.id.bytes, b"")


def delete(txn: Txn, album: Album) -> None:
    """Drop the album and its memberships; the assets stay."""
    for key, _ in list(txn.items(ALBUM_ASSETS, album.id.bytes)):
        txn.delete(ALBUM_ASSETS, key)
        txn.delete(ASSET_ALBUMS, key[16:32] + album.id.bytes)
    txn.delete(ALBUM_BY_OWNER, album.owner_id.bytes + album.id.bytes)
    txn.delete(ALBUMS, album.id.bytes)


def member_ids(txn: Txn, album_id: uuid.UUID) -> Iterator[uuid.UUID]:
    """The album's asset ids, in id order."""
    for key, _ in txn.items(ALBUM_ASSETS, album_id.bytes):
        yield uuid.UUID(bytes=key[16:32])


def member_keys(txn: Txn, album_id: uuid.UUID) -> list[bytes]:
    """The album's asset ids as raw 16-byte keys, in id order: for reading every member in one batch of look-ups
    (`Cursor.getmulti`) without making a `UUID` of each."""
    prefix = album_id.bytes
    keys = []
    with txn.cursor(ALBUM_ASSETS) as cursor:
        if cursor.set_range(prefix):
            for key in cursor.iternext(keys=True, values=False):
                if key[:16] != prefix:
                    break
                keys.append(key[16:32])
    return keys


def contains(txn: Txn, album_id: uuid.UUID, asset_id: uuid.UUID) -> bool:
    return txn.get(ALBUM_ASSETS, album_id.bytes + asset_id.bytes) is not None


def albums_of_asset(txn: Txn, asset_id: uuid.UUID) -> Iterator[uuid.UUID]:
    """Ids of the albums that hold the asset, in id order."""
    for key, _ in txn.items(ASSET_ALBUMS, asset_id.bytes):
        yield uuid.UUID(bytes=key[16:32])


def add(txn: Txn, album_id: uuid.UUID, asset_id: uuid.UUID, now: datetime) -> bool:
    """Add a member to an existing album; False if it already was one. The first member added to an album
    without a thumbnail becomes its thumbnail. The caller checks that the asset exists and may be added."""
    album = get(txn, album_id)
    if album is None:
        raise KeyError(f"album {album_id} does not exist")
    if contains(txn, album_id, asset_id):
        return False
    added_at = int(now.timestamp() * 1_000_000).to_bytes(8, "big", signed=True)
    txn.put(ALBUM_ASSETS, album_id.bytes + asset_id.bytes, added_at)
    txn.put(ASSET_ALBUMS, asset_id.bytes + album_id.bytes, b"")
    if album.thumbnail_asset_id is None:
        txn.put(ALBUMS, album_id.bytes, msgspec.structs.replace(album, thumbnail_asset_id=asset_id))
    return True


def remove(txn: Txn, album_id: uuid.UUID, asset_id: uuid.UUID) -> bool:
    """Remove a member; False if it was not one. Removing the thumbnail picks the first remaining member."""
    if not contains(txn, album_id, asset_id):
        return False
    txn.delete(ALBUM_ASSETS, album_id.bytes + asset_id.bytes)
    txn.delete(ASSET_ALBUMS, asset_id.bytes + album_id.bytes)
    album = get(txn, album_id)
    if album is not None and album.thumbnail_asset_id == asset_id:
        successor = next(member_ids(txn, album_id), None)
        txn.put(ALBUMS, album_id.bytes, msgspec.structs.replace(album, thumbnail_asset_id=successor))
    return True


def forget_asset(txn: Txn, asset_id: uuid.UUID) -> None:
    """An asset leaves the index: take it out of every album (called by `daemon.assets.remove`)."""
    for album_id in list(albums_of_asset(txn, asset_id)):
        remove(txn, album_id, asset_id)


def replace_member(txn: Txn, asset_id: uuid.UUID, replacement: uuid.UUID, now: datetime) -> None:
    """Every album holding `asset_id` holds `replacement` instead (a user transfer folding a duplicate)."""
    for album_id in list(albums_of_asset(txn, asset_id)):
        add(txn, album_id, replacement, now)
        remove(txn, album_id, asset_id)
