"""Watching external libraries (`libraries.md` §11): inotify, or polling for network drives, per library.

`WatchService.run` (in the daemon's jobs nursery) keeps one `LibraryWatcher` task per watchable library — external,
not deleted, with import paths, whose owner has an external path — and re-creates a watcher when its library's
import paths, exclusions, owner's external path or watch settings change (`reconcile`, called on every library edit
and every few seconds for changes made elsewhere, e.g. by the CLI).

Watch events never touch the index themselves: settled paths become targeted scans on the `library` queue
(`LibraryJobQueue.request_paths`), so they go through the same crawl rules, merge and apply as a full scan.

A watcher uses inotify unless polling is configured (`usePolling`, globally or per library) or an import path lies
on a network filesystem (inotify cannot see changes made by other machines). When inotify runs out of watches, the
library falls back to polling, says so in the log and in its status (`GET /api/libraries/{id}` → `watch`).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field

import trio

from .config import WatchSettings
from .crawl import Crawler, ScopeEntry
from .exclusions import ExclusionMatcher
from .index import LIBRARIES, USERS, Index
from .inotify_tree import InotifyTree, WatchLimitReached
from .library_jobs import LibraryJobQueue
from .paths import is_within, normalize_import_path
from .poll import FULL_PASS_EVERY, FolderPoller
from .scan import ScanMode
from .settle import Settler

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 5.0
ROOT_CHECK_SECONDS = 2.0
NETWORK_FILESYSTEMS = frozenset(
    "nfs nfs4 cifs smb3 smbfs 9p afs ceph glusterfs davfs ncpfs fuse.sshfs fuse.rclone fuse.s3fs "
    "fuse.glusterfs fuse.davfs2".split()
)


@dataclass(frozen=True)
class WatchSpec:
    """Everything a library's watcher depends on: a change of any of it re-creates the watcher."""

    library_id: uuid.UUID
    name: str = field(compare=False)  # a rename needs no new watcher
    roots: tuple[bytes, ...]
    exclusions: tuple[str, ...]
    external_path: bytes
    data_dir: bytes
    use_polling: bool
    interval: float


@dataclass
class WatchStatus:
    mode: str  # "inotify" | "polling" | "off" | "starting"
    reason: str | None = None


def filesystem_type(path: bytes, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The type of the filesystem holding `path` (the longest mount point above it), from mountinfo."""
    best, best_type = b"", None
    try:
        with open(mountinfo, "rb") as stream:
            for line in stream:
                fields = line.split()
                separator = fields.index(b"-")
                mount_point = (
                    fields[4].replace(b"\\040", b" ").replace(b"\\011", b"\t").replace(b"\\012", b"\n")
                )
                if is_within(path, mount_point) and len(mount_point) >= len(best):
                    best, best_type = mount_point, fields[separator + 1].decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    return best_type


def root_identity(root: bytes) -> tuple[int, int] | None:
    try:
        status = os.stat(root)
    except OSError:
        return None
    return status.st_dev, status.st_ino


class LibraryWatcher:
    """Watches one library until cancelled. `status` says how."""

    def __init__(self, spec: WatchSpec, jobs: LibraryJobQueue):
        self.spec = spec
        self.jobs = jobs
        self.status = WatchStatus("starting")
        self.settler = Settler()
        self._roots_changed = trio.Event()

    def crawler(self) -> Crawler:
        return Crawler(list(self.spec.roots), external_path=self.spec.external_path, data_dir=self.spec.data_dir,
                       exclusions=ExclusionMatcher(list(self.spec.exclusions)))  # fmt: skip

    async def run(self) -> None:
        spec = self.spec
        reason = "usePolling is set" if spec.use_polling else None
        if reason is None:
            for root in spec.roots:
                kind = await trio.to_thread.run_sync(filesystem_type, root)
                if kind in NETWORK_FILESYSTEMS:
                    reason = (
                        f"{os.fsdecode(root)} is on a network filesystem ({kind}), which inotify cannot watch"
                    )
                    break
        if reason is None:
            try:
                await self._watch()
                return
            except* WatchLimitReached as limits:  # at the start, or later when watching a new folder
                reason = f"{limits.exceptions[0]}; falling back to polling"
                log.warning("library %s (%s): %s", spec.name, spec.library_id, reason)
        await self._poll(reason)

    async def _poll(self, reason: str | None) -> None:
        """Every `interval`: a folder-level pass (`daemon.poll`) whose changes become a targeted scan; every
        `FULL_PASS_EVERY`-th pass, a full modified-files rescan (catches files rewritten in place)."""
        self.status = WatchStatus("polling", reason)
        log.info("library %s (%s): polling every %g s (%s)", self.spec.name, self.spec.library_id,
                 self.spec.interval, reason)  # fmt: skip
        poller = FolderPoller(list(self.spec.roots), ExclusionMatcher(list(self.spec.exclusions)))
        await trio.to_thread.run_sync(poller.poll)
        passes = 0
        while True:
            await trio.sleep(self.spec.interval)
            passes += 1
            changes = await trio.to_thread.run_sync(poller.poll)
            if passes % FULL_PASS_EVERY == 0:
                self.jobs.request_scan(self.spec.library_id, ScanMode.MODIFIED)
            elif changes:
                self.jobs.request_paths(self.spec.library_id, changes)

    async def _watch(self) -> None:
        tree = InotifyTree(list(self.spec.roots))
        try:
            identities = await trio.to_thread.run_sync(self._root_identities)
            await self._arm(tree, None)
            self.status = WatchStatus("inotify")
            log.info("library %s (%s): watching %d folders", self.spec.name, self.spec.library_id,
                     len(tree.folder_of))  # fmt: skip
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver)
                nursery.start_soon(self._monitor_roots, tree, identities)
                while True:
                    await trio.lowlevel.wait_readable(tree.fileno())
                    await self._handle(tree)
        finally:
            tree.close()

    async def _arm(self, tree: InotifyTree, below: bytes | None) -> None:
        """Watch every folder the crawl would enter, from the import paths or from `below` (found in a thread; the
        tree itself is only ever changed on the trio thread)."""
        folders = await trio.to_thread.run_sync(lambda: list(self.crawler().folders(below)))
        tree.add(folders)

    def _root_identities(self) -> dict[bytes, tuple[int, int] | None]:
        return {root: root_identity(root) for root in self.spec.roots}

    async def _handle(self, tree: InotifyTree) -> None:
        changes = tree.changes()
        if changes.overflow:
            log.warning(
                "library %s (%s): inotify queue overflowed; rescanning", self.spec.name, self.spec.library_id
            )
            self.jobs.request_scan(self.spec.library_id, ScanMode.MODIFIED)
        for entry, complete in changes.touched:
            self.settler.touch(entry, complete=complete)
        if changes.renames:
            self.jobs.note_renames(self.spec.library_id, changes.renames)
        for folder in changes.new_folders:
            await self._arm(tree, folder)
        if changes.roots_changed:
            self._roots_changed.set()

    async def _deliver(self) -> None:
        while True:
            entries = await self.settler.settled()
            self.jobs.request_paths(self.spec.library_id, entries)

    async def _monitor_roots(
        self, tree: InotifyTree, identities: dict[bytes, tuple[int, int] | None]
    ) -> None:
        """§11.8 and beyond: an import path that vanishes (drive unplugged, share unmounted) has its assets go
        offline; when it returns (or is remounted) it is watched again and its assets come back, same ids."""
        while True:
            with trio.move_on_after(ROOT_CHECK_SECONDS):
                await self._roots_changed.wait()
            self._roots_changed = trio.Event()
            now = await trio.to_thread.run_sync(self._root_identities)
            for root in self.spec.roots:
                if now[root] == identities[root]:
                    continue
                shown = os.fsdecode(root)
                tree.drop_below(root)
                if now[root] is None:
                    log.warning("library %s: import path %s is unavailable; its assets go offline until it returns",
                                self.spec.name, shown)  # fmt: skip
                else:
                    log.info(
                        "library %s: import path %s is available; watching it again", self.spec.name, shown
                    )
                    await self._arm(tree, root)
                self.jobs.request_paths(self.spec.library_id, [ScopeEntry(root, True)])
            identities = now


class WatchService:
    def __init__(self, index: Index, settings: WatchSettings, jobs: LibraryJobQueue, data_dir: str):
        self.index = index
        self.settings = settings
        self.jobs = jobs
        self.data_dir = os.fsencode(data_dir)
        self._nursery: trio.Nursery | None = None
        self._running: dict[uuid.UUID, tuple[LibraryWatcher, trio.CancelScope]] = {}

    def status(self, library_id: uuid.UUID) -> WatchStatus:
        running = self._running.get(library_id)
        if running is not None:
            return running[0].status
        return WatchStatus(
            "off", None if self.settings.enabled else "watching is disabled (library.watch.enabled)"
        )

    def desired(self) -> dict[uuid.UUID, WatchSpec]:
        if not self.settings.enabled:
            return {}
        specs = {}
        with self.index.read() as txn:
            for library in txn.values(LIBRARIES):
                if library.type != "EXTERNAL" or library.deleted_at is not None or not library.import_paths:
                    continue
                owner = txn.get(USERS, library.owner_id.bytes)
                if owner is None or owner.external_path is None:
                    continue
                polling, interval = self.settings.for_library(str(library.id))
                roots = tuple(sorted({normalize_import_path(path) for path in library.import_paths}))
                specs[library.id] = WatchSpec(
                    library.id, library.name, roots, tuple(library.exclusion_patterns),
                    os.fsencode(owner.external_path), self.data_dir, polling, max(interval, 0.1),
                )  # fmt: skip
        return specs

    def reconcile(self) -> None:
        """Start, stop and re-create watchers to match the index (§11.7). Cheap: a few records read."""
        if self._nursery is None:
            return
        desired = self.desired()
        for library_id, (watcher, scope) in list(self._running.items()):
            if desired.get(library_id) != watcher.spec:
                scope.cancel()
                del self._running[library_id]
        for library_id, spec in desired.items():
            if library_id not in self._running:
                watcher = LibraryWatcher(spec, self.jobs)
                scope = trio.CancelScope()
                self._running[library_id] = (watcher, scope)
                self._nursery.start_soon(self._supervise, watcher, scope)

    async def _supervise(self, watcher: LibraryWatcher, scope: trio.CancelScope) -> None:
        """Run one watcher; its errors are logged and never stop the daemon (§11.8). A failed watcher is retried
        by the next reconcile."""
        with scope:
            try:
                await watcher.run()
            except Exception:
                log.exception("library %s (%s): watcher failed", watcher.spec.name, watcher.spec.library_id)
        if self._running.get(watcher.spec.library_id, (None,))[0] is watcher:
            del self._running[watcher.spec.library_id]

    async def run(
        self, *, catch_up: bool = True, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch until cancelled. With `catch_up`, every watched library is first rescanned for modified files:
        what changed while the daemon was down would otherwise wait for the nightly job."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                self.reconcile()
                if catch_up:
                    for library_id in self._running:
                        self.jobs.request_scan(library_id, ScanMode.MODIFIED)
                task_status.started()
                while True:
                    await trio.sleep(RECONCILE_SECONDS)
                    self.reconcile()
            finally:
                self._nursery = None
                self._running.clear()
