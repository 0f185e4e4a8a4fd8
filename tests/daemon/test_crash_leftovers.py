"""What a SIGKILL used to leave behind for good, made by killing the real code at that moment, then cleaned up by
the real next start (`daemon.serve`), with everything current untouched:

- a storage move's temporary copy (`.filmroll-move-<token>.tmp`) when the kill comes mid-copy across filesystems;
- a thumbnail render's old versions when the kill comes after the index switched to the new one;
- a metadata worker's exiftool link folder (`$TMPDIR/filmroll-exiftool-<pid>-<random>`).

Work of a process that is still alive (another daemon's move or worker) is never swept."""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from daemon import assets as asset_index
from daemon import exiftool, storage_moves
from daemon.access import Principal
from daemon.check import check_index
from daemon.config import Settings
from daemon.derived import RENDERS_FOLDER, DerivedFiles, note_render
from daemon.index import Index
from daemon.scan import ScanMode
from daemon.serve import serve
from daemon.services import Services
from daemon.storage_moves import journal_folder, sweep_interrupted_moves, temporary_name
from tests.library_helpers import World, upload_asset
from tests.media_files import fingerprint, jpeg

REPOSITORY = Path(__file__).parents[2]
CHILD_ENVIRON = '{"FILMROLL_LIBRARY__WATCH__ENABLED": "false", "FILMROLL_LIBRARY__SCAN__ENABLED": "false"}'


@contextmanager
def opened(settings: Settings) -> Iterator[Services]:
    """The daemon's services over its index, for setting the scene; closed (and checked) before the kill."""
    with Index(settings.index_path, migrate=True) as index:
        yield Services.build(settings, index)
        assert check_index(index) == []


def child(script: str, *arguments: str, environ: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *arguments],
        stdout=subprocess.PIPE,
        cwd=REPOSITORY,
        text=True,
        env={**os.environ, **(environ or {})},
    )


def killed(process: subprocess.Popen[str]) -> None:
    process.kill()  # SIGKILL: no cleanup runs, the kernel drops its locks
    process.wait(timeout=30)
    assert process.stdout is not None
    process.stdout.close()


async def start_and_stop(settings: Settings, check) -> None:
    """Start the real daemon on `settings`' data directory, run `check(services)` as soon as it is ready (the
    start-up sweeps are done, no job has had time to run), stop it."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(functools.partial(serve, settings, stop=stop))
        try:
            check(running.services)
        finally:
            stop.set()


# --- storage moves --------------------------------------------------------------------------------------------

MOVE_KILLED_MID_COPY = """
import errno, os, shutil, sys, time
from pathlib import Path
from daemon import storage_moves

def link(source, destination, **kwargs):  # the destination is on another filesystem
    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), os.fsdecode(source))

def copy_half(reading, writing, length):
    writing.write(reading.read(100))
    writing.flush()
    print(writing.name, flush=True)
    time.sleep(120)  # killed here, mid-copy

storage_moves.os.link = link
storage_moves.shutil.copyfileobj = copy_half
source, destination, data_dir = map(Path, sys.argv[1:4])
storage_moves.move_file(source, destination, verify_sha1=None, journal=storage_moves.journal_folder(data_dir))
"""


async def test_a_move_killed_mid_copy_leaves_a_temp_file_that_the_next_start_removes(settings):
    with opened(settings) as services:
        user = services.users.create(email="u@example.com", password="pw", name="U")
        content = os.urandom(4096)
        asset = upload_asset(services, user, content, "photo.jpg")
    data = Path(settings.data_dir)
    landing = Path(os.fsdecode(asset.original_path))
    before = fingerprint(data / "upload")
    destination = data / "library" / str(user.id) / "2024" / "photo.jpg"
    mover = child(MOVE_KILLED_MID_COPY, str(landing), str(destination), str(data))
    temporary = Path(mover.stdout.readline().strip())
    # another daemon's move, still copying (a second daemon on one data directory: its temp file must stay)
    live = child(MOVE_KILLED_MID_COPY, str(landing), str(destination.with_name("other.jpg")), str(data))
    try:
        live_temporary = Path(live.stdout.readline().strip())
        killed(mover)
        assert temporary.parent == destination.parent and temporary.is_file()
        assert temporary.name.startswith(".filmroll-move-") and temporary.name.endswith(".tmp")
        journal = journal_folder(data)
        assert len(os.listdir(journal)) == 2
        decoy = destination.parent / temporary_name("0123456789abcdef")  # no journal entry names it: not ours
        decoy.write_bytes(b"somebody's file")

        def check(services: Services) -> None:
            assert not temporary.exists()
            assert live_temporary.is_file() and len(os.listdir(journal)) == 1  # held by its live mover
            assert decoy.read_bytes() == b"somebody's file"
            assert not destination.exists()
            with services.index.read() as txn:
                assert asset_index.get(txn, asset.id) == asset  # the index entry as it was
            assert fingerprint(data / "upload") == before  # the original untouched
            assert hashlib.sha1(landing.read_bytes()).digest() == asset.content_sha1

        await start_and_stop(settings, check)
    finally:
        killed(live)
    assert sweep_interrupted_moves(data) == 1  # the other mover died too: its temp file goes now
    assert not live_temporary.exists() and os.listdir(journal) == []
    assert sorted(os.listdir(destination.parent)) == [decoy.name]


def test_the_move_sweep_leaves_entries_it_cannot_trust(tmp_path, caplog):
    """A journal entry naming a folder outside the data directory's move trees is left (with a warning), and
    files in the journal folder that are not entries are ignored; a finished move leaves no entry."""
    data = tmp_path / "data"
    journal = journal_folder(data)
    journal.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / temporary_name("00000000000000aa")).write_bytes(b"not in the data directory")
    (journal / "00000000000000aa").write_bytes(os.fsencode(outside))
    (journal / "notes.txt").write_bytes(os.fsencode(outside))
    assert sweep_interrupted_moves(data) == 0
    assert (outside / temporary_name("00000000000000aa")).exists()
    assert sorted(os.listdir(journal)) == ["00000000000000aa", "notes.txt"]
    assert "outside" in caplog.text


def test_damaged_or_redirected_journals_stop_nothing_and_delete_nothing_outside(tmp_path, caplog):
    """A damaged entry (NUL bytes, a power loss's zero-filled file) is left with a warning and the rest of the sweep
    goes on; a journal folder replaced by a link is not followed; an entry whose folder is a link leading out of the
    data directory removes nothing there."""
    data = tmp_path / "data"
    library = data / "library" / "u"
    library.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    journal = journal_folder(data)
    journal.mkdir(parents=True)
    (journal / "00000000000000aa").write_bytes(b"\0" * 64)
    (library / temporary_name("00000000000000bb")).write_bytes(b"a dead move's copy")
    (journal / "00000000000000bb").write_bytes(os.fsencode(library))
    (library / "out").symlink_to(outside)
    (outside / temporary_name("00000000000000cc")).write_bytes(b"somebody's file")
    (journal / "00000000000000cc").write_bytes(os.fsencode(library / "out"))
    assert sweep_interrupted_moves(data) == 1
    assert not (library / temporary_name("00000000000000bb")).exists()
    assert (outside / temporary_name("00000000000000cc")).read_bytes() == b"somebody's file"
    assert sorted(os.listdir(journal)) == ["00000000000000aa", "00000000000000cc"]
    assert "unreadable" in caplog.text and "outside" in caplog.text

    elsewhere_journal = tmp_path / "planted"
    elsewhere_journal.mkdir()
    (elsewhere_journal / "00000000000000dd").write_bytes(os.fsencode(outside))
    (outside / temporary_name("00000000000000dd")).write_bytes(b"somebody's other file")
    for name in os.listdir(journal):
        os.unlink(journal / name)
    journal.rmdir()
    journal.symlink_to(elsewhere_journal)
    assert sweep_interrupted_moves(data) == 0
    assert (outside / temporary_name("00000000000000dd")).exists() and os.listdir(elsewhere_journal)


def test_a_renders_folder_replaced_by_a_link_is_not_followed(tmp_path, caplog):
    data = tmp_path / "data"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    stranger = outside / str(uuid.uuid4())
    stranger.write_bytes(b"somebody's file named like an asset id")
    derived = DerivedFiles(data, Settings().image)
    derived.root.mkdir(parents=True)
    (derived.root / RENDERS_FOLDER).symlink_to(outside)
    assert derived.interrupted_renders() == []
    assert stranger.read_bytes() == b"somebody's file named like an asset id"
    assert "not a folder" in caplog.text


def test_a_finished_or_failed_copy_leaves_no_journal_entry(tmp_path, monkeypatch):
    def link(source, destination, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), os.fsdecode(source))

    monkeypatch.setattr(storage_moves.os, "link", link)
    data = tmp_path / "data"
    source = data / "upload" / "a.jpg"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"bytes")
    destination = data / "library" / "u" / "a.jpg"
    journal = journal_folder(data)
    with pytest.raises(storage_moves.MoveFailed, match="SHA-1"):
        storage_moves.move_file(source, destination, verify_sha1=b"\0" * 20, journal=journal)
    assert os.listdir(journal) == [] and os.listdir(destination.parent) == []
    sha1 = hashlib.sha1(b"bytes").digest()
    assert storage_moves.move_file(source, destination, verify_sha1=sha1, journal=journal) is True
    assert os.listdir(journal) == [] and os.listdir(destination.parent) == ["a.jpg"]


# --- thumbnail renders -------------------------------------------------------------------------------------------

RENDER_KILLED_AFTER_THE_SWITCH = f"""
import os, signal, sys
import trio
from daemon.config import load_settings
from daemon.derived import DerivedFiles
from daemon.index import Index
from daemon.services import Services

def die(self, asset_id, keep):  # called right after the commit that switched versions: the kill lands here
    print(asset_id, keep, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

DerivedFiles.remove_old_versions = die
settings = load_settings(None, {{"data_dir": sys.argv[1], "listen": "127.0.0.1:0"}}, environ={CHILD_ENVIRON})

async def main():
    with Index(settings.index_path) as index:
        services = Services.build(settings, index)
        async with trio.open_nursery() as nursery:
            await nursery.start(services.media.run)
            with trio.fail_after(120):
                await services.media.idle()
            nursery.cancel_scope.cancel()
    print("not killed", flush=True)

trio.run(main)
"""


async def test_a_render_killed_after_its_version_switch_leaves_old_versions_the_next_start_removes(
    settings, tmp_path
):
    external = tmp_path / "external"
    jpeg(external / "p" / "changed.jpg", (320, 240))
    jpeg(external / "p" / "kept.jpg", (240, 320))
    with opened(settings) as services:
        user = services.users.create(
            email="u@example.com", password="pw", name="U", external_path=str(external)
        )
        world = World(services, user, Principal(user=user), external, Path(settings.data_dir))
        library = world.library(external / "p")
        await world.scan(library)
        await world.process_media()
        by_name = {os.path.basename(p): a for p, a in world.assets(library).items()}
        changed, kept = by_name[b"changed.jpg"], by_name[b"kept.jpg"]
        assert changed.thumbnail_version == kept.thumbnail_version == 1
        jpeg(external / "p" / "changed.jpg", (200, 400))
        os.utime(external / "p" / "changed.jpg", (changed.file_mtime_ns / 1e9 + 60,) * 2)
        assert (await world.scan(library, ScanMode.MODIFIED)).modified == 1  # a re-render is queued
    originals = fingerprint(external)
    files = DerivedFiles(settings.data_dir, settings.image)
    kept_files = sorted(os.listdir(files.folder(kept.id)))
    assert kept_files == ["preview-1.jpg", "thumbnail-1.webp"]

    renderer = child(RENDER_KILLED_AFTER_THE_SWITCH, settings.data_dir)
    said = renderer.stdout.readline()  # (its workers may hold the pipe a moment longer: not read to the end)
    assert renderer.wait(timeout=60) == -signal.SIGKILL, said
    assert said.split() == [str(changed.id), "2"]
    renderer.stdout.close()
    leftover = sorted(os.listdir(files.folder(changed.id)))
    assert leftover == ["preview-1.jpg", "preview-2.jpg", "thumbnail-1.webp", "thumbnail-2.webp"]
    notes = files.root / RENDERS_FOLDER
    assert os.listdir(notes) == [str(changed.id)]

    def check(services: Services) -> None:
        assert sorted(os.listdir(files.folder(changed.id))) == ["preview-2.jpg", "thumbnail-2.webp"]
        assert sorted(os.listdir(files.folder(kept.id))) == kept_files
        assert os.listdir(notes) == []
        with services.index.read() as txn:
            now = asset_index.get(txn, changed.id)
            assert now.thumbnail_version == 2 and (now.width, now.height) == (200, 400)
            assert asset_index.get(txn, kept.id).thumbnail_version == 1
        assert fingerprint(external) == originals

    await start_and_stop(settings, check)


def test_the_render_sweep_keeps_the_current_version_in_any_format_and_forgets_deleted_assets(
    settings, tmp_path
):
    """Notes come only from renders into derived folders; the sweep keeps the version the index holds (even in a
    format no longer configured), removes other versions and temp files, and a deleted asset's whole folder."""
    files = DerivedFiles(settings.data_dir, settings.image)
    note_render(tmp_path / "elsewhere" / "thumbnail-1.webp")  # a render outside the derived tree: no note
    current, deleted, unrendered = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    names = {
        current: [
            "thumbnail-3.jpg",
            "preview-3.jpg",
            "thumbnail-2.webp",
            "preview-4.jpg.tmp-77",
            "encoded-video.mp4",
        ],
        deleted: ["thumbnail-1.webp", "preview-1.jpg", "encoded-video.mp4"],
        unrendered: ["thumbnail-1.webp.tmp-5"],
    }
    for asset_id, listed in names.items():
        for name in listed:
            path = files.folder(asset_id) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
        note_render(files.image_path(asset_id, "thumbnail", 9))
    assert sorted(files.interrupted_renders()) == sorted(names)
    files.finish_interrupted({current: 3, deleted: None, unrendered: 0})
    assert sorted(os.listdir(files.folder(current))) == [
        "encoded-video.mp4",
        "preview-3.jpg",
        "thumbnail-3.jpg",
    ]
    assert not files.folder(deleted).exists()
    assert os.listdir(files.folder(unrendered)) == []
    assert files.interrupted_renders() == []


def test_a_failed_render_leaves_no_note_unless_a_killed_one_left_temp_files(settings, tmp_path, monkeypatch):
    from daemon import thumbnails

    files = DerivedFiles(settings.data_dir, settings.image)
    source = jpeg(tmp_path / "a.jpg")
    asset_id = uuid.uuid4()

    def full_disk(image, output, icc_profile, destination):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def render() -> None:
        with pytest.raises(OSError, match="No space left"):
            thumbnails.render_image(
                bytes(source), None, str(files.image_path(asset_id, "thumbnail", 1)),
                str(files.image_path(asset_id, "preview", 1)), settings.image,
            )  # fmt: skip

    monkeypatch.setattr(thumbnails, "_encode", full_disk)
    render()
    assert files.interrupted_renders() == [] and os.listdir(files.folder(asset_id)) == []
    killed_worker_temp = files.folder(asset_id) / "preview-1.jpg.tmp-12345"
    killed_worker_temp.write_bytes(b"half")
    render()
    assert files.interrupted_renders() == [asset_id]  # the next start (or a render that succeeds) removes it
    files.finish_interrupted({asset_id: 0})
    assert os.listdir(files.folder(asset_id)) == [] and files.interrupted_renders() == []


# --- exiftool link folders ---------------------------------------------------------------------------------------

METADATA_WORKER = """
import sys, time
from daemon import exiftool, metadata
metadata.read_metadata([(sys.argv[1].encode(), None, None)])
print(exiftool._links, flush=True)
if sys.argv[2] == "linger":
    time.sleep(120)
"""


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """A temp directory of this test's own, for this process and its children: no other test's sweep can take
    what this one leaves on purpose, and this one's sweeps see nobody else's."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


async def test_a_killed_metadata_worker_leaves_a_link_folder_that_the_next_start_removes(
    settings, private_tmp, tmp_path
):
    photo = jpeg(tmp_path / "photos" / "a.jpg", taken="2020:01:02 03:04:05")
    originals = fingerprint(photo.parent)
    environ = {"TMPDIR": str(private_tmp)}
    worker = child(METADATA_WORKER, str(photo), "linger", environ=environ)
    killed_links = worker.stdout.readline().strip()
    live = child(METADATA_WORKER, str(photo), "linger", environ=environ)  # another daemon's worker, alive
    try:
        live_links = live.stdout.readline().strip()
        killed(worker)
        assert os.path.isdir(killed_links) and os.path.dirname(killed_links) == str(private_tmp)
        older = private_tmp / "filmroll-exiftool-a1b2c3d4"  # the old unlocked form: cannot tell, never swept
        older.mkdir()

        def check(services: Services) -> None:
            assert not os.path.exists(killed_links)
            assert os.path.isdir(live_links) and older.is_dir()

        await start_and_stop(settings, check)
    finally:
        killed(live)
    # a new worker's first batch sweeps too (and its own folder goes when it exits)
    fresh = child(METADATA_WORKER, str(photo), "exit", environ=environ)
    fresh_links = fresh.stdout.readline().strip()
    assert fresh.wait(timeout=60) == 0
    fresh.stdout.close()
    assert fresh_links != live_links and not os.path.exists(fresh_links)
    assert sorted(os.listdir(private_tmp)) == [older.name]
    assert fingerprint(photo.parent) == originals


def test_a_link_folder_swept_before_its_owner_locks_it_is_replaced(private_tmp, monkeypatch):
    """The race a sweep in another process can win: the folder made, then removed before its owner's lock; the
    owner notices and makes another."""
    made = []
    real_mkdir = os.mkdir

    def mkdir_then_swept(path, mode=0o777):
        real_mkdir(path, mode)
        made.append(path)
        if len(made) == 1:
            assert exiftool.sweep_link_directories() == 1

    monkeypatch.setattr(exiftool.os, "mkdir", mkdir_then_swept)
    path = exiftool._new_link_directory()
    try:
        assert made == [made[0], path] and os.path.isdir(path) and not os.path.exists(made[0])
        assert exiftool.sweep_link_directories() == 0  # held by this process
    finally:
        exiftool._remove_link_directory(path, os.getpid())
    assert os.listdir(private_tmp) == []
