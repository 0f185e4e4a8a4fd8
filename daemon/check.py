"""`filmroll check`: verify every cross-table invariant of the index (fsck).

`check_index` reads one consistent snapshot and returns a list of violations, each a sentence naming the table,
the key and what is wrong; an empty list means the index is consistent. It never writes. Tests call it after every
scenario that writes.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from typing import Any

import msgspec

from . import assets as asset_index
from . import job_queue
from .index import (
    ALBUM_ASSETS,
    ALBUM_BY_OWNER,
    ALBUMS,
    API_KEY_BY_SECRET,
    API_KEYS,
    ASSET_ALBUMS,
    ASSET_BY_CHECKSUM,
    ASSET_BY_PATH,
    ASSET_EDITS,
    ASSETS,
    EXIF,
    JOB_FAILURES,
    LIBRARIES,
    LIBRARY_TALLIES,
    META,
    OFFLINE_BY_SIGNATURE,
    SESSIONS,
    TIMELINE,
    USER_BY_EMAIL,
    USERS,
    Index,
    Table,
    Txn,
)
from .records import Asset
from .users import email_key


def _decoded(txn: Txn, table: Table[Any], problems: list[str]) -> dict[bytes, Any]:
    """Every entry of `table`, decoded; undecodable entries are reported and left out."""
    entries: dict[bytes, Any] = {}
    for key, raw in txn.raw_items(table):
        try:
            entries[key] = table.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            problems.append(f"{table.name}[{key.hex()}]: record does not decode ({error})")
    return entries


def _id_key_matches(table: Table[Any], entries: dict[bytes, Any], problems: list[str]) -> None:
    for key, record in entries.items():
        if key != record.id.bytes:
            problems.append(f"{table.name}[{key.hex()}]: stored under a key that is not its id {record.id}")


def check_index(index: Index) -> list[str]:
    problems: list[str] = []
    stored = index.stored_schema_version()
    if stored != index.schema_version:
        problems.append(f"meta: schema version is {stored}, expected {index.schema_version}")
    with index.read() as txn:
        _decoded(txn, META, problems)
        users = _decoded(txn, USERS, problems)
        by_email = _decoded(txn, USER_BY_EMAIL, problems)
        sessions = _decoded(txn, SESSIONS, problems)
        api_keys = _decoded(txn, API_KEYS, problems)
        by_secret = _decoded(txn, API_KEY_BY_SECRET, problems)
        libraries = _decoded(txn, LIBRARIES, problems)
        assets = _decoded(txn, ASSETS, problems)
        by_path = dict(txn.raw_items(ASSET_BY_PATH))
        offline_signatures = {key for key, _ in txn.raw_items(OFFLINE_BY_SIGNATURE)}
        per_asset = {queue: _decoded(txn, table, problems) for queue, table in job_queue.QUEUE_TABLES.items()}
        per_asset["job_failures"] = {
            key[:16]: value for key, value in _decoded(txn, JOB_FAILURES, problems).items()
        }
        per_asset["exif"] = _decoded(txn, EXIF, problems)
        per_asset["asset_edits"] = _decoded(txn, ASSET_EDITS, problems)
        timeline = dict(txn.raw_items(TIMELINE))
        by_checksum = dict(txn.raw_items(ASSET_BY_CHECKSUM))
        albums = _decoded(txn, ALBUMS, problems)
        album_by_owner = {key for key, _ in txn.raw_items(ALBUM_BY_OWNER)}
        album_assets = {key for key, _ in txn.raw_items(ALBUM_ASSETS)}
        asset_albums = {key for key, _ in txn.raw_items(ASSET_ALBUMS)}
        tallies = {}
        for key, value in txn.raw_items(LIBRARY_TALLIES):
            if len(key) == 16 and len(value) == 24:
                tallies[key] = asset_index.tally_of(txn, uuid.UUID(bytes=key))
            else:
                problems.append(f"library_tallies[{key.hex()}]: malformed entry ({len(key)}-byte key, "
                                f"{len(value)}-byte value)")  # fmt: skip

    for table, entries in (
        (USERS, users),
        (API_KEYS, api_keys),
        (LIBRARIES, libraries),
        (ASSETS, assets),
        (ALBUMS, albums),
    ):
        _id_key_matches(table, entries, problems)

    # users <-> user_by_email
    for key, user_id in by_email.items():
        user = users.get(user_id)
        if user is None:
            problems.append(
                f"user_by_email[{key.decode(errors='replace')}]: points to missing user {_uuid(user_id)}"
            )
        elif email_key(user.email) != key:
            problems.append(
                f"user_by_email[{key.decode(errors='replace')}]: user {user.id} has email {user.email!r}"
            )
    for user in users.values():
        if by_email.get(email_key(user.email)) != user.id.bytes:
            problems.append(f"users[{user.id}]: email {user.email!r} is missing from user_by_email")
    labels = Counter(u.storage_label for u in users.values() if u.storage_label and u.deleted_at is None)
    for label, count in labels.items():
        if count > 1:
            problems.append(f"users: storage label {label!r} is used by {count} users")

    # sessions and API keys belong to live users; secrets index both ways
    for key, session in sessions.items():
        owner = users.get(session.user_id.bytes)
        if owner is None or owner.deleted_at is not None:
            problems.append(
                f"sessions[{key.hex()[:12]}…]: belongs to missing or deleted user {session.user_id}"
            )
    for api_key in api_keys.values():
        owner = users.get(api_key.user_id.bytes)
        if owner is None or owner.deleted_at is not None:
            problems.append(f"api_keys[{api_key.id}]: belongs to missing or deleted user {api_key.user_id}")
        if by_secret.get(api_key.secret_hash) != api_key.id.bytes:
            problems.append(f"api_keys[{api_key.id}]: its secret is missing from api_key_by_secret")
    for digest, key_id in by_secret.items():
        api_key = api_keys.get(key_id)
        if api_key is None or api_key.secret_hash != digest:
            problems.append(
                f"api_key_by_secret[{digest.hex()[:12]}…]: points to missing API key {_uuid(key_id)}"
            )

    # libraries belong to users; every live user keeps an upload library
    live_upload_owners: set[bytes] = set()
    for library in libraries.values():
        if library.owner_id.bytes not in users:
            problems.append(f"libraries[{library.id}]: owner {library.owner_id} does not exist")
        if library.type == "UPLOAD" and library.deleted_at is None:
            live_upload_owners.add(library.owner_id.bytes)
        if library.type == "UPLOAD" and (library.import_paths or library.exclusion_patterns):
            problems.append(
                f"libraries[{library.id}]: an upload library has import paths or exclusion patterns"
            )
    for user in users.values():
        if user.deleted_at is None and user.id.bytes not in live_upload_owners:
            problems.append(f"users[{user.id}]: has no upload library")
    _check_assets(assets, libraries, by_path, offline_signatures, per_asset, problems)
    _check_owner_indexes(assets, libraries, timeline, by_checksum, problems)
    _check_albums(users, assets, albums, album_by_owner, album_assets, asset_albums, problems)
    _check_tallies(assets, tallies, problems)
    return problems


def _check_tallies(assets, tallies, problems: list[str]) -> None:
    """Each library's tally equals a count of its assets (none for a library without counted assets)."""
    with_assets: dict[uuid.UUID, list[Asset]] = defaultdict(list)
    for asset in assets.values():
        with_assets[asset.library_id].append(asset)
    expected: dict[bytes, asset_index.LibraryTally] = {}
    for library_id, members in with_assets.items():
        counted = [a for a in members if a.trashed_at is None]
        if counted:
            videos = sum(a.type == "VIDEO" for a in counted)
            expected[library_id.bytes] = asset_index.LibraryTally(
                photos=len(counted) - videos, videos=videos, usage=sum(a.file_size for a in counted))
    for key in expected.keys() | tallies.keys():
        if expected.get(key) != tallies.get(key):
            problems.append(f"library_tallies[{_uuid(key)}]: {tallies.get(key)}, but its assets count "
                            f"{expected.get(key)}")  # fmt: skip


def _check_owner_indexes(assets, libraries, timeline, by_checksum, problems: list[str]) -> None:
    """timeline has exactly one current entry per asset; asset_by_checksum points at the owner's upload-library
    asset with that content hash."""
    expected = {asset_index.timeline_key(a): asset_index.timeline_entry(a) for a in assets.values()}
    for key, value in expected.items():
        if timeline.get(key) != value:
            problems.append(f"assets[{_uuid(key[24:40])}]: its timeline entry is missing or stale")
    for key in timeline.keys() - expected.keys():
        problems.append(f"timeline[{key.hex()}]: no asset has this entry")
    for key, value in by_checksum.items():
        asset = assets.get(value)
        library = libraries.get(asset.library_id.bytes) if asset is not None else None
        if (
            asset is None
            or library is None
            or library.type != "UPLOAD"
            or asset_index.checksum_key(asset.owner_id, asset.content_sha1 or b"") != key
        ):
            problems.append(
                f"asset_by_checksum[{key.hex()}]: points to a missing, external or changed asset {_uuid(value)}"
            )


def _check_albums(
    users, assets, albums, album_by_owner, album_assets, asset_albums, problems: list[str]
) -> None:
    """Albums belong to users (both ways); memberships are mirrored and name existing assets of the owner; the
    thumbnail is a member."""
    for album in albums.values():
        if album.owner_id.bytes not in users:
            problems.append(f"albums[{album.id}]: owner {album.owner_id} does not exist")
        if album.owner_id.bytes + album.id.bytes not in album_by_owner:
            problems.append(f"albums[{album.id}]: missing from album_by_owner")
        thumbnail = album.thumbnail_asset_id
        if thumbnail is not None and album.id.bytes + thumbnail.bytes not in album_assets:
            problems.append(f"albums[{album.id}]: thumbnail {thumbnail} is not a member")
        if thumbnail is None and any(key.startswith(album.id.bytes) for key in album_assets):
            problems.append(f"albums[{album.id}]: has members but no thumbnail")
    for key in album_by_owner:
        album = albums.get(key[16:])
        if album is None or album.owner_id.bytes != key[:16]:
            problems.append(f"album_by_owner[{key.hex()}]: no such album of this owner")
    for key in album_assets:
        album, asset = albums.get(key[:16]), assets.get(key[16:])
        if album is None or asset is None:
            problems.append(f"album_assets[{key.hex()}]: album or asset is gone")
        elif asset.owner_id != album.owner_id:
            problems.append(f"album_assets[{key.hex()}]: asset {asset.id} is not the album owner's")
        if key[16:] + key[:16] not in asset_albums:
            problems.append(f"album_assets[{key.hex()}]: missing from asset_albums")
    for key in asset_albums:
        if key[16:] + key[:16] not in album_assets:
            problems.append(f"asset_albums[{key.hex()}]: missing from album_assets")


def _check_assets(assets, libraries, by_path, offline_signatures, per_asset, problems: list[str]) -> None:
    """assets <-> asset_by_path (with the compared fields), offline_by_signature, libraries; pending jobs,
    failures and metadata belong to existing assets."""
    for asset in assets.values():
        library = libraries.get(asset.library_id.bytes)
        if library is None:
            problems.append(f"assets[{asset.id}]: library {asset.library_id} does not exist")
        elif library.owner_id != asset.owner_id:
            problems.append(f"assets[{asset.id}]: owner {asset.owner_id} is not its library's owner")
        key = asset_index.path_key(asset.library_id, asset.original_path)
        if by_path.get(key) != asset_index.path_entry(asset):
            problems.append(
                f"assets[{asset.id}]: asset_by_path entry for {asset.original_path!r} is missing or stale"
            )
        if asset.is_offline != (asset_index.signature_key(asset) in offline_signatures):
            problems.append(
                f"assets[{asset.id}]: offline_by_signature disagrees with isOffline={asset.is_offline}"
            )
    for key, value in by_path.items():
        asset = assets.get(value[:16])
        if asset is None or asset_index.path_key(asset.library_id, asset.original_path) != key:
            problems.append(
                f"asset_by_path[{key[16:]!r}]: points to a missing or moved asset {_uuid(value[:16])}"
            )
    live_offline = {asset_index.signature_key(a) for a in assets.values() if a.is_offline}
    for key in offline_signatures - live_offline:
        problems.append(f"offline_by_signature[{key.hex()}]: no offline asset has this signature")
    for table_name, entries in per_asset.items():
        for key in entries:
            if key not in assets:
                problems.append(f"{table_name}: asset {_uuid(key)} is gone")


def _uuid(raw: bytes) -> str:
    try:
        return str(uuid.UUID(bytes=raw))
    except ValueError:
        return raw.hex()
