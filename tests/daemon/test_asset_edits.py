"""Owner edits as pure logic (dates, positions, ratings, overlaying metadata), and permanent deletion at the
daemon tier: library deletion deletes an upload library's originals and frees quota, never an external file."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest
import trio

from daemon import asset_edits, trash
from daemon import assets as asset_index
from daemon.errors import InvalidInput
from daemon.index import ASSET_EDITS, EXIF, USERS
from daemon.library_jobs import LibraryJobQueue
from daemon.records import Asset, AssetEdits, ExifInfo
from tests import library_helpers
from tests.library_helpers import write

NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_capture_times_keep_instant_wall_clock_and_zone():
    parsed = asset_edits.parse_capture_time("2023-11-19T18:11:00.000-07:00")
    assert parsed.instant == datetime(2023, 11, 20, 1, 11, tzinfo=UTC)
    assert parsed.local == datetime(2023, 11, 19, 18, 11) and parsed.zone == "UTC-7"
    assert asset_edits.parse_capture_time("2023-11-19T18:11:00+0530").zone == "UTC+5:30"
    assert asset_edits.parse_capture_time("2023-11-19").instant == datetime(2023, 11, 19, tzinfo=UTC)
    assert asset_edits.parse_capture_time("2023-11-19 18:11:00.123456789Z").local.microsecond == 123456
    for bad in ("", "2023-13-01", "2023-11-19T18:11:00+15:00", "2023-11-19T25:00:00", "20231119"):
        with pytest.raises(InvalidInput):
            asset_edits.parse_capture_time(bad)


def test_positions_and_ratings():
    asset_edits.check_position(-90, 180, latitude_given=True, longitude_given=True)
    asset_edits.check_position(None, None, latitude_given=False, longitude_given=False)
    for latitude, longitude in ((None, 1), (1, None), (90.1, 0), (0, -181), (True, 1)):
        with pytest.raises(InvalidInput):
            asset_edits.check_position(latitude, longitude, latitude_given=True, longitude_given=True)
    assert [asset_edits.normalize_rating(value) for value in (None, 0, -1, 5)] == [None, None, -1, 5]
    with pytest.raises(InvalidInput):
        asset_edits.normalize_rating(6)


def test_edits_merge_and_overlay_only_what_was_set():
    first = asset_edits.merge(None, {"description": "a", "rating": 3})
    second = asset_edits.merge(
        first, {"rating": None, **asset_edits.parse_capture_time("2020-01-01T00:00Z").as_edits()}
    )
    assert set(second.fields) == {
        "description",
        "rating",
        "date_time_original",
        "time_zone",
        "local_date_time",
    }
    assert second.description == "a" and second.rating is None
    extracted = ExifInfo(make="Canon", rating=5, description="from file", latitude=1.0, longitude=2.0)
    shown = asset_edits.overlay(extracted, second)
    assert shown.make == "Canon" and shown.rating is None and shown.description == "a"
    assert (shown.latitude, shown.longitude) == (1.0, 2.0) and shown.time_zone == "UTC"
    assert (
        asset_edits.overlay(extracted, None) is extracted and asset_edits.overlay(None, AssetEdits()) is None
    )
    assert asset_edits.overlay(None, first).description == "a"
    with pytest.raises(ValueError):
        asset_edits.merge(None, {"make": "Nikon"})


def upload_asset(services, user, name: str, library_id: uuid.UUID | None = None) -> Asset:
    """An upload with its `.xmp` sidecar (content derived from the name, so every one is distinct)."""
    return library_helpers.upload_asset(
        services, user, name.encode() * 10, name, library_id, sidecar=b"<xmp/>"
    )


def usage(services, user) -> int:
    with services.index.read() as txn:
        return txn.get(USERS, user.id.bytes).quota_usage_in_bytes


async def run_queue(queue: LibraryJobQueue) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        await queue.wait_idle()
        nursery.cancel_scope.cancel()


async def test_deleting_an_upload_library_deletes_its_originals_and_frees_quota(world):
    services = world.services
    second = services.libraries.create(world.principal, library_type="UPLOAD", name="Phone")
    kept = upload_asset(services, world.user, "kept.jpg")
    doomed = [upload_asset(services, world.user, f"{n}.jpg", second.id) for n in range(3)]
    write(world.external / "p" / "a.jpg")
    external = world.library(world.external / "p")
    await world.scan(external)
    before = usage(services, world.user)
    services.libraries.jobs = None  # run the deletion here, not in a daemon
    services.libraries.delete(world.principal, second.id)
    services.libraries.delete(world.principal, external.id)
    await run_queue(LibraryJobQueue(services.index, str(world.data_dir)))
    for asset in doomed:
        assert not os.path.exists(asset.original_path) and not os.path.exists(asset.original_path + b".xmp")
    assert os.path.exists(kept.original_path) and os.path.exists(kept.original_path + b".xmp")
    assert (world.external / "p" / "a.jpg").exists()  # external originals are never touched
    assert usage(services, world.user) == before - sum(asset.file_size for asset in doomed)
    with services.index.read() as txn:
        assert asset_index.by_checksum(txn, world.user.id, doomed[0].content_sha1) is None
        assert asset_index.get(txn, kept.id) is not None
    assert world.paths(second) == set() and world.paths(external) == set()


async def test_delete_permanently_skips_unknown_ids_and_edits_go_with_the_asset(world):
    services = world.services
    asset = upload_asset(services, world.user, "a.jpg")

    def edit(txn):
        txn.put(ASSET_EDITS, asset.id.bytes, asset_edits.merge(None, {"description": "x"}))
        txn.put(EXIF, asset.id.bytes, ExifInfo(description="x"))

    services.index.write(edit)
    deleted = await trash.delete_permanently(
        services.index, world.data_dir, [asset.id, uuid.uuid4(), asset.id]
    )
    assert deleted == 1 and usage(services, world.user) == 0
    with services.index.read() as txn:
        assert txn.get(ASSET_EDITS, asset.id.bytes) is None and txn.get(EXIF, asset.id.bytes) is None
    assert not os.path.exists(asset.original_path)
    other = upload_asset(services, world.user, "b.jpg")
    assert (
        trash.delete_permanently_blocking(services.index, world.data_dir, [other.id]) == 1
    )  # for CLI commands
    assert not os.path.exists(other.original_path) and usage(services, world.user) == 0


def test_owned_files_outside_the_data_directory_are_never_deleted(world, tmp_path, caplog):
    outside = tmp_path / "elsewhere.jpg"
    write(outside)
    inside = world.data_dir / "upload" / "x.jpg"
    write(inside)
    removed = trash.Removed(asset_ids=[], owned_files=[os.fsencode(outside), os.fsencode(inside)])
    trash.delete_files(world.data_dir, removed)
    assert outside.exists() and not inside.exists()
    assert "outside the data directory" in caplog.text
