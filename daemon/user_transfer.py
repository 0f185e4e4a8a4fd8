"""Moving one user's data to another (the Immich FAQ's manual SQL, made a feature): albums, external libraries
and assets change owner in one write transaction, so the index is never half-transferred.

- External libraries move whole, with their assets; their files stay where they are. If the new owner's external
  path does not cover an import path, the next scan takes those files offline (never deleted), as it would for any
  owner whose external path changed; the report names such libraries.
- Upload-library assets move into the new owner's oldest upload library, and their originals are queued for the
  storage template, which re-places them under the new owner's folder. The upload quota usage moves with them.
- An upload asset whose content the new owner already has is **skipped**: it stays with the old owner, and every
  album that held it (all of them move) holds the new owner's copy instead. The report lists each skipped asset.
- Libraries being deleted, and their assets, stay behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from . import album_index, albums, job_queue, libraries
from . import assets as asset_index
from .access import Principal
from .errors import InvalidInput
from .index import LIBRARIES, USERS, Index, Txn
from .paths import is_within, resolve
from .records import Library, User
from .timeutil import utc_now


@dataclass(frozen=True)
class SkippedAsset:
    asset_id: uuid.UUID
    file_name: str
    duplicate_of: uuid.UUID
    """The new owner's asset with the same content; albums now hold this one."""


@dataclass
class TransferReport:
    albums: int = 0
    libraries: int = 0
    assets: int = 0
    skipped: list[SkippedAsset] = field(default_factory=list)
    uncovered_libraries: list[str] = field(default_factory=list)
    """Moved external libraries with an import path outside the new owner's external path (named)."""


def transfer(index: Index, source_id: uuid.UUID, target_id: uuid.UUID) -> TransferReport:
    """Move everything `source_id` owns to `target_id`. Raises InvalidInput for unknown, deleted or identical
    users. Callers make sure no library scan runs meanwhile (a scan creates assets for its library's owner)."""
    if source_id == target_id:
        raise InvalidInput("Cannot transfer a user's data to themselves")
    report, moved = index.write(lambda txn: _transfer(txn, source_id, target_id))
    with index.read() as txn:
        target = txn.get(USERS, target_id.bytes)
    # resolving paths may block on a hung network mount: never inside the write transaction
    report.uncovered_libraries = [
        lib.name for lib in moved if target is not None and not _covered(lib, target)
    ]
    return report


def _live_user(txn: Txn, user_id: uuid.UUID) -> User:
    user = txn.get(USERS, user_id.bytes)
    if user is None or user.deleted_at is not None:
        raise InvalidInput(f"User {user_id} does not exist or is being deleted")
    return user


def _transfer(txn: Txn, source_id: uuid.UUID, target_id: uuid.UUID) -> tuple[TransferReport, list[Library]]:
    source, target = _live_user(txn, source_id), _live_user(txn, target_id)
    now = utc_now()
    report = TransferReport()
    owned = {lib.id: lib for lib in libraries.libraries_of(txn, source_id, include_deleted=True)}
    target_upload = libraries.oldest_upload_library(txn, target_id)
    assert target_upload is not None, "every live user has an upload library (check_index)"
    moved_bytes = 0
    for entry in list(asset_index.timeline_of(txn, source_id)):
        asset = asset_index.get(txn, entry.asset_id)
        library = owned.get(asset.library_id) if asset is not None else None
        if asset is None or library is None:
            continue
        if library.deleted_at is not None:  # stays behind, about to be deleted: out of the albums that move
            for album_id in list(album_index.albums_of_asset(txn, asset.id)):
                album_index.remove(txn, album_id, asset.id)
            continue
        if library.type == "EXTERNAL":
            asset_index.update(txn, asset, owner_id=target_id)
            report.assets += 1
            continue
        duplicate = (
            asset_index.by_checksum(txn, target_id, asset.content_sha1) if asset.content_sha1 else None
        )
        if duplicate is not None:
            album_index.replace_member(txn, asset.id, duplicate.id, now)
            report.skipped.append(SkippedAsset(asset.id, asset_index.file_name(asset), duplicate.id))
            continue
        asset_index.update(txn, asset, owner_id=target_id, library_id=target_upload.id, updated_at=now)
        job_queue.enqueue(txn, job_queue.STORAGE_TEMPLATE, asset.id, now, force=True)
        moved_bytes += asset.file_size
        report.assets += 1
    moved: list[Library] = []
    for library in owned.values():
        if library.type == "EXTERNAL" and library.deleted_at is None:
            txn.put(LIBRARIES, library.id.bytes, msgspec.structs.replace(library, owner_id=target_id))
            moved.append(library)
    report.libraries = len(moved)
    report.albums = len(albums.transfer(txn, source_id, target_id, now))
    if moved_bytes:
        txn.put(USERS, source.id.bytes, msgspec.structs.replace(
            source, quota_usage_in_bytes=max(0, source.quota_usage_in_bytes - moved_bytes)))  # fmt: skip
        txn.put(USERS, target.id.bytes, msgspec.structs.replace(
            target, quota_usage_in_bytes=target.quota_usage_in_bytes + moved_bytes))  # fmt: skip
    return report, moved


def _covered(library: Library, owner: User) -> bool:
    if owner.external_path is None:
        return not library.import_paths
    root = resolve(owner.external_path)
    return all(is_within(resolve(path), root) for path in library.import_paths)


class TransferService:
    """The admin operation over `transfer`, for the HTTP API and the CLI."""

    def __init__(self, index: Index, on_libraries_change: Callable[[], None] = lambda: None):
        self.index = index
        self.on_libraries_change = on_libraries_change  # the watchers follow the libraries' new owner

    def transfer(
        self, principal: Principal | None, source_id: uuid.UUID, target_id: uuid.UUID
    ) -> TransferReport:
        """`principal` None: the machine's administrator at the command line."""
        if principal is not None:
            principal.require_admin()
        report = transfer(self.index, source_id, target_id)
        if report.libraries:
            self.on_libraries_change()
        return report
