"""The read side of a scan, in a worker process: crawl the import paths and merge-join them with the index.

`python -m daemon.scan_worker` reads one `ScanRequest` (msgpack) on stdin, opens the index read-only, and writes
length-prefixed msgpack frames on stdout:

    ("plan", crawled, new, new_ids, new_records, offline, restore, refresh, unchanged, deferred)
                                                         decisions, in crawl order; the new files' assets built
    ("report", skipped, warnings, warning_count, folders)                    once, at the end
    ("done",)

It never writes the index: the daemon applies each plan in one write transaction on its trio thread. Running here,
the crawl and the comparison use the second core instead of competing with the event loop for the GIL. In the
default mode, a file already known and online is not even `stat`ed. The worker reads with one short read
transaction per batch, re-positioned after the last merged key, so it always sees the daemon's committed writes
and never holds old pages for long. It ends when its stdout closes (the scan was cancelled).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import queue
import struct
import sys
import threading
import uuid
from collections.abc import Iterator

import msgspec

from . import assets
from .crawl import Crawler, CrawlReport, FoundFile, ScopeEntry
from .exclusions import ExclusionMatcher
from .index import ASSET_BY_PATH, OFFLINE_BY_SIGNATURE, Index, Txn
from .timeutil import utc_now

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), missing from Python 3.11's fcntl module
READ_BATCH = 2000  # files per read transaction
FRAME_DECISIONS = 5000  # decisions per plan frame
PROGRESS_FILES = READ_BATCH * 5  # a plan frame at least this often, for the progress bar
_LENGTH = struct.Struct(">I")


class ScanRequest(msgspec.Struct, array_like=True):
    index_path: str
    library_id: bytes
    mode: str  # "new" | "modified" | "all"
    roots: list[bytes]
    external_path: bytes
    data_dir: bytes
    exclusion_patterns: list[str]
    scope: list[ScopeEntry] | None = None  # None: the whole library; else only these paths (watcher events)
    owner_id: bytes | None = None  # the library's owner: new assets are built here for it (None: by the daemon)


class Plan(msgspec.Struct, array_like=True, tag="plan"):
    """Decisions for the daemon to apply, in crawl order. Asset ids are raw 16-byte keys."""

    crawled: int = 0
    new: list[FoundFile] = msgspec.field(default_factory=list)
    new_ids: list[bytes] = msgspec.field(default_factory=list)  # raw ids and encoded records of `new`'s assets,
    new_records: list[bytes] = msgspec.field(default_factory=list)  # when the worker knows the owner
    offline: list[bytes] = msgspec.field(default_factory=list)
    restore: list[tuple[bytes, FoundFile, bool]] = msgspec.field(default_factory=list)
    refresh: list[tuple[bytes, FoundFile]] = msgspec.field(default_factory=list)
    unchanged: int = 0
    deferred: list[FoundFile] = msgspec.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.new) + len(self.offline) + len(self.restore) + len(self.refresh) + len(self.deferred)


class Report(msgspec.Struct, array_like=True, tag="report"):
    skipped: dict[str, int]
    warnings: list[str]
    warning_count: int
    folders: int


class Done(msgspec.Struct, array_like=True, tag="done"):
    pass


Frame = Plan | Report | Done
FRAME_DECODER = msgspec.msgpack.Decoder(Frame)


class Merger:
    """Walks the library's `asset_by_path` keys in step with the sorted crawl and decides for each path.

    Call `known(path)` (optional) and then `add(found)` for every crawled file in order, then `finish()`.
    """

    def __init__(self, index: Index, library_id: bytes, mode: str, owner_id: bytes | None = None):
        self.index = index
        self.prefix = library_id
        self.library_id = uuid.UUID(bytes=library_id)
        self.owner_id = None if owner_id is None else uuid.UUID(bytes=owner_id)
        self.mode = mode
        self.after = library_id  # every key <= this has been merged (or < it, while `_inclusive`)
        self._inclusive = False
        self.plan = Plan()
        self._reads = 0
        self._txn_context = None
        self._cursor_context = None
        self._txn: Txn | None = None
        self._cursor = None
        self._valid = False
        self._current: tuple[bytes, bytes | None] | None = None  # (path key, its value) found by `_seek`
        self._any_offline = False
        self.on_full = lambda: None  # called when the plan is full mid-walk (a long run of missing files)

    # -- the read transaction, renewed every READ_BATCH files --------------------------------------------------

    def _open(self) -> None:
        self._txn_context = self.index.read()
        self._txn = self._txn_context.__enter__()
        self._cursor_context = self._txn.cursor(ASSET_BY_PATH)
        self._cursor = self._cursor_context.__enter__()
        self._any_offline = any(True for _ in self._txn.items(OFFLINE_BY_SIGNATURE, self.prefix))
        self._valid = self._cursor.set_range(self.after)
        if self._valid and self._cursor.key() == self.after and not self._inclusive:
            self._valid = self._cursor.next()

    def close(self) -> None:
        if self._txn_context is not None:
            self._cursor_context.__exit__(None, None, None)
            self._txn_context.__exit__(None, None, None)
            self._txn_context = self._cursor_context = self._txn = self._cursor = None

    def _seek(self, key: bytes) -> bytes | None:
        """Advance to `key`: every online key passed on the way is offline. Returns `key`'s value, if any."""
        if self._current is not None and self._current[0] == key:
            return self._current[1]
        self._renew_if_due()
        self._reads += 1
        cursor, prefix, offline = self._cursor, self.prefix, self.plan.offline
        valid = self._valid
        while valid:
            current = cursor.key()
            if current >= key:
                break
            if not current.startswith(prefix):
                valid = False
                break
            value = cursor.value()
            if not value[40] & 1:
                offline.append(value[:16])
                if len(offline) >= FRAME_DECISIONS:
                    self.on_full()
                    offline = self.plan.offline
            valid = cursor.next()
        found = None
        if valid and cursor.key() == key:
            found = cursor.value()
            valid = cursor.next()
        self._valid = valid
        self.after = key
        self._inclusive = False
        self._current = (key, found)
        return found

    def _renew_if_due(self) -> None:
        if self._txn is None or self._reads >= READ_BATCH:
            self.close()
            self._reads = 0
            self._open()

    # -- decisions --------------------------------------------------------------------------------------------

    def known_run(self, base: bytes, names: list[bytes]) -> bool:
        """In the default mode: are these files (a folder's consecutive files, `base` + sorted `names`) exactly
        the next index keys, all online? Then they are unchanged, decided at once with one comparison of key
        lists; otherwise nothing moves, and the crawl looks at each file (`known`, `add`)."""
        self._renew_if_due()
        cursor, prefix = self._cursor, self.prefix + base
        first = prefix + names[0]
        if not self._valid or cursor.key() != first:
            return False
        keys = [prefix + name for name in names]
        if self._any_offline:  # the same keys, and none of them offline
            window = list(itertools.islice(cursor.iternext(keys=True, values=True), len(keys)))
            same = [key for key, _ in window] == keys and not any(value[40] & 1 for _, value in window)
        else:
            same = list(itertools.islice(cursor.iternext(keys=True, values=False), len(keys))) == keys
        if not same:
            self._valid = cursor.set_range(first)  # back where it was: the file-by-file path decides
            return False
        self._valid = cursor.next()  # past the run's last key (the iterator stopped on it)
        self.after, self._inclusive, self._current = keys[-1], False, None
        self._reads += len(keys)
        plan = self.plan
        plan.crawled += len(keys)
        plan.unchanged += len(keys)
        if plan.crawled >= PROGRESS_FILES:
            self.close()  # not pinned while the frame waits for the pipe; reopened at `after`
            self.on_full()
        return True

    def has_entries(self) -> bool:
        """Whether the library has any path in the index (if not, every file found is new: nothing to ask)."""
        with self.index.read() as txn:
            return any(True for _ in txn.items(ASSET_BY_PATH, self.prefix))

    def known(self, path: bytes) -> bool:
        """In the default mode: is this path an online asset already (so the crawl need not `stat` it)?"""
        value = self._seek(self.prefix + path)
        return value is not None and not value[40] & 1

    def add(self, found: FoundFile) -> None:
        value = self._seek(self.prefix + found.path)
        plan = self.plan
        plan.crawled += 1
        if value is None:
            if self._any_offline and any(True for _ in self._txn.items(
                    OFFLINE_BY_SIGNATURE, assets.signature_prefix(self.library_id, found.size, found.mtime_ns))):
                plan.deferred.append(found)
            else:
                plan.new.append(found)
            return
        offline = value[40] & 1
        if not offline and self.mode == "new":
            plan.unchanged += 1
            return
        if found.size < 0:  # skipped its stat, so it must be known and online: handled above
            raise AssertionError(f"unstat'ed file {found.path!r} needs a decision")
        same = value[16:40] == assets.compared_fields(found.size, found.mtime_ns, found.sidecar_path,
                                                      found.sidecar_mtime_ns)  # fmt: skip
        if offline:
            plan.restore.append((value[:16], found, self.mode == "all" or not same))
        elif self.mode == "all" or not same:
            plan.refresh.append((value[:16], found))
        else:
            plan.unchanged += 1

    def merge_range(self, lo: bytes, hi: bytes, files: Iterator[FoundFile]) -> None:
        """A targeted scan's range: `files` (sorted, all in [lo, hi)) against the index keys in [lo, hi); a key in
        the range that was not found goes offline, keys outside it are not looked at."""
        self.close()
        self.after, self._inclusive, self._current = self.prefix + lo, True, None
        for found in files:
            self.add(found)
        self._seek(self.prefix + hi)

    def finish(self) -> None:
        """Everything after the last crawled path was not found."""
        self._seek(self.prefix + b"\xff" * 8)  # past any path of this library (paths never start with 0xff)
        self.close()

    def take(self) -> Plan:
        """The decisions so far, new files with their assets built (the daemon only stores them)."""
        plan, self.plan = self.plan, Plan()
        if plan.new and self.owner_id is not None:
            plan.new_ids, plan.new_records = assets.encode_new_external(
                self.library_id, self.owner_id, plan.new, utc_now()
            )
        return plan


def run(request: ScanRequest, emit) -> None:
    """The worker's job: open the index read-only, crawl and merge, emit the frames."""
    with Index(request.index_path, readonly=True) as index:
        crawl_and_merge(index, request, emit)


def crawl_and_merge(index: Index, request: ScanRequest, emit) -> None:
    """Every frame of one scan, read against `index`: plans, then the report and `Done`."""
    report = CrawlReport()
    merger = Merger(index, request.library_id, request.mode, request.owner_id)
    asks = request.mode == "new" and merger.has_entries()  # may the crawl skip files the index has?
    crawler = Crawler(
        request.roots,
        external_path=request.external_path,
        data_dir=request.data_dir,
        exclusions=ExclusionMatcher(request.exclusion_patterns),
        report=report,
        known=merger.known if asks else None,
        known_run=merger.known_run if asks else None,
    )
    merger.on_full = lambda: emit(merger.take())

    def flushing(files: Iterator[FoundFile]) -> Iterator[FoundFile]:
        """`files`, sending the plan to the daemon whenever it is full."""
        for found in files:
            yield found
            plan = merger.plan  # looked at every 64 files (a frame is at most 63 decisions over), in scoped scans too
            if not plan.crawled % 64 and (len(plan) >= FRAME_DECISIONS or plan.crawled >= PROGRESS_FILES):
                emit(merger.take())

    try:
        if request.scope is None:
            for found in flushing(crawler.files()):
                merger.add(found)
            merger.finish()
        else:
            for lo, hi, files in crawler.scoped(request.scope):
                merger.merge_range(lo, hi, flushing(files))
            merger.close()
        emit(merger.take())
    finally:
        merger.close()
    emit(Report(dict(report.skipped), report.warnings, report.warning_count, report.folders))
    emit(Done())


def main() -> int:
    """Crawl and merge on this thread; a writer thread drains frames into a 1 MiB pipe, so the crawl goes on while
    the daemon is busy applying the previous plan."""
    logging.basicConfig(level=logging.CRITICAL)  # the daemon logs the report's warnings itself
    request = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=ScanRequest)
    out = sys.stdout.buffer
    with contextlib.suppress(OSError):
        fcntl.fcntl(out.fileno(), F_SETPIPE_SZ, 1 << 20)
    encoder = msgspec.msgpack.Encoder()
    outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
    broken = threading.Event()

    def write_frames() -> None:
        while (body := outbox.get()) is not None:
            if broken.is_set():
                continue  # drain, so `emit` never blocks on a writer that gave up
            try:
                out.write(_LENGTH.pack(len(body)) + body)
                out.flush()
            except (
                Exception
            ):  # BrokenPipeError: the scan was cancelled; anything else: the daemon sees no Done
                broken.set()

    def emit(frame: Frame) -> None:
        if broken.is_set():
            raise BrokenPipeError
        outbox.put(encoder.encode(frame))

    writer = threading.Thread(target=write_frames, name="scan-frames")
    writer.start()
    try:
        run(request, emit)
    except BrokenPipeError:
        pass
    finally:
        outbox.put(None)
        writer.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
