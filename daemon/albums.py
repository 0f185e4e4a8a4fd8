"""Albums: what an album contains, who may see and change it, and Immich's answers for each outcome.

An album belongs to one user and holds only that user's assets (filmroll does not share albums: `albumUsers` is
always empty). Membership lives in `daemon.album_index`, which keeps both directions and the thumbnail in step;
this module adds the rules:

- access: albums and their members are personal (`Principal.require_owner`); anyone else gets Immich's
  `Not found or no <permission> access`, the same answer as for an unknown id;
- what counts: trashed members stay members (restoring brings them back) but are neither counted nor listed;
  offline and external assets are members like any other;
- every change of membership or of the album's own fields moves `updated_at`;
- re-adding a member is harmless (`duplicate`), never an error.

Reads are one read transaction per call; writes one write transaction, computed in full before anything is
written, so a failing request changes nothing. Adapters (HTTP, the FUSE view, CLI commands) get `AlbumView`s:
the album, its owner, the derived numbers and, when asked for, its visible members in the album's order.
Functions taking a `Txn` are for callers that compose album work into their own transaction (a FUSE tree built
in one snapshot, a user transfer moving albums with their assets).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

import msgspec

from . import album_index
from .access import Principal
from .errors import InvalidInput, NotFoundOrNoAccess
from .ids import new_id
from .index import ASSETS, USERS, Index, Table, Txn
from .records import Album, AlbumOrder, Asset, User
from .timeutil import utc_now

BulkIdError = Literal["duplicate", "no_permission", "not_found"]
"""Why one id of a bulk album request failed. Immich also knows `unknown` and `validation`; filmroll never sends
`validation` (aioimmich rejects it) and has no `unknown` outcome."""

SHARING_NOT_SUPPORTED = "Album sharing is not supported"
INVALID_THUMBNAIL = "Invalid album thumbnail"


@dataclass(frozen=True, slots=True)
class AlbumView:
    """An album as adapters show it. `asset_count`, the dates and `assets` cover members that are not trashed;
    the dates are None exactly when there is no such member. `assets` is None unless it was asked for; then it
    holds those members ordered by `fileCreatedAt` in the album's `order` (ties by id)."""

    album: Album
    owner: User
    asset_count: int
    start_date: datetime | None
    """Earliest `file_created_at` of the counted members."""
    end_date: datetime | None
    """Latest `file_created_at` of the counted members."""
    last_modified_asset_timestamp: datetime | None
    """Latest `updated_at` of the counted members."""
    assets: list[Asset] | None = None


@dataclass(frozen=True, slots=True)
class BulkIdResult:
    """One id of `PUT|DELETE /api/albums/{id}/assets`: `error` is None exactly when `success`."""

    id: uuid.UUID
    success: bool
    error: BulkIdError | None = None


@dataclass(frozen=True, slots=True)
class AlbumsAddResult:
    """`PUT /api/albums/assets` (Immich's AlbumsAddAssetsResponseDto): one verdict for the whole request."""

    success: bool
    error: BulkIdError | None = None


@dataclass(frozen=True, slots=True)
class AlbumStatistics:
    owned: int
    shared: int
    not_shared: int


class _MemberFacts(msgspec.Struct, array_like=True):
    """The leading fields of an `Asset` record, decoded only as far as a summary (and `_is_own_asset`) needs them:
    a list of albums reads every member, so the id, path, type and the later fields are skipped undecoded.
    Records only ever grow at the end, so this prefix stays valid; a test compares it with `Asset`'s fields."""

    id: msgspec.Raw
    owner_id: uuid.UUID
    library_id: msgspec.Raw
    type: msgspec.Raw
    original_path: msgspec.Raw
    file_size: msgspec.Raw
    file_mtime_ns: msgspec.Raw
    file_created_at: datetime
    local_date_time: msgspec.Raw
    created_at: msgspec.Raw
    updated_at: datetime
    is_offline: msgspec.Raw
    trashed_at: datetime | None


_ASSET_FACTS = Table("assets", _MemberFacts)  # the `assets` table, read through the narrower record

Member = TypeVar("Member", _MemberFacts, Asset)


def _instant(value: datetime) -> float:
    """Sort key for stored datetimes (aware UTC; a naive one is taken as UTC rather than failing a sort)."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


def _earliest_and_latest(values: list[datetime]) -> tuple[datetime, datetime]:
    """The first earliest and the first latest value by instant (`_instant`). Stored datetimes are aware (msgpack
    timestamps decode as UTC) and compare directly, which is several times faster than a key function; a naive
    one among them makes that comparison raise, and the key function decides instead. Both give the same answer."""
    try:
        return min(values), max(values)
    except TypeError:
        return min(values, key=_instant), max(values, key=_instant)


def _view(
    album: Album, owner: User, counted: Sequence[_MemberFacts | Asset], assets: list[Asset] | None
) -> AlbumView:
    if not counted:
        return AlbumView(album, owner, 0, None, None, None, assets)
    start_date, end_date = _earliest_and_latest([member.file_created_at for member in counted])
    _, last_modified = _earliest_and_latest([member.updated_at for member in counted])
    return AlbumView(
        album=album,
        owner=owner,
        asset_count=len(counted),
        start_date=start_date,
        end_date=end_date,
        last_modified_asset_timestamp=last_modified,
        assets=assets,
    )


def _owner(txn: Txn, album: Album) -> User:
    owner = txn.get(USERS, album.owner_id.bytes)
    if owner is None:  # `check_index` reports it; a view cannot be built without one
        raise LookupError(f"album {album.id}: owner {album.owner_id} does not exist")
    return owner


def _members(txn: Txn, album: Album, table: Table[Member]) -> list[Member]:
    """The records of the album's members through `table` (`assets`, or a narrower view of it), in id order, read
    in one batch of look-ups; a membership whose asset record is missing is skipped (`check_index` reports it)."""
    with txn.cursor(table) as cursor:
        return [table.decode(value) for _, value in cursor.getmulti(album_index.member_keys(txn, album.id))]


def summarize(txn: Txn, album: Album, owner: User | None = None) -> AlbumView:
    """The album's view without its assets (members read only as far as counts and dates need)."""
    counted = [facts for facts in _members(txn, album, _ASSET_FACTS) if facts.trashed_at is None]
    return _view(album, owner or _owner(txn, album), counted, None)


def visible_members(txn: Txn, album: Album) -> list[Asset]:
    """The album's members that are not trashed, by `file_created_at` in the album's order (ties by id)."""
    members = [asset for asset in _members(txn, album, ASSETS) if asset.trashed_at is None]
    descending = album.order == "desc"
    members.sort(key=lambda a: (_instant(a.file_created_at), a.id.bytes), reverse=descending)
    return members


def with_assets(txn: Txn, album: Album, owner: User | None = None) -> AlbumView:
    """The album's view with its visible members."""
    members = visible_members(txn, album)
    return _view(album, owner or _owner(txn, album), members, members)


def _touch(txn: Txn, album_id: uuid.UUID, now: datetime) -> Album:
    """Re-read the album (a membership change may have moved its thumbnail) and move `updated_at`."""
    album = album_index.get(txn, album_id)
    assert album is not None
    touched = msgspec.structs.replace(album, updated_at=now)
    album_index.put(txn, touched)
    return touched


def transfer(txn: Txn, from_owner: uuid.UUID, to_owner: uuid.UUID, now: datetime) -> list[uuid.UUID]:
    """Give every album of `from_owner` to `to_owner`, inside the caller's write transaction; returns their ids.

    Members must end up the new owner's: the caller moves (or folds, with `album_index.replace_member`) the
    assets in the same transaction, or `check_index` reports the memberships."""
    moved = list(album_index.of_owner(txn, from_owner))
    for album in moved:
        album_index.put(txn, msgspec.structs.replace(album, owner_id=to_owner, updated_at=now))
    return [album.id for album in moved]


def _by_creation(albums: Iterable[Album | None]) -> list[Album]:
    """Creation order (ids only approximate it: two albums made in one millisecond sort at random)."""
    return sorted(
        (album for album in albums if album is not None), key=lambda album: (album.created_at, album.id)
    )


class AlbumService:
    """Albums for adapters. Methods taking a `Principal` enforce access and raise `NotFoundOrNoAccess` (or
    `InvalidInput`) with Immich's messages; the others (`albums_of`, `album`) are for trusted in-process readers
    such as the FUSE view, which decide for themselves whose albums they show."""

    def __init__(self, index: Index):
        self.index = index

    # -- reads ---------------------------------------------------------------------------------------------

    def list(
        self,
        principal: Principal,
        *,
        asset_id: uuid.UUID | None = None,
        name: str | None = None,
        shared: bool | None = None,
    ) -> list[AlbumView]:
        """The caller's albums in creation order, without assets.

        `asset_id`: the albums holding that asset, which must be the caller's (else `NotFoundOrNoAccess` for
        `asset.read`); the other filters are then ignored, as in Immich. `name`: exact name. `shared=True`:
        none (filmroll shares nothing)."""
        with self.index.read() as txn:
            owner = txn.get(USERS, principal.user.id.bytes) or principal.user
            if asset_id is not None:
                if not self._is_own_asset(txn, principal, asset_id):
                    raise NotFoundOrNoAccess("asset.read")
                holding = (
                    album_index.get(txn, album_id) for album_id in album_index.albums_of_asset(txn, asset_id)
                )
                return [summarize(txn, album, owner) for album in _by_creation(holding)]
            if shared:
                return []
            albums = _by_creation(album_index.of_owner(txn, principal.user.id))
            return [summarize(txn, album, owner) for album in albums if name is None or album.name == name]

    def get(self, principal: Principal, album_id: uuid.UUID, *, include_assets: bool = True) -> AlbumView:
        """One of the caller's albums, with its visible members unless `include_assets` is False.
        Raises `NotFoundOrNoAccess('album.read')`."""
        with self.index.read() as txn:
            album = self._owned(txn, principal, album_id, "album.read")
            return with_assets(txn, album) if include_assets else summarize(txn, album)

    def statistics(self, principal: Principal) -> AlbumStatistics:
        with self.index.read() as txn:
            owned = sum(1 for _ in album_index.of_owner(txn, principal.user.id))
        return AlbumStatistics(owned=owned, shared=0, not_shared=owned)

    def albums_of(self, owner_id: uuid.UUID) -> list[AlbumView]:
        """Every album of `owner_id` (no access check), without assets, in one snapshot."""
        with self.index.read() as txn:
            owner = txn.get(USERS, owner_id.bytes)
            if owner is None:
                return []
            return [summarize(txn, album, owner) for album in album_index.of_owner(txn, owner_id)]

    def album(self, album_id: uuid.UUID, *, include_assets: bool = True) -> AlbumView | None:
        """One album by id (no access check), None if there is none."""
        with self.index.read() as txn:
            album = album_index.get(txn, album_id)
            if album is None:
                return None
            return with_assets(txn, album) if include_assets else summarize(txn, album)

    # -- writes --------------------------------------------------------------------------------------------

    def create(
        self,
        principal: Principal,
        *,
        name: str,
        description: str = "",
        asset_ids: Sequence[uuid.UUID] = (),
        album_users: Sequence[object] = (),
    ) -> AlbumView:
        """A new album of the caller's, holding `asset_ids` (the first becomes the thumbnail).

        Raises `InvalidInput('Album sharing is not supported')` for any `album_users`, and
        `NotFoundOrNoAccess('asset.share')` if any asset is not the caller's; then nothing is created."""
        if album_users:
            raise InvalidInput(SHARING_NOT_SUPPORTED)
        now = utc_now()
        album_id = new_id()

        def work(txn: Txn) -> AlbumView:
            if not all(self._is_own_asset(txn, principal, asset_id) for asset_id in asset_ids):
                raise NotFoundOrNoAccess("asset.share")
            album = Album(
                id=album_id,
                owner_id=principal.user.id,
                name=name,
                description=description,
                created_at=now,
                updated_at=now,
            )
            album_index.put(txn, album)
            for asset_id in asset_ids:
                album_index.add(txn, album_id, asset_id, now)
            return summarize(txn, album_index.get(txn, album_id) or album)

        return self.index.write(work)

    def update(
        self,
        principal: Principal,
        album_id: uuid.UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        thumbnail_asset_id: uuid.UUID | None = None,
        is_activity_enabled: bool | None = None,
        order: AlbumOrder | None = None,
    ) -> AlbumView:
        """Change the given fields (None: unchanged). The thumbnail must be a member, else
        `InvalidInput('Invalid album thumbnail')`. Raises `NotFoundOrNoAccess('album.update')`."""
        changes: dict[str, object] = {
            field: value
            for field, value in (
                ("name", name),
                ("description", description),
                ("thumbnail_asset_id", thumbnail_asset_id),
                ("is_activity_enabled", is_activity_enabled),
                ("order", order),
            )
            if value is not None
        }
        now = utc_now()

        def work(txn: Txn) -> AlbumView:
            album = self._owned(txn, principal, album_id, "album.update")
            if thumbnail_asset_id is not None and not album_index.contains(txn, album_id, thumbnail_asset_id):
                raise InvalidInput(INVALID_THUMBNAIL)
            if changes:
                album = msgspec.structs.replace(album, **changes, updated_at=now)
                album_index.put(txn, album)
            return summarize(txn, album)

        return self.index.write(work)

    def delete(self, principal: Principal, album_id: uuid.UUID) -> None:
        """Delete the album and its memberships; the assets stay. Raises `NotFoundOrNoAccess('album.delete')`."""

        def work(txn: Txn) -> None:
            album_index.delete(txn, self._owned(txn, principal, album_id, "album.delete"))

        self.index.write(work)

    def add_assets(
        self, principal: Principal, album_id: uuid.UUID, asset_ids: Sequence[uuid.UUID]
    ) -> list[BulkIdResult]:
        """Add assets, one result per id in request order: `duplicate` for a member (also an id repeated in the
        request), `no_permission` for an asset that is not the caller's or does not exist. The album is checked
        first: `NotFoundOrNoAccess('albumAsset.create')` for the whole request."""
        now = utc_now()

        def work(txn: Txn) -> list[BulkIdResult]:
            self._owned(txn, principal, album_id, "albumAsset.create")
            results = []
            for asset_id in asset_ids:
                if album_index.contains(txn, album_id, asset_id):
                    results.append(BulkIdResult(asset_id, False, "duplicate"))
                elif not self._is_own_asset(txn, principal, asset_id):
                    results.append(BulkIdResult(asset_id, False, "no_permission"))
                else:
                    album_index.add(txn, album_id, asset_id, now)
                    results.append(BulkIdResult(asset_id, True))
            if any(result.success for result in results):
                _touch(txn, album_id, now)
            return results

        return self.index.write(work)

    def remove_assets(
        self, principal: Principal, album_id: uuid.UUID, asset_ids: Sequence[uuid.UUID]
    ) -> list[BulkIdResult]:
        """Remove members, one result per id in request order: `not_found` for an id that is not (or, repeated,
        no longer) a member. Removing the thumbnail moves it to the first remaining member, or None. The album is
        checked first: `NotFoundOrNoAccess('albumAsset.delete')` for the whole request."""
        now = utc_now()

        def work(txn: Txn) -> list[BulkIdResult]:
            self._owned(txn, principal, album_id, "albumAsset.delete")
            results = [
                BulkIdResult(asset_id, True)
                if album_index.remove(txn, album_id, asset_id)
                else BulkIdResult(asset_id, False, "not_found")
                for asset_id in asset_ids
            ]
            if any(result.success for result in results):
                _touch(txn, album_id, now)
            return results

        return self.index.write(work)

    def add_assets_to_albums(
        self, principal: Principal, album_ids: Sequence[uuid.UUID], asset_ids: Sequence[uuid.UUID]
    ) -> AlbumsAddResult:
        """Add every asset to every album (Immich's `PUT /api/albums/assets`): albums and assets the caller may
        not use are skipped. `no_permission` when none of the albums, or none of the assets, may be used;
        `duplicate` when every usable asset already was in every usable album; otherwise success."""
        now = utc_now()

        def work(txn: Txn) -> AlbumsAddResult:
            albums = [
                album_id
                for album_id in dict.fromkeys(album_ids)
                if (album := album_index.get(txn, album_id)) is not None
                and album.owner_id == principal.user.id
            ]
            if not albums:
                return AlbumsAddResult(False, "no_permission")
            assets = [a for a in dict.fromkeys(asset_ids) if self._is_own_asset(txn, principal, a)]
            if not assets:
                return AlbumsAddResult(False, "no_permission")
            added = False
            for album_id in albums:
                changed = [album_index.add(txn, album_id, asset_id, now) for asset_id in assets]
                if any(changed):
                    _touch(txn, album_id, now)
                    added = True
            return AlbumsAddResult(True) if added else AlbumsAddResult(False, "duplicate")

        return self.index.write(work)

    # -- helpers -------------------------------------------------------------------------------------------

    @staticmethod
    def _owned(txn: Txn, principal: Principal, album_id: uuid.UUID, permission: str) -> Album:
        album = album_index.get(txn, album_id)
        if album is None:
            raise NotFoundOrNoAccess(permission)
        principal.require_owner(album.owner_id, permission)
        return album

    @staticmethod
    def _is_own_asset(txn: Txn, principal: Principal, asset_id: uuid.UUID) -> bool:
        facts = txn.get(_ASSET_FACTS, asset_id.bytes)
        return facts is not None and facts.owner_id == principal.user.id
