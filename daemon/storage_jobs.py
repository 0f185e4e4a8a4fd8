"""`storageTemplateMigration`: place upload-library originals where the storage template says (`media.md` §5).

An upload lands at `<data>/upload/<user>/…/<id>.<ext>`. Once its metadata is known, the metadata job queues this
work, and the original (with its `.xmp` sidecar) moves to `<data>/library/<label or user id>/<rendered template>`;
`PUT /api/jobs/storageTemplateMigration {start}` queues every upload asset again, so a changed template or a
changed date re-places them. With the template disabled, originals go back to their landing path.

Ordering (§5.7): the file gets its new name first — a hard link, or across filesystems a copy, fsynced and
verified — then one write transaction points the asset at it (LMDB commits are durable), and only then is the old
name removed. At every moment the index points at a file that exists; a move interrupted before its commit is
retried and adopts its own link. External assets are never moved: their path is their identity.
File work runs in threads (it is I/O, not CPU); one job at a time, so two moves never race for one name.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec
import trio

from . import album_index, job_queue
from . import assets as asset_index
from .config import Settings
from .index import EXIF, LIBRARIES, USERS, Index, Txn
from .media_queue import Failure, Group, Outcomes, Workers
from .records import Asset, PendingJob
from .storage_moves import (
    DestinationTaken,
    MoveFailed,
    choose_destination,
    journal_folder,
    move_file,
    move_sidecar,
    remove_source,
)
from .storage_template import (
    TemplateValues,
    legacy_upload_path,
    parse,
    relative_destination,
    user_root,
)
from .timeutil import utc_now
from .xmp import sidecar_of

log = logging.getLogger(__name__)

CHOOSE_ATTEMPTS = 5
"""How often a destination is chosen again when another file takes it first (`DestinationTaken`)."""


@dataclass(frozen=True)
class _Plan:
    asset: Asset
    root: Path
    relative: str


class StorageTemplateJobs:
    queue = job_queue.STORAGE_TEMPLATE
    group_size = 1

    def __init__(self, index: Index, settings: Settings):
        self.index = index
        self.data_dir = settings.data_dir
        self.settings = settings.storage_template
        self.template = parse(self.settings.template)
        self._upload_prefix = os.fsencode(os.path.join(settings.data_dir, ""))
        self.journal = journal_folder(settings.data_dir)  # a copy killed mid-way: swept as the daemon starts

    def wanted(self, asset: Asset, *, force: bool) -> bool:
        """Upload-library assets (their originals live in the data directory, where no external import path
        may point) whose metadata is known. `start` re-places all of them, forced or not (§5.9)."""
        return asset.original_path.startswith(self._upload_prefix) and asset.metadata_extracted_at is not None

    async def run(self, workers: Workers, group: Group) -> Outcomes:
        outcomes: Outcomes = {}
        for asset_id, job in group:
            if job.leftovers:  # a move committed, then the daemon died before removing the old names
                job = await self._remove_leftovers(asset_id, job)
            with self.index.read() as txn:
                plan = self._plan(txn, asset_id)
            if plan is None:  # gone, external, or not extracted yet (the metadata job queues it again)
                self.index.write(lambda txn, a=asset_id, j=job: job_queue.finish(txn, self.queue, a, j))
                outcomes[asset_id] = None
            else:
                outcomes[asset_id] = await self._place(plan, job)
        return outcomes

    def _plan(self, txn: Txn, asset_id) -> _Plan | None:
        asset = asset_index.get(txn, asset_id)
        if asset is None or asset.metadata_extracted_at is None:
            return None
        library = txn.get(LIBRARIES, asset.library_id.bytes)
        owner = txn.get(USERS, asset.owner_id.bytes)
        if library is None or library.type != "UPLOAD" or owner is None:
            return None
        name = asset_index.file_name(asset)
        extension = os.path.splitext(os.fsdecode(asset.original_path))[1]
        if not self.settings.enabled:
            landing = legacy_upload_path(self.data_dir, owner.id, asset.id, extension)
            return _Plan(asset, landing.parent, landing.name)
        exif = txn.get(EXIF, asset.id.bytes)
        values = TemplateValues(
            original_file_name=name,
            asset_id=asset.id,
            asset_type=asset.type,
            album_name=_oldest_album_name(txn, asset) if self.template.uses_album else None,
            captured_at=asset.file_created_at,
            time_zone=exif.time_zone if exif is not None else None,
        )
        relative = relative_destination(self.template, values, extension)
        return _Plan(asset, user_root(self.data_dir, owner.storage_label, owner.id), relative)

    async def _place(self, plan: _Plan, job: PendingJob) -> Failure | None:
        asset = plan.asset
        current = Path(os.fsdecode(asset.original_path))
        for _ in range(CHOOSE_ATTEMPTS):
            destination = await trio.to_thread.run_sync(
                lambda: choose_destination(plan.root, plan.relative, current, asset_id=asset.id)
            )
            if destination is None or destination == current:  # confined away (warned), or already in place
                self.index.write(functools.partial(self._store, asset=asset, job=job, destination=None))
                return None
            try:
                copied, sidecar_copied = await trio.to_thread.run_sync(
                    self._move, asset, current, destination
                )
            except DestinationTaken:
                continue
            except MoveFailed as error:
                return Failure(str(error), final=False)
            old_sidecar = Path(os.fsdecode(asset.sidecar_path)) if sidecar_copied else None
            leftovers = [os.fsencode(path) for path in (current if copied else None, old_sidecar) if path]
            stored, left = self.index.write(
                functools.partial(
                    self._store,
                    asset=asset,
                    job=job,
                    destination=destination,
                    has_sidecar=sidecar_copied is not None,
                    leftovers=leftovers,
                )
            )
            with trio.CancelScope(shield=True):  # committed: the leftovers must go, even at shutdown
                await trio.to_thread.run_sync(_clean_up, stored, current, destination, copied, old_sidecar)
                if left is not None:
                    self.index.write(functools.partial(self._leftovers_gone, asset_id=asset.id, left=left))
            return None
        return Failure(f"{current}: every destination under {plan.root} was taken while moving", final=False)

    def _move(self, asset: Asset, current: Path, destination: Path) -> tuple[bool, bool | None]:
        verify = asset.content_sha1 if self.settings.hash_verification_enabled else None
        copied = move_file(current, destination, verify_sha1=verify, journal=self.journal)
        if asset.sidecar_path is None:
            return copied, None
        try:
            sidecar_copied = move_sidecar(
                Path(os.fsdecode(asset.sidecar_path)),
                destination,
                verify=self.settings.hash_verification_enabled,
                journal=self.journal,
            )
        except MoveFailed:
            # Put the original back so the asset and its sidecar stay together where the index says they are.
            if copied:
                remove_source(destination)
            else:
                move_file(destination, current, verify_sha1=None, journal=self.journal)
            raise
        return copied, sidecar_copied

    def _store(
        self,
        txn: Txn,
        *,
        asset: Asset,
        job: PendingJob,
        destination: Path | None,
        has_sidecar: bool = False,
        leftovers: list[bytes] | None = None,
    ) -> tuple[bool, PendingJob | None]:
        """Point the asset at its new place (None: it stays). (False, None) when the asset was deleted or moved by
        someone else meanwhile (the caller then removes the copy it made). With `leftovers` (the old names the
        caller removes after this commit), the job stays, holding them, until `_leftovers_gone`: returned is
        that entry (None: the job is finished)."""
        before = asset
        asset = asset_index.get(txn, before.id)
        if asset is None or asset.original_path != before.original_path:
            job_queue.finish(txn, self.queue, before.id, job)
            return False, None
        changes: dict[str, object] = {"storage_placed_at": utc_now()}
        if destination is not None:
            changes["original_path"] = os.fsencode(destination)
            changes["updated_at"] = changes["storage_placed_at"]
            if asset.sidecar_path is not None:  # a sidecar that vanished meanwhile is forgotten
                changes["sidecar_path"] = os.fsencode(sidecar_of(destination)) if has_sidecar else None
                if not has_sidecar:
                    changes["sidecar_mtime_ns"] = None
        asset_index.update(txn, asset, **changes)
        if not leftovers:
            job_queue.finish(txn, self.queue, asset.id, job)
            return True, None
        table = job_queue.QUEUE_TABLES[self.queue]
        entry = txn.get(table, asset.id.bytes) or job  # (re-queued meanwhile: that entry holds them)
        left = msgspec.structs.replace(entry, leftovers=[*entry.leftovers, *leftovers])
        txn.put(table, asset.id.bytes, left)
        return True, left

    def _leftovers_gone(self, txn: Txn, asset_id: uuid.UUID, left: PendingJob) -> None:
        """The old names are removed: the job is done, unless it was queued again meanwhile (then it runs again,
        without them)."""
        table = job_queue.QUEUE_TABLES[self.queue]
        entry = txn.get(table, asset_id.bytes)
        if entry == left:
            job_queue.finish(txn, self.queue, asset_id, left)
        elif entry is not None and entry.leftovers:
            txn.put(table, asset_id.bytes, msgspec.structs.replace(entry, leftovers=[]))

    async def _remove_leftovers(self, asset_id: uuid.UUID, job: PendingJob) -> PendingJob:
        """Remove the old names a killed move left (never the asset's current original or sidecar, never
        anything outside the data directory); the job then goes on without them."""
        with self.index.read() as txn:
            asset = asset_index.get(txn, asset_id)
        keep = set() if asset is None else {asset.original_path, asset.sidecar_path}
        doomed = [Path(os.fsdecode(path)) for path in job.leftovers
                  if path not in keep and path.startswith(self._upload_prefix)]  # fmt: skip

        def remove() -> None:
            for path in doomed:
                try:
                    remove_source(path)
                except MoveFailed as error:
                    log.warning("storage template: %s", error)

        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(remove)
        cleared = msgspec.structs.replace(job, leftovers=[])

        def forget(txn: Txn) -> PendingJob:
            table = job_queue.QUEUE_TABLES[self.queue]
            entry = txn.get(table, asset_id.bytes)
            if entry == job:
                txn.put(table, asset_id.bytes, cleared)
                return cleared
            return entry if entry is not None else cleared

        return self.index.write(forget)


def _clean_up(stored: bool, current: Path, destination: Path, copied: bool, old_sidecar: Path | None) -> None:
    """After the commit: the old names go (`copied`: the source still has its old name); if the asset vanished
    meanwhile (deleted while moving), the new names go instead."""
    try:
        if not stored:
            for path in (destination, sidecar_of(destination)):
                remove_source(path)
            return
        if copied:
            remove_source(current)
        if old_sidecar is not None:
            remove_source(old_sidecar)
    except MoveFailed as error:
        log.warning("storage template: %s", error)


def _oldest_album_name(txn: Txn, asset: Asset) -> str | None:
    albums = [album_index.get(txn, album_id) for album_id in album_index.albums_of_asset(txn, asset.id)]
    named = [album for album in albums if album is not None]
    return min(named, key=lambda album: album.created_at).name if named else None
