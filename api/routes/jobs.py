"""`GET /api/jobs`: Immich's queue status object (admin). Queues filmroll does not run report zeros."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_request, validate_response

from daemon.errors import InvalidInput

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


def queues() -> dict[str, Queue]:
    result = {name: Queue(jobCounts=JobCounts(), queueStatus=QueueStatus()) for name in QUEUE_NAMES}
    library = services().library_jobs.counts()
    result["library"] = Queue(
        jobCounts=JobCounts(
            active=library.active,
            completed=library.completed,
            failed=library.failed,
            waiting=library.waiting,
            paused=library.paused,
        ),
        queueStatus=QueueStatus(
            isActive=bool(library.active or library.waiting), isPaused=services().library_jobs.paused
        ),
    )
    metadata = services().metadata
    waiting = metadata.waiting()
    result["metadataExtraction"] = Queue(
        jobCounts=JobCounts(
            active=metadata.stats.active,
            completed=metadata.stats.completed,
            failed=metadata.stats.failed,
            waiting=waiting,
        ),
        queueStatus=QueueStatus(isActive=bool(metadata.stats.active or waiting), isPaused=metadata.paused),
    )
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
    """`library` runs here (§12.3); the media queues arrive with the media pipeline."""
    if name not in QUEUE_NAMES:
        raise InvalidInput(["name must be one of the following values: " + ", ".join(QUEUE_NAMES)])
    if name != "library":
        raise InvalidInput(f"Invalid job name: {name}")
    jobs = services().library_jobs
    if data.command == "start":
        jobs.start(force=bool(data.force))
    elif data.command == "pause":
        jobs.pause()
    elif data.command == "resume":
        jobs.resume()
    elif data.command == "empty":
        jobs.empty()
    else:
        jobs.clear_failed()
    return queues()[name]
