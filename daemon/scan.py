"""One scan of one external library (`libraries.md` §4-6, §10, §15): crawl, compare with the index, apply.

How it stays fast and small at a million files: a worker process (`daemon.scan_worker`) crawls the import paths
in byte-sorted path order — also the order of the library's `asset_by_path` keys — and walks both in step (a
merge-join) with short read-only transactions, sending back decisions. This task applies them in write
transactions of up to 20k decisions on the trio thread, the index's only writer. Memory stays proportional to a
batch, not to the library; a write never spans an `await`; a scan cancelled half-way (the worker is killed) leaves
every committed batch consistent and marks nothing offline that it has not passed.

Modes: NEW imports new paths and restores returning ones; MODIFIED also refreshes files whose size, mtime or
sidecar changed; ALL refreshes every file. Any mode marks offline the assets whose paths it passed without finding
them. A refresh keeps the asset (id, albums, flags, edits) and queues its media work again.

Moves: a new path whose (size, mtime) matches an offline asset with a known content hash is hashed; equal content
means the asset moved: it keeps its id and everything attached to it, and only its path changes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec
import trio

from . import assets, derived, job_queue
from .crawl import CrawlReport, FoundFile, ScopeEntry
from .errors import FilmrollError, InvalidInput
from .ids import as_uuids, new_raw_ids
from .index import ASSET_BY_PATH, LIBRARIES, OFFLINE_BY_SIGNATURE, Index, Txn
from .originals import content_sha1
from .paths import import_path_problem, normalize_import_path
from .records import Asset, Library, User
from .scan_worker import FRAME_DECODER, Plan, Report, ScanRequest
from .timeutil import utc_now

log = logging.getLogger(__name__)

WRITE_BATCH = 20_000  # decisions per write transaction: commits fsync, so fewer and larger is faster
MOVE_TRACKING_LIMIT = 250_000
NO_EXTERNAL_PATH = "User has no external path set, cannot refresh library"


class ScanFailed(FilmrollError):
    """The scan could not run to its end (its worker failed); nothing past the last applied plan changed."""


async def _frames(stream: trio.abc.ReceiveStream):
    """Length-prefixed msgpack frames from the worker's stdout."""
    buffer = bytearray()
    async for chunk in stream:
        buffer += chunk
        while len(buffer) >= 4:
            length = int.from_bytes(buffer[:4], "big")
            if len(buffer) < 4 + length:
                break
            yield FRAME_DECODER.decode(bytes(buffer[4 : 4 + length]))
            del buffer[: 4 + length]


class LibraryGone(FilmrollError):
    """The library was deleted while it was being scanned: the scan stops, and nothing more is imported."""


class ScanMode(StrEnum):
    NEW = "new"
    MODIFIED = "modified"
    ALL = "all"

    @classmethod
    def from_flags(cls, refresh_modified_files: bool = False, refresh_all_files: bool = False) -> ScanMode:
        """`refreshAllFiles` wins over `refreshModifiedFiles` (§5.3)."""
        if refresh_all_files:
            return cls.ALL
        return cls.MODIFIED if refresh_modified_files else cls.NEW

    @property
    def strength(self) -> int:
        return {ScanMode.NEW: 0, ScanMode.MODIFIED: 1, ScanMode.ALL: 2}[self]


@dataclass
class ScanSummary:
    new: int = 0
    modified: int = 0
    offline: int = 0
    restored: int = 0
    moved: int = 0
    unchanged: int = 0
    crawled: int = 0
    report: CrawlReport = field(default_factory=CrawlReport)

    def as_dict(self) -> dict[str, object]:
        return {
            "new": self.new, "modified": self.modified, "offline": self.offline, "restored": self.restored,
            "moved": self.moved, "unchanged": self.unchanged, "crawled": self.crawled,
            "skipped": dict(self.report.skipped), "warnings": self.report.warning_count,
        }  # fmt: skip


@dataclass
class _Plan:
    """Decisions waiting for one write transaction. Asset ids are raw 16-byte keys."""

    new: list[FoundFile] = field(default_factory=list)
    new_ids: list[bytes] = field(default_factory=list)  # with new_records: the worker built the new assets
    new_records: list[bytes] = field(default_factory=list)
    offline: list[bytes] = field(default_factory=list)
    restore: list[tuple[bytes, FoundFile, bool]] = field(default_factory=list)
    refresh: list[tuple[bytes, FoundFile]] = field(default_factory=list)
    unchanged: int = 0

    def __len__(self) -> int:
        return len(self.new) + len(self.offline) + len(self.restore) + len(self.refresh)


def hash_new_file(path: bytes, external_path: bytes) -> bytes | None:
    """Content SHA-1 of a possibly moved file, or None if it cannot be read (blocking: run it in a thread)."""
    try:
        return content_sha1(path, external_path)
    except OSError:
        return None


def file_changes(found: FoundFile) -> dict[str, object]:
    return {
        "file_size": found.size,
        "file_mtime_ns": found.mtime_ns,
        "sidecar_path": found.sidecar_path,
        "sidecar_mtime_ns": found.sidecar_mtime_ns,
    }


def valid_roots(library: Library, owner: User, data_dir: str, report: CrawlReport) -> list[bytes]:
    """The library's import paths that pass §3.8 now; the others are skipped with Immich's warning (§3.9)."""
    roots = []
    for path in library.import_paths:
        problem = import_path_problem(path, external_path=owner.external_path, data_dir=data_dir)
        if problem is None:
            roots.append(normalize_import_path(path))
        else:
            report.warn(f"Skipping invalid import path: {path}. Reason: {problem}")
    return roots


class LibraryScan:
    """One scan. Construct, then `await run()`; not reusable."""

    def __init__(
        self,
        index: Index,
        library: Library,
        owner: User,
        *,
        data_dir: str,
        mode: ScanMode,
        scope: list[ScopeEntry] | None = None,
        renames: dict[bytes, bytes] | None = None,
        progress: Callable[[ScanSummary], None] | None = None,
    ):
        if owner.external_path is None:
            raise InvalidInput(NO_EXTERNAL_PATH)
        self.index = index
        self.library = library
        self.owner = owner
        self.data_dir = data_dir
        self.mode = mode
        self.scope = scope  # None: the whole library; else a targeted scan of these paths (the watcher's)
        # new path -> old path, renames the kernel reported (inotify's paired moves): a move even before the
        # content hash is known, provided size and mtime still match
        self.renames = renames or {}
        self._renamed_from = set(self.renames.values())
        self.progress = progress or (lambda summary: None)
        self.summary = ScanSummary()
        self.prefix = library.id.bytes
        self.after = self.prefix  # every asset_by_path key <= this has been merged
        self._deferred: list[FoundFile] = []  # new files that may be moves of offline assets
        self._went_offline: list[uuid.UUID] = []
        self._created: dict[tuple[int, int], list[tuple[FoundFile, uuid.UUID]]] | None = None
        self._created_count = 0

    async def run(self) -> ScanSummary:
        with self.index.read() as txn:
            had_assets = any(True for _ in txn.items(ASSET_BY_PATH, self.prefix))
        if had_assets:  # only then can a file vanish in this scan and reappear under a new name
            self._created = defaultdict(list)
        roots = await trio.to_thread.run_sync(
            valid_roots, self.library, self.owner, self.data_dir, self.summary.report
        )
        request = ScanRequest(
            index_path=str(self.index.path),
            library_id=self.library.id.bytes,
            mode=self.mode.value,
            roots=roots,
            external_path=os.fsencode(self.owner.external_path or "/"),
            data_dir=os.fsencode(self.data_dir),
            exclusion_patterns=list(self.library.exclusion_patterns),
            scope=self.scope,
            owner_id=self.library.owner_id.bytes,
        )
        try:
            await self._read_worker(request)
        except LibraryGone as gone:
            log.info("%s; scan stopped", gone.message)
            return self.summary
        await self._match_moves()
        if self.scope is None:
            self._mark_refreshed()
        self.progress(self.summary)
        return self.summary

    # -- the worker process ------------------------------------------------------------------------------

    async def _read_worker(self, request: ScanRequest) -> None:
        """Run `daemon.scan_worker`, applying its plans as they arrive (20k decisions per write transaction).

        Raises ScanFailed if the worker dies or ends without its `Done` frame, LibraryGone if the library is deleted
        meanwhile (§5.9: nothing more is imported into it). Either way the worker is killed and reaped."""
        process = await trio.lowlevel.open_process(
            [sys.executable, "-P", "-m", "daemon.scan_worker"],  # -P: the daemon's cwd is not on sys.path
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            async with process.stdin:
                await process.stdin.send_all(msgspec.msgpack.encode(request))
            pending = _Plan()
            done = False
            async for frame in _frames(process.stdout):
                if isinstance(frame, Plan):
                    self._collect(frame, pending)
                    if len(pending) >= WRITE_BATCH:
                        self._apply(pending)
                        pending = _Plan()
                    self.progress(self.summary)
                elif isinstance(frame, Report):
                    report = self.summary.report
                    report.skipped.update(frame.skipped)
                    for warning in frame.warnings:
                        report.warn(warning)
                    report.warning_count += frame.warning_count - len(frame.warnings)
                    report.folders += frame.folders
                else:
                    done = True
            self._apply(pending)
            if await process.wait() != 0 or not done:
                raise ScanFailed(
                    f"the scan worker for library {self.library.id} failed (exit {process.returncode})"
                )
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()

    def _collect(self, frame: Plan, plan: _Plan) -> None:
        """Add a worker's plan frame to the decisions waiting for the next write transaction."""
        self.summary.crawled += frame.crawled
        plan.unchanged += frame.unchanged
        plan.new.extend(frame.new)
        plan.new_ids.extend(frame.new_ids)
        plan.new_records.extend(frame.new_records)
        plan.offline.extend(frame.offline)
        plan.restore.extend(frame.restore)
        plan.refresh.extend(frame.refresh)
        self._deferred.extend(frame.deferred)

    # -- applying (one write transaction per batch) ---------------------------------------------------------

    def _apply(self, plan: _Plan) -> None:
        def work(txn: Txn) -> tuple[list[bytes], list[Asset]]:
            library = txn.get(LIBRARIES, self.library.id.bytes)
            if library is None or library.deleted_at is not None:
                raise LibraryGone(f"Library {self.library.id} was deleted during its scan")
            now = utc_now()
            if len(plan.new_records) == len(plan.new) and library.owner_id == self.library.owner_id:
                keys = plan.new_ids  # built by the worker for the owner the library still has
                if keys:
                    assets.insert_new_external(txn, library, plan.new, keys, plan.new_records)
            else:  # a user transfer changed the owner mid-scan, or files the daemon decided on (moves): build here
                keys = new_raw_ids(len(plan.new))
                assets.insert_many(txn, [
                    assets.new_external_asset(library.id, library.owner_id, found, now, asset_id)
                    for found, asset_id in zip(plan.new, as_uuids(keys), strict=True)
                ], keys)  # fmt: skip
            videos = [key for key, found in zip(keys, plan.new, strict=True) if found.is_video]
            job_queue.enqueue_new_many(txn, keys, videos, now)
            went_offline = []
            for asset_id in plan.offline:
                asset = assets.get_by_key(txn, asset_id)
                if asset is not None and not asset.is_offline:
                    went_offline.append(assets.update(txn, asset, is_offline=True, updated_at=now))
            for asset_id, found, refresh in plan.restore:
                asset = assets.get_by_key(txn, asset_id)
                if asset is None:
                    continue
                changes = file_changes(found) if refresh else {}
                assets.update(txn, asset, is_offline=False, updated_at=now, **changes)
                if refresh:
                    job_queue.enqueue_new_or_changed(txn, asset, now, force=True)
                else:
                    job_queue.enqueue_missing(txn, asset, now)
            for asset_id, found in plan.refresh:
                asset = assets.get_by_key(txn, asset_id)
                if asset is None:
                    continue
                assets.update(txn, asset, updated_at=now, **file_changes(found))
                job_queue.enqueue_new_or_changed(txn, asset, now, force=True)
            return keys, went_offline

        created, went_offline = self.index.write(work)  # created: the new assets' raw ids
        summary = self.summary
        summary.new += len(created)
        summary.offline += len(went_offline)
        summary.restored += len(plan.restore)
        summary.modified += len(plan.refresh) + sum(1 for _, _, refresh in plan.restore if refresh)
        summary.unchanged += plan.unchanged
        self._went_offline.extend(
            a.id for a in went_offline if a.content_sha1 is not None or a.original_path in self._renamed_from
        )
        if self._created is not None and created:
            for found, key in zip(plan.new, created, strict=True):
                self._created[(found.size, found.mtime_ns)].append((found, uuid.UUID(bytes=key)))
            self._created_count += len(created)
            if self._created_count > MOVE_TRACKING_LIMIT:
                log.warning("library %s: over %d new files in one scan; moves among them are imported as new files",
                            self.library.id, MOVE_TRACKING_LIMIT)  # fmt: skip
                self._created = None

    # -- moves ----------------------------------------------------------------------------------------------

    async def _match_moves(self) -> None:
        """Pair new paths with offline assets of equal size, mtime and content (§15.1), in sorted path order."""
        external = os.fsencode(self.owner.external_path or "/")
        groups: dict[tuple[int, int], list[tuple[FoundFile, uuid.UUID | None]]] = defaultdict(list)
        for found in self._deferred:
            groups[(found.size, found.mtime_ns)].append((found, None))
        if self._created and self._went_offline:
            with self.index.read() as txn:
                for asset_id in self._went_offline:
                    asset = assets.get(txn, asset_id)
                    if asset is not None:
                        for candidate in self._created.pop((asset.file_size, asset.file_mtime_ns), []):
                            groups[(asset.file_size, asset.file_mtime_ns)].append(candidate)
        for (size, mtime_ns), newcomers in sorted(groups.items()):
            with self.index.read() as txn:
                prefix = assets.signature_prefix(self.library.id, size, mtime_ns)
                olds = [
                    assets.get(txn, uuid.UUID(bytes=key[-16:]))
                    for key, _ in txn.items(OFFLINE_BY_SIGNATURE, prefix)
                ]
            olds = sorted(
                (
                    a
                    for a in olds
                    if a is not None and (a.content_sha1 or a.original_path in self._renamed_from)
                ),
                key=lambda a: a.original_path,
            )
            moves: list[tuple[Asset, FoundFile, uuid.UUID | None]] = []
            unmatched: list[FoundFile] = []
            for found, created_id in sorted(newcomers, key=lambda item: item[0].path):
                renamed_from = self.renames.get(found.path)
                match = next((old for old in olds if old.original_path == renamed_from), None)
                if match is None and any(old.content_sha1 for old in olds):
                    digest = await trio.to_thread.run_sync(hash_new_file, found.path, external)
                    match = next((old for old in olds if digest and old.content_sha1 == digest), None)
                if match is not None:
                    olds.remove(match)
                    moves.append((match, found, created_id))
                elif created_id is None:
                    unmatched.append(found)
            self._apply_moves(moves)
            if unmatched:
                self._apply(_Plan(new=unmatched))

    def _apply_moves(self, moves: list[tuple[Asset, FoundFile, uuid.UUID | None]]) -> None:
        if not moves:
            return

        def work(txn: Txn) -> None:
            now = utc_now()
            for old, found, created_id in moves:
                if created_id is not None:  # imported earlier in this scan before we knew: fold it back
                    duplicate = assets.get(txn, created_id)
                    if duplicate is not None:
                        assets.remove(txn, duplicate)  # its derived files (if already rendered) go below
                current = assets.get(txn, old.id)
                if current is not None:
                    moved = assets.update(txn, current, original_path=found.path, is_offline=False, updated_at=now,
                                          **file_changes(found))  # fmt: skip
                    job_queue.enqueue_missing(txn, moved, now)  # work skipped while it was offline

        self.index.write(work)
        derived.remove_all(derived.derived_root(self.data_dir), [c for _, _, c in moves if c is not None])
        self.summary.moved += len(moves)
        self.summary.new -= sum(1 for _, _, created_id in moves if created_id is not None)
        went_offline_now = set(self._went_offline)  # a move of a file that vanished in this scan: not offline
        self.summary.offline -= sum(1 for old, _, _ in moves if old.id in went_offline_now)

    def _mark_refreshed(self) -> None:
        def work(txn: Txn) -> None:
            library = txn.get(LIBRARIES, self.library.id.bytes)
            if library is not None:
                txn.put(LIBRARIES, library.id.bytes, msgspec.structs.replace(library, refreshed_at=utc_now()))

        self.index.write(work)
