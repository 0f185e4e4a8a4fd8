"""AlbumService against a real LMDB: membership rules, what counts, access, and the index staying consistent
(`check_index` after every scenario; the `index` fixture checks again at teardown)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon import album_index
from daemon import assets as asset_index
from daemon.access import Principal
from daemon.albums import _MemberFacts, transfer
from daemon.check import check_index
from daemon.errors import InvalidInput, NotFoundOrNoAccess
from daemon.records import Asset
from tests.library_helpers import World, write

JAN, FEB, MAR = (datetime(2021, month, 1, tzinfo=UTC).timestamp() for month in (1, 2, 3))


@pytest.fixture
async def photos(world: World) -> dict[str, Asset]:
    """Three scanned photos of the world's user; their fileCreatedAt (from the mtime) is Jan, Feb, Mar 2021."""
    root = world.external / "photos"
    for name, mtime in (("jan.jpg", JAN), ("feb.jpg", FEB), ("mar.jpg", MAR)):
        write(root / name, mtime=mtime)
    library = world.library(root)
    await world.scan(library)
    return {os.path.basename(os.fsdecode(path)): asset for path, asset in world.assets(library).items()}


@pytest.fixture
async def stranger(services, tmp_path: Path) -> tuple[Principal, Asset]:
    """Another user with one photo of their own."""
    external = tmp_path / "stranger"
    write(external / "theirs.jpg")
    user = services.users.create(email="s@example.com", password="pw", name="S", external_path=str(external))
    other = World(services, user, Principal(user=user), external, Path(services.settings.data_dir))
    library = other.library(external)
    await other.scan(library)
    (asset,) = other.assets(library).values()
    return other.principal, asset


def consistent(world: World) -> None:
    assert check_index(world.services.index) == []


def trash(world: World, asset: Asset) -> None:
    def work(txn):
        asset_index.update(txn, asset_index.get(txn, asset.id), trashed_at=datetime.now(UTC))

    world.services.index.write(work)


def test_member_facts_are_a_prefix_of_the_asset_record():
    fields = _MemberFacts.__struct_fields__
    assert Asset.__struct_fields__[: len(fields)] == fields


async def test_create_with_assets_counts_dates_and_thumbnail(world, photos):
    albums = world.services.albums
    order = [photos["feb.jpg"].id, photos["jan.jpg"].id, photos["mar.jpg"].id]
    view = albums.create(world.principal, name="Trip", description="d", asset_ids=order)
    assert (
        view.album.name == "Trip" and view.album.description == "d" and view.album.owner_id == world.user.id
    )
    assert view.album.thumbnail_asset_id == photos["feb.jpg"].id  # the first added
    assert view.asset_count == 3 and view.owner.id == world.user.id and view.assets is None
    assert view.start_date == datetime.fromtimestamp(JAN, UTC) and view.end_date == datetime.fromtimestamp(
        MAR, UTC
    )
    assert view.last_modified_asset_timestamp == max(a.updated_at for a in photos.values())
    full = albums.get(world.principal, view.album.id)
    assert [a.id for a in full.assets] == [photos[n].id for n in ("mar.jpg", "feb.jpg", "jan.jpg")]  # desc
    albums.update(world.principal, view.album.id, order="asc")
    ascending = albums.get(world.principal, view.album.id)
    assert [a.id for a in ascending.assets] == [photos[n].id for n in ("jan.jpg", "feb.jpg", "mar.jpg")]
    consistent(world)


async def test_empty_album_has_no_dates(world):
    view = world.services.albums.create(world.principal, name="")
    assert view.asset_count == 0 and view.album.thumbnail_asset_id is None
    assert (view.start_date, view.end_date, view.last_modified_asset_timestamp) == (None, None, None)
    assert world.services.albums.get(world.principal, view.album.id).assets == []


async def test_create_refuses_foreign_assets_and_sharing_and_creates_nothing(world, photos, stranger):
    albums = world.services.albums
    _, theirs = stranger
    with pytest.raises(NotFoundOrNoAccess, match=r"Not found or no asset\.share access"):
        albums.create(world.principal, name="x", asset_ids=[photos["jan.jpg"].id, theirs.id])
    with pytest.raises(NotFoundOrNoAccess):
        albums.create(world.principal, name="x", asset_ids=[uuid.uuid4()])
    with pytest.raises(InvalidInput, match="Album sharing is not supported"):
        albums.create(
            world.principal, name="x", album_users=[{"userId": str(uuid.uuid4()), "role": "editor"}]
        )
    assert albums.list(world.principal) == []
    consistent(world)


async def test_add_and_remove_report_each_id_in_order(world, photos, stranger):
    albums = world.services.albums
    _, theirs = stranger
    album = albums.create(world.principal, name="A").album
    jan, feb, mar = (photos[n].id for n in ("jan.jpg", "feb.jpg", "mar.jpg"))
    unknown = uuid.uuid4()
    results = albums.add_assets(world.principal, album.id, [feb, jan, theirs.id, unknown, feb])
    assert [(r.id, r.success, r.error) for r in results] == [
        (feb, True, None),
        (jan, True, None),
        (theirs.id, False, "no_permission"),
        (unknown, False, "no_permission"),  # as Immich: an unknown id cannot be told from a foreign one
        (feb, False, "duplicate"),  # repeated in the same request
    ]
    after_add = albums.get(world.principal, album.id, include_assets=False)
    assert after_add.album.thumbnail_asset_id == feb and after_add.asset_count == 2
    assert after_add.album.updated_at > album.updated_at
    again = albums.add_assets(world.principal, album.id, [jan])
    assert [(r.success, r.error) for r in again] == [(False, "duplicate")]
    assert (
        albums.get(world.principal, album.id, include_assets=False).album.updated_at
        == after_add.album.updated_at
    )

    removed = albums.remove_assets(world.principal, album.id, [feb, mar, feb])
    assert [(r.id, r.success, r.error) for r in removed] == [
        (feb, True, None),
        (mar, False, "not_found"),
        (feb, False, "not_found"),
    ]
    after_remove = albums.get(world.principal, album.id, include_assets=False)
    assert after_remove.album.thumbnail_asset_id == jan  # the thumbnail moved to the remaining member
    assert after_remove.album.updated_at > after_add.album.updated_at
    albums.remove_assets(world.principal, album.id, [jan])
    emptied = albums.get(world.principal, album.id, include_assets=False)
    assert (
        emptied.album.thumbnail_asset_id is None and emptied.asset_count == 0 and emptied.start_date is None
    )
    consistent(world)


async def test_the_album_is_checked_before_any_asset(world, photos, stranger):
    albums = world.services.albums
    other, _ = stranger
    album = albums.create(world.principal, name="mine", asset_ids=[photos["jan.jpg"].id]).album
    for call, permission in (
        (lambda: albums.get(other, album.id), "album.read"),
        (lambda: albums.update(other, album.id, name="taken"), "album.update"),
        (lambda: albums.delete(other, album.id), "album.delete"),
        (lambda: albums.add_assets(other, album.id, [photos["feb.jpg"].id]), "albumAsset.create"),
        (lambda: albums.remove_assets(other, album.id, [photos["jan.jpg"].id]), "albumAsset.delete"),
        (lambda: albums.get(world.principal, uuid.uuid4()), "album.read"),
    ):
        with pytest.raises(NotFoundOrNoAccess) as raised:
            call()
        assert raised.value.message == f"Not found or no {permission} access"
    assert albums.list(other) == [] and albums.statistics(other).owned == 0
    with pytest.raises(NotFoundOrNoAccess, match=r"asset\.read"):
        albums.list(other, asset_id=photos["jan.jpg"].id)
    view = albums.get(world.principal, album.id)
    assert view.album.name == "mine" and [a.id for a in view.assets] == [photos["jan.jpg"].id]


async def test_update_fields_and_thumbnail_rule(world, photos):
    albums = world.services.albums
    jan, feb, mar = (photos[n].id for n in ("jan.jpg", "feb.jpg", "mar.jpg"))
    album = albums.create(world.principal, name="A", asset_ids=[jan, feb]).album
    with pytest.raises(InvalidInput, match="Invalid album thumbnail"):
        albums.update(world.principal, album.id, name="B", thumbnail_asset_id=mar)
    assert albums.get(world.principal, album.id).album.name == "A"  # nothing changed
    view = albums.update(
        world.principal,
        album.id,
        name="B",
        description="about",
        thumbnail_asset_id=feb,
        is_activity_enabled=False,
        order="asc",
    )
    assert (view.album.name, view.album.description, view.album.thumbnail_asset_id) == ("B", "about", feb)
    assert view.album.is_activity_enabled is False and view.album.order == "asc"
    assert view.album.updated_at > album.updated_at and view.asset_count == 2
    unchanged = albums.update(world.principal, album.id)
    assert unchanged.album == view.album
    consistent(world)


async def test_delete_keeps_the_assets(world, photos):
    albums = world.services.albums
    album = albums.create(world.principal, name="A", asset_ids=[a.id for a in photos.values()]).album
    albums.delete(world.principal, album.id)
    with pytest.raises(NotFoundOrNoAccess):
        albums.get(world.principal, album.id)
    with world.services.index.read() as txn:
        assert all(asset_index.get(txn, a.id) is not None for a in photos.values())
        assert all(list(album_index.albums_of_asset(txn, a.id)) == [] for a in photos.values())
    assert albums.statistics(world.principal).owned == 0
    consistent(world)


async def test_an_asset_in_many_albums(world, photos):
    albums = world.services.albums
    jan, feb = photos["jan.jpg"].id, photos["feb.jpg"].id
    ids = [albums.create(world.principal, name=f"A{n}", asset_ids=[jan]).album.id for n in range(3)]
    other = albums.create(world.principal, name="other", asset_ids=[feb]).album.id
    assert [v.album.id for v in albums.list(world.principal, asset_id=jan)] == ids
    assert [v.album.id for v in albums.list(world.principal)] == [*ids, other]
    assert [v.album.id for v in albums.list(world.principal, name="A1")] == [ids[1]]
    assert albums.list(world.principal, shared=True) == []
    statistics = albums.statistics(world.principal)
    assert (statistics.owned, statistics.shared, statistics.not_shared) == (4, 0, 4)
    albums.remove_assets(world.principal, ids[0], [jan])
    assert [v.album.id for v in albums.list(world.principal, asset_id=jan)] == ids[1:]
    consistent(world)


async def test_trashed_members_are_neither_counted_nor_listed(world, photos):
    albums = world.services.albums
    album = albums.create(world.principal, name="A", asset_ids=[a.id for a in photos.values()]).album
    trash(world, photos["mar.jpg"])
    view = albums.get(world.principal, album.id)
    assert view.asset_count == 2 and [a.id for a in view.assets] == [
        photos["feb.jpg"].id,
        photos["jan.jpg"].id,
    ]
    assert view.end_date == datetime.fromtimestamp(FEB, UTC)
    (listed,) = albums.list(world.principal)
    assert listed.asset_count == 2 and listed.end_date == view.end_date
    # still a member: adding it again is a duplicate, removing it works
    assert albums.add_assets(world.principal, album.id, [photos["mar.jpg"].id])[0].error == "duplicate"
    consistent(world)


async def test_offline_members_stay_and_removed_ones_leave(world, photos):
    albums = world.services.albums
    jan, feb = photos["jan.jpg"], photos["feb.jpg"]
    album = albums.create(world.principal, name="A", asset_ids=[jan.id, feb.id]).album
    alone = albums.create(world.principal, name="B", asset_ids=[jan.id]).album
    assert album.thumbnail_asset_id == jan.id
    os.remove(world.external / "photos" / "jan.jpg")
    await world.scan(world.services.libraries.get(world.principal, jan.library_id))
    view = albums.get(world.principal, album.id)
    assert view.asset_count == 2 and any(a.id == jan.id and a.is_offline for a in view.assets)
    assert albums.add_assets(world.principal, alone.id, [jan.id])[0].error == "duplicate"
    offline_from_the_start = albums.create(world.principal, name="C", asset_ids=[jan.id])
    assert offline_from_the_start.asset_count == 1
    assert await world.services.library_jobs.remove_offline(jan.library_id) == 1
    view = albums.get(world.principal, album.id)
    assert [a.id for a in view.assets] == [feb.id] and view.album.thumbnail_asset_id == feb.id
    emptied = albums.get(world.principal, alone.id)
    assert emptied.asset_count == 0 and emptied.album.thumbnail_asset_id is None
    consistent(world)


async def test_add_assets_to_many_albums(world, photos, stranger):
    albums = world.services.albums
    other, theirs = stranger
    jan, feb = photos["jan.jpg"].id, photos["feb.jpg"].id
    first = albums.create(world.principal, name="1").album.id
    second = albums.create(world.principal, name="2", asset_ids=[jan]).album.id
    foreign_album = albums.create(other, name="theirs").album.id
    result = albums.add_assets_to_albums(
        world.principal, [first, second, foreign_album], [jan, feb, theirs.id]
    )
    assert (result.success, result.error) == (True, None)
    assert {a.id for a in albums.get(world.principal, first).assets} == {jan, feb}
    assert {a.id for a in albums.get(world.principal, second).assets} == {jan, feb}
    assert albums.get(world.principal, first).album.thumbnail_asset_id == jan
    assert albums.get(other, foreign_album).asset_count == 0
    again = albums.add_assets_to_albums(world.principal, [first, second], [jan, feb])
    assert (again.success, again.error) == (False, "duplicate")
    assert albums.add_assets_to_albums(world.principal, [foreign_album], [jan]).error == "no_permission"
    assert (
        albums.add_assets_to_albums(world.principal, [first], [theirs.id, uuid.uuid4()]).error
        == "no_permission"
    )
    consistent(world)


async def test_readers_without_a_principal(world, photos):
    """What the FUSE view uses: an owner's albums and one album's contents, no access check."""
    albums = world.services.albums
    album = albums.create(world.principal, name="A", asset_ids=[photos["jan.jpg"].id]).album
    (listed,) = albums.albums_of(world.user.id)
    assert listed.album.id == album.id and listed.asset_count == 1 and listed.assets is None
    assert albums.albums_of(uuid.uuid4()) == []
    assert [a.id for a in albums.album(album.id).assets] == [photos["jan.jpg"].id]
    assert albums.album(uuid.uuid4()) is None


async def test_transfer_moves_albums_with_their_assets(world, photos, stranger):
    albums = world.services.albums
    other, _ = stranger
    album = albums.create(world.principal, name="A", asset_ids=[a.id for a in photos.values()]).album
    now = datetime.now(UTC)

    def work(txn):
        for photo in photos.values():  # the caller moves the assets in the same transaction
            asset_index.update(txn, asset_index.get(txn, photo.id), owner_id=other.user.id)
        return transfer(txn, world.user.id, other.user.id, now)

    # the library must follow too, or check_index reports the assets; moved back below
    assert world.services.index.write(work) == [album.id]
    assert albums.list(world.principal) == []
    (moved,) = albums.list(other)
    assert moved.album.id == album.id and moved.asset_count == 3 and moved.owner.id == other.user.id

    def back(txn):
        for photo in photos.values():
            asset_index.update(txn, asset_index.get(txn, photo.id), owner_id=world.user.id)
        transfer(txn, other.user.id, world.user.id, now)

    world.services.index.write(back)
    consistent(world)
