"""The media pipeline's worker for the `metadataExtraction` queue.

Today it does the first part of metadata extraction: the content SHA-1 of each new or changed original, which is
what lets a later scan recognise a moved file (`libraries.md` §15.1). Reading EXIF/XMP, thumbnails and transcodes
build on this same queue (media issue); `metadata_extracted_at` stays unset until real metadata is read, so that
work will find every asset still waiting for it.

Originals are opened read-only through `originals.open_original`, against the owner's *current* external path.
Hashing runs in worker threads (hashlib releases the GIL; the work is I/O); index writes stay on the trio thread.
"""

from __future__ import annotations

import errno
import logging
import os
import uuid

import trio

from . import assets as asset_index
from . import job_queue
from .index import LIBRARIES, USERS, Index, Txn
from .originals import NotConfined, content_sha1
from .paths import NO_EXTERNAL_PATH_MESSAGE, os_error_text

log = logging.getLogger(__name__)

BATCH = 64
IDLE_POLL_SECONDS = 0.5
MAX_ATTEMPTS = 3


class MetadataWorker:
    def __init__(self, index: Index, *, concurrency: int = 2):
        self.index = index
        self.limiter = trio.CapacityLimiter(concurrency)
        self.stats = job_queue.QueueCounts()  # `waiting` is read from the index: see `waiting()`
        self.paused = False

    def waiting(self) -> int:
        with self.index.read() as txn:
            return job_queue.waiting(txn, job_queue.METADATA)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with self.index.read() as txn:
                batch = [] if self.paused else job_queue.take(txn, job_queue.METADATA, BATCH)
            if not batch:
                await trio.sleep(IDLE_POLL_SECONDS)
                continue
            async with trio.open_nursery() as nursery:
                for asset_id, _job in batch:
                    nursery.start_soon(self._process, asset_id)

    async def idle(self) -> None:
        """Return once the queue is empty and nothing is in flight (for tests and the CLI).

        Polls: work is enqueued inside other components' write transactions, which signal no event."""
        while self.waiting() or self.stats.active:  # noqa: ASYNC110
            await trio.sleep(0.05)

    def _locate(self, asset_id: uuid.UUID) -> tuple[bytes, bytes | None] | None:
        with self.index.read() as txn:
            asset = asset_index.get(txn, asset_id)
            if asset is None:
                return None
            library = txn.get(LIBRARIES, asset.library_id.bytes)
            owner = txn.get(USERS, asset.owner_id.bytes)
        if library is None or owner is None:
            return None
        if library.type == "UPLOAD":
            return asset.original_path, None
        if owner.external_path is None:
            raise NotConfined(errno.EACCES, NO_EXTERNAL_PATH_MESSAGE, os.fsdecode(asset.original_path))
        return asset.original_path, os.fsencode(owner.external_path)

    async def _process(self, asset_id: uuid.UUID) -> None:
        self.stats.active += 1
        try:
            try:
                located = self._locate(asset_id)
                if located is None:
                    self.index.write(lambda txn: job_queue.finish(txn, job_queue.METADATA, asset_id))
                    return
                path, root = located
                digest = await trio.to_thread.run_sync(content_sha1, path, root, limiter=self.limiter)
            except OSError as error:
                self._failed(
                    asset_id, f"{error.filename or asset_id}: {error.strerror or os_error_text(error)}"
                )
                return
            self.index.write(lambda txn: self._store(txn, asset_id, digest))
            self.stats.completed += 1
        finally:
            self.stats.active -= 1

    @staticmethod
    def _store(txn: Txn, asset_id: uuid.UUID, digest: bytes) -> None:
        asset = asset_index.get(txn, asset_id)
        if asset is not None and asset.content_sha1 != digest:
            asset_index.update(txn, asset, content_sha1=digest)
        job_queue.finish(txn, job_queue.METADATA, asset_id)

    def _failed(self, asset_id: uuid.UUID, reason: str) -> None:
        log.warning("metadata job for asset %s failed: %s", asset_id, reason)

        def work(txn: Txn) -> bool:
            return job_queue.record_failure(
                txn, job_queue.METADATA, asset_id, reason, max_attempts=MAX_ATTEMPTS
            )

        if self.index.write(work):
            self.stats.failed += 1
