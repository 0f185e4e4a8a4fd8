"""Faults (issue 10): real full filesystems, real mounts, a real kernel limit, a real LMDB map, real worker processes
killed from outside. Bad conditions get a clear error naming the file and the reason, the daemon stays up, and no
index entry, album membership or original file is lost or touched. Every scenario ends with `filmroll check` clean
(`stop_daemon`, or `check_index` in-process).

Each fault and where it is tested:
- The data directory full during uploads: tests/api/test_upload_api.py
  `test_a_full_disk_answers_507_and_keeps_nothing` (507, no asset, no temp file, the daemon carries on) and
  tests/daemon/test_uploads.py `test_a_full_disk_is_storage_full_and_a_duplicate_still_a_duplicate`; here
  `test_a_full_data_directory_answers_507_fails_scans_clearly_and_loses_nothing` (index, uploads and derived files
  on one full filesystem: uploads and index writes answer 507, a scan fails with the reason, nothing is lost).
- The data directory full during thumbnailing: here,
  `test_thumbnails_on_a_full_disk_fail_clearly_and_are_rendered_once_space_is_freed`.
- Files vanishing mid-scan: here, `test_files_vanishing_during_a_scan`.
- An import path unmounted mid-scan: here, `test_an_import_path_unmounted_during_a_scan_goes_offline_and_returns`;
  an import path renamed away under the watcher: tests/daemon/test_watch.py
  `test_vanished_import_path_goes_offline_and_comes_back_with_the_same_ids`.
- inotify watch limit exhausted: tests/daemon/test_watch.py `test_running_out_of_inotify_watches_falls_back_to_polling`
  (in-process, the machine-wide limit briefly lowered); here
  `test_the_daemon_falls_back_to_polling_when_inotify_watches_run_out` (the daemon process in a user namespace of its
  own whose limit is lowered, so nothing else on the machine loses watches).
- LMDB map full: tests/daemon/test_index.py `test_map_grows_instead_of_failing_when_full` (and growth by another
  process, growth under an open reader); here `test_a_scan_grows_a_tiny_map` (a real scan, its worker process reading
  the environment while the daemon side grows it). The daemon's initial map size (256 MiB) is not configurable, so a
  daemon process cannot be started with a tiny map.
- A worker process killed mid-job: tests/daemon/test_media_queue.py
  `test_a_worker_that_dies_costs_one_attempt_and_the_daemon_carries_on` (a stand-in job that kills itself) and
  tests/daemon/test_metadata.py `test_exiftool_is_restarted_after_it_was_killed`; here
  `test_a_thumbnail_worker_killed_from_outside_costs_one_attempt` (the daemon's real render worker, SIGKILLed by pid
  while it decodes).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy
import pytest
from PIL import Image

from daemon import assets as asset_index
from daemon import job_queue
from daemon.access import Principal
from daemon.check import check_index
from daemon.errors import StorageFull
from daemon.index import ASSETS, USER_BY_EMAIL, Index
from daemon.records import PendingJob
from daemon.scan import ScanMode
from daemon.services import Services
from tests.e2e.live_daemon import (
    FILMROLL,
    LiveDaemon,
    log_entries,
    running_daemon,
    sign_up,
    stop_daemon,
    wait_for,
)
from tests.library_helpers import World, write
from tests.media_files import jpeg

FAST_RETRIES = {"FILMROLL_JOB__RETRY_DELAY": "0.2", "FILMROLL_JOB__MAX_ATTEMPTS": "30"}
"""Retries 0.2 s after a failed attempt, doubling: a fault that is repaired is noticed within seconds."""


# --- real filesystems -------------------------------------------------------------------------------------------


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of `size` mounted on `folder`; unmounted (lazily if busy) on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                       check=True, capture_output=True)  # fmt: skip
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        pytest.skip(f"cannot mount a tmpfs here: {error}")
    try:
        yield folder
    finally:
        unmount(folder)


def unmount(folder: Path) -> None:
    for _ in range(10):  # stacked mounts come off one by one
        if not os.path.ismount(folder):
            return
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)
    assert not os.path.ismount(folder), f"{folder} is still mounted"


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its filesystem has no byte left; returns the file."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        while os.write(descriptor, b"\0" * 65536):
            pass
    except OSError as error:
        assert error.errno == 28, error  # ENOSPC
    finally:
        os.close(descriptor)
    try:  # the last, partial block too
        with open(filler, "ab") as stream:
            while stream.write(b"\0"):
                stream.flush()
    except OSError:
        pass
    return filler


def files_below(folder: Path) -> set[Path]:
    return {Path(top) / name for top, _, names in os.walk(folder) for name in names}


# --- the daemon, through its API --------------------------------------------------------------------------------


def external_library(live: LiveDaemon, external: Path, *import_paths: Path) -> str:
    """The admin gets `external` as external path and a library of `import_paths`; returns its id."""
    with live.client() as client:
        reply = client.put(f"/api/admin/users/{live.admin['id']}", json={"externalPath": str(external)})
        assert reply.status_code == 200, reply.text
        reply = client.post(
            "/api/libraries",
            json={"ownerId": live.admin["id"], "importPaths": [str(path) for path in import_paths]},
        )
        assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def library_jobs(live: LiveDaemon) -> dict:
    with live.client() as client:
        return client.get("/api/jobs").json()["library"]["jobCounts"]


def request_scan(live: LiveDaemon, library_id: str, **body: bool) -> int:
    """Ask for a scan; returns the library queue's finished count from before, for `wait_for_scans`."""
    counts = library_jobs(live)
    with live.client() as client:
        reply = client.post(f"/api/libraries/{library_id}/scan", json=body)
    assert reply.status_code == 204, reply.text
    return counts["completed"] + counts["failed"]


def wait_for_scans(live: LiveDaemon, finished_before: int, timeout: float = 60) -> None:
    """Until the library queue has finished something since `finished_before` and is idle; no scan failed."""

    def done() -> bool:
        counts = library_jobs(live)
        idle = not counts["active"] and not counts["waiting"]
        return idle and counts["completed"] + counts["failed"] > finished_before

    wait_for(done, "the scan", timeout)
    assert library_jobs(live)["failed"] == 0


def scan(live: LiveDaemon, library_id: str, timeout: float = 60, **body: bool) -> None:
    wait_for_scans(live, request_scan(live, library_id, **body), timeout)


def queue_command(live: LiveDaemon, queue: str, command: str, force: bool = False) -> None:
    with live.client() as client:
        reply = client.put(f"/api/jobs/{queue}", json={"command": command, "force": force})
    assert reply.status_code == 200, reply.text


def pause_media(live: LiveDaemon) -> None:
    """Media work waits (durably): the scan scenarios are about the index, not about decoding junk."""
    for queue in (job_queue.METADATA, job_queue.THUMBNAILS, job_queue.VIDEO):
        queue_command(live, queue, "pause")


def media_idle(live: LiveDaemon) -> bool:
    with live.client() as client:
        queues = client.get("/api/jobs").json()
    return not any(queues[name]["jobCounts"]["active"] for name in job_queue.QUEUE_TABLES)


def is_up(live: LiveDaemon) -> bool:
    with live.client() as client:
        return client.get("/api/server/ping").json() == {"res": "pong"}


# --- the index, read beside the running daemon (as `filmroll check` does) ---------------------------------------


def library_files(data_dir: Path, library_id: str) -> dict[Path, tuple[uuid.UUID, bool]]:
    """path -> (asset id, offline) of every asset of the library."""
    with Index(data_dir / "index", readonly=True) as index, index.read() as txn:
        return {
            Path(os.fsdecode(path)): (entry.asset_id, entry.offline)
            for path, entry in asset_index.of_library(txn, uuid.UUID(library_id))
        }


def asset_ids(state: dict[Path, tuple[uuid.UUID, bool]]) -> dict[Path, uuid.UUID]:
    return {path: asset_id for path, (asset_id, _) in state.items()}


def pending_jobs(index: Index, queue: str) -> dict[uuid.UUID, PendingJob]:
    """asset id -> its pending job in `queue` (waiting, running, or failed an attempt and waiting for a retry)."""
    with index.read() as txn:
        return {uuid.UUID(bytes=key): job for key, job in txn.items(job_queue.QUEUE_TABLES[queue])}


def pending_errors(data_dir: Path, queue: str) -> dict[uuid.UUID, str]:
    """asset id -> the last error of its pending job, for jobs that failed an attempt and wait for a retry."""
    with Index(data_dir / "index", readonly=True) as index:
        jobs = pending_jobs(index, queue)
    return {asset_id: job.last_error for asset_id, job in jobs.items() if job.last_error}


# --- the data directory's filesystem full during thumbnailing ----------------------------------------------------


def test_thumbnails_on_a_full_disk_fail_clearly_and_are_rendered_once_space_is_freed(tmp_path):
    external = tmp_path / "external"
    photos = {jpeg(external / "photos" / f"IMG_{n}.jpg", (640, 480)) for n in range(3)}
    originals = {path: path.read_bytes() for path in photos}
    data_dir = tmp_path / "daemon" / "data"
    with (
        tmpfs(data_dir / "derived", "1m") as derived,
        running_daemon(tmp_path / "daemon", **FAST_RETRIES) as live,
    ):
        filler = fill(derived)
        library_id = external_library(live, external, external / "photos")
        scan(live, library_id)
        ids = set(asset_ids(library_files(data_dir, library_id)).values())
        assert len(ids) == 3

        # Every render fails for want of space, with a reason naming the file it could not write, and is retried.
        errors = wait_for(
            lambda: (found := pending_errors(data_dir, job_queue.THUMBNAILS)).keys() == ids and found,
            "a failed attempt of every thumbnail",
        )
        for asset_id, reason in errors.items():  # the derived file it could not write, and why
            assert reason.startswith(str(derived)) and str(asset_id) in reason, reason
            assert reason.endswith(": No space left on device"), reason
        queue_command(live, job_queue.THUMBNAILS, "pause")  # no retry mid-attempt while the files are counted
        wait_for(lambda: media_idle(live), "the running attempts to end")
        assert files_below(derived) == {filler}  # nothing half-written, not even a temp file
        with live.client() as client:
            for asset_id in ids:
                assert client.get(f"/api/assets/{asset_id}/thumbnail").status_code == 404
                assert live.asset(str(asset_id))["thumbhash"] is None
        assert is_up(live)

        # Space comes back: the retries render every thumbnail, whole.
        filler.unlink()
        queue_command(live, job_queue.THUMBNAILS, "resume")
        for asset_id in ids:
            live.wait_for_thumbnail(str(asset_id), timeout=60)
            with live.client() as client:
                reply = client.get(f"/api/assets/{asset_id}/thumbnail")
            assert reply.status_code == 200
            served = tmp_path / "served.webp"
            served.write_bytes(reply.content)
            with Image.open(served) as image:
                image.load()  # a truncated file would fail here
        assert not [path for path in files_below(derived) if ".tmp-" in path.name]
        with live.client() as client:
            assert client.get("/api/jobs").json()["thumbnailGeneration"]["jobCounts"]["failed"] == 0
    assert {path: path.read_bytes() for path in photos} == originals


def test_an_index_write_on_a_full_filesystem_is_storage_full_and_commits_nothing(tmp_path):
    with tmpfs(tmp_path / "small", "2m") as folder, Index(folder / "index") as index:
        filler = fill(folder)
        committed = 0
        with pytest.raises(
            StorageFull, match=f"Not enough free space to write the index at {folder / 'index'}"
        ):
            for batch in range(1000):
                index.write(lambda txn, b=batch: [txn.put(USER_BY_EMAIL, b"%d-%d" % (b, i), b"x" * 3000)
                                                  for i in range(20)])  # fmt: skip
                committed += 20
        with index.read() as txn:
            assert txn.count(USER_BY_EMAIL) == committed  # every batch before the failing one, none of it
        filler.unlink()
        index.write(lambda txn: txn.put(USER_BY_EMAIL, b"after", b"y"))  # usable again once there is room
        with index.read() as txn:
            assert txn.count(USER_BY_EMAIL) == committed + 1


# --- the whole data directory full: index, uploads and derived files on one full filesystem -----------------------


def test_a_full_data_directory_answers_507_fails_scans_clearly_and_loses_nothing(tmp_path):
    external = tmp_path / "external"
    photos = [jpeg(external / "photos" / f"IMG_{n}.jpg") for n in range(3)]
    data_dir = tmp_path / "daemon" / "data"
    with tmpfs(data_dir, "16m"), running_daemon(tmp_path / "daemon", **FAST_RETRIES) as live:
        library_id = external_library(live, external, external / "photos")
        scan(live, library_id)
        before = library_files(data_dir, library_id)
        with live.client() as client:
            album = client.post("/api/albums", json={"albumName": "kept", "assetIds": [
                str(asset_id) for asset_id, _ in before.values()]}).json()  # fmt: skip
        later = make_tree(external / "photos" / "later", 300)  # never decoded: media work waits below
        # Media work is done, and waits from here on: this test is about the index and uploads (media jobs on a
        # full disk: test_media_jobs_on_a_full_data_directory_stay_pending_and_the_daemon_stays_up).
        for asset_id, _ in before.values():
            live.wait_for_thumbnail(str(asset_id), timeout=60)
        pause_media(live)
        wait_for(lambda: media_idle(live), "the media queues to finish")
        filler = fill(data_dir)
        uploads = files_below(data_dir / "upload")

        reply = live.upload(photos[0], deviceAssetId="full")
        assert reply.status_code == 507 and "free space" in reply.json()["message"], reply.text
        with live.client() as client:  # an index write that finds no room: 507 too, naming the index
            for _ in range(100):
                reply = client.post("/api/albums", json={"albumName": "x" * 200, "description": "y" * 4000})
                if reply.status_code != 201:
                    break
            assert reply.status_code == 507, reply.text
            assert reply.json()["message"].startswith(
                f"Not enough free space to write the index at {data_dir}"
            )
        # a scan that cannot store what it found fails with the same reason, as a warning (no traceback)
        finished = request_scan(live, library_id)
        wait_for(lambda: library_jobs(live)["failed"] == 1, "the failed scan")
        assert any("scan failed: Not enough free space to write the index" in entry["message"]
                   for entry in log_entries(live.log))  # fmt: skip
        assert library_files(data_dir, library_id) == before
        # the refused upload left nothing, not even a temp file
        assert files_below(data_dir / "upload") == uploads
        assert is_up(live)

        filler.unlink()  # space again: everything works, nothing was lost
        request_scan(live, library_id)
        wait_for_scans_after_failure(live, finished)
        after = library_files(data_dir, library_id)
        assert {path: after[path] for path in before} == before
        assert len(after) == len(before) + len(later)
        with live.client() as client:
            members = client.get(f"/api/albums/{album['id']}").json()["assets"]
        assert {member["id"] for member in members} == {str(asset_id) for asset_id, _ in before.values()}
        assert live.upload(photos[0], deviceAssetId="fits").status_code == 201


def test_media_jobs_on_a_full_data_directory_stay_pending_and_the_daemon_stays_up(tmp_path):
    """Media jobs meet a data directory with no room even to note their failure in the index: each is kept
    pending (a warning, the queue paced), the daemon stays up, and all of them run once there is space again."""
    external = tmp_path / "external"
    for n in range(3):
        jpeg(external / "photos" / f"IMG_{n}.jpg")
    make_tree(external / "photos" / "junk", 20)  # bad media, which would fail for good if that could be noted
    data_dir = tmp_path / "daemon" / "data"
    media = (job_queue.METADATA, job_queue.THUMBNAILS)
    with tmpfs(data_dir, "16m"), running_daemon(tmp_path / "daemon", **FAST_RETRIES) as live:
        library_id = external_library(live, external, external / "photos")
        pause_media(live)
        # A reader held from here on keeps LMDB from reusing the pages the scan frees: once the filesystem is
        # full, no write transaction of the daemon can find a page.
        with Index(data_dir / "index", readonly=True) as index, index.read():
            scan(live, library_id)
            with index.read() as txn:
                assets = {uuid.UUID(bytes=key) for key, _ in txn.items(ASSETS)}
            assert len(assets) == 23
            filler = fill(data_dir)
            with live.client() as client:
                reply = client.post("/api/albums", json={"albumName": "no room"})
            assert reply.status_code == 507, reply.text  # the index cannot take a write
            for queue in media:
                queue_command(live, queue, "resume")

            def stay_pending(queue: str) -> bool:
                return any(
                    entry["message"].startswith(
                        f"queue {queue}: Not enough free space to write the index at {data_dir / 'index'}"
                    )
                    and entry["message"].endswith("job(s) stay pending")
                    for entry in log_entries(live.log)
                )

            for queue in media:
                wait_for(lambda q=queue: stay_pending(q), f"{queue} to keep its jobs pending")
            with live.client() as client:
                counts = {queue: client.get("/api/jobs").json()[queue]["jobCounts"] for queue in media}
            for queue in media:  # every job still there, none failed, none with a failure noted
                assert counts[queue]["failed"] == 0, counts
                assert counts[queue]["waiting"] + counts[queue]["active"] == len(assets), counts
                jobs = pending_jobs(index, queue)
                assert jobs.keys() == assets and not any(job.attempts for job in jobs.values()), jobs
            assert is_up(live)

        filler.unlink()
        photos = [asset_id for path, (asset_id, _) in library_files(data_dir, library_id).items()
                  if "junk" not in path.parts]  # fmt: skip
        for asset_id in photos:
            live.wait_for_thumbnail(str(asset_id), timeout=90)
        assert is_up(live)


def wait_for_scans_after_failure(live: LiveDaemon, failed_scan: int) -> None:
    def done() -> bool:
        counts = library_jobs(live)
        return not counts["active"] and not counts["waiting"] and counts["completed"] > failed_scan

    wait_for(done, "the scan after space was freed")


# --- files vanishing while a scan runs ---------------------------------------------------------------------------


def scan_worker(live: LiveDaemon) -> int | None:
    """The pid of the daemon's scan worker process (`python -m daemon.scan_worker`), while a scan runs."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stream:
                parent = int(stream.read().rsplit(")", 1)[1].split()[1])
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if parent == live.process.pid and b"daemon.scan_worker" in command:
                return int(pid)
        except (OSError, ValueError, IndexError):
            continue
    return None


def process_state(pid: int) -> str | None:
    """R, S, T (stopped), Z ... ; None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def open_paths(pid: int) -> set[Path]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd") if process_state(pid) else []:
        try:
            found.add(Path(os.readlink(f"/proc/{pid}/fd/{fd}")))
        except OSError:
            continue
    return found


@contextmanager
def stopped_mid_crawl(live: LiveDaemon, folders: list[Path]) -> Iterator[Path]:
    """Catch the daemon's scan worker with one of `folders` (sorted: the crawl's order) open, but not the last one,
    and keep it stopped (SIGSTOP) inside the `with`: a fault made there happens mid-crawl, with at least the last
    folder still ahead. Yields the folder it is in. Fails if the scan ends before it could be caught."""
    pid = wait_for(lambda: scan_worker(live), "the scan worker", interval=0.002)
    while True:
        try:  # stopped at random moments, until it is in one of the folders
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            raise AssertionError("the scan ended before its worker was caught crawling") from None
        wait_for(lambda: process_state(pid) in ("T", "Z", None), "the worker to stop", interval=0.0005)
        held = open_paths(pid) & set(folders[:-1])
        if held:
            break
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.002)
    try:
        yield held.pop()
    finally:
        os.kill(pid, signal.SIGCONT)


def make_tree(root: Path, count: int) -> list[Path]:
    """`count` small files in folders of 100, with fixed mtimes (so a recreated tree is the same tree)."""
    files = [root / f"folder {n // 100:03d}" / f"IMG_{n:05d}.jpg" for n in range(count)]
    for path in files:
        write(path, mtime=1_700_000_000)
    return files


def online_and_offline(state: dict[Path, tuple[uuid.UUID, bool]]) -> tuple[set[Path], set[Path]]:
    online = {path for path, (_, offline) in state.items() if not offline}
    offline = {path for path, (_, offline) in state.items() if offline}
    return online, offline


@pytest.mark.parametrize(
    ("count", "rounds"), [(3000, 2), pytest.param(50_000, 6, marks=pytest.mark.reliability, id="50k")]
)
def test_files_vanishing_during_a_scan(tmp_path, count, rounds):
    external = tmp_path / "external"
    root = external / "photos"
    files = make_tree(root, count)
    folders = sorted({path.parent for path in files})
    chosen = random.Random(10).sample(files, count * 2 // 5)
    batches = [set(chosen[n::rounds]) for n in range(rounds)]
    gone: set[Path] = set()  # deleted in an earlier round
    ids: dict[Path, uuid.UUID] = {}  # every path indexed so far, and its asset
    with running_daemon(tmp_path / "daemon") as live:
        pause_media(live)
        library_id = external_library(live, external, root)
        # imports and full refreshes, each losing files as it crawls
        for round_, doomed in enumerate(batches):
            finished = request_scan(live, library_id, refreshAllFiles=round_ % 2 == 1)
            with stopped_mid_crawl(live, folders) as reached:
                for path in doomed:
                    path.unlink()
            wait_for_scans(live, finished)
            state = library_files(live.data_dir, library_id)
            online, offline = online_and_offline(state)
            assert online | offline <= set(files)
            assert set(files) - gone - doomed <= online  # every file still there
            assert not online & gone  # files gone before the scan: offline if indexed
            ahead = {path for path in doomed if path.parent > reached}
            assert not online & ahead  # and those deleted before the crawl reached their folder
            # nothing indexed was dropped, nobody's identity changed
            assert asset_ids(state).items() >= ids.items()
            ids = asset_ids(state)
            gone |= doomed
        scan(live, library_id)  # a quiet scan settles what the busy ones could not see
        state = library_files(live.data_dir, library_id)
        online, offline = online_and_offline(state)
        assert online == set(files) - gone
        assert offline == gone & ids.keys()  # every vanished file that was indexed: still there, offline
        assert asset_ids(state) == ids
        assert is_up(live)


# --- an import path that is a mount, unmounted while a scan runs ---------------------------------------------------


def test_an_import_path_unmounted_during_a_scan_goes_offline_and_returns(tmp_path):
    external = tmp_path / "external"
    drive = external / "drive"
    with tmpfs(drive, "64m"), running_daemon(tmp_path / "daemon") as live:
        files = make_tree(drive, 2000)
        folders = sorted({path.parent for path in files})
        pause_media(live)
        library_id = external_library(live, external, drive)
        scan(live, library_id)
        ids = asset_ids(library_files(live.data_dir, library_id))
        assert ids.keys() == set(files)

        finished = request_scan(live, library_id, refreshAllFiles=True)  # re-examines every known file
        with stopped_mid_crawl(live, folders) as reached:
            unmount(drive)  # the disk is pulled (lazily: the crawl holds it open); an empty mount point stays
        wait_for_scans(live, finished)
        # The folders the crawl had not reached are gone for it: their files are offline, none deleted. (The
        # folders it held open still read from the detached filesystem: what it had seen there stays as it was.)
        state = library_files(live.data_dir, library_id)
        assert asset_ids(state) == ids
        ahead = [path for path in files if path.parent > reached]
        assert ahead and all(state[path][1] for path in ahead)

        scan(live, library_id)  # a scan with the disk gone: all of it offline, never deleted
        state = library_files(live.data_dir, library_id)
        assert asset_ids(state) == ids and all(offline for _, offline in state.values())

        with tmpfs(drive, "64m"):  # plugged back in, the same files
            make_tree(drive, 2000)
            scan(live, library_id)
            state = library_files(live.data_dir, library_id)
            assert asset_ids(state) == ids and not any(offline for _, offline in state.values())
            with live.client() as client:
                assert client.get(f"/api/libraries/{library_id}").json()["assetCount"] == len(files)


# --- inotify watches run out --------------------------------------------------------------------------------------


def start_with_few_watches(
    data_dir: Path, log: Path, watches: int, **env: str
) -> tuple[subprocess.Popen, str]:
    """`filmroll serve` in a user namespace of its own whose inotify watch limit is `watches`: the real kernel
    limit, lowered for this daemon only (everything else on the machine keeps its watches)."""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a user namespace here: {probe.stderr.decode()}")
    environ = {**os.environ, "FILMROLL_LOG_FORMAT": "json", "FILMROLL_LIBRARY__SCAN__ENABLED": "false", **env}
    limit = f'echo {watches} > /proc/sys/user/max_inotify_watches && exec "$@"'
    with open(log, "w") as stream:
        process = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "sh", "-c", limit, "sh",
             *FILMROLL, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stream, env=environ,
        )  # fmt: skip

    def listening() -> str | None:
        entries = log_entries(log) if process.poll() is None else []
        return next((e["url"] for e in entries if e.get("message", "").startswith("listening on ")), None)

    try:
        url = wait_for(listening, "the daemon to listen")
    except BaseException:  # it never listened: not left running
        process.kill()
        process.wait()
        raise
    return process, url


def test_the_daemon_falls_back_to_polling_when_inotify_watches_run_out(tmp_path):
    external = tmp_path / "external"
    root = external / "many"
    for n in range(20):
        (root / f"folder {n}").mkdir(parents=True)
    data_dir, log = tmp_path / "data", tmp_path / "daemon.log"
    process, url = start_with_few_watches(
        data_dir, log, 5, FILMROLL_LIBRARY__WATCH__ENABLED="true", FILMROLL_LIBRARY__WATCH__INTERVAL="300"
    )
    try:
        admin, token, key = sign_up(url)
        live = LiveDaemon(url, int(url.rsplit(":", 1)[1]), key, admin, token, data_dir, log, process)
        library_id = external_library(live, external, root)

        def watch() -> dict:
            with live.client() as client:
                return client.get(f"/api/libraries/{library_id}").json()["watch"]

        status = wait_for(
            lambda: (found := watch())["mode"] == "polling" and found, "the fallback to polling"
        )
        assert "max_user_watches" in status["reason"], status
        assert any("falling back to polling" in entry["message"] for entry in log_entries(log))
        jpeg(root / "folder 7" / "late.jpg")  # a change is still seen, by polling
        wait_for(lambda: library_files(data_dir, library_id), "the polled import")
        online, _ = online_and_offline(library_files(data_dir, library_id))
        assert online == {root / "folder 7" / "late.jpg"}
    except BaseException:
        process.kill()
        process.wait()
        raise
    stop_daemon(process, data_dir, log)


# --- the LMDB map fills up during a scan ----------------------------------------------------------------------------


async def test_a_scan_grows_a_tiny_map(settings, tmp_path):
    """The daemon side writes while the scan worker process reads the same environment: the map doubles as
    often as needed, and the worker adopts each new size."""
    with Index(settings.index_path, map_size=64 * 1024) as index:
        services = Services.build(settings, index)
        external = tmp_path / "external"
        user = services.users.create(
            email="u@example.com", password="pw", name="U", external_path=str(external)
        )
        world = World(services, user, Principal(user=user), external, Path(settings.data_dir))
        files = make_tree(external / "photos", 3000)
        library = world.library(external / "photos")
        start = index.map_size
        summary = await world.scan(library)  # checks the index
        assert summary.new == len(files) and index.map_size > start
        assert world.paths(library, online=True) == {os.fsencode(path) for path in files}
        grown = index.map_size
        for path in files[::3]:
            os.utime(path, (1_800_000_000, 1_800_000_000))
        summary = await world.scan(library, ScanMode.MODIFIED)
        assert summary.modified == len(files[::3])
        assert index.map_size >= grown and check_index(index) == []


# --- a worker process killed mid-job ----------------------------------------------------------------------------


def big_pngs(folder: Path, count: int) -> list[Path]:
    """25-megapixel PNGs (copies of one): no draft decoding, so a render takes a worker a while and a lot of
    memory."""
    folder.mkdir(parents=True, exist_ok=True)
    x = numpy.linspace(0, 255, 5000, dtype=numpy.uint8)
    pixels = numpy.dstack([numpy.tile(x, (5000, 1)), numpy.tile(x[:, None], (1, 5000)),
                           numpy.full((5000, 5000), 128, numpy.uint8)])  # fmt: skip
    first = folder / "big_0.png"
    Image.fromarray(pixels, "RGB").save(first, "PNG", compress_level=1)
    copies = [folder / f"big_{n}.png" for n in range(1, count)]
    for copy in copies:
        shutil.copyfile(first, copy)
    return [first, *copies]


def busy_workers(live: LiveDaemon, min_rss_kib: int) -> list[int]:
    """The daemon's child processes that hold more than `min_rss_kib` of memory: workers decoding a big image."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0")) != live.process.pid or "VmRSS" not in fields:
            continue
        if int(fields["VmRSS"].split()[0]) > min_rss_kib:
            found.append(int(pid))
    return found


def test_a_thumbnail_worker_killed_from_outside_costs_one_attempt(tmp_path):
    external = tmp_path / "external"
    pictures = big_pngs(external / "big", 2)
    retries = {**FAST_RETRIES, "FILMROLL_JOB__RETRY_DELAY": "5"}  # the failed attempt stays readable a while
    with running_daemon(tmp_path / "daemon", **retries) as live:
        for queue in (job_queue.METADATA, job_queue.VIDEO):  # only render workers run
            queue_command(live, queue, "pause")
        library_id = external_library(live, external, external / "big")
        scan(live, library_id)
        (victim,) = wait_for(
            lambda: busy_workers(live, 150_000)[:1], "a worker decoding a big picture", interval=0.01
        )
        os.kill(victim, signal.SIGKILL)

        def failed_attempts() -> dict[uuid.UUID, PendingJob]:
            with Index(live.data_dir / "index", readonly=True) as index:
                jobs = pending_jobs(index, job_queue.THUMBNAILS)
            return {asset_id: job for asset_id, job in jobs.items() if job.attempts}

        (job,) = wait_for(failed_attempts, "the failed attempt").values()
        assert job.attempts == 1, job  # one attempt, of the one job that was running there
        assert "the worker process died" in job.last_error, job.last_error
        assert any(job.last_error.startswith(str(path)) for path in pictures), job.last_error
        assert is_up(live)
        for asset_id, _ in library_files(live.data_dir, library_id).values():
            live.wait_for_thumbnail(str(asset_id), timeout=120)  # the retry, in a fresh worker, renders it
        with live.client() as client:
            assert client.get("/api/jobs").json()["thumbnailGeneration"]["jobCounts"]["failed"] == 0
