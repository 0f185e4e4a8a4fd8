"""The media pipeline end to end, daemon side: a scan queues the work, real worker processes do it (exiftool,
Pillow, PyAV), the index records the results, and originals come out untouched."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import shutil
import uuid
from datetime import UTC, datetime

import msgspec
from PIL import Image

from api.validation import parse_uuid
from daemon import assets as asset_index
from daemon import job_queue, worker_tasks
from daemon.derived import DerivedFiles
from daemon.index import EXIF
from daemon.media_jobs import MediaQueues
from daemon.media_queue import Workers
from daemon.records import Library
from daemon.scan import ScanMode
from tests.daemon.test_uploads import BOUNDARY, DATES, multipart, receiver
from tests.library_helpers import write
from tests.media_files import fingerprint, jpeg, png, video


def jpeg_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(out, "JPEG")
    return out.getvalue()


def derived(world) -> DerivedFiles:
    return DerivedFiles(world.services.settings.data_dir, world.services.settings.image)


def failures(world, asset) -> list:
    with world.services.index.read() as txn:
        return job_queue.failures_of(txn, asset.id)


async def test_imported_files_get_metadata_thumbnails_and_video_decisions(world):
    root = world.external / "p"
    jpeg(root / "turned.jpg", (320, 240), taken="2020:01:02 03:04:05", orientation=6)
    png(root / "flat.png", (200, 300))
    video(root / "clip.mp4", audio=True)
    video(root / "old.avi", codec="mpeg4")
    before = fingerprint(root)
    library = world.library(root)
    await world.scan(library)
    await world.process_media()
    assert fingerprint(root) == before  # originals read, never written
    found = {os.path.basename(path).decode(): asset for path, asset in world.assets(library).items()}
    files = derived(world)
    for name, asset in found.items():
        assert failures(world, asset) == [], name
        assert asset.metadata_extracted_at is not None and asset.thumbnail_version == 1, name
        assert asset.thumbhash, name
        for size in ("thumbnail", "preview"):
            assert files.image_path(asset.id, size, 1).is_file(), (name, size)
        with open(world.external / "p" / name, "rb") as stream:
            assert asset.content_sha1 == hashlib.sha1(stream.read()).digest()
    turned = found["turned.jpg"]
    assert (turned.width, turned.height) == (240, 320)  # orientation 6 applied
    assert turned.file_created_at == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)  # no offset: taken as UTC
    with world.services.index.read() as txn:
        exif = txn.get(EXIF, turned.id.bytes)
    assert exif.orientation == "6" and (exif.exif_image_width, exif.exif_image_height) == (320, 240)
    assert exif.time_zone is None
    assert (found["flat.png"].width, found["flat.png"].height) == (200, 300)
    clip, old = found["clip.mp4"], found["old.avi"]
    assert clip.video_decided_at is not None and not clip.has_encoded_video  # h264 + aac in mp4: accepted
    assert old.has_encoded_video and files.encoded_video(old.id).is_file()  # mpeg4 is not: transcoded
    assert clip.duration_ms is not None and 900 <= clip.duration_ms <= 1100
    with world.services.index.read() as txn:
        assert all(job_queue.waiting(txn, queue) == 0 for queue in job_queue.QUEUE_TABLES)


async def test_bad_media_fails_with_its_reason_on_the_asset_and_the_rest_carries_on(world):
    root = world.external / "p"
    write(root / "empty.jpg", b"")
    good = jpeg(root / "good.jpg")
    with open(good, "rb") as stream:
        write(root / "truncated.jpg", stream.read()[:600])
    write(root / "text.mp4", b"this is not a video at all")
    library = world.library(root)
    await world.scan(library)
    await world.process_media()
    found = {os.path.basename(path).decode(): asset for path, asset in world.assets(library).items()}
    assert found["good.jpg"].thumbnail_version == 1 and failures(world, found["good.jpg"]) == []
    for name in ("empty.jpg", "truncated.jpg", "text.mp4"):
        asset = found[name]
        recorded = {failure.queue: failure for failure in failures(world, asset)}
        assert job_queue.THUMBNAILS in recorded, name
        assert name in recorded[job_queue.THUMBNAILS].reason, recorded
        assert recorded[job_queue.THUMBNAILS].attempts == 1  # bad media is not retried
        assert asset.thumbnail_version == 0 and asset.thumbhash is None  # the asset stays, without thumbnails
        assert asset.content_sha1 is not None  # the hash (moves) does not depend on readable metadata


def vanished_warnings(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and name in r.getMessage()]


async def test_a_vanished_original_goes_offline_with_one_warning_and_its_work_runs_when_it_returns(
    world, caplog, tmp_path
):
    world.services.settings.job.retry_delay = 0  # shared by the queues: any retry would come at once
    root = world.external / "p"
    jpeg(root / "gone.jpg", taken="2020:01:02 03:04:05")
    jpeg(root / "kept.jpg")
    library = world.library(root)
    await world.scan(library)
    shutil.copy2(root / "gone.jpg", tmp_path / "gone.jpg")  # the same bytes and mtime, to bring back later
    os.remove(root / "gone.jpg")
    caplog.set_level(logging.INFO)
    await world.process_media()

    (warning,) = vanished_warnings(caplog, "gone.jpg")  # one, from whichever queue met it first; no retries
    assert "dropped" in warning and "No such file or directory" in warning and "offline" in warning
    assert str(root / "gone.jpg") in warning  # the path itself, not its bytes repr
    found = {os.path.basename(path).decode(): asset for path, asset in world.assets(library).items()}
    assert set(found) == {"gone.jpg", "kept.jpg"}  # nothing lost from the index
    gone, kept = found["gone.jpg"], found["kept.jpg"]
    assert gone.is_offline and gone.metadata_extracted_at is None and gone.thumbnail_version == 0
    assert failures(world, gone) == []  # not a failure: the file is missing, and the asset says so
    assert kept.metadata_extracted_at is not None and kept.thumbnail_version == 1 and not kept.is_offline
    with world.services.index.read() as txn:
        assert all(job_queue.waiting(txn, queue) == 0 for queue in job_queue.QUEUE_TABLES)

    shutil.copy2(tmp_path / "gone.jpg", root / "gone.jpg")
    assert (await world.scan(library)).restored == 1  # unchanged: `enqueue_missing` queues what it never had
    await world.process_media()
    back = world.assets(library)[os.fsencode(root / "gone.jpg")]
    assert back.id == gone.id and not back.is_offline and failures(world, back) == []
    assert back.metadata_extracted_at is not None and back.thumbnail_version == 1
    assert back.file_created_at == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert len(vanished_warnings(caplog, "gone.jpg")) == 1


async def metadata_with_hash(world, monkeypatch, hashing) -> Library:
    """One photo imported, then metadata extraction in this process with `hashing(real_hash, path, root)` as the
    content hash (so a test can make the file go or come back at that moment); thumbnails are not queued."""
    root = world.external / "p"
    jpeg(root / "a.jpg")
    library = world.library(root)
    await world.scan(library)
    world.services.index.write(lambda txn: job_queue.empty(txn, job_queue.THUMBNAILS))

    async def in_this_process(self, function, *args):  # so the patched hash is the one the job calls
        return function(*args)

    monkeypatch.setattr(worker_tasks, "content_sha1", functools.partial(hashing, worker_tasks.content_sha1))
    monkeypatch.setattr(Workers, "run", in_this_process)
    await world.process_media()
    return library


async def test_an_original_vanishing_between_reading_and_hashing_takes_the_same_way(
    world, caplog, monkeypatch
):
    """exiftool read the file, then it went before its content hash: the job is dropped, not retried."""

    def vanish_then_hash(hash_file, path: bytes, confined_to: bytes | None) -> bytes:
        os.remove(path)
        return hash_file(path, confined_to)

    library = await metadata_with_hash(world, monkeypatch, vanish_then_hash)
    (warning,) = vanished_warnings(caplog, "a.jpg")
    assert "metadataExtraction job" in warning and "dropped" in warning and "No such file" in warning
    (asset,) = world.assets(library).values()
    assert asset.is_offline and asset.content_sha1 is None and asset.metadata_extracted_at is None
    assert failures(world, asset) == []


async def test_an_original_missing_only_for_a_moment_is_retried_not_taken_offline(world, caplog, monkeypatch):
    """A program that saves by deleting and re-creating, or a share's blip: the attempt met no file, but it is there
    again at the second look, so the job is an ordinary failure, retried, and the asset stays online."""
    world.services.settings.job.retry_delay = 0
    attempts = []

    def away_while_hashing_once(hash_file, path: bytes, confined_to: bytes | None) -> bytes:
        attempts.append(path)
        if len(attempts) > 1:
            return hash_file(path, confined_to)
        aside = path + b".saving"
        os.rename(path, aside)
        try:
            return hash_file(path, confined_to)
        finally:
            os.rename(aside, path)  # back before the failure is looked at

    library = await metadata_with_hash(world, monkeypatch, away_while_hashing_once)
    assert len(attempts) == 2
    (warning,) = vanished_warnings(caplog, "a.jpg")
    assert "failed (retried later" in warning and "offline" not in warning
    (asset,) = world.assets(library).values()
    assert not asset.is_offline and asset.content_sha1 is not None and asset.metadata_extracted_at is not None
    assert failures(world, asset) == []


async def test_an_upload_whose_original_vanished_fails_once_per_job_without_retries(world, caplog):
    world.services.settings.job.retry_delay = 0
    body = multipart(DATES, {"assetData": ("lost.jpg", jpeg_bytes())})
    result = await world.services.uploads.upload(
        world.principal, receiver([body]), BOUNDARY, parse_id=parse_uuid
    )
    with world.services.index.read() as txn:
        original = asset_index.get(txn, result.asset_id).original_path
    os.remove(original)
    await world.process_media()
    with world.services.index.read() as txn:
        asset = asset_index.get(txn, result.asset_id)
        recorded = {failure.queue: failure for failure in job_queue.failures_of(txn, asset.id)}
        assert all(job_queue.waiting(txn, queue) == 0 for queue in job_queue.QUEUE_TABLES)
    assert not asset.is_offline  # uploads never go offline: no scan would bring them back
    assert set(recorded) == {job_queue.METADATA, job_queue.THUMBNAILS}
    assert all(f.attempts == 1 and "No such file or directory" in f.reason for f in recorded.values())
    warnings = vanished_warnings(caplog, os.fsdecode(original))
    assert len(warnings) == 2 and all(" failed: " in w for w in warnings), warnings


async def test_a_changed_file_gets_a_new_thumbnail_version_and_the_old_one_goes(world):
    root = world.external / "p"
    jpeg(root / "a.jpg", (320, 240))
    library = world.library(root)
    await world.scan(library)
    await world.process_media()
    (first,) = world.assets(library).values()
    jpeg(root / "a.jpg", (200, 400))
    os.utime(root / "a.jpg", (first.file_mtime_ns / 1e9 + 60,) * 2)
    assert (await world.scan(library, ScanMode.MODIFIED)).modified == 1
    await world.process_media()
    (second,) = world.assets(library).values()
    files = derived(world)
    assert second.id == first.id and second.thumbnail_version == 2
    assert (second.width, second.height) == (200, 400) and second.thumbhash != first.thumbhash
    assert files.image_path(second.id, "preview", 2).is_file()
    assert not files.image_path(first.id, "preview", 1).exists()


async def test_an_asset_back_online_unchanged_is_not_rendered_again(world, tmp_path):
    root = world.external / "p"
    jpeg(root / "a.jpg")
    library = world.library(root)
    await world.scan(library)
    await world.process_media()
    shutil.move(root / "a.jpg", tmp_path / "a.jpg")
    await world.scan(library)
    shutil.move(tmp_path / "a.jpg", root / "a.jpg")
    assert (await world.scan(library)).restored == 1
    with world.services.index.read() as txn:
        assert all(job_queue.waiting(txn, queue) == 0 for queue in job_queue.QUEUE_TABLES)
    (asset,) = world.assets(library).values()
    assert asset.thumbnail_version == 1 and not asset.is_offline


async def test_a_link_swapped_outside_the_external_path_is_not_read(world, tmp_path):
    jpeg(world.external / "p" / "a.jpg")
    jpeg(tmp_path / "secret.jpg", (64, 64))
    library = world.library(world.external / "p")
    await world.scan(library)
    os.remove(world.external / "p" / "a.jpg")
    os.symlink(tmp_path / "secret.jpg", world.external / "p" / "a.jpg")  # swapped after the crawl
    await world.process_media()
    (asset,) = world.assets(library).values()
    assert asset.content_sha1 is None and asset.thumbnail_version == 0 and asset.metadata_extracted_at is None
    reasons = [failure.reason for failure in failures(world, asset)]
    assert len(reasons) == 2 and all("outside" in reason.lower() for reason in reasons), reasons


async def test_a_transcode_no_longer_required_is_deleted(world):
    root = world.external / "p"
    video(root / "old.avi", codec="mpeg4")
    library = world.library(root)
    await world.scan(library)
    await world.process_media()
    (asset,) = world.assets(library).values()
    files = derived(world)
    assert asset.has_encoded_video and files.encoded_video(asset.id).is_file()
    settings = world.services.settings
    settings.ffmpeg = msgspec.structs.replace(settings.ffmpeg, transcode="disabled")
    world.services.media = MediaQueues.build(world.services.index, settings)
    world.services.media.video.start(force=True)
    await world.process_media()
    (asset,) = world.assets(library).values()
    assert not asset.has_encoded_video and not files.encoded_video(asset.id).exists()


def test_each_cleanup_touches_only_its_own_files(world):
    files = derived(world)
    asset_id = uuid.uuid4()
    folder = files.folder(asset_id)
    folder.mkdir(parents=True)
    names = ["thumbnail-1.webp", "preview-1.jpg", "thumbnail-2.webp", "preview-2.jpg", "preview-3.jpg.tmp-7",
             "encoded-video.mp4", "encoded-video.mp4.tmp-9"]  # fmt: skip
    for name in names:
        (folder / name).write_bytes(b"x")
    files.remove_old_versions(asset_id, 2)  # a render finished; a transcode may be writing its temp file
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["thumbnail-2.webp", "preview-2.jpg", "encoded-video.mp4", "encoded-video.mp4.tmp-9"]
    )
    files.remove_transcode_leftovers(asset_id)
    assert sorted(p.name for p in folder.iterdir()) == [
        "encoded-video.mp4",
        "preview-2.jpg",
        "thumbnail-2.webp",
    ]
