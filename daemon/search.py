"""`POST /api/search/metadata` (api-compat §9): the caller's assets, filtered, ordered by `fileCreatedAt`, in pages.

The walk follows the per-owner `timeline` (local capture time order) and filters on its flags first, reading an
asset record only when the flags pass. The order asked for is `fileCreatedAt`, which differs from the local time
by the capture's UTC offset, at most `WINDOW`: a small heap re-orders the walk, and an asset leaves it once no
asset still to come can precede it. So a page costs what precedes it, not the whole library. (Should a record
ever break the bound, its asset comes out a little out of order; nothing is lost.)

Like Immich, `total` and `count` are the number of items on this page, and `nextPage` is the next page number
as a string while more follow.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from . import album_index
from . import assets as asset_index
from .access import Principal
from .asset_edits import MAX_OFFSET_MINUTES
from .index import EXIF, Index, Txn
from .records import Asset, ExifInfo
from .timeline import (
    EntryFilter,
    entry_of,
    local_micros_of,
    micros,
    raw_entries,
    raw_entries_descending,
)

WINDOW = (MAX_OFFSET_MINUTES + 60) * 60 * 1_000_000
"""How far `fileCreatedAt` may lie from the local capture time, in µs (the widest UTC offset, and a margin)."""


@dataclass(frozen=True)
class MetadataQuery:
    page: int = 1
    size: int = 250
    order: Literal["asc", "desc"] = "desc"
    album_ids: tuple[uuid.UUID, ...] = ()
    asset_id: uuid.UUID | None = None
    library_id: uuid.UUID | None = None
    type: Literal["IMAGE", "VIDEO"] | None = None
    is_favorite: bool | None = None
    is_offline: bool | None = None
    visibility: str | None = None
    with_deleted: bool = False
    original_path: str | None = None
    original_file_name: str | None = None
    checksum: bytes | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    nothing: bool = False
    """True when a filter filmroll cannot satisfy was given (people, tags): no results."""
    with_exif: bool = False

    def entry_filter(self) -> EntryFilter:
        shown = frozenset({self.visibility}) if self.visibility else frozenset({"timeline", "archive"})
        return EntryFilter(
            trashed=None if self.with_deleted else False,
            visibilities=shown,
            is_favorite=self.is_favorite,
            is_offline=self.is_offline,
            type=self.type,
        )


@dataclass
class Found:
    asset: Asset
    checksum: bytes
    """Immich's `checksum` (`daemon.assets.Checksums`), read in the search's transaction."""
    exif: ExifInfo | None = None


@dataclass
class SearchPage:
    items: list[Found] = field(default_factory=list)
    next_page: int | None = None


class _AssetFilter:
    """The filters that need the asset record (and, for checksums, its library's type: `checksums`, which the
    page's items reuse)."""

    def __init__(self, txn: Txn, query: MetadataQuery):
        self.query = query
        self.checksums = asset_index.Checksums(txn)
        self.path = query.original_path.casefold() if query.original_path else None
        self.name = query.original_file_name.casefold() if query.original_file_name else None
        self.after = micros(query.taken_after) if query.taken_after else None
        self.before = micros(query.taken_before) if query.taken_before else None

    def passes(self, asset: Asset) -> bool:
        query = self.query
        if query.library_id is not None and asset.library_id != query.library_id:
            return False
        if self.path is not None and self.path not in _text(asset.original_path).casefold():
            return False
        if self.name is not None:
            name = asset_index.file_name(asset)
            if self.name not in name.casefold():
                return False
        taken = micros(asset.file_created_at)
        if (self.after is not None and taken < self.after) or (
            self.before is not None and taken > self.before
        ):
            return False
        return query.checksum is None or self.checksums.of(asset) == query.checksum


def _text(path: bytes) -> str:
    return path.decode("utf-8", "replace")


class SearchService:
    def __init__(self, index: Index):
        self.index = index

    def search_metadata(self, principal: Principal, query: MetadataQuery) -> SearchPage:
        """One page of the caller's assets matching `query` (only the caller's: albums of others match nothing)."""
        if query.nothing:
            return SearchPage()
        skip = (query.page - 1) * query.size
        if skip + query.size >= sys.maxsize:  # far past any library, and past what `islice` can count
            return SearchPage()
        with self.index.read() as txn:
            asset_filter = _AssetFilter(txn, query)
            ordered = self._ordered(txn, principal, query, asset_filter)
            window = list(itertools.islice(ordered, skip, skip + query.size + 1))
            page = SearchPage(
                items=[Found(asset, asset_filter.checksums.of(asset)) for asset in window[: query.size]],
                next_page=query.page + 1 if len(window) > query.size else None,
            )
            if query.with_exif:
                for item in page.items:
                    item.exif = txn.get(EXIF, item.asset.id.bytes)
        return page

    def _ordered(
        self, txn: Txn, principal: Principal, query: MetadataQuery, asset_filter: _AssetFilter
    ) -> Iterator[Asset]:
        entry_filter = query.entry_filter()
        descending = query.order == "desc"
        owner = principal.user.id
        sign = -1 if descending else 1
        if query.asset_id is not None or query.album_ids:
            chosen = self._chosen(txn, owner, query)
            passing = [
                asset
                for asset in chosen
                if entry_filter.accepts(entry_of(asset)[1]) and asset_filter.passes(asset)
            ]
            passing.sort(key=lambda asset: (sign * micros(asset.file_created_at), asset.id.bytes))
            yield from passing
            return
        walk = raw_entries_descending(txn, owner) if descending else raw_entries(txn, owner)
        heap: list[tuple[int, bytes, Asset]] = []
        for key, value in walk:
            local = local_micros_of(key)
            # nothing still to come can precede the heap's top once it lies beyond the window (see the docstring)
            while heap and (
                sign * heap[0][0] > local + WINDOW if descending else heap[0][0] < local - WINDOW
            ):
                yield heapq.heappop(heap)[2]
            if not entry_filter.accepts(value):
                continue
            asset = asset_index.get_by_key(txn, key[24:40])
            if asset is None or not asset_filter.passes(asset):
                continue
            heapq.heappush(heap, (sign * micros(asset.file_created_at), asset.id.bytes, asset))
        while heap:
            yield heapq.heappop(heap)[2]

    @staticmethod
    def _chosen(txn: Txn, owner: uuid.UUID, query: MetadataQuery) -> list[Asset]:
        """The candidates of an `id` or `albumIds` search: that asset, or those in every album named."""
        if query.asset_id is not None:
            ids = [query.asset_id]
        else:
            albums = [album_index.get(txn, album_id) for album_id in query.album_ids]
            if any(album is None or album.owner_id != owner for album in albums):
                return []
            first, *others = query.album_ids
            ids = [
                asset_id
                for asset_id in album_index.member_ids(txn, first)
                if all(album_index.contains(txn, other, asset_id) for other in others)
            ]
        found = (asset_index.get(txn, asset_id) for asset_id in ids)
        return [asset for asset in found if asset is not None and asset.owner_id == owner]
