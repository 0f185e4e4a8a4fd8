"""Watching with real inotify on temporary folders (libraries.md §11): the daemon's queue, watchers and metadata
worker run for real; each change on disk must show up in the index through a targeted scan."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import pytest
import trio

from daemon.check import check_index
from daemon.crawl import ScopeEntry
from daemon.exclusions import ExclusionMatcher
from daemon.poll import FolderPoller
from daemon.scan import ScanMode
from daemon.watchers import filesystem_type
from tests.library_helpers import World, write


def b(path: Path) -> bytes:
    return os.fsencode(path)


@pytest.fixture
def settings(settings):
    settings.library.watch.enabled = True
    settings.library.watch.interval = 300  # ms, for the polling tests
    return settings


@pytest.fixture
async def running(services, nursery):
    await nursery.start(services.library_jobs.run)
    await nursery.start(services.media.run)
    await nursery.start(lambda task_status: services.watchers.run(catch_up=False, task_status=task_status))
    yield services
    assert check_index(services.index) == []


async def eventually(check, timeout: float = 10.0, message: str = "condition"):
    with trio.move_on_after(timeout):
        while True:
            if check():
                return
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


async def watched(world: World, root: Path, **options):
    library = world.library(root, **options)
    await eventually(lambda: world.services.watchers.status(library.id).mode in ("inotify", "polling"))
    return library


async def test_new_modified_and_deleted_files(world, running):
    root = world.external / "p"
    root.mkdir()
    library = await watched(world, root)
    assert world.services.watchers.status(library.id).mode == "inotify"
    write(root / "a.jpg")
    await eventually(lambda: world.paths(library, online=True) == {b(root / "a.jpg")}, message="import")
    asset_id = world.assets(library)[b(root / "a.jpg")].id
    write(root / "a.jpg", b"\xff\xd8 a longer, edited file")
    await eventually(lambda: world.assets(library)[b(root / "a.jpg")].file_size == 24, message="refresh")
    assert world.assets(library)[b(root / "a.jpg")].id == asset_id
    os.remove(root / "a.jpg")
    await eventually(lambda: world.paths(library, online=False) == {b(root / "a.jpg")}, message="offline")
    assert world.assets(library)[b(root / "a.jpg")].id == asset_id  # offline, never removed


async def test_rename_is_a_move_and_keeps_the_id(world, running):
    root = world.external / "p"
    write(root / "a.jpg", b"\xff\xd8 unique content")
    library = world.library(root)
    await world.scan(library)
    await running.media.metadata.idle()  # the content hash that recognises the move
    asset_id = world.assets(library)[b(root / "a.jpg")].id
    await eventually(lambda: running.watchers.status(library.id).mode == "inotify")
    os.makedirs(root / "sorted")
    os.rename(root / "a.jpg", root / "sorted" / "renamed.jpg")
    await eventually(
        lambda: set(world.assets(library)) == {b(root / "sorted" / "renamed.jpg")}, message="move"
    )
    moved = world.assets(library)[b(root / "sorted" / "renamed.jpg")]
    assert moved.id == asset_id and not moved.is_offline


async def test_new_folders_are_watched_and_imported(world, running):
    root = world.external / "p"
    root.mkdir()
    library = await watched(world, root)
    write(root / "2024" / "trip" / "x.jpg")
    await eventually(lambda: b(root / "2024" / "trip" / "x.jpg") in world.paths(library), message="new tree")
    write(root / "2024" / "trip" / "y.mp4")  # inside a folder created after the watcher started
    await eventually(lambda: len(world.paths(library, online=True)) == 2, message="file in new folder")
    outside = world.external / "staging"
    write(outside / "album" / "z.png")
    os.rename(outside / "album", root / "album")  # a whole tree moved in
    await eventually(
        lambda: b(root / "album" / "z.png") in world.paths(library, online=True), message="moved in"
    )
    shutil.rmtree(root / "2024")
    await eventually(
        lambda: world.paths(library, online=True) == {b(root / "album" / "z.png")}, message="rmtree"
    )


async def test_hidden_unsupported_and_excluded_files_are_ignored(world, running):
    root = world.external / "p"
    root.mkdir()
    library = await watched(world, root, exclusions=["**/Raw/**", "**/*.tif"])
    for rel in [".hidden.jpg", "notes.txt", "Raw/r.jpg", "scan.tif", ".cache/c.jpg", "ok.jpg"]:
        write(root / rel)
    await eventually(lambda: world.paths(library) == {b(root / "ok.jpg")}, message="ok.jpg only")
    await trio.sleep(1.0)  # nothing else arrives late
    assert world.paths(library) == {b(root / "ok.jpg")}


async def test_editing_exclusions_updates_the_watcher_at_once(world, running):
    root = world.external / "p"
    root.mkdir()
    library = await watched(world, root)
    world.services.libraries.update(world.principal, library.id, exclusion_patterns=["**/*.png"])
    await eventually(lambda: running.watchers._running[library.id][0].spec.exclusions == ("**/*.png",))
    await eventually(lambda: running.watchers.status(library.id).mode == "inotify")
    write(root / "a.png")
    write(root / "b.jpg")
    await eventually(lambda: world.paths(library) == {b(root / "b.jpg")}, message="b.jpg")
    world.services.libraries.delete(world.principal, library.id)
    assert running.watchers.status(library.id).mode == "off"  # stopped at once (§9.4)


async def test_vanished_import_path_goes_offline_and_comes_back_with_the_same_ids(world, running):
    drive = world.external / "drive"
    write(drive / "a.jpg")
    write(drive / "sub" / "b.jpg")
    library = world.library(drive)
    await world.scan(library)
    ids = {path: asset.id for path, asset in world.assets(library).items()}
    await eventually(lambda: running.watchers.status(library.id).mode == "inotify")
    os.rename(drive, world.external / "unplugged")
    await eventually(lambda: world.paths(library, online=False) == set(ids), message="offline")
    os.rename(world.external / "unplugged", drive)
    await eventually(lambda: world.paths(library, online=True) == set(ids), message="back online")
    assert {path: asset.id for path, asset in world.assets(library).items()} == ids
    write(drive / "sub" / "c.jpg")  # and it is watched again
    await eventually(
        lambda: b(drive / "sub" / "c.jpg") in world.paths(library, online=True), message="re-armed"
    )


async def test_polling_detects_adds_modifications_and_deletions(world, running, monkeypatch):
    monkeypatch.setattr("daemon.watchers.FULL_PASS_EVERY", 4)  # the full pass that sees in-place rewrites
    running.watchers.settings.use_polling = True
    root = world.external / "nfs"
    write(root / "a.jpg", mtime=1_600_000_000)
    library = await watched(world, root)
    status = running.watchers.status(library.id)
    assert status.mode == "polling" and "usePolling" in status.reason
    await world.scan(library)
    write(root / "b.jpg")
    write(root / "c.tmp", b"saved!", mtime=1_700_000_000)
    os.rename(root / "c.tmp", root / "a.jpg")  # how editors save: a new file renamed over the old one
    await eventually(lambda: len(world.paths(library, online=True)) == 2, message="add")
    await eventually(lambda: world.assets(library)[b(root / "a.jpg")].file_size == 6, message="replacement")
    os.remove(root / "b.jpg")
    await eventually(lambda: world.paths(library, online=False) == {b(root / "b.jpg")}, message="delete")
    write(root / "sub" / "new.png")
    await eventually(
        lambda: b(root / "sub" / "new.png") in world.paths(library, online=True), message="new folder"
    )
    write(
        root / "a.jpg", b"rewritten in place", mtime=1_750_000_000
    )  # no folder change: the full pass sees it
    await eventually(
        lambda: world.assets(library)[b(root / "a.jpg")].file_size == 18, message="in-place rewrite"
    )


def inotify_watches_in_use() -> int:
    count = 0
    for info in glob.glob("/proc/[0-9]*/fdinfo/*"):
        try:
            with open(info) as stream:
                count += sum(1 for line in stream if line.startswith("inotify wd:"))
        except OSError:
            pass
    return count


@pytest.mark.reliability  # it lowers the machine-wide limit for a moment: every root process loses watches then.
# `make test` covers the same fallback without touching the machine: a daemon in its own user namespace
# (tests/reliability/test_faults.py::test_the_daemon_falls_back_to_polling_when_inotify_watches_run_out).
async def test_running_out_of_inotify_watches_falls_back_to_polling(world, running, caplog):
    limit_file = Path("/proc/sys/fs/inotify/max_user_watches")
    if os.geteuid() != 0 or not os.access(limit_file, os.W_OK):
        pytest.skip("needs root to lower fs.inotify.max_user_watches")
    root = world.external / "many"
    for index in range(20):
        (root / f"folder {index}").mkdir(parents=True)
    original = limit_file.read_text()
    limit_file.write_text(f"{inotify_watches_in_use() + 5}\n")  # the real kernel limit, briefly lowered
    try:
        library = await watched(world, root)
    finally:
        limit_file.write_text(original)
    status = running.watchers.status(library.id)
    assert status.mode == "polling" and "max_user_watches" in status.reason
    assert any("falling back to polling" in record.getMessage() for record in caplog.records)
    write(root / "folder 7" / "late.jpg")  # changes are still seen, by polling
    await eventually(
        lambda: world.paths(library) == {b(root / "folder 7" / "late.jpg")}, message="polled import"
    )


def test_network_filesystems_are_recognised_from_mountinfo(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 0:50 / /mnt/nas rw,relatime shared:30 - nfs4 nas:/photos rw,vers=4.2\n"
        "41 22 0:51 / /mnt/my\\040share rw,relatime - cifs //nas/share rw\n"
    )
    assert filesystem_type(b"/mnt/nas/2024/a.jpg", str(mountinfo)) == "nfs4"
    assert filesystem_type(b"/mnt/my share/x", str(mountinfo)) == "cifs"
    assert filesystem_type(b"/mnt/nasty", str(mountinfo)) == "ext4"  # /mnt/nas does not cover /mnt/nasty
    assert filesystem_type(b"/srv", "/nonexistent") is None


async def test_catch_up_scan_at_start(world, services, nursery):
    root = world.external / "p"
    write(root / "while-down.jpg")
    library = world.library(root)
    await nursery.start(services.watchers.run)
    assert services.library_jobs.counts().waiting == 1  # a modified-files scan of each watched library
    assert services.library_jobs._pending[("scan", library.id)] == ScanMode.MODIFIED


def test_folder_poller_lists_only_changed_folders(tmp_path):
    root = tmp_path / "nas"
    write(root / "a" / "x.jpg", mtime=1_600_000_000)
    write(root / "b" / "y.jpg", mtime=1_600_000_000)
    for folder in (root, root / "a", root / "b"):
        os.utime(folder, (1_600_000_000, 1_600_000_000))  # settled long ago (not "racy")
    poller = FolderPoller([b(root)], ExclusionMatcher(["**/skip/**"]))
    assert poller.poll() == []  # the first pass records
    assert poller.poll() == []  # nothing changed: one stat per folder, nothing listed
    write(root / "a" / "z.jpg")
    write(root / "a" / ".hidden.jpg")
    write(root / "c" / "new.mp4")
    write(root / "skip" / "excluded.jpg")
    shutil.rmtree(root / "b")
    changes = poller.poll()
    assert set(changes) == {
        ScopeEntry(b(root / "a" / "x.jpg"), False), ScopeEntry(b(root / "a" / "z.jpg"), False),
        ScopeEntry(b(root / "c"), True), ScopeEntry(b(root / "b"), True),
    }  # fmt: skip


async def test_rename_before_the_content_hash_is_known_is_still_a_move(world, running):
    running.media.metadata.paused = True  # no content hash yet: only the kernel's rename pairing can tell
    root = world.external / "p"
    write(root / "a.jpg", b"\xff\xd8 fresh")
    library = world.library(root)
    await world.scan(library)
    asset = world.assets(library)[b(root / "a.jpg")]
    assert asset.content_sha1 is None
    await eventually(lambda: running.watchers.status(library.id).mode == "inotify")
    os.rename(root / "a.jpg", root / "b.jpg")
    await eventually(lambda: set(world.assets(library)) == {b(root / "b.jpg")}, message="move")
    assert world.assets(library)[b(root / "b.jpg")].id == asset.id
    running.media.metadata.paused = False
