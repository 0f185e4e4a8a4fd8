"""`filmroll jobs --watch` as a real command: it waits while a daemon works, and stops with a reason when waiting
would be forever (no daemon runs the queues; only paused queues have work left)."""

from __future__ import annotations

import io
import subprocess
import sys

import trio
from PIL import Image

from daemon import job_queue
from daemon.media_jobs import running
from tests.e2e.live_daemon import record_originals
from tests.media_files import jpeg

FILMROLL = [sys.executable, "-m", "daemon.cli"]
DATES = {"fileCreatedAt": "2024-02-03T04:05:06.000Z", "fileModifiedAt": "2024-02-03T04:05:06.000Z"}


def run(*args: str, data: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FILMROLL, *args, "--data-dir", data], capture_output=True, text=True, input=stdin,
                          timeout=120)  # fmt: skip


async def watch(data: str) -> subprocess.CompletedProcess:
    """`filmroll jobs --watch` beside the daemon of this trio run (so it keeps working meanwhile)."""
    with trio.fail_after(90):
        return await trio.run_process(
            [*FILMROLL, "jobs", "--watch", "--data-dir", data], capture_stdout=True, capture_stderr=True,
            check=False,
        )  # fmt: skip


def test_without_a_daemon_watch_says_so_and_exits_1(tmp_path):
    data, external = str(tmp_path / "data"), tmp_path / "nas"
    jpeg(external / "p" / "a.jpg")
    record_originals(external)
    run("user", "create", "--admin", "--email", "a@example.com", "--name", "A", "--password-stdin",
        "--external-path", str(external), data=data, stdin="pw\n")  # fmt: skip
    made = run(
        "library", "create", "--user", "a@example.com", "--import-path", str(external / "p"), data=data
    )
    assert run("library", "scan", made.stdout.split()[0], data=data).returncode == 0
    watched = run("jobs", "--watch", data=data)  # before: waited forever
    assert watched.returncode == 1, (watched.stdout, watched.stderr)
    assert f"no filmroll daemon is running on {data}" in watched.stderr
    assert "metadataExtraction 1" in watched.stderr and "filmroll serve" in watched.stderr
    assert running(data) is None


async def test_a_paused_queue_is_named_and_not_waited_for(daemon, admin):
    data = daemon.settings.data_dir
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(out, "JPEG")
    paused = await admin.client.put("/api/jobs/metadataExtraction", json={"command": "pause"})
    assert paused.status_code == 200, paused.text
    assert running(data).paused == ["metadataExtraction"]  # what the CLI reads, beside the daemon
    uploaded = await admin.client.post(
        "/api/assets", data=DATES, files={"assetData": ("a.jpg", out.getvalue(), "image/jpeg")}
    )
    assert uploaded.status_code == 201, uploaded.text
    watched = await watch(data)  # the thumbnail is waited for; the paused metadata job is not
    stderr = watched.stderr.decode()
    assert watched.returncode == 1, (watched.stdout, stderr)
    assert "queue metadataExtraction is paused with 1 jobs waiting: not waiting for it" in stderr
    assert "stopped: only paused queues have work left (metadataExtraction)" in stderr
    assert stderr.count("is paused") == 1  # named once, not at every redraw
    with daemon.services.index.read() as txn:  # the other queues had their work done meanwhile
        assert job_queue.waiting(txn, job_queue.THUMBNAILS) == 0
        assert job_queue.waiting(txn, job_queue.METADATA) == 1

    resumed = await admin.client.put("/api/jobs/metadataExtraction", json={"command": "resume"})
    assert resumed.status_code == 200, resumed.text
    assert running(data).paused == []
    done = await watch(data)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert b"paused" not in done.stderr and b"no filmroll daemon" not in done.stderr
