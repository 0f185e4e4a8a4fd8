"""The durable hand-off from libraries to the media pipeline: pending work per queue, stored in the index.

A scan (or upload, or watcher event) enqueues work *in the same write transaction* that creates or changes the
asset, so a crash can never leave an asset without its pending work, nor work for an asset that does not exist.
Enqueuing the same (queue, asset) twice merges (a `force` request stays forced). Runners (`daemon.media_jobs`)
take entries in key order and delete them when done.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from .index import PENDING_JOBS, Txn
from .records import PendingJob

METADATA = "metadataExtraction"
THUMBNAILS = "thumbnailGeneration"
VIDEO = "videoConversion"
MEDIA_QUEUES = (METADATA, THUMBNAILS, VIDEO)


@dataclass
class QueueCounts:
    """A queue's counters, as Immich's `/api/jobs` reports them."""

    active: int = 0
    completed: int = 0
    failed: int = 0
    waiting: int = 0


def job_key(queue: str, asset_id: uuid.UUID) -> bytes:
    return queue.encode() + b"\0" + asset_id.bytes


def enqueue(txn: Txn, queue: str, asset_id: uuid.UUID, now: datetime, *, force: bool = False) -> None:
    key = job_key(queue, asset_id)
    existing = txn.get(PENDING_JOBS, key)
    if existing is not None and (existing.force or not force):
        return
    txn.put(PENDING_JOBS, key, PendingJob(queued_at=now, force=force))


def enqueue_new_many(txn: Txn, asset_ids: list[uuid.UUID], now: datetime) -> None:
    """Work for assets created in this transaction: nothing can be pending for them yet (blind bulk puts)."""
    job = PendingJob(queued_at=now)
    txn.put_many(PENDING_JOBS, [(job_key(METADATA, asset_id), job) for asset_id in asset_ids])


def enqueue_new_or_changed(txn: Txn, asset_id: uuid.UUID, now: datetime, *, force: bool = False) -> None:
    """A new or changed original: metadata first (it hashes the content and reads EXIF); the metadata job
    enqueues thumbnails and, for videos, the transcode decision once it knows the file."""
    enqueue(txn, METADATA, asset_id, now, force=force)


def drop_all(txn: Txn, asset_id: uuid.UUID) -> None:
    for queue in MEDIA_QUEUES:
        txn.delete(PENDING_JOBS, job_key(queue, asset_id))


def waiting(txn: Txn, queue: str) -> int:
    return sum(1 for _ in txn.items(PENDING_JOBS, queue.encode() + b"\0"))


def take(txn: Txn, queue: str, limit: int) -> list[tuple[uuid.UUID, PendingJob]]:
    """Up to `limit` pending entries of `queue`, oldest key first (not removed: call `finish`)."""
    taken = []
    for key, job in txn.items(PENDING_JOBS, queue.encode() + b"\0"):
        taken.append((uuid.UUID(bytes=key[-16:]), job))
        if len(taken) >= limit:
            break
    return taken


def finish(txn: Txn, queue: str, asset_id: uuid.UUID) -> None:
    txn.delete(PENDING_JOBS, job_key(queue, asset_id))
