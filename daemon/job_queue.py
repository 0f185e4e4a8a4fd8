"""The durable hand-off from libraries to the media pipeline: pending work per queue, stored in the index.

A scan (or upload, or watcher event) enqueues work *in the same write transaction* that creates or changes the
asset, so a crash can never leave an asset without its pending work, nor work for an asset that does not exist.
Enqueuing the same (queue, asset) twice merges (a `force` request stays forced). Runners (`daemon.media_queue`)
take entries in id order and delete them when done; an entry stays while it runs, so a restart resumes it.

A job that fails for good moves to `job_failures` (asset id + queue name -> JobFailure): the reason is shown on
the asset, counted as the queue's `failed`, and cleared by `clear-failed` or by a later success.
"""

from __future__ import annotations

import uuid
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from .index import (
    JOB_FAILURES,
    PENDING_METADATA,
    PENDING_STORAGE_TEMPLATE,
    PENDING_THUMBNAILS,
    PENDING_VIDEO,
    Table,
    Txn,
)
from .records import Asset, JobFailure, PendingJob

METADATA = "metadataExtraction"
THUMBNAILS = "thumbnailGeneration"
VIDEO = "videoConversion"
STORAGE_TEMPLATE = "storageTemplateMigration"
QUEUE_TABLES: dict[str, Table[PendingJob]] = {
    METADATA: PENDING_METADATA,
    THUMBNAILS: PENDING_THUMBNAILS,
    VIDEO: PENDING_VIDEO,
    STORAGE_TEMPLATE: PENDING_STORAGE_TEMPLATE,
}


@dataclass
class QueueCounts:
    """A queue's counters, as Immich's `/api/jobs` reports them."""

    active: int = 0
    completed: int = 0
    failed: int = 0
    waiting: int = 0
    paused: int = 0


def enqueue(txn: Txn, queue: str, asset_id: uuid.UUID, now: datetime, *, force: bool = False) -> None:
    """Queue work for an asset. A plain request merges into a waiting one; a forced request (the file changed)
    always writes a fresh entry, so a job already running on the old content sees it and leaves it for a rerun
    (`finish`)."""
    table = QUEUE_TABLES[queue]
    if not force and txn.get(table, asset_id.bytes) is not None:
        return
    txn.put(table, asset_id.bytes, PendingJob(queued_at=now, force=force))


def enqueue_missing(txn: Txn, asset: Asset, now: datetime) -> None:
    """An asset back online with its file unchanged: queue only the work it never had done."""
    if asset.metadata_extracted_at is None:
        enqueue(txn, METADATA, asset.id, now)
    if asset.thumbnail_version == 0:
        enqueue(txn, THUMBNAILS, asset.id, now)
    if asset.type == "VIDEO" and asset.video_decided_at is None:
        enqueue(txn, VIDEO, asset.id, now)


def enqueue_new_many(txn: Txn, asset_keys: list[bytes], video_keys: list[bytes], now: datetime) -> None:
    """Work for assets created in this transaction (their raw 16-byte ids; `video_keys` those of the videos among
    them): metadata and thumbnails for all, the transcode decision for videos. Nothing can be pending for them
    yet, so these are blind bulk puts."""
    job = PendingJob(queued_at=now)
    txn.put_same(PENDING_METADATA, asset_keys, job)
    txn.put_same(PENDING_THUMBNAILS, asset_keys, job)
    if video_keys:
        txn.put_same(PENDING_VIDEO, video_keys, job)


def enqueue_new_or_changed(txn: Txn, asset: Asset, now: datetime, *, force: bool = False) -> None:
    """A new or changed original: metadata (content hash and EXIF), thumbnails and, for videos, the transcode
    decision. They run independently: each job reads the file itself."""
    enqueue(txn, METADATA, asset.id, now, force=force)
    enqueue(txn, THUMBNAILS, asset.id, now, force=force)
    if asset.type == "VIDEO":
        enqueue(txn, VIDEO, asset.id, now, force=force)


def drop_all(txn: Txn, asset_id: uuid.UUID) -> None:
    """An asset is gone: its pending work and failures go with it."""
    for table in QUEUE_TABLES.values():
        txn.delete(table, asset_id.bytes)
    for key in [key for key, _ in txn.items(JOB_FAILURES, asset_id.bytes)]:
        txn.delete(JOB_FAILURES, key)


def waiting(txn: Txn, queue: str) -> int:
    """Entries waiting in `queue`: a constant-time count."""
    return txn.count(QUEUE_TABLES[queue])


def take(txn: Txn, queue: str, limit: int) -> list[tuple[uuid.UUID, PendingJob]]:
    """Up to `limit` pending entries of `queue`, oldest id first (not removed: call `finish`)."""
    taken = []
    for key, job in txn.items(QUEUE_TABLES[queue]):
        taken.append((uuid.UUID(bytes=key), job))
        if len(taken) >= limit:
            break
    return taken


def finish(txn: Txn, queue: str, asset_id: uuid.UUID, taken: PendingJob | None = None) -> None:
    """The job succeeded (or has nothing to do): drop it, and any earlier failure of it. With `taken` (the
    entry as the job found it), an entry re-queued meanwhile (the file changed again) stays for another run."""
    table = QUEUE_TABLES[queue]
    if taken is None or txn.get(table, asset_id.bytes) == taken:
        txn.delete(table, asset_id.bytes)
    txn.delete(JOB_FAILURES, failure_key(asset_id, queue))


def record_failure(
    txn: Txn,
    queue: str,
    asset_id: uuid.UUID,
    taken: PendingJob,
    reason: str,
    now: datetime,
    *,
    max_attempts: int,
    final: bool,
    retry_delay: float = 0.0,
) -> bool:
    """Count a failed attempt of the job as it was `taken`. After `max_attempts`, or at once when `final` (bad
    media fails the same way every time), the job leaves its queue and becomes a JobFailure; otherwise it waits
    `retry_delay` seconds, doubling with each attempt. A job re-queued meanwhile (the file changed again) is left
    alone: the failure was about the old content. Returns True when it failed for good."""
    table = QUEUE_TABLES[queue]
    job = txn.get(table, asset_id.bytes)
    if job is None or job != taken:
        return False
    attempts = job.attempts + 1
    if final or attempts >= max_attempts:
        txn.delete(table, asset_id.bytes)
        failure = JobFailure(queue=queue, reason=reason, attempts=attempts, failed_at=now)
        txn.put(JOB_FAILURES, failure_key(asset_id, queue), failure)
        return True
    retry_after = now + timedelta(seconds=retry_delay * 2 ** (attempts - 1))
    retried = msgspec.structs.replace(job, attempts=attempts, last_error=reason, retry_after=retry_after)
    txn.put(table, asset_id.bytes, retried)
    return False


def failure_key(asset_id: uuid.UUID, queue: str) -> bytes:
    return asset_id.bytes + queue.encode()


def failures_of(txn: Txn, asset_id: uuid.UUID) -> list[JobFailure]:
    return list(txn.values(JOB_FAILURES, asset_id.bytes))


def failed_count(txn: Txn, queue: str) -> int:
    """Failures of one queue: a walk over the failures' keys (asset id + queue name), nothing decoded. They stay
    few (bad files, not every file), and STATUS and /metrics ask every second or scrape."""
    suffix = queue.encode()
    with txn.cursor(JOB_FAILURES) as cursor:
        return sum(1 for key in cursor.iternext(keys=True, values=False) if key[16:] == suffix)


def clear_failed(txn: Txn, queue: str) -> int:
    keys = [key for key, failure in txn.items(JOB_FAILURES) if failure.queue == queue]
    for key in keys:
        txn.delete(JOB_FAILURES, key)
    return len(keys)


def empty(txn: Txn, queue: str, running: Set[uuid.UUID] = frozenset()) -> int:
    """Drop every waiting job of `queue` (Immich's `empty`); `running` ones stay, so they still finish or retry
    and a restart still resumes them. Returns how many were dropped."""
    table = QUEUE_TABLES[queue]
    if not running:
        count = txn.count(table)
        txn.clear(table)
        return count
    doomed = [key for key, _ in txn.items(table) if uuid.UUID(bytes=key) not in running]
    for key in doomed:
        txn.delete(table, key)
    return len(doomed)
