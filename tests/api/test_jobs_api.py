"""`PUT /api/jobs/library` (libraries.md §12.3, api-compat.md §11) and the library's watch status, over HTTP."""

from __future__ import annotations

from tests.api.test_libraries_api import settle
from tests.library_helpers import write


async def external_library(admin, tmp_path, *names: str) -> dict:
    external = tmp_path / "external"
    for name in names:
        write(external / "photos" / name)
    (external / "photos").mkdir(parents=True, exist_ok=True)
    reply = await admin.client.put(
        f"/api/admin/users/{admin.user['id']}", json={"externalPath": str(external)}
    )
    assert reply.status_code == 200, reply.text
    reply = await admin.client.post("/api/libraries", json={"importPaths": [str(external / "photos")]})
    assert reply.status_code == 201, reply.text
    return reply.json()


async def test_start_runs_cleanup_and_scans_every_external_library(admin, tmp_path):
    library = await external_library(admin, tmp_path, "a.jpg", "b.jpg")
    reply = await admin.client.put("/api/jobs/library", json={"command": "start"})
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"jobCounts", "queueStatus"}
    await settle(admin)
    assert (await admin.client.get(f"/api/libraries/{library['id']}")).json()["assetCount"] == 2


async def test_start_while_running_is_refused(admin, tmp_path, daemon):
    await external_library(admin, tmp_path, "a.jpg")
    daemon.services.library_jobs.pause()  # hold the queued work, so the queue is visibly active
    first = await admin.client.put("/api/jobs/library", json={"command": "start", "force": True})
    assert first.status_code == 200 and first.json()["queueStatus"]["isPaused"] is True
    again = await admin.client.put("/api/jobs/library", json={"command": "start"})
    assert again.status_code == 400 and again.json()["message"] == "Job is already running"
    emptied = await admin.client.put("/api/jobs/library", json={"command": "empty"})
    assert emptied.json()["jobCounts"]["waiting"] == 0
    resumed = await admin.client.put("/api/jobs/library", json={"command": "resume"})
    assert resumed.json()["queueStatus"]["isPaused"] is False


async def test_bad_names_and_commands(admin):
    unknown = await admin.client.put("/api/jobs/nope", json={"command": "start"})
    assert unknown.status_code == 400
    assert unknown.json()["message"][0].startswith(
        "name must be one of the following values: thumbnailGeneration"
    )
    not_run = await admin.client.put("/api/jobs/faceDetection", json={"command": "start"})
    assert not_run.status_code == 400 and not_run.json()["message"] == "Invalid job name: faceDetection"
    bad = await admin.client.put("/api/jobs/library", json={"command": "explode"})
    assert bad.status_code == 400


async def test_only_admins_run_jobs(user):
    reply = await user.client.put("/api/jobs/library", json={"command": "start"})
    assert reply.status_code == 403


async def test_library_response_says_how_it_is_watched(admin, tmp_path):
    library = await external_library(admin, tmp_path)
    assert library["watch"] == {"mode": "off", "reason": "watching is disabled (library.watch.enabled)"}
