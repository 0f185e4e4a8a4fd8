"""One media queue at work: its durable pending table, its worker processes, its counters and commands.

The queue's *work* (what a job does) is a `JobHandler` (`daemon/media_jobs.py`); this module is the machinery
every queue shares:
- jobs are taken from the queue's pending table in id order and stay there while they run, so a restart (or a
  crash) resumes them; up to `concurrency` groups run at once, fed continuously (a slow job never idles the rest);
- CPU work runs in the queue's own trio-parallel worker processes, retired after `workerRecycleAfter` jobs. A
  decoder that crashes kills its worker process (`BrokenWorkerError`), never the daemon: the job counts a failed
  attempt and a fresh worker takes the next one;
- a failed attempt is retried up to `maxAttempts`; bad media fails at once (it fails the same way every time).
  Either way the reason is recorded (`job_queue.record_failure`) and shown on the asset;
- an original that is gone (ENOENT) is not retried: an external asset goes offline and its job is dropped, so the
  scan that finds the file again brings it back and queues what it lacks (`job_queue.enqueue_missing`); an upload
  fails at once. One warning names the file. A path the index has changed meanwhile (a storage move) is retried;
- `start` (Immich's command) enqueues what the handler selects, in batches of short write transactions;
  `pause` stops taking jobs (running ones finish); `empty` drops the waiting ones; `clear-failed` forgets failures.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import trio
import trio_parallel

from . import assets as asset_index
from . import job_queue
from .config import JobSettings
from .errors import BadMedia, InvalidInput, StorageFull
from .exiftool import ExiftoolFailed
from .index import ASSETS, LIBRARIES, PENDING_STORAGE_TEMPLATE, USERS, Index, Txn
from .logs import setup_logging
from .originals import NotConfined
from .paths import NO_EXTERNAL_PATH_MESSAGE, os_error_text
from .records import Asset, PendingJob
from .timeutil import utc_now

log = logging.getLogger(__name__)

T = TypeVar("T")
IDLE_POLL_SECONDS = 0.5
START_BATCH = 5_000
WORKER_IDLE_SECONDS = 60.0


@dataclass(frozen=True)
class Source:
    """Where a job reads an asset's original: its path and the root it must stay inside (None for uploads)."""

    asset: Asset
    path: bytes
    root: bytes | None


class Failure(Exception):
    """A job's attempt failed; `final` when retrying cannot help (bad media). `missing`: the original's path, when
    the attempt found no file there (the queue then decides, against the index, whether it is gone)."""

    def __init__(self, reason: str, *, final: bool, missing: bytes | None = None):
        super().__init__(reason)
        self.reason = reason
        self.final = final
        self.missing = missing


Group = list[tuple[uuid.UUID, PendingJob]]
Outcomes = dict[uuid.UUID, Failure | None]
"""Per asset of a group: None when its job is done (the handler has written the result), else its Failure."""


class Workers:
    """The queue's worker processes, as the handler sees them."""

    def __init__(self, context: trio_parallel.WorkerContext):
        self._context = context
        self._limiter = trio.CapacityLimiter(math.inf)  # the queue's own limiter gates how many run

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` in a worker process; cancelling kills that worker. Raises what it raises, or
        trio_parallel.BrokenWorkerError when the process died."""
        return await self._context.run_sync(function, *args, kill_on_cancel=True, limiter=self._limiter)


class JobHandler(Protocol):
    queue: str
    group_size: int
    """How many jobs go to one worker call (metadata batches files for exiftool; renders go one by one)."""

    async def run(self, workers: Workers, group: Group) -> Outcomes: ...

    def wanted(self, asset: Asset, *, force: bool) -> bool:
        """Does this asset need this queue's work? With `force`: is it one this queue works on at all? (`start`
        and `filmroll jobs` ask.)"""
        ...


def locate(txn: Txn, asset_id: uuid.UUID) -> Source | None:
    """The asset's original and its confinement root; None when the asset (or its library) is gone.
    Raises NotConfined for an external asset whose owner has no external path (§3.3)."""
    asset = asset_index.get(txn, asset_id)
    if asset is None:
        return None
    library = txn.get(LIBRARIES, asset.library_id.bytes)
    owner = txn.get(USERS, asset.owner_id.bytes)
    if library is None or owner is None:
        return None
    if library.type == "UPLOAD":
        return Source(asset, asset.original_path, None)
    if owner.external_path is None:
        raise NotConfined(
            errno.EACCES, NO_EXTERNAL_PATH_MESSAGE, asset.original_path.decode(errors="replace")
        )
    return Source(asset, asset.original_path, owner.external_path.encode())


async def open_located(
    index: Index, asset_id: uuid.UUID, opener: Callable[[bytes, bytes | None], T]
) -> tuple[Source, T] | None:
    """`locate` the asset's original and `opener(path, root)` it in a worker thread (an original on a hung network
    drive must not stall the event loop); None when the asset is gone. A storage move may rename the original
    between the lookup and the open: when it is not found, it is looked up again and opened at its new place.
    Raises what `locate` and `opener` raise (FileNotFoundError when it is missing where the index says)."""
    tried: set[bytes] = set()
    while True:
        with index.read() as txn:
            source = locate(txn, asset_id)
        if source is None:
            return None
        try:
            return source, await trio.to_thread.run_sync(opener, source.path, source.root)
        except FileNotFoundError:
            if source.path in tried:
                raise
            tried.add(source.path)


def failure_of(error: BaseException, path: bytes | None = None) -> Failure:
    """The Failure a worker's exception stands for, with a reason that names the file."""
    if isinstance(error, BadMedia):
        return Failure(str(error), final=True)
    if isinstance(error, NotConfined):
        return Failure(f"{error.filename}: {error.strerror}", final=True)
    if isinstance(error, OSError):
        filename = os.fsencode(error.filename) if isinstance(error.filename, (str, bytes)) else None
        name = os.fsdecode(filename or path or b"")
        reason = f"{name}: {error.strerror or os_error_text(error)}"
        # the original itself was not found (not exiftool missing, not a derived file's folder)
        vanished = error.errno in (errno.ENOENT, errno.ENOTDIR) and not isinstance(error, ExiftoolFailed)
        if vanished and filename is not None and (path is None or filename == path):
            return Failure(reason, final=False, missing=filename)
        return Failure(reason, final=False)
    if isinstance(error, trio_parallel.BrokenWorkerError):
        name = path.decode(errors="replace") if path else "the file"
        return Failure(f"{name}: the worker process died while reading it ({error})", final=False)
    raise error


def init_worker_logging(level: str, log_format: str) -> bool:
    """Runs in each worker process before its first job: its warnings (a bad sidecar, an HDR video) go to the
    daemon's stderr in the daemon's format (the journal under systemd)."""
    setup_logging(level, log_format)
    return True


def _retire_after(limit: int) -> bool:
    """Runs in the worker after each job: retire it after `limit` jobs (module-level so it pickles)."""
    global _jobs_done
    _jobs_done += 1
    return _jobs_done >= limit


_jobs_done = 0


class MediaQueue:
    def __init__(
        self,
        index: Index,
        handler: JobHandler,
        *,
        concurrency: int,
        jobs: JobSettings,
        worker_init: Callable[[], bool] = bool,
    ):
        self.index = index
        self.worker_init = worker_init
        self.handler = handler
        self.name = handler.queue
        self.concurrency = max(1, concurrency)
        self.jobs = jobs
        self.paused = False
        self.completed = 0
        self._in_flight: set[uuid.UUID] = set()
        self._wake = trio.Event()
        self._start_force: bool | None = None
        """A `start` the runner has yet to carry out (its `force`)."""
        self.on_pause_change: Callable[[], None] | None = None
        """Called after `pause` and `resume` (`MediaQueues` publishes which queues are paused for the CLI)."""

    # -- status and commands (Immich's PUT /api/jobs/{name}) ---------------------------------------------

    def counts(self) -> job_queue.QueueCounts:
        with self.index.read() as txn:
            pending = job_queue.waiting(txn, self.name)
            failed = job_queue.failed_count(txn, self.name)
        active = len(self._in_flight)
        waiting = max(0, pending - active)
        return job_queue.QueueCounts(
            active=active,
            completed=self.completed,
            failed=failed,
            waiting=0 if self.paused else waiting,
            paused=waiting if self.paused else 0,
        )

    @property
    def is_active(self) -> bool:
        counts = self.counts()
        return self._start_force is not None or bool(counts.active or counts.waiting or counts.paused)

    def pause(self) -> None:
        self.paused = True
        if self.on_pause_change is not None:
            self.on_pause_change()

    def resume(self) -> None:
        self.paused = False
        self._wake.set()
        if self.on_pause_change is not None:
            self.on_pause_change()

    def empty(self) -> None:
        """Drop every waiting job (running ones finish)."""
        self.index.write(lambda txn: job_queue.empty(txn, self.name, set(self._in_flight)))

    def clear_failed(self) -> None:
        self.index.write(lambda txn: job_queue.clear_failed(txn, self.name))

    def start(self, *, force: bool) -> None:
        """Immich's `start`: queue every asset the handler wants (`force`: all of its kind). The runner does
        the enqueuing, in short write transactions. Raises InvalidInput `Job is already running` while the
        queue has work."""
        if self.is_active:
            raise InvalidInput("Job is already running")
        self._start_force = force
        self._wake.set()

    async def _enqueue_wanted(self, force: bool) -> int:
        queued = 0
        after: bytes | None = None
        while True:
            with self.index.read() as txn:
                chunk, after = _wanted_slice(txn, self.handler, force=force, after=after)
            if chunk:

                def work(txn: Txn, chunk: list[uuid.UUID] = chunk, now: datetime = utc_now()) -> None:
                    for asset_id in chunk:
                        job_queue.enqueue(txn, self.name, asset_id, now, force=force)

                self.index.write(work)
                queued += len(chunk)
            if after is None:
                break
            await trio.lowlevel.checkpoint()
        log.info("queue %s: started (%s), %d jobs queued", self.name, "all" if force else "missing", queued)
        return queued

    # -- the runner --------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run jobs until cancelled. Cancelling kills the running workers; their jobs stay pending."""
        retire = functools.partial(_retire_after, max(1, self.jobs.worker_recycle_after))
        async with (
            trio_parallel.open_worker_context(
                idle_timeout=WORKER_IDLE_SECONDS, init=self.worker_init, retire=retire, grace_period=5
            ) as context,
            trio.open_nursery() as nursery,
        ):
            workers = Workers(context)
            slots = trio.Semaphore(self.concurrency)  # released by the group's task, so not a CapacityLimiter
            task_status.started()
            while True:
                if self._start_force is not None:
                    await self._enqueue_wanted(self._start_force)
                    self._start_force = None
                await slots.acquire()
                group = self._take() if not self.paused else []
                if not group:
                    slots.release()
                    self._wake = trio.Event()
                    with trio.move_on_after(IDLE_POLL_SECONDS):
                        await self._wake.wait()
                    continue
                self._in_flight.update(asset_id for asset_id, _ in group)
                nursery.start_soon(self._run_group, workers, group, slots)

    async def idle(self) -> None:
        """Return once nothing is waiting or running (tests, the CLI). Polls: work is enqueued inside other
        components' write transactions, which signal no event."""
        while True:
            counts = self.counts()
            if not (counts.active or counts.waiting or self._start_force is not None):
                return
            await trio.sleep(0.05)

    def _take(self) -> Group:
        group: Group = []
        now = utc_now()
        with self.index.read() as txn:
            for key, job in txn.items(job_queue.QUEUE_TABLES[self.name]):
                asset_id = uuid.UUID(bytes=key)
                if job.retry_after is not None and job.retry_after > now:
                    continue
                if asset_id not in self._in_flight:
                    group.append((asset_id, job))
                    if len(group) >= self.handler.group_size:
                        break
        return group

    async def _run_group(self, workers: Workers, group: Group, slots: trio.Semaphore) -> None:
        try:
            outcomes = await self._confirm_vanished(await self._attempt(workers, group))
            try:
                self._record(group, outcomes)
            except StorageFull as error:  # no room even to note the failure: the jobs stay pending, paced
                log.warning("queue %s: %s; %d job(s) stay pending", self.name, error.message, len(group))
                await trio.sleep(max(1.0, self.jobs.retry_delay))
        finally:
            self._in_flight.difference_update(asset_id for asset_id, _ in group)
            slots.release()
            self._wake.set()

    async def _attempt(self, workers: Workers, group: Group) -> Outcomes:
        try:
            return await self.handler.run(workers, group)
        except trio_parallel.BrokenWorkerError as error:
            if len(group) > 1:  # one file of the batch killed the worker: find it, sparing the others
                outcomes: Outcomes = {}
                for member in group:
                    outcomes.update(await self._attempt(workers, [member]))
                return outcomes
            return {asset_id: failure_of(error) for asset_id, _ in group}
        except StorageFull as error:  # the result could not be stored: a plain failure, retried later
            return {asset_id: Failure(str(error.message), final=False) for asset_id, _ in group}
        except Exception as error:  # a bug in a handler must not stop the queue: record it, carry on
            log.exception("queue %s: job failed unexpectedly", self.name)
            return {asset_id: Failure(f"internal error: {error!r}", final=False) for asset_id, _ in group}

    async def _confirm_vanished(self, outcomes: Outcomes) -> Outcomes:
        """A second look at each original the attempt did not find: one that is there again (a share's blip, a
        program that saves by deleting and re-creating) is an ordinary failure, retried — only a file still
        absent takes its asset offline (`_vanished`)."""
        for asset_id, failure in outcomes.items():
            if failure is not None and failure.missing is not None:
                if await trio.to_thread.run_sync(os.path.lexists, failure.missing):
                    outcomes[asset_id] = Failure(failure.reason, final=failure.final)
        return outcomes

    def _record(self, group: Group, outcomes: Outcomes) -> None:
        failures = {asset_id: failure for asset_id, failure in outcomes.items() if failure is not None}
        self.completed += len(outcomes) - len(failures)
        if not failures:
            return
        now = utc_now()
        taken = dict(group)

        def work(txn: Txn) -> list[tuple[uuid.UUID, Failure, str]]:
            settled = []
            for asset_id, failure in failures.items():
                job = taken[asset_id]
                verdict = self._vanished(txn, asset_id, job, failure, now) if failure.missing else None
                if verdict is None:
                    for_good = job_queue.record_failure(
                        txn, self.name, asset_id, job, failure.reason, now, max_attempts=self.jobs.max_attempts,
                        final=failure.final, retry_delay=self.jobs.retry_delay,
                    )  # fmt: skip
                    verdict = "failed" if for_good else "retried"
                settled.append((asset_id, failure, verdict))
            return settled

        for asset_id, failure, verdict in self.index.write(work):
            if verdict == "dropped":  # already offline: the scan that brings it back queues this work again
                continue
            if verdict == "offline":
                log.warning(
                    "%s job for asset %s dropped: %s; the asset is offline until a library scan finds the file",
                    self.name, asset_id, failure.reason,
                )  # fmt: skip
                continue
            log.warning(
                "%s job for asset %s %s: %s",
                self.name, asset_id, "failed" if verdict == "failed" else "failed (retried later unless re-queued)",
                failure.reason,
            )  # fmt: skip

    def _vanished(
        self, txn: Txn, asset_id: uuid.UUID, job: PendingJob, failure: Failure, now: datetime
    ) -> str | None:
        """The attempt found no file at `failure.missing`. Retrying a vanished original only repeats the warning,
        so: an asset already offline → its job is dropped ("dropped"); an external asset → it goes offline, as
        the scan that notices would take it, and its job is dropped ("offline"): the scan that finds the file
        again restores it and queues the work it lacks (`job_queue.enqueue_missing`); an upload (no scan brings
        it back) → the job fails at once ("failed"). None: an ordinary failure after all — the job was re-queued
        or the asset removed meanwhile, or its original was moved (the index names another path, or a storage
        move is pending and may have renamed the file before switching the index): the retry reads the new
        place."""
        asset = asset_index.get(txn, asset_id)
        if asset is None or txn.get(job_queue.QUEUE_TABLES[self.name], asset_id.bytes) != job:
            return None
        moving = self.name != job_queue.STORAGE_TEMPLATE and (
            txn.get(PENDING_STORAGE_TEMPLATE, asset_id.bytes) is not None
        )
        if asset.original_path != failure.missing or moving:
            return None
        if asset.is_offline:
            job_queue.finish(txn, self.name, asset_id, job)
            return "dropped"
        library = txn.get(LIBRARIES, asset.library_id.bytes)
        if library is None or library.type == "UPLOAD":
            job_queue.record_failure(txn, self.name, asset_id, job, failure.reason, now,
                                     max_attempts=self.jobs.max_attempts, final=True)  # fmt: skip
            return "failed"
        asset_index.update(txn, asset, is_offline=True, updated_at=now)
        job_queue.finish(txn, self.name, asset_id, job)
        return "offline"


def _wanted_slice(
    txn: Txn, handler: JobHandler, *, force: bool, after: bytes | None
) -> tuple[list[uuid.UUID], bytes | None]:
    """The wanted assets among the next START_BATCH after key `after`, and the key to continue after (None at
    the end)."""
    wanted: list[uuid.UUID] = []
    for count, (key, asset) in enumerate(txn.items(ASSETS, after=after), start=1):
        if handler.wanted(asset, force=force):
            wanted.append(asset.id)
        if count >= START_BATCH:
            return wanted, key
    return wanted, None
