"""`GET /api/jobs`: Immich's queue status object (admin). Queues filmroll does not run report zeros."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_response

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


def queues() -> dict[str, Queue]:
    result = {name: Queue(jobCounts=JobCounts(), queueStatus=QueueStatus()) for name in QUEUE_NAMES}
    library = services().library_jobs.counts()
    result["library"] = Queue(
        jobCounts=JobCounts(
            active=library.active, completed=library.completed, failed=library.failed, waiting=library.waiting
        ),
        queueStatus=QueueStatus(isActive=bool(library.active or library.waiting)),
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
