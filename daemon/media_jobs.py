"""The media queues' work: what a metadata, thumbnail or transcode job does, daemon side.

Each handler reads what it needs from the index (a short read transaction), runs the CPU work in a worker process
(`daemon/worker_tasks.py`), and stores the result in one write transaction. Files it replaced are removed only after
that commit, so the index never points at a missing derivative. The shared machinery (taking jobs, retries,
failures, worker processes) is `daemon/media_queue.py`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import trio

from . import asset_edits, job_queue, worker_tasks
from . import assets as asset_index
from .assets import mtime_datetime
from .config import FfmpegSettings, ImageSettings, Settings
from .derived import DerivedFiles, remove_all
from .errors import BadMedia
from .index import ASSET_EDITS, EXIF, PENDING_METADATA, Index, Txn
from .media_queue import (
    Failure,
    Group,
    JobHandler,
    MediaQueue,
    Outcomes,
    Source,
    Workers,
    failure_of,
    init_worker_logging,
    locate,
)
from .originals import NotConfined
from .records import Asset, ExifInfo, PendingJob
from .storage_jobs import StorageTemplateJobs
from .timeutil import utc_now

log = logging.getLogger(__name__)

SWAPPED_ORIENTATIONS = {"5", "6", "7", "8"}
RUNNER_LOCK = "locks/media-queues.lock"
"""Under the data directory: `flock`ed by the process running the media queues, as long as they run."""
RUNNER_STATE = "locks/media-queues.json"
"""Beside it: that process's pid and which queues it has paused (replaced atomically on every change)."""
LOCK_PATIENCE_SECONDS = 2.0


def _locate_group(
    index: Index, queue: str, group: Group, outcomes: Outcomes
) -> list[tuple[Source, PendingJob]]:
    """The group's sources. Unconfinable ones fail. Offline ones are done for now: their file is missing, and
    the scan that brings them back queues what they still lack (`job_queue.enqueue_missing`)."""
    found, offline = [], []
    with index.read() as txn:
        for asset_id, job in group:
            try:
                source = locate(txn, asset_id)
            except NotConfined as error:
                outcomes[asset_id] = failure_of(error)
                continue
            if source is None:  # removed meanwhile, with its pending work
                outcomes[asset_id] = None
            elif source.asset.is_offline:
                outcomes[asset_id] = None
                offline.append((asset_id, job))
            else:
                found.append((source, job))
    if offline:

        def finish(txn: Txn) -> None:
            for asset_id, job in offline:
                job_queue.finish(txn, queue, asset_id, job)

        index.write(finish)
    return found


def oriented_size(info: ExifInfo) -> tuple[int | None, int | None]:
    width, height = info.exif_image_width, info.exif_image_height
    if info.orientation in SWAPPED_ORIENTATIONS or info.rotation in (90, 270):
        return height, width
    return width, height


class MetadataJobs:
    """`metadataExtraction`: EXIF/XMP (sidecar values win), capture dates, dimensions, and the content hash of
    external files (`media.md` §6)."""

    queue = job_queue.METADATA
    group_size = 32

    def __init__(self, index: Index):
        self.index = index

    @staticmethod
    def wanted(asset: Asset, *, force: bool) -> bool:
        return force or asset.metadata_extracted_at is None

    async def run(self, workers: Workers, group: Group) -> Outcomes:
        outcomes: Outcomes = {}
        sources = _locate_group(self.index, self.queue, group, outcomes)
        if not sources:
            return outcomes
        items = [
            (
                s.path,
                s.root,
                s.asset.sidecar_path,
                s.root is not None and (job.force or not s.asset.content_sha1),
            )
            for s, job in sources
        ]
        results = await workers.run(worker_tasks.extract_metadata, items)
        stored: list[tuple[Source, PendingJob, ExifInfo | None, bytes | None]] = []
        for (source, job), result in zip(sources, results, strict=True):
            if isinstance(result, OSError):
                outcomes[source.asset.id] = failure_of(result, source.path)
                continue
            info, digest = result
            if isinstance(
                info, BadMedia
            ):  # unreadable metadata: keep file-based dates (§6.4), store the hash
                outcomes[source.asset.id] = failure_of(info, source.path)
                stored.append((source, job, None, digest))
            else:
                outcomes[source.asset.id] = None
                stored.append((source, job, info, digest))
        self.index.write(lambda txn: self._store(txn, stored, utc_now()))
        return outcomes

    @staticmethod
    def _store(
        txn: Txn, stored: list[tuple[Source, PendingJob, ExifInfo | None, bytes | None]], now: datetime
    ) -> None:
        for source, job, info, digest in stored:
            asset = asset_index.get(txn, source.asset.id)
            if asset is None or txn.get(PENDING_METADATA, asset.id.bytes) != job:
                continue  # removed, or changed again while being read: the rerun stores the new content's
            changes: dict[str, object] = {}
            if digest is not None and digest != asset.content_sha1:
                changes["content_sha1"] = digest
            if info is not None:
                # the owner's edits win over the file and its sidecar, at every extraction (`media.md` §6.3)
                info = asset_edits.overlay(info, txn.get(ASSET_EDITS, asset.id.bytes)) or info
                txn.put(EXIF, asset.id.bytes, info)
                changes.update(metadata_changes(asset, info), metadata_extracted_at=now, updated_at=now)
                job_queue.finish(txn, job_queue.METADATA, asset.id, job)
                if source.root is None and asset.storage_placed_at is None:  # an upload: dates are known now
                    job_queue.enqueue(txn, job_queue.STORAGE_TEMPLATE, asset.id, now)
            if changes:
                asset_index.update(txn, asset, **changes)


def metadata_changes(asset: Asset, info: ExifInfo) -> dict[str, object]:
    """The asset fields that follow from its metadata (`media.md` §6.1)."""
    taken = info.date_time_original or mtime_datetime(asset.file_mtime_ns)
    changes: dict[str, object] = {
        "file_created_at": taken,
        # the wall-clock time, labelled UTC (Immich's `localDateTime` convention); aware like every stored time
        "local_date_time": (info.local_date_time or taken).replace(tzinfo=UTC),
    }
    if info.duration_ms is not None:
        changes["duration_ms"] = info.duration_ms
    width, height = oriented_size(info)
    if asset.thumbnail_version == 0 and width and height:  # a render measures them; until then, EXIF's
        changes["width"], changes["height"] = width, height
    return changes


class _OneByOne:
    """A handler whose worker calls take one file each (renders, transcodes)."""

    queue: str
    group_size = 1
    index: Index

    async def run(self, workers: Workers, group: Group) -> Outcomes:
        outcomes: Outcomes = {}
        for source, job in _locate_group(self.index, self.queue, group, outcomes):
            outcomes[source.asset.id] = await self.one(workers, source, job)
        return outcomes

    async def one(self, workers: Workers, source: Source, job: PendingJob) -> Failure | None:
        raise NotImplementedError


class ThumbnailJobs(_OneByOne):
    """`thumbnailGeneration`: thumbnail, preview and thumbhash (`media.md` §2, §3), a new version per render."""

    queue = job_queue.THUMBNAILS

    def __init__(self, index: Index, derived: DerivedFiles, image: ImageSettings):
        self.index = index
        self.derived = derived
        self.image = image

    @staticmethod
    def wanted(asset: Asset, *, force: bool) -> bool:
        return force or asset.thumbnail_version == 0

    async def one(self, workers: Workers, source: Source, job: PendingJob) -> Failure | None:
        asset = source.asset
        version = asset.thumbnail_version + 1
        thumbnail = self.derived.image_path(asset.id, "thumbnail", version)
        preview = self.derived.image_path(asset.id, "preview", version)
        try:
            rendered = await workers.run(
                worker_tasks.render, source.path, source.root, asset.type == "VIDEO",
                str(thumbnail), str(preview), self.image,
            )  # fmt: skip
        except Exception as error:
            return failure_of(error, source.path)  # re-raises what is not a job's failure

        def store(txn: Txn) -> bool:
            current = asset_index.get(txn, asset.id)
            if current is None:
                return False
            asset_index.update(
                txn, current, thumbhash=rendered.thumbhash, thumbnail_version=version,
                width=rendered.width, height=rendered.height, updated_at=utc_now(),
            )  # fmt: skip
            job_queue.finish(txn, self.queue, asset.id, job)
            return True

        stored = self.index.write(store)
        with trio.CancelScope(shield=True):  # after the commit, the cleanup must happen even at shutdown
            if stored:
                await trio.to_thread.run_sync(self.derived.remove_old_versions, asset.id, version)
            else:  # removed while rendering
                await trio.to_thread.run_sync(remove_all, self.derived.root, [asset.id])
        return None


class VideoJobs(_OneByOne):
    """`videoConversion`: decide by the transcode policy and transcode, or delete a transcode no longer needed
    (`media.md` §4)."""

    queue = job_queue.VIDEO

    def __init__(self, index: Index, derived: DerivedFiles, ffmpeg: FfmpegSettings):
        self.index = index
        self.derived = derived
        self.ffmpeg = ffmpeg

    @staticmethod
    def wanted(asset: Asset, *, force: bool) -> bool:
        return asset.type == "VIDEO" and (force or asset.video_decided_at is None)

    async def one(self, workers: Workers, source: Source, job: PendingJob) -> Failure | None:
        asset = source.asset
        output = self.derived.encoded_video(asset.id)
        await trio.to_thread.run_sync(self.derived.remove_transcode_leftovers, asset.id)  # a killed attempt's
        try:
            found, transcoded = await workers.run(
                worker_tasks.convert_video, source.path, source.root, str(output), self.ffmpeg
            )
        except Exception as error:
            return failure_of(error, source.path)  # re-raises what is not a job's failure

        def store(txn: Txn) -> bool:
            current = asset_index.get(txn, asset.id)
            if current is None:
                return False
            changes: dict[str, object] = {"has_encoded_video": transcoded, "video_decided_at": utc_now()}
            if found.duration_ms is not None:
                changes["duration_ms"] = found.duration_ms
            if current.width is None:
                turned = found.rotation in (90, 270)
                changes["width"], changes["height"] = (
                    (found.height, found.width) if turned else (found.width, found.height)
                )
            asset_index.update(txn, current, **changes)
            job_queue.finish(txn, self.queue, asset.id, job)
            return True

        stored = self.index.write(store)
        with trio.CancelScope(shield=True):  # after the commit, the cleanup must happen even at shutdown
            if not stored:  # removed while transcoding
                await trio.to_thread.run_sync(remove_all, self.derived.root, [asset.id])
            elif not transcoded:  # the policy no longer wants one (§4.3): the original plays
                await trio.to_thread.run_sync(functools.partial(Path(output).unlink, missing_ok=True))
        return None


class Runner(msgspec.Struct):
    """What `filmroll jobs` learns of the process running the media queues of a data directory."""

    pid: int = 0
    paused: list[str] = msgspec.field(default_factory=list)


def running(data_dir: str | os.PathLike[str]) -> Runner | None:
    """The process running the media queues of `data_dir` (a daemon), None when none does: nobody holds the
    runner lock (the kernel drops it when its holder dies, so a killed daemon does not count). Read-only."""
    try:
        descriptor = os.open(Path(data_dir) / RUNNER_LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # no daemon ever ran the queues here
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # held: a daemon runs them
    else:
        return None
    finally:
        os.close(descriptor)  # closing drops our shared lock at once, if we took it
    try:
        return msgspec.json.decode((Path(data_dir) / RUNNER_STATE).read_bytes(), type=Runner)
    except (OSError, msgspec.DecodeError):  # being written for the first time: running, nothing paused yet
        return Runner()


@dataclass
class _RunnerMark:
    """The runner lock, held while `MediaQueues.run` runs, and the state file beside it."""

    data_dir: Path
    descriptor: int | None = None
    paused: list[str] = field(default_factory=list)

    async def acquire(self) -> None:
        path = self.data_dir / RUNNER_LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with trio.move_on_after(LOCK_PATIENCE_SECONDS):  # a `filmroll jobs` holds it shared for an instant
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    await trio.sleep(0.05)
                    continue
                self.descriptor = descriptor
                self.publish(self.paused)
                return
        os.close(descriptor)
        holder = running(self.data_dir)
        log.warning(
            "another process (pid %s) runs the media queues of %s; `filmroll jobs --watch` follows that one",
            holder.pid if holder else "unknown", self.data_dir,
        )  # fmt: skip

    def publish(self, paused: list[str]) -> None:
        self.paused = paused
        if self.descriptor is None:
            return
        state = self.data_dir / RUNNER_STATE
        temporary = state.with_suffix(".json.tmp")
        try:
            temporary.write_bytes(msgspec.json.encode(Runner(pid=os.getpid(), paused=paused)))
            os.replace(temporary, state)
        except OSError as error:  # a full disk: the CLI then sees no queue paused; the queues run on
            log.warning("cannot record the paused media queues in %s: %s", state, error)

    def release(self) -> None:
        if self.descriptor is not None:
            with contextlib.suppress(OSError):
                (self.data_dir / RUNNER_STATE).unlink()
            os.close(self.descriptor)  # closing releases the lock
            self.descriptor = None


@dataclass
class MediaQueues:
    """The media queues the daemon runs, each with its own workers and concurrency (`[job]` settings).

    While they run, their process holds `RUNNER_LOCK` under the data directory and keeps `RUNNER_STATE` (its pid,
    the paused queues) up to date, so `filmroll jobs --watch` can tell a daemon at work from no daemon at all, and
    a paused queue from a slow one (`running`)."""

    metadata: MediaQueue
    thumbnails: MediaQueue
    video: MediaQueue
    storage: MediaQueue
    """`storageTemplateMigration` (`daemon.storage_jobs`): file moves, one at a time."""
    data_dir: Path | None = None
    """Where the runner lock lives (None: no lock, as in tests that build the queues by hand)."""

    @classmethod
    def build(cls, index: Index, settings: Settings) -> MediaQueues:
        files = DerivedFiles(settings.data_dir, settings.image)
        jobs = settings.job
        init = functools.partial(init_worker_logging, settings.log_level, settings.log_format)

        def queue(handler: JobHandler, concurrency: int) -> MediaQueue:
            return MediaQueue(index, handler, concurrency=concurrency, jobs=jobs, worker_init=init)

        return cls(
            metadata=queue(MetadataJobs(index), jobs.metadata_extraction),
            thumbnails=queue(ThumbnailJobs(index, files, settings.image), jobs.thumbnail_generation),
            video=queue(VideoJobs(index, files, settings.ffmpeg), jobs.video_conversion),
            storage=queue(StorageTemplateJobs(index, settings), 1),
            data_dir=settings.data_path,
        )

    def by_name(self) -> dict[str, MediaQueue]:
        return {queue.name: queue for queue in (self.metadata, self.thumbnails, self.video, self.storage)}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        queues = self.by_name()
        mark = None if self.data_dir is None else _RunnerMark(self.data_dir)

        def publish() -> None:
            if mark is not None:
                mark.publish(sorted(name for name, queue in queues.items() if queue.paused))

        try:
            if mark is not None:
                mark.paused = sorted(name for name, queue in queues.items() if queue.paused)
                await mark.acquire()
            for queue in queues.values():
                queue.on_pause_change = publish
            async with trio.open_nursery() as nursery:
                for queue in queues.values():
                    await nursery.start(queue.run)
                task_status.started()
        finally:
            for queue in queues.values():
                queue.on_pause_change = None
            if mark is not None:
                mark.release()

    async def idle(self) -> None:
        """Return once every media queue is idle (a job of one may queue work for another, so loop)."""
        while True:
            for queue in self.by_name().values():
                await queue.idle()
            if all(
                not queue.counts().active and not queue.counts().waiting for queue in self.by_name().values()
            ):
                return
