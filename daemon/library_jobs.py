"""The `library` queue: scans, "remove offline files" and library deletions, run in the daemon in `LANES` lanes,
never two at once for one library: a scan stuck on a hung network mount holds one lane while other libraries go on.

- Requests are merged: a pending scan of a library absorbs later ones (the strongest mode wins), so a request never
  fails because a scan is running (§5.8); it waits behind it. The watcher's targeted scans ("watch") merge their
  paths; a pending full scan that refreshes modified files makes them unnecessary.
- Deletions are durable through the library record itself (`deleted_at`): at startup, and in the nightly job, every
  library still marked deleted is finished (§9.5). Pending scans live in memory: a restart drops them, and the
  nightly job rescans every library anyway.
- Work is done in batches of short write transactions; external originals and sidecars are never touched (upload
  libraries' originals, which filmroll owns, are deleted with their assets: `daemon.trash`).
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Container

import trio

from . import assets as asset_index
from . import metrics, trash
from .crawl import ScopeEntry
from .errors import FilmrollError, InvalidInput
from .index import ASSET_BY_PATH, LIBRARIES, USERS, Index, Txn
from .job_queue import QueueCounts
from .locks import library_lock
from .records import Library, User
from .scan import NO_EXTERNAL_PATH, LibraryScan, ScanMode, ScanSummary

log = logging.getLogger(__name__)

LANES = 2
"""Library jobs that run at once (each scan has a worker process: one per core)."""
REMOVE_BATCH = 5000
MAX_SCOPE = 20_000  # watched paths waiting for one library beyond which a full (modified) scan is cheaper


class LibraryJobQueue:
    """Owns the pending library work; `run()` is the worker task (started in the daemon's nursery)."""

    def __init__(self, index: Index, data_dir: str):
        self.index = index
        self.data_dir = data_dir
        self._pending: OrderedDict[tuple[str, uuid.UUID], ScanMode | set[ScopeEntry] | None] = OrderedDict()
        self._active: dict[uuid.UUID, str] = {}  # library -> the kind of job running for it
        self._wakeup = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self.completed = 0
        self.failed = 0
        self.paused = False
        self._resumed = trio.Event()
        self._renames: dict[uuid.UUID, dict[bytes, bytes]] = {}  # per library: new path -> old path
        self.last_summaries: dict[uuid.UUID, ScanSummary] = {}
        self._running: dict[uuid.UUID, tuple[str, Library, LibraryScan | None]] = {}
        """What the lanes are doing now (kind, library, its scan), by library: for `describe_active` (STATUS=)."""
        self.on_activity: Callable[[], None] = lambda: None
        """Called when `describe_active` changes (a job starts or ends): `serve` refreshes the status with it."""

    # -- requests (from any task on the trio thread) -------------------------------------------------------

    def _request(self, kind: str, library_id: uuid.UUID, mode: ScanMode | None = None) -> None:
        key = (kind, library_id)
        if key in self._pending and mode is not None:
            current = self._pending[key]
            if current is not None and current.strength >= mode.strength:
                return
        self._pending[key] = mode
        self._wake()

    def _wake(self) -> None:
        """Work is waiting: the queue is no longer idle, and its worker runs."""
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._wakeup.set()

    def request_scan(self, library_id: uuid.UUID, mode: ScanMode) -> None:
        self._request("scan", library_id, mode)
        if mode.strength >= ScanMode.MODIFIED.strength:
            self._pending.pop(("watch", library_id), None)

    def request_paths(self, library_id: uuid.UUID, entries: list[ScopeEntry]) -> None:
        """A targeted scan (refreshing modified files) of these paths, merged with any waiting for the library."""
        full = self._pending.get(("scan", library_id))
        if isinstance(full, ScanMode) and full.strength >= ScanMode.MODIFIED.strength:
            return
        waiting = self._pending.get(("watch", library_id))
        scope = waiting if isinstance(waiting, set) else set()
        scope.update(entries)
        if len(scope) > MAX_SCOPE:
            self._pending.pop(("watch", library_id), None)
            self.request_scan(library_id, ScanMode.MODIFIED)
            return
        self._pending[("watch", library_id)] = scope
        self._wake()

    def note_renames(self, library_id: uuid.UUID, renames: dict[bytes, bytes]) -> None:
        """Renames the watcher saw (new path -> old path), for the library's next targeted scan: they are moves even
        before the content hash is known."""
        noted = self._renames.setdefault(library_id, {})
        noted.update(renames)
        if len(noted) > MAX_SCOPE:
            noted.clear()

    def start(self, *, force: bool = False) -> None:
        """`PUT /api/jobs/library {command:'start'}` (§12.3): the nightly job now, unless the queue is busy."""
        if self.is_active:
            raise InvalidInput("Job is already running")
        self.request_nightly(force=force)

    def start_sidecar_discovery(self, *, force: bool = False) -> None:
        """`PUT /api/jobs/sidecar {command:'start'}`: sidecars are discovered by scans (a sidecar's path and mtime
        are part of what a modified-files scan compares, and a change refreshes the asset's metadata), so this
        scans every external library for modified files (`force`: re-reads every file), unless the queue is
        busy."""
        if self.is_active:
            raise InvalidInput("Job is already running")
        self.request_external_scans(ScanMode.ALL if force else ScanMode.MODIFIED)

    def request_nightly(self, *, force: bool = False) -> None:
        """§12.2: finish libraries stuck in deletion, then scan every external library (modified files, or
        everything with `force`)."""
        self.resume_deletions()
        self.request_external_scans(ScanMode.ALL if force else ScanMode.MODIFIED)

    def request_external_scans(self, mode: ScanMode) -> None:
        """Scan every external library. A library whose owner has no external path is skipped with a warning."""
        with self.index.read() as txn:
            libraries = [
                lib for lib in txn.values(LIBRARIES) if lib.type == "EXTERNAL" and lib.deleted_at is None
            ]
            owners = {lib.owner_id: txn.get(USERS, lib.owner_id.bytes) for lib in libraries}
        for library in libraries:
            owner = owners[library.owner_id]
            if owner is None or owner.external_path is None:
                log.warning("library %s (%s): %s", library.name, library.id, NO_EXTERNAL_PATH)
                continue
            self.request_scan(library.id, mode)

    def request_remove_offline(self, library_id: uuid.UUID) -> None:
        self._request("remove-offline", library_id)

    def request_delete(self, library_id: uuid.UUID) -> None:
        self._request("delete", library_id)

    def resume_deletions(self) -> None:
        """Queue the deletion of every library marked deleted (at start, after a user's deletion, nightly)."""
        with self.index.read() as txn:
            doomed = [library.id for library in txn.values(LIBRARIES) if library.deleted_at is not None]
        for library_id in doomed:
            self.request_delete(library_id)

    def pause(self) -> None:
        """Start nothing new (a running job finishes); requests keep queueing."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()
        self._resumed = trio.Event()

    def empty(self) -> None:
        """Drop every waiting request (durable deletions are picked up again by the nightly job and at start)."""
        self._pending.clear()
        if not self._active:
            self._idle.set()

    def clear_failed(self) -> None:
        self.failed = 0

    # -- status -------------------------------------------------------------------------------------------

    def counts(self) -> QueueCounts:
        return QueueCounts(
            active=len(self._active),
            completed=self.completed,
            failed=self.failed,
            waiting=len(self._pending),
            paused=len(self._pending) if self.paused else 0,
        )

    @property
    def is_active(self) -> bool:
        return bool(self._active) or bool(self._pending)

    def describe_active(self, library_ids: Container[uuid.UUID] | None = None) -> str | None:
        """What runs now, in a few words (`scanning library Photos: 12,345 files, 40%`; several joined by `; `), or
        None when idle. The percentage compares with the files the library's previous scan (in this process)
        crawled. With `library_ids`, only work on those libraries is described (a user sees their own scans, not
        others')."""
        described = [
            self._describe(kind, library, scan)
            for kind, library, scan in self._running.values()
            if library_ids is None or library.id in library_ids
        ]
        return "; ".join(described) if described else None

    def _describe(self, kind: str, library: Library, scan: LibraryScan | None) -> str:
        if scan is None:
            return f"{kind} library {library.name}"
        crawled = scan.summary.crawled
        text = f"scanning library {library.name}: {crawled:,} files"
        if scan.scope is not None:
            return f"{text} ({len(scan.scope):,} changed paths)"
        previous = self.last_summaries.get(library.id)
        if previous is not None and previous.crawled:
            text += f", {min(99, crawled * 100 // previous.crawled)}%"
        return text

    def waiting_for(self, library_ids: Container[uuid.UUID]) -> int:
        """How many requests wait for these libraries."""
        return sum(1 for _, library_id in self._pending if library_id in library_ids)

    async def wait_idle(self) -> None:
        """Return once nothing is running or waiting."""
        while self.is_active:
            await self._idle.wait()

    # -- the worker ---------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.resume_deletions()
        task_status.started()
        async with trio.open_nursery() as lanes:
            while True:
                if self.paused:
                    await self._resumed.wait()
                    continue
                job = self._take_runnable()
                if job is None:
                    if not self._pending and not self._active:
                        self._idle.set()
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                    continue
                lanes.start_soon(self._lane, *job)

    def _take_runnable(self) -> tuple[str, uuid.UUID, ScanMode | set[ScopeEntry] | None] | None:
        """The oldest request whose library has nothing running, if a lane is free; it is now running."""
        if len(self._active) >= LANES:
            return None
        for kind, library_id in self._pending:
            if library_id not in self._active:
                mode = self._pending.pop((kind, library_id))
                self._active[library_id] = kind
                return kind, library_id, mode
        return None

    async def _lane(self, kind: str, library_id: uuid.UUID, mode: ScanMode | set[ScopeEntry] | None) -> None:
        try:
            await self._execute(kind, library_id, mode)
            self.completed += 1
        except FilmrollError as error:
            self.failed += 1
            log.warning("library %s: %s failed: %s", library_id, kind, error.message)
        except Exception:
            self.failed += 1
            log.exception("library %s: %s failed", library_id, kind)
        finally:
            del self._active[library_id]
            self._wakeup.set()  # a lane is free (or the queue is idle)

    async def _execute(
        self, kind: str, library_id: uuid.UUID, mode: ScanMode | set[ScopeEntry] | None
    ) -> None:
        async with library_lock(self.data_dir, library_id):
            with self.index.read() as txn:  # read after locking: a CLI command may have just changed it
                library = txn.get(LIBRARIES, library_id.bytes)
                owner = None if library is None else txn.get(USERS, library.owner_id.bytes)
            if library is None:
                return
            if kind == "delete":
                await self.delete_library(library_id)
                return
            if library.deleted_at is not None or owner is None:
                return  # §5.9: a library being deleted is never scanned
            await self._run(kind, library, owner, mode)

    async def _run(
        self, kind: str, library: Library, owner: User, mode: ScanMode | set[ScopeEntry] | None
    ) -> None:
        self._running[library.id] = (kind, library, None)
        self.on_activity()
        try:
            with metrics.LIBRARY_JOB_SECONDS.labels(kind).time():
                await self._run_kind(kind, library, owner, mode)
        finally:
            self._running.pop(library.id, None)
            self.on_activity()

    async def _run_kind(
        self, kind: str, library: Library, owner: User, mode: ScanMode | set[ScopeEntry] | None
    ) -> None:
        library_id = library.id
        if kind == "scan" and isinstance(mode, ScanMode | None):
            scan = LibraryScan(self.index, library, owner, data_dir=self.data_dir, mode=mode or ScanMode.NEW)
            self._running[library_id] = (kind, library, scan)
            summary = await scan.run()
            self.last_summaries[library_id] = summary
            log.info("scanned library %s (%s): %s", library.name, library_id, summary.as_dict())
        elif kind == "watch" and isinstance(mode, set):
            if owner.external_path is None:
                return
            scope = sorted(mode, key=lambda entry: entry.path)
            renames = self._renames.pop(library_id, {})
            scan = LibraryScan(self.index, library, owner, data_dir=self.data_dir, mode=ScanMode.MODIFIED,
                               scope=scope, renames=renames)  # fmt: skip
            self._running[library_id] = (kind, library, scan)
            summary = await scan.run()
            log.info(
                "library %s (%s): %d changed paths: %s",
                library.name,
                library_id,
                len(scope),
                summary.as_dict(),
            )
        elif kind == "remove-offline":
            removed = await self.remove_offline(library_id)
            log.info("removed %d offline assets from library %s (%s)", removed, library.name, library_id)

    # -- the work -----------------------------------------------------------------------------------------

    async def remove_offline(self, library_id: uuid.UUID) -> int:
        """§7: remove every asset of the library that is offline now; files on disk are never touched."""
        return await self._remove_assets(library_id, only_offline=True)

    async def delete_library(self, library_id: uuid.UUID) -> None:
        """§9.3: remove every asset, then the library record itself."""
        await self._remove_assets(library_id, only_offline=False)

        def drop(txn: Txn) -> None:
            if not any(True for _ in txn.items(ASSET_BY_PATH, library_id.bytes)):
                txn.delete(LIBRARIES, library_id.bytes)

        self.index.write(drop)

    async def _remove_assets(self, library_id: uuid.UUID, *, only_offline: bool) -> int:
        """Remove assets in batches of short transactions, walking the library's paths once. Each batch goes
        through `trash.delete_permanently`: for an upload library the originals and their sidecars are deleted
        after the commit and the owner's quota usage shrinks (§9.3); external originals are never touched."""
        removed = 0
        after: bytes | None = None
        while True:
            with self.index.read() as txn:
                batch, last_key = [], None
                for key, value in txn.items(ASSET_BY_PATH, library_id.bytes, after=after):
                    last_key = key
                    entry = asset_index.PathEntry.decode(value)
                    if entry.offline or not only_offline:
                        batch.append(entry.asset_id)
                    if len(batch) >= REMOVE_BATCH:
                        break
            if batch:
                # offline re-checked in the write transaction; once committed, derived files (and an upload
                # library's originals, quota already freed) go even at shutdown; external originals never
                removed += await trash.delete_permanently(
                    self.index, self.data_dir, batch, still=lambda asset: asset.is_offline or not only_offline
                )
            if last_key is None or len(batch) < REMOVE_BATCH:
                return removed
            after = last_key
            await trio.lowlevel.checkpoint()
