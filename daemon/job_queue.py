"""The durable hand-off from libraries to the media pipeline: pending work per queue, stored in the index.

A scan (or upload, or watcher event) enqueues work *in the same write transaction* that creates or changes the
asset, so a crash can never leave an asset without its pending work, nor work for an asset that does not exist.
Enqueuing the same (queue, asset) twice merges (a `force` request stays forced). Runners (`daemon.media_jobs`)
take entries in id order and delete them when done.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import msgspec

from .index import PENDING_METADATA, PENDING_THUMBNAILS, PENDING_VIDEO, Table, Txn
from .records import PendingJob

METADATA = "metadataExtraction"
THUMBNAILS = "thumbnailGeneration"
VIDEO = "videoConversion"
QUEUE_TABLES: dict[str, Table[PendingJob]] = {
    METADATA: PENDING_METADATA,
    THUMBNAILS: PENDING_THUMBNAILS,
    VIDEO: PENDING_VIDEO,
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
    table = QUEUE_TABLES[queue]
    existing = txn.get(table, asset_id.bytes)
    if existing is not None and (existing.force or not force):
        return
    txn.put(table, asset_id.bytes, PendingJob(queued_at=now, force=force))


def enqueue_new_many(txn: Txn, asset_keys: list[bytes], now: datetime) -> None:
    """Work for assets created in this transaction (raw 16-byte ids): nothing can be pending for them yet, so
    these are blind bulk puts."""
    txn.put_same(PENDING_METADATA, asset_keys, PendingJob(queued_at=now))


def enqueue_new_or_changed(txn: Txn, asset_id: uuid.UUID, now: datetime, *, force: bool = False) -> None:
    """A new or changed original: metadata first (it hashes the content and reads EXIF); the metadata job
    enqueues thumbnails and, for videos, the transcode decision once it knows the file."""
    enqueue(txn, METADATA, asset_id, now, force=force)


def drop_all(txn: Txn, asset_id: uuid.UUID) -> None:
    for table in QUEUE_TABLES.values():
        txn.delete(table, asset_id.bytes)


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


def finish(txn: Txn, queue: str, asset_id: uuid.UUID) -> None:
    txn.delete(QUEUE_TABLES[queue], asset_id.bytes)


def record_failure(txn: Txn, queue: str, asset_id: uuid.UUID, reason: str, *, max_attempts: int) -> bool:
    """Count a failed attempt; after `max_attempts` the entry is dropped. Returns True when it was dropped."""
    table = QUEUE_TABLES[queue]
    job = txn.get(table, asset_id.bytes)
    if job is None:
        return False
    if job.attempts + 1 >= max_attempts:
        txn.delete(table, asset_id.bytes)
        return True
    txn.put(table, asset_id.bytes, msgspec.structs.replace(job, attempts=job.attempts + 1, last_error=reason))
    return False
