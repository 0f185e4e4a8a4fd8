"""`GET /api/jobs`: Immich's queue status object (admin). Queues filmroll does not run report zeros."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_request, validate_response

from daemon.errors import InvalidInput
from daemon.job_queue import QueueCounts

from ..access import access, services

blueprint = Blueprint("jobs", __name__)

QUEUE_NAMES = (
    "thumbnailGeneration metadataExtraction videoConversion faceDetection facialRecognition smartSearch "
    "duplicateDetection backgroundTask storageTemplateMigration migration search sidecar library notifications "
    "backupDatabase ocr workflow integrityCheck editor"
).split()


class JobCounts(BaseModel):
    active: int = 0
    completed: int = 0
    failed: int = 0
    delayed: int = 0
    waiting: int = 0
    paused: int = 0


class QueueStatus(BaseModel):
    isActive: bool = False
    isPaused: bool = False


class Queue(BaseModel):
    jobCounts: JobCounts
    queueStatus: QueueStatus


class QueueCommand(BaseModel):
    command: Literal["start", "pause", "resume", "empty", "clear-failed"]
    force: bool | None = None


def queue_status(counts: QueueCounts, *, is_active: bool, is_paused: bool) -> Queue:
    return Queue(
        jobCounts=JobCounts(
            active=counts.active,
            completed=counts.completed,
            failed=counts.failed,
            waiting=counts.waiting,
            paused=counts.paused,
        ),
        queueStatus=QueueStatus(isActive=is_active, isPaused=is_paused),
    )


def queues() -> dict[str, Queue]:
    result = {name: Queue(jobCounts=JobCounts(), queueStatus=QueueStatus()) for name in QUEUE_NAMES}
    library = services().library_jobs
    counts = library.counts()
    result["library"] = queue_status(
        counts, is_active=bool(counts.active or counts.waiting), is_paused=library.paused
    )
    for name, queue in services().media.by_name().items():
        result[name] = queue_status(queue.counts(), is_active=queue.is_active, is_paused=queue.paused)
    return result


@blueprint.get("/api/jobs")
@access(permission="job.read", admin=True)
@validate_response(dict[str, Queue])
async def get_jobs() -> dict[str, Queue]:
    return queues()


@blueprint.put("/api/jobs/<name>")
@access(permission="job.create", admin=True)
@validate_request(QueueCommand)
@validate_response(Queue)
async def run_queue_command(name: str, data: QueueCommand) -> Queue:
    """`library`, `sidecar` and the media queues run here (api-compat §11); any other Immich queue: `Invalid job
    name`. Sidecar discovery is a scan on the library queue: `sidecar` `start` requests it, and the other commands
    have nothing of their own to act on."""
    if name not in QUEUE_NAMES:
        raise InvalidInput(["name must be one of the following values: " + ", ".join(QUEUE_NAMES)])
    media = services().media.by_name()
    if name == "sidecar":  # discovery is a scan: it runs on the library queue, and this queue holds no jobs
        if data.command == "start":
            services().library_jobs.start_sidecar_discovery(force=bool(data.force))
        return queues()[name]
    if name == "library":
        queue = services().library_jobs
    elif name in media:
        queue = media[name]
    else:
        raise InvalidInput(f"Invalid job name: {name}")
    if data.command == "start":
        queue.start(force=bool(data.force))
    elif data.command == "pause":
        queue.pause()
    elif data.command == "resume":
        queue.resume()
    elif data.command == "empty":
        queue.empty()
    else:
        queue.clear_failed()
    return queues()[name]
