"""Deleting assets: the trash (`DELETE /api/assets`, `/api/trash/*`) and permanent deletion.

- Trashing sets `trashed_at`; nothing else changes. A trashed upload still counts as a duplicate (its
  `asset_by_checksum` entry stays until it is deleted for good) and still counts against its owner's quota.
- Permanent deletion (`delete_permanently`, also used by library deletion and user transfers) removes the index
  entries in one short write transaction per batch (`daemon.assets.remove`: metadata, edits, album memberships,
  pending work), decrements the owner's quota for upload-library assets, and only after the commit deletes the
  derived files and, **for upload libraries only**, the original and its `.xmp` sidecar, which filmroll owns.
  Originals of external libraries are never touched (`libraries.md` §7.3, §9.3).
- External assets cannot be deleted through the API (`libraries.md` §14.9): a request naming one is refused as a
  whole.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import trio

from . import assets as asset_index
from . import derived
from .access import Principal
from .asset_service import owned_assets
from .errors import InvalidInput
from .index import LIBRARIES, USERS, Index, Txn
from .paths import is_within, resolve
from .records import Asset, Library
from .timeutil import utc_now
from .xmp import sidecar_of

log = logging.getLogger(__name__)

DELETE_BATCH = 5000
EXTERNAL_MESSAGE = "Cannot delete external assets"


@dataclass
class Removed:
    """What one write transaction removed from the index, and the files to delete once it has committed."""

    asset_ids: list[uuid.UUID] = field(default_factory=list)
    owned_files: list[bytes] = field(default_factory=list)
    """Upload-library originals and their sidecars: filmroll's own files."""

    def extend(self, other: Removed) -> None:
        self.asset_ids.extend(other.asset_ids)
        self.owned_files.extend(other.owned_files)


def remove_assets(txn: Txn, assets: Iterable[Asset]) -> Removed:
    """Inside the caller's write transaction: drop each asset from the index (`daemon.assets.remove`) and, for
    upload-library assets, take its size off its owner's quota usage. Returns what to delete after the commit
    (`delete_files`). Has no effect outside the transaction, so `Index.write` may re-run it."""
    removed = Removed()
    libraries: dict[uuid.UUID, Library | None] = {}
    freed: dict[uuid.UUID, int] = {}
    for asset in assets:
        if asset.library_id not in libraries:
            libraries[asset.library_id] = txn.get(LIBRARIES, asset.library_id.bytes)
        library = libraries[asset.library_id]
        asset_index.remove(txn, asset)
        removed.asset_ids.append(asset.id)
        if library is not None and library.type == "UPLOAD":
            removed.owned_files.extend(owned_files_of(asset))
            freed[asset.owner_id] = freed.get(asset.owner_id, 0) + asset.file_size
    for owner_id, size in freed.items():
        owner = txn.get(USERS, owner_id.bytes)
        if owner is not None:
            usage = max(0, owner.quota_usage_in_bytes - size)
            txn.put(USERS, owner_id.bytes, msgspec.structs.replace(owner, quota_usage_in_bytes=usage))
    return removed


def owned_files_of(asset: Asset) -> list[bytes]:
    """An upload's original, `<original>.xmp`, and its recorded sidecar if that is another file."""
    files = [asset.original_path, sidecar_of(asset.original_path)]
    if asset.sidecar_path is not None and asset.sidecar_path not in files:
        files.append(asset.sidecar_path)
    return files


def delete_files(data_dir: str | os.PathLike[str], removed: Removed) -> None:
    """Delete the derived files of removed assets and the owned files (blocking: run it in a thread, after the
    commit). An owned file is deleted only when its folder lies inside the data directory, so a corrupt record
    can never make filmroll delete anything else; missing files are fine."""
    derived.remove_all(derived.derived_root(data_dir), removed.asset_ids)
    root = resolve(os.fspath(data_dir))
    for path in removed.owned_files:
        folder = resolve(os.path.dirname(path))
        if not is_within(folder, root):
            log.warning("not deleting %s: outside the data directory", os.fsdecode(path))
            continue
        try:
            os.unlink(os.path.join(folder, os.path.basename(path)))
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("could not delete %s: %s", os.fsdecode(path), error.strerror)


async def delete_files_after_commit(data_dir: str | os.PathLike[str], removed: Removed) -> None:
    """`delete_files` in a thread, shielded: once the index no longer names the files they must go, even when
    the caller is being cancelled (shutdown)."""
    if not removed.asset_ids and not removed.owned_files:
        return
    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(delete_files, data_dir, removed)


async def delete_permanently(
    index: Index,
    data_dir: str | os.PathLike[str],
    asset_ids: Iterable[uuid.UUID],
    *,
    still: Callable[[Asset], bool] = lambda asset: True,
) -> int:
    """Delete these assets for good, in batches of short write transactions, each followed by its file
    deletions in a thread (see the module docstring). Ids that no longer exist are skipped, as are assets for
    which `still` (checked inside the transaction) is false. No access checks: callers decide who may. Returns
    how many were deleted. For the trio thread of the daemon; `delete_permanently_blocking` is the same for
    synchronous callers (CLI commands)."""
    deleted = 0
    for batch in _batches(asset_ids):
        removed = index.write(functools.partial(_remove_batch, batch=batch, still=still))
        deleted += len(removed.asset_ids)
        await delete_files_after_commit(data_dir, removed)
        await trio.lowlevel.checkpoint()
    return deleted


def delete_permanently_blocking(
    index: Index,
    data_dir: str | os.PathLike[str],
    asset_ids: Iterable[uuid.UUID],
    *,
    still: Callable[[Asset], bool] = lambda asset: True,
) -> int:
    """`delete_permanently` for synchronous callers (a CLI command): the same batches, files deleted in this
    thread right after each commit."""
    deleted = 0
    for batch in _batches(asset_ids):
        removed = index.write(functools.partial(_remove_batch, batch=batch, still=still))
        deleted += len(removed.asset_ids)
        delete_files(data_dir, removed)
    return deleted


def _batches(asset_ids: Iterable[uuid.UUID]) -> Iterator[list[uuid.UUID]]:
    pending = list(dict.fromkeys(asset_ids))
    for start in range(0, len(pending), DELETE_BATCH):
        yield pending[start : start + DELETE_BATCH]


def _remove_batch(txn: Txn, *, batch: list[uuid.UUID], still: Callable[[Asset], bool]) -> Removed:
    found = (asset_index.get(txn, asset_id) for asset_id in batch)
    return remove_assets(txn, [asset for asset in found if asset is not None and still(asset)])


class TrashService:
    """The trash, for the API: every method checks that the caller owns what it names (`asset.delete`)."""

    def __init__(self, index: Index, data_dir: str | Path):
        self.index = index
        self.data_dir = str(data_dir)

    async def delete(self, principal: Principal, asset_ids: list[uuid.UUID], *, force: bool = False) -> None:
        """`DELETE /api/assets`: to the trash, or with `force` for good. Refused as a whole (nothing changes)
        when any asset is not the caller's, or belongs to an external library."""
        owned = owned_assets(self.index, principal, asset_ids, "asset.delete")
        with self.index.read() as txn:
            kinds = {lib_id: txn.get(LIBRARIES, lib_id.bytes) for lib_id in {a.library_id for a in owned}}
        if any(library is None or library.type != "UPLOAD" for library in kinds.values()):
            raise InvalidInput(EXTERNAL_MESSAGE)
        if force:
            owner = principal.user.id  # re-checked per batch: a transfer may run between batches
            await delete_permanently(
                self.index, self.data_dir, [asset.id for asset in owned], still=lambda a: a.owner_id == owner
            )
            return
        now = utc_now()

        def work(txn: Txn) -> None:
            for asset_id in dict.fromkeys(asset.id for asset in owned):
                asset = asset_index.get(txn, asset_id)
                if asset is not None and asset.trashed_at is None:
                    asset_index.update(txn, asset, trashed_at=now, updated_at=now)

        self.index.write(work)

    def restore(self, principal: Principal, asset_ids: list[uuid.UUID]) -> int:
        """`POST /api/trash/restore/assets`: take these assets out of the trash; returns how many were in it."""
        owned = owned_assets(self.index, principal, asset_ids, "asset.delete")
        return self._restore([asset.id for asset in owned])

    def restore_all(self, principal: Principal) -> int:
        """`POST /api/trash/restore`: everything of the caller's in the trash."""
        return self._restore(self.trashed_ids(principal.user.id))

    async def empty(self, principal: Principal) -> int:
        """`POST /api/trash/empty`: delete everything in the caller's trash for good; returns how many."""
        doomed = self.trashed_ids(principal.user.id)
        owner = principal.user.id
        return await delete_permanently(
            self.index,
            self.data_dir,
            doomed,
            still=lambda asset: asset.trashed_at is not None and asset.owner_id == owner,
        )

    def trashed_ids(self, owner_id: uuid.UUID) -> list[uuid.UUID]:
        with self.index.read() as txn:
            return [entry.asset_id for entry in asset_index.timeline_of(txn, owner_id) if entry.is_trashed]

    def _restore(self, asset_ids: list[uuid.UUID]) -> int:
        now = utc_now()
        restored = 0
        pending = list(dict.fromkeys(asset_ids))
        for start in range(0, len(pending), DELETE_BATCH):

            def work(txn: Txn, batch: list[uuid.UUID] = pending[start : start + DELETE_BATCH]) -> int:
                count = 0
                for asset_id in batch:
                    asset = asset_index.get(txn, asset_id)
                    if asset is not None and asset.trashed_at is not None:
                        asset_index.update(txn, asset, trashed_at=None, updated_at=now)
                        count += 1
                return count

            restored += self.index.write(work)
        return restored
