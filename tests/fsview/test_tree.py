"""The FUSE view's tree model against a real LMDB: what each folder shows, names, suffixes, cursors, and what a
refresh tells the kernel to forget. No mount here (tests/e2e/test_fsview_e2e.py mounts)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import msgspec

from daemon import assets as asset_index
from daemon.records import Asset
from fsview.tree import (
    ROOT_INODE,
    USER_FOLDER_MODE,
    File,
    Folder,
    Tree,
    make_file,
    make_folder,
    safe_name,
    unique_names,
)
from tests.library_helpers import World, upload_asset, write


def path(tree: Tree, *names: str | bytes) -> File | Folder | None:
    """The node at `names` below the root, as lookups would find it (registering nothing)."""
    node = tree.root
    for name in names:
        assert isinstance(node, Folder)
        listing = tree.listing(node)
        assert listing is not None
        node = listing.entries.get(name.encode() if isinstance(name, str) else name)
        if node is None:
            return None
    return node


def names(tree: Tree, *folder: str) -> set[str]:
    node = path(tree, *folder)
    assert isinstance(node, Folder), folder
    listing = tree.listing(node)
    assert listing is not None
    return {os.fsdecode(name) for name in listing.entries}


def change(world: World, asset: Asset, **changes) -> Asset:
    return world.services.index.write(
        lambda txn: asset_index.update(txn, asset_index.get(txn, asset.id), **changes)
    )


def album(world: World, name: str, assets: list[Asset]) -> uuid.UUID:
    created = world.services.albums.create(world.principal, name=name, asset_ids=[a.id for a in assets])
    return created.album.id


# -- names ---------------------------------------------------------------------------------------------------


def test_safe_names():
    assert safe_name("a/b") == "a\u2215b".encode()
    assert safe_name("nul\0here") == b"nul_here"
    assert safe_name(".") == b"_."
    assert safe_name("..") == b"_.."
    assert safe_name("") == b"_"
    assert safe_name(b"\xff\xfe raw") == b"\xff\xfe raw"
    long = safe_name("é" * 200 + ".jpg")
    assert len(long) <= 255 and long.endswith(b".jpg") and long[:-4].decode()  # cut on a character boundary


def test_duplicates_get_a_suffix_from_their_own_id_that_unrelated_entries_never_change():
    ids = [uuid.UUID(int=n << 64 | (0xABCDEF00 + n)) for n in (1, 2, 3)]
    nodes = [make_file(i, i, 10, 0) for i in ids]
    first = unique_names((b"IMG.jpg", i.bytes, node) for i, node in zip(ids, nodes, strict=True))
    assert first == {
        b"IMG.jpg": nodes[0],
        b"IMG (abcdef02).jpg": nodes[1],
        b"IMG (abcdef03).jpg": nodes[2],
    }
    other = make_file(uuid.UUID(int=9), uuid.UUID(int=9), 1, 0)
    second = unique_names([(b"other.jpg", other.asset_id.bytes, other)] + [
        (b"IMG.jpg", i.bytes, node) for i, node in zip(ids, nodes, strict=True)
    ])  # fmt: skip
    assert {name: node for name, node in second.items() if node is not other} == first
    # a real name equal to a suffixed one: the suffixed entry falls back to its full id
    clash = make_file(uuid.UUID(int=10), uuid.UUID(int=10), 1, 0)
    third = unique_names([(b"IMG (abcdef02).jpg", clash.asset_id.bytes, clash)] + [
        (b"IMG.jpg", i.bytes, node) for i, node in zip(ids, nodes, strict=True)
    ])  # fmt: skip
    assert third[b"IMG (abcdef02).jpg"] is clash
    assert third[b"IMG (" + ids[1].hex.encode() + b").jpg"] is nodes[1]


def test_inodes_are_stable_and_change_with_content():
    asset_id, owner = uuid.uuid4(), uuid.uuid4()
    assert make_file(asset_id, owner, 10, 5).inode == make_file(asset_id, owner, 10, 5).inode
    assert make_file(asset_id, owner, 10, 5).inode != make_file(asset_id, owner, 11, 5).inode
    assert make_file(asset_id, owner, 10, 5).inode != make_file(asset_id, owner, 10, 6).inode
    album_id = uuid.uuid4().bytes
    assert make_folder("album", owner, album_id, 1).inode == make_folder("album", owner, album_id, 2).inode
    assert make_folder("album", owner, album_id).inode != make_folder("album", uuid.uuid4(), album_id).inode
    assert make_folder("root", None).inode == ROOT_INODE


# -- what folders show ---------------------------------------------------------------------------------------


def test_user_folders_albums_and_duplicate_names(world: World, tree: Tree):
    one = upload_asset(world.services, world.user, b"one", "IMG_0001.jpg")
    two = upload_asset(world.services, world.user, b"two", "IMG_0001.jpg")
    three = upload_asset(world.services, world.user, b"three", "other.jpg")
    full = album(world, "Summer/Winter", [one, two, three])
    album(world, "..", [one])
    small = album(world, "Summer/Winter", [three])  # the same name twice: the larger id gets a suffix
    plain, suffixed = sorted([full, small], key=lambda album_id: album_id.bytes)
    full_name = "Summer\u2215Winter" if full == plain else f"Summer\u2215Winter ({full.hex[-8:]})"

    user_folder = path(tree, "u@example.com")
    assert isinstance(user_folder, Folder)
    assert tree.mode_of(user_folder) == USER_FOLDER_MODE
    assert tree.ids_of(user_folder) == (1234, 55)  # mapped by email
    assert names(tree, "u@example.com") == {"albums", "favorites", "libraries", "timeline"}
    albums = names(tree, "u@example.com", "albums")
    assert albums == {"_..", "Summer\u2215Winter", f"Summer\u2215Winter ({suffixed.hex[-8:]})"}
    shown = names(tree, "u@example.com", "albums", full_name)
    first, second = sorted([one, two], key=lambda a: a.id.bytes)
    assert shown == {"IMG_0001.jpg", f"IMG_0001 ({second.id.hex[-8:]}).jpg", "other.jpg"}
    node = path(tree, "u@example.com", "albums", full_name, "IMG_0001.jpg")
    assert (
        isinstance(node, File)
        and node.asset_id == first.id
        and node.size == len(b"one" if first is one else b"two")
    )


def test_trashed_offline_hidden_archived_and_favorites(world: World, tree: Tree):
    plain = upload_asset(world.services, world.user, b"a", "plain.jpg")
    trashed = change(world, upload_asset(world.services, world.user, b"b", "trashed.jpg"),
                     trashed_at=datetime.now(UTC))  # fmt: skip
    offline = change(world, upload_asset(world.services, world.user, b"c", "offline.jpg"), is_offline=True)
    archived = change(world, upload_asset(world.services, world.user, b"d", "archived.jpg"),
                      visibility="archive", is_favorite=True)  # fmt: skip
    hidden = change(world, upload_asset(world.services, world.user, b"e", "hidden.jpg"), visibility="hidden")
    favorite = change(world, upload_asset(world.services, world.user, b"f", "fav.jpg"), is_favorite=True)
    album(world, "All", [plain, trashed, offline, archived, hidden, favorite])

    assert names(tree, "u@example.com", "albums", "All") == {"plain.jpg", "archived.jpg", "fav.jpg"}
    assert names(tree, "u@example.com", "timeline") == {"2024"}  # upload_asset's NOW is 2024-03-04
    assert names(tree, "u@example.com", "timeline", "2024") == {"03"}
    assert names(tree, "u@example.com", "timeline", "2024", "03") == {"plain.jpg", "fav.jpg"}
    assert names(tree, "u@example.com", "favorites") == {"archived.jpg", "fav.jpg"}


def test_timeline_years_and_months(world: World, tree: Tree):
    moments = [
        datetime(1969, 12, 31, 23, 0),
        datetime(2020, 1, 5),
        datetime(2020, 11, 30),
        datetime(2023, 6, 1),
    ]
    for number, moment in enumerate(moments):
        asset = upload_asset(world.services, world.user, b"x%d" % number, f"p{number}.jpg")
        change(world, asset, local_date_time=moment.replace(tzinfo=UTC))
    assert names(tree, "u@example.com", "timeline") == {"1969", "2020", "2023"}
    assert names(tree, "u@example.com", "timeline", "2020") == {"01", "11"}
    assert names(tree, "u@example.com", "timeline", "1969", "12") == {"p0.jpg"}
    assert names(tree, "u@example.com", "timeline", "2020", "11") == {"p2.jpg"}


async def test_libraries_show_folders_as_on_disk(world: World, tree: Tree):
    root = world.external / "photos"
    write(root / "2021" / "a.jpg")
    write(root / "2021" / "trip" / "b.jpg")
    write(root / "c.jpg")
    write(root / "gone" / "d.jpg")
    write(root / "weird\xff.jpg".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape"))
    library = world.library(root, name="Photos")
    await world.scan(library)
    os.remove(root / "gone" / "d.jpg")
    await world.scan(library)  # d.jpg is offline now: its folder has nothing to show
    base = ("u@example.com", "libraries", "Photos")
    assert names(tree, *base) == {"2021", "c.jpg", "weird\xff.jpg"}
    assert names(tree, *base, "2021") == {"a.jpg", "trip"}
    assert names(tree, *base, "2021", "trip") == {"b.jpg"}
    # uploads are shown relative to the data directory, as they are stored
    upload_asset(world.services, world.user, b"up", "up.jpg")
    assert names(tree, "u@example.com", "libraries") == {"Photos", "Default Library"}
    assert names(tree, "u@example.com", "libraries", "Default Library") == {"upload"}


async def test_a_library_with_several_import_paths_has_a_folder_for_each(world: World, tree: Tree):
    for folder in ("one/pics", "two/pics"):
        write(world.external / folder / "x.jpg")
    library = world.library(world.external / "one" / "pics", world.external / "two" / "pics", name="L")
    await world.scan(library)
    shown = names(tree, "u@example.com", "libraries", "L")
    assert len(shown) == 2 and "pics" in shown
    for folder in shown:
        assert names(tree, "u@example.com", "libraries", "L", folder) == {"x.jpg"}


# -- cursors -------------------------------------------------------------------------------------------------


def test_readdir_cursors_survive_additions_and_removals(world: World, tree: Tree):
    assets = [upload_asset(world.services, world.user, b"%d" % n, f"f{n}.jpg") for n in range(20)]
    album_id = album(world, "A", assets[:10])
    folder = path(tree, "u@example.com", "albums", "A")
    assert isinstance(folder, Folder)
    listing = tree.listing(folder)
    seen = [name for _, name, _ in list(listing.after(0))[:5]]
    cursor = list(listing.after(0))[4][0]
    # meanwhile: five members leave (some already listed, some not), ten arrive
    leaving = [a for a in assets[:10] if os.fsencode(f"{a.original_file_name}") not in seen[:2]][:5]
    world.services.albums.remove_assets(world.principal, album_id, [a.id for a in leaving])
    world.services.albums.add_assets(world.principal, album_id, [a.id for a in assets[10:]])
    tree.refresh()
    rest = [name for _, name, _ in tree.listing(folder).after(cursor)]
    assert not set(rest) & set(seen), "an entry was listed twice"
    stayed = {os.fsencode(a.original_file_name) for a in assets[:10] if a not in leaving}
    assert stayed <= set(seen) | set(rest), "an entry that stayed was skipped"


# -- refresh -------------------------------------------------------------------------------------------------


def test_refresh_reports_what_the_kernel_must_forget(world: World, tree: Tree, clock):
    photo = upload_asset(world.services, world.user, b"old content", "p.jpg")
    album_id = album(world, "Before", [photo])
    albums = path(tree, "u@example.com", "albums")
    before = path(tree, "u@example.com", "albums", "Before")
    file_before = path(tree, "u@example.com", "albums", "Before", "p.jpg")
    for node in (albums, before, file_before):
        tree.remember(node)
    assert not tree.refresh()  # nothing committed since

    world.services.albums.update(world.principal, album_id, name="After")
    changes = tree.refresh()
    assert (albums.inode, b"Before") in changes.entries
    assert path(tree, "u@example.com", "albums", "After").inode == before.inode  # a rename keeps the inode

    change(world, photo, file_size=999, file_mtime_ns=123)  # the original changed: a new inode
    changes = tree.refresh()
    assert (before.inode, b"p.jpg") in changes.entries
    after = path(tree, "u@example.com", "albums", "After", "p.jpg")
    assert after.inode != file_before.inode and after.size == 999

    world.services.albums.delete(world.principal, album_id)
    changes = tree.refresh()
    assert (albums.inode, b"After") in changes.entries
    assert tree.listing(before) is None

    clock.now = 1000.0  # idle listings are dropped, not recomputed
    upload_asset(world.services, world.user, b"new", "n.jpg")
    tree.refresh()
    assert set(tree._listings) == {ROOT_INODE}


def test_forget_drops_nodes_and_their_listings(world: World, tree: Tree):
    album(world, "A", [upload_asset(world.services, world.user, b"1", "1.jpg")])
    user_folder = path(tree, "u@example.com")
    tree.remember(user_folder)
    tree.remember(user_folder)
    assert tree.lookup(user_folder.inode, b"albums") is not None
    tree.forget(user_folder.inode, 1)
    assert tree.node(user_folder.inode) is not None
    tree.forget(user_folder.inode, 1)
    assert tree.node(user_folder.inode) is None
    assert user_folder.inode not in tree._listings
    tree.forget(ROOT_INODE, 5)
    assert tree.node(ROOT_INODE) is tree.root


def test_a_transferred_album_changes_inode(world: World, tree: Tree):
    other = world.services.users.create(email="o@example.com", password="pw", name="O")
    photo = upload_asset(world.services, world.user, b"1", "1.jpg")
    album(world, "A", [photo])
    before = path(tree, "u@example.com", "albums", "A")
    world.services.transfers.transfer(None, world.user.id, other.id)
    assert path(tree, "o@example.com", "albums", "A").inode != before.inode
    assert tree.ids_of(path(tree, "o@example.com")) == (1000, 1000)  # not mapped: the default


def test_storage_labels_name_user_folders(world: World, tree: Tree):
    world.services.users.update(world.user.id, {"storage_label": "ulabel"}, as_admin=True)
    assert names(tree) == {"ulabel"}
    user = world.services.users.get(world.user.id)
    assert msgspec.structs.replace(user).storage_label == "ulabel"


def test_file_facts_decode_asset_records(world: World):
    from daemon.index import ASSETS
    from fsview.tree import FileFacts

    asset = change(world, upload_asset(world.services, world.user, b"z", "z.jpg"), trashed_at=datetime.now(UTC),
                   visibility="archive")  # fmt: skip
    with world.services.index.read() as txn:
        raw = txn.raw.get(asset.id.bytes, db=txn._dbs[ASSETS.name])
    facts = msgspec.msgpack.decode(raw, type=FileFacts)
    for name in ("id", "owner_id", "original_path", "file_size", "file_mtime_ns", "is_offline", "trashed_at",
                 "visibility", "original_file_name"):  # fmt: skip
        assert getattr(facts, name) == getattr(asset, name), name
