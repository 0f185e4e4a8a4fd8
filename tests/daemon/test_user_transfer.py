"""Moving a user's data to another user: albums, external libraries and assets change owner in one transaction;
upload assets whose content the target already has stay behind, and their albums hold the target's copy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from daemon import album_index, job_queue
from daemon import assets as asset_index
from daemon.access import Principal
from daemon.check import check_index
from daemon.cli import main
from daemon.errors import Forbidden, InvalidInput
from daemon.index import USERS
from daemon.records import Album, Asset
from tests.library_helpers import upload_asset, write

NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def album(services, owner, *members: Asset, name: str = "Trip") -> Album:
    made = Album(id=uuid.uuid4(), owner_id=owner.id, name=name, created_at=NOW, updated_at=NOW)

    def work(txn):
        album_index.put(txn, made)
        for asset in members:
            album_index.add(txn, made.id, asset.id, NOW)

    services.index.write(work)
    return made


@pytest.fixture
def people(services, tmp_path):
    shared = tmp_path / "nas"
    shared.mkdir()
    admin = services.users.create(email="admin@example.com", password="pw", name="Admin", is_admin=True)
    alice = services.users.create(email="a@example.com", password="pw", name="A", external_path=str(shared))
    bob = services.users.create(email="b@example.com", password="pw", name="B", external_path=str(shared))
    return admin, alice, bob, shared


async def test_transfer_moves_everything_and_folds_duplicates(services, people):
    admin, alice, bob, shared = people
    write(shared / "photos" / "a.jpg")
    external = services.libraries.create(Principal(user=alice), name="NAS", import_paths=[str(shared / "photos")],
                                         exclusion_patterns=[])  # fmt: skip
    from tests.library_helpers import World

    await World(services, alice, Principal(user=alice), shared, services.settings.data_dir).scan(external)
    own = upload_asset(services, alice, b"only alice has this", "own.jpg")
    twin = upload_asset(services, alice, b"both have this", "twin.jpg")
    bobs_copy = upload_asset(services, bob, b"both have this", "bobs.jpg")
    trip = album(services, alice, own, twin)

    report = services.transfers.transfer(Principal(user=admin), alice.id, bob.id)

    assert (report.assets, report.libraries, report.albums) == (2, 1, 1)  # own + the external photo
    [skipped] = report.skipped
    assert (skipped.asset_id, skipped.duplicate_of, skipped.file_name) == (twin.id, bobs_copy.id, "twin.jpg")
    assert report.uncovered_libraries == []
    with services.index.read() as txn:
        moved_album = album_index.get(txn, trip.id)
        assert moved_album.owner_id == bob.id
        assert set(album_index.member_ids(txn, trip.id)) == {own.id, bobs_copy.id}
        assert [a.id for a in album_index.of_owner(txn, alice.id)] == []
        assert asset_index.get(txn, own.id).owner_id == bob.id
        assert asset_index.get(txn, twin.id).owner_id == alice.id  # skipped: stays behind
        assert asset_index.by_checksum(txn, bob.id, own.content_sha1).id == own.id
        assert asset_index.by_checksum(txn, alice.id, own.content_sha1) is None
        assert txn.get(job_queue.QUEUE_TABLES[job_queue.STORAGE_TEMPLATE], own.id.bytes) is not None
        users = {u.id: u for u in (txn.get(USERS, alice.id.bytes), txn.get(USERS, bob.id.bytes))}
    assert users[alice.id].quota_usage_in_bytes == len(b"both have this")
    assert users[bob.id].quota_usage_in_bytes == len(b"both have this") + len(b"only alice has this")
    assert services.libraries.get(Principal(user=bob), external.id).owner_id == bob.id
    assert [
        a.owner_id for a in World(services, bob, Principal(user=bob), shared, "").assets(external).values()
    ] == [bob.id]
    assert check_index(services.index) == []


def test_transfer_is_admin_only_and_refuses_nonsense(services, people):
    admin, alice, bob, _ = people
    with pytest.raises(Forbidden):
        services.transfers.transfer(Principal(user=alice), alice.id, bob.id)
    with pytest.raises(InvalidInput, match="themselves"):
        services.transfers.transfer(Principal(user=admin), alice.id, alice.id)
    with pytest.raises(InvalidInput, match="does not exist"):
        services.transfers.transfer(Principal(user=admin), alice.id, uuid.uuid4())


def test_transfer_reports_libraries_outside_the_new_owners_external_path(services, people, tmp_path):
    admin, alice, _, shared = people
    carol = services.users.create(email="c@example.com", password="pw", name="C", external_path=str(tmp_path))
    other = tmp_path / "elsewhere"
    other.mkdir()
    services.users.update(carol.id, {"external_path": str(other)}, as_admin=True)
    (shared / "p").mkdir()
    services.libraries.create(Principal(user=alice), name="Mine", import_paths=[str(shared / "p")],
                              exclusion_patterns=[])  # fmt: skip
    report = services.transfers.transfer(Principal(user=admin), alice.id, carol.id)
    assert report.uncovered_libraries == ["Mine"]


def test_cli_transfer_prints_the_report(settings, capsys):
    from daemon.index import Index
    from daemon.services import Services

    with Index(settings.index_path) as index:
        services = Services.build(settings, index)
        alice = services.users.create(email="a@example.com", password="pw", name="A")
        bob = services.users.create(email="b@example.com", password="pw", name="B")
        upload_asset(services, alice, b"same", "x.jpg")
        upload_asset(services, bob, b"same", "y.jpg")
        upload_asset(services, alice, b"new", "z.jpg")
    data_dir = settings.data_dir
    assert (
        main(["user", "transfer", "--data-dir", data_dir, "--from", "a@example.com", "--to", "b@example.com"])
        == 0
    )
    out = capsys.readouterr().out
    assert "moved 1 assets, 0 external libraries and 0 albums" in out
    assert "skipped 'x.jpg'" in out and "already has it" in out
    assert (
        main(["user", "transfer", "--data-dir", data_dir, "--from", "a@example.com", "--to", "nobody@x.org"])
        == 1
    )
    with Index(settings.index_path, readonly=True) as index:
        assert check_index(index) == []


async def test_assets_of_a_library_being_deleted_are_no_duplicates_and_leave_moving_albums(services, people):
    admin, alice, bob, _ = people
    doomed = upload_asset(services, alice, b"in a doomed library", "d.jpg")
    second = services.libraries.create(Principal(user=alice), library_type="UPLOAD", name="Second")
    services.index.write(lambda txn: asset_index.update(txn, doomed, library_id=second.id))
    bobs = upload_asset(services, bob, b"in a doomed library", "b.jpg")
    trip = album(services, alice, doomed)
    services.library_jobs.paused = True  # the deletion job waits (as behind a long scan)
    services.libraries.delete(Principal(user=alice), second.id)
    with services.index.read() as txn:
        assert (
            asset_index.by_checksum(txn, alice.id, doomed.content_sha1) is None
        )  # upload it again: accepted

    report = services.transfers.transfer(Principal(user=admin), alice.id, bob.id)
    assert report.skipped == [] and report.assets == 0
    with services.index.read() as txn:
        assert list(album_index.member_ids(txn, trip.id)) == []
        assert album_index.get(txn, trip.id).owner_id == bob.id
        assert asset_index.by_checksum(txn, bob.id, bobs.content_sha1).id == bobs.id
    assert check_index(services.index) == []
