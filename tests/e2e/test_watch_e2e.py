"""Watching under the real daemon process: files copied, renamed and deleted in an import path show up in the API
with no scan requested (libraries.md §11). An invalid cron expression stops the daemon from starting (§12.4)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
from PIL import Image

from tests.e2e.live_daemon import FILMROLL, originals_changed, record_originals, start_daemon, wait_for


def copied_untouched(copy: Path, source: Path) -> None:
    """A library original the daemon imported still is the `shutil.copy2` of `source`: same bytes, mtime, mode
    (the daemon saw the copy before anything could fingerprint it, so the source is the reference)."""

    def facts(path: Path) -> tuple:
        found = path.stat()
        return path.read_bytes(), found.st_mtime_ns, found.st_mode, found.st_uid, found.st_gid

    assert facts(copy) == facts(source), f"{copy} changed"


def start(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """The real daemon with watching on (the shared helper turns it off for tests that decide when scans run)."""
    return start_daemon(data_dir, log, FILMROLL_LIBRARY__WATCH__ENABLED="true")


def test_copy_rename_delete_under_a_running_daemon(tmp_path):
    photos = tmp_path / "external" / "photos"
    photos.mkdir(parents=True)
    source = tmp_path / "camera"
    source.mkdir()
    for index, color in enumerate(["red", "green"]):
        Image.new("RGB", (64, 48), color).save(source / f"IMG_{index}.jpg", quality=90)
    process, url = start(tmp_path / "data", tmp_path / "daemon.log")
    try:
        client = httpx.Client(base_url=url, timeout=30)
        account = {"email": "admin@example.com", "password": "pw-123456", "name": "Admin"}
        assert client.post("/api/auth/admin-sign-up", json=account).status_code == 201
        token = client.post("/api/auth/login", json=account).json()["accessToken"]
        client.headers["Authorization"] = f"Bearer {token}"
        me = client.get("/api/users/me").json()
        client.put(f"/api/admin/users/{me['id']}", json={"externalPath": str(tmp_path / "external")})
        library = client.post("/api/libraries", json={"importPaths": [str(photos)]}).json()

        def get():
            return client.get(f"/api/libraries/{library['id']}").json()

        wait_for(lambda: get()["watch"]["mode"] == "inotify", "the watcher")
        for picture in sorted(source.iterdir()):
            shutil.copy2(picture, photos / picture.name)  # written, then closed: imported with no scan
        wait_for(lambda: get()["assetCount"] == 2, "two imported assets")
        record_originals(photos)  # the copies are the library's originals: from here on, by fingerprint, and
        for picture in source.iterdir():  # until here, against the camera/ files they were copied from
            copied_untouched(photos / picture.name, picture)

        def queues_idle():
            jobs = client.get("/api/jobs").json()
            return all(not jobs[q]["jobCounts"]["active"] and not jobs[q]["jobCounts"]["waiting"]
                       for q in ("library", "metadataExtraction"))  # fmt: skip

        def library_jobs_done():
            return client.get("/api/jobs").json()["library"]["jobCounts"]["completed"]

        wait_for(queues_idle, "content hashes")  # what recognises a move
        done = library_jobs_done()
        originals_changed(photos / "IMG_0.jpg", photos / "IMG_1.jpg")  # this test moves and deletes them
        os.rename(photos / "IMG_0.jpg", photos / "renamed.jpg")
        record_originals(photos / "renamed.jpg")
        wait_for(lambda: library_jobs_done() > done and queues_idle(), "the rename")
        assert get()["assetCount"] == 2  # moved, not re-imported
        done = library_jobs_done()
        copied_untouched(photos / "IMG_1.jpg", source / "IMG_1.jpg")
        os.remove(photos / "IMG_1.jpg")
        wait_for(lambda: library_jobs_done() > done and queues_idle(), "the deletion")
        stats = client.get(f"/api/libraries/{library['id']}/statistics").json()
        assert stats == {
            "photos": 2,
            "videos": 0,
            "total": 2,
            "usage": sum(picture.stat().st_size for picture in source.iterdir()),
        }  # offline still counted, with its size
        assert client.post(f"/api/libraries/{library['id']}/removeOffline").status_code == 204
        wait_for(lambda: get()["assetCount"] == 1, "only renamed.jpg left")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    copied_untouched(photos / "renamed.jpg", source / "IMG_0.jpg")
    check = subprocess.run(
        [*FILMROLL, "check", "--data-dir", str(tmp_path / "data")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_invalid_cron_expression_refuses_to_start(tmp_path):
    result = subprocess.run(
        [*FILMROLL, "serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "FILMROLL_LIBRARY__SCAN__CRON_EXPRESSION": "61 * * * *"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "Invalid cron expression 61 * * * *" in result.stderr
