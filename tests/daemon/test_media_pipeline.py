"""The media pipeline end to end, daemon side: a scan queues the work, real worker processes do it (exiftool,
Pillow, PyAV), the index records the results, and originals come out untouched."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from datetime import UTC, datetime

import msgspec

from daemon import job_queue
from daemon.derived import DerivedFiles
from daemon.index import EXIF
from daemon.media_jobs import MediaQueues
from daemon.scan import ScanMode
from tests.library_helpers import write
from tests.media_files import fingerprint, jpeg, png, video


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


async def test_a_vanished_file_is_retried_then_recorded(world):
    world.services.settings.job.retry_delay = (
        0  # the queues share this settings object; backoff is tested apart
    )
    root = world.external / "p"
    jpeg(root / "gone.jpg")
    library = world.library(root)
    await world.scan(library)
    os.remove(root / "gone.jpg")
    await world.process_media()
    (asset,) = world.assets(library).values()
    recorded = {failure.queue: failure for failure in failures(world, asset)}
    assert recorded[job_queue.METADATA].attempts == 3
    assert "gone.jpg" in recorded[job_queue.METADATA].reason
    assert "No such file" in recorded[job_queue.METADATA].reason


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
