"""The storage-template queue for real: uploads move from their landing path to the templated place once their
metadata is known, with their sidecar; collisions get +N; the migration job applies a changed template and a
changed date; with the template disabled, originals go back to their landing path; external files never move."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import msgspec
import pytest

from daemon import album_index, job_queue
from daemon import assets as asset_index
from daemon.check import check_index
from daemon.records import Album
from daemon.storage_jobs import StorageTemplateJobs
from daemon.storage_template import parse
from tests.library_helpers import NOW, upload_asset
from tests.media_files import jpeg


def photo(tmp_path: Path, taken: str, name: str = "src.jpg", size=(64, 48)) -> bytes:
    path = tmp_path / "made" / name
    jpeg(path, size, taken=taken)
    return path.read_bytes()


def queue_metadata(services, *assets) -> None:
    def work(txn):
        for asset in assets:
            job_queue.enqueue(txn, job_queue.METADATA, asset.id, NOW)

    services.index.write(work)


def current(services, asset_id: uuid.UUID):
    with services.index.read() as txn:
        return asset_index.get(txn, asset_id)


def library_root(world) -> Path:
    return world.data_dir / "library" / str(world.user.id)


async def test_an_upload_moves_to_its_templated_place_with_its_sidecar(world, tmp_path):
    content = photo(tmp_path, "2021:06:07 08:09:10")
    asset = upload_asset(world.services, world.user, content, "Beach Day.JPG")
    landing = Path(os.fsdecode(asset.original_path))
    sidecar = Path(str(landing) + ".xmp")
    sidecar.write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    world.services.index.write(
        lambda txn: asset_index.update(txn, asset, sidecar_path=os.fsencode(sidecar), sidecar_mtime_ns=1)
    )
    queue_metadata(world.services, asset)
    await world.process_media()

    moved = current(world.services, asset.id)
    expected = library_root(world) / "2021" / "2021-06-07" / "Beach Day.jpg"
    assert Path(os.fsdecode(moved.original_path)) == expected
    assert hashlib.sha1(expected.read_bytes()).digest() == asset.content_sha1
    assert moved.sidecar_path == os.fsencode(str(expected) + ".xmp") and Path(str(expected) + ".xmp").exists()
    assert not landing.exists() and not sidecar.exists()
    assert moved.storage_placed_at is not None and moved.id == asset.id
    assert check_index(world.services.index) == []


async def test_same_name_same_day_gets_a_plus_one_and_a_rerun_moves_nothing(world, tmp_path):
    first = upload_asset(world.services, world.user, photo(tmp_path, "2020:01:02 03:04:05", "a.jpg"), "x.jpg")
    second = upload_asset(
        world.services, world.user, photo(tmp_path, "2020:01:02 09:04:05", "b.jpg", (80, 60)), "x.jpg"
    )
    queue_metadata(world.services, first, second)
    await world.process_media()
    folder = library_root(world) / "2020" / "2020-01-02"
    paths = {Path(os.fsdecode(current(world.services, a.id).original_path)) for a in (first, second)}
    assert paths == {folder / "x.jpg", folder / "x+1.jpg"}

    world.services.media.storage.start(force=False)  # the migration job: both already in place (§5.6)
    await world.process_media()
    assert {Path(os.fsdecode(current(world.services, a.id).original_path)) for a in (first, second)} == paths


async def test_migration_applies_a_changed_template_and_a_changed_date(world, tmp_path):
    asset = upload_asset(world.services, world.user, photo(tmp_path, "2019:05:06 07:08:09"), "trip.jpg")
    queue_metadata(world.services, asset)
    await world.process_media()
    trip = Album(id=uuid.uuid4(), owner_id=world.user.id, name="Alps: 2019?", created_at=NOW, updated_at=NOW)

    def add(txn):
        album_index.put(txn, trip)
        album_index.add(txn, trip.id, asset.id, NOW)

    world.services.index.write(add)
    handler = world.services.media.storage.handler
    assert isinstance(handler, StorageTemplateJobs)
    handler.template = parse("{{#if album}}{{album}}{{else}}Other{{/if}}/{{y}}/{{filename}}")
    world.services.media.storage.start(force=True)
    await world.process_media()
    assert Path(os.fsdecode(current(world.services, asset.id).original_path)) == (
        library_root(world) / "Alps 2019" / "2019" / "trip.jpg"
    )

    placed = current(world.services, asset.id)
    later = placed.file_created_at.replace(year=2023)
    world.services.index.write(lambda txn: asset_index.update(txn, placed, file_created_at=later))
    world.services.media.storage.start(force=False)
    await world.process_media()
    assert Path(os.fsdecode(current(world.services, asset.id).original_path)) == (
        library_root(world) / "Alps 2019" / "2023" / "trip.jpg"
    )
    assert check_index(world.services.index) == []


async def test_disabling_the_template_brings_originals_back_to_their_landing_path(world, tmp_path):
    asset = upload_asset(world.services, world.user, photo(tmp_path, "2018:01:01 00:00:00"), "keep.jpg")
    landing = Path(os.fsdecode(asset.original_path))
    queue_metadata(world.services, asset)
    await world.process_media()
    assert not landing.exists()

    handler = world.services.media.storage.handler
    handler.settings = msgspec.structs.replace(handler.settings, enabled=False)
    world.services.media.storage.start(force=False)
    await world.process_media()
    assert Path(os.fsdecode(current(world.services, asset.id).original_path)) == landing
    assert hashlib.sha1(landing.read_bytes()).digest() == asset.content_sha1
    assert check_index(world.services.index) == []


async def test_external_assets_never_move(world, tmp_path):
    jpeg(world.external / "pics" / "e.jpg", (32, 32), taken="2017:01:01 00:00:00")
    library = world.library(world.external / "pics")
    await world.scan(library)
    await world.process_media()
    world.services.media.storage.start(force=True)
    await world.process_media()
    [(path, asset)] = world.assets(library).items()
    assert asset.original_path == path == os.fsencode(world.external / "pics" / "e.jpg")
    assert asset.storage_placed_at is None


async def test_a_destination_outside_the_users_folder_leaves_the_file_where_it_is(world, tmp_path, caplog):
    asset = upload_asset(world.services, world.user, photo(tmp_path, "2016:01:01 00:00:00"), "f.jpg")
    root = library_root(world)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path, root)  # the user's folder itself leads outside: every destination escapes
    (tmp_path / "2016").mkdir()
    os.symlink("/", tmp_path / "2016" / "2016-01-01")
    queue_metadata(world.services, asset)
    await world.process_media()
    assert current(world.services, asset.id).original_path == asset.original_path
    assert os.path.exists(os.fsdecode(asset.original_path))
    assert "would move outside" in caplog.text  # the job ran and refused, named in a warning
    assert os.listdir(tmp_path / "2016") == ["2016-01-01"] and not os.path.exists(
        "/f.jpg"
    )  # nothing moved out


@pytest.mark.parametrize("name", ["new\nline.jpg", "sp ace ü.jpg", "../../etc/passwd.jpg"])
async def test_odd_names_stay_inside_the_users_folder(world, tmp_path, name):
    asset = upload_asset(world.services, world.user, photo(tmp_path, "2015:02:03 04:05:06"), "odd.jpg")
    world.services.index.write(lambda txn: asset_index.update(txn, asset, original_file_name=name))
    queue_metadata(world.services, asset)
    await world.process_media()
    placed = Path(os.fsdecode(current(world.services, asset.id).original_path))
    assert placed.is_file() and os.path.realpath(placed).startswith(
        os.path.realpath(library_root(world)) + "/"
    )
    assert "\n" not in str(placed)


async def test_a_move_killed_after_its_commit_removes_the_old_names_when_it_runs_again(world, tmp_path, monkeypatch):
    """The index points at the new name and the daemon dies before unlinking the old one (and the old sidecar):
    the job stays queued holding those names, and its next run (here at once; after a restart, the same) removes
    them, nothing else."""
    from daemon import storage_jobs

    asset = upload_asset(world.services, world.user, photo(tmp_path, "2021:06:07 08:09:10"), "Beach.jpg",
                         sidecar=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")  # fmt: skip
    landing = Path(os.fsdecode(asset.original_path))
    at_the_kill = []
    real_store = StorageTemplateJobs._store

    def store(self, txn, **kwargs):
        stored, left = real_store(self, txn, **kwargs)
        at_the_kill.append(left)
        return stored, left

    def died(stored, current, destination, copied, old_sidecar):  # nothing after the commit runs
        at_the_kill.append((landing.exists(), Path(str(landing) + ".xmp").exists()))

    monkeypatch.setattr(StorageTemplateJobs, "_store", store)
    monkeypatch.setattr(storage_jobs, "_clean_up", died)
    monkeypatch.setattr(StorageTemplateJobs, "_leftovers_gone", lambda self, txn, asset_id, left: None)
    queue_metadata(world.services, asset)
    await world.process_media()

    left, files = at_the_kill[0], at_the_kill[1]
    assert set(left.leftovers) == {os.fsencode(landing), os.fsencode(landing) + b".xmp"} and files == (True, True)
    moved = Path(os.fsdecode(current(world.services, asset.id).original_path))
    assert moved != landing and moved.exists() and Path(str(moved) + ".xmp").exists()
    assert not landing.exists() and not Path(str(landing) + ".xmp").exists()  # removed by the next run
    with world.services.index.read() as txn:
        assert txn.get(job_queue.QUEUE_TABLES[job_queue.STORAGE_TEMPLATE], asset.id.bytes) is None
    assert check_index(world.services.index) == []
