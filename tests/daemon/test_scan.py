"""Scans against real folders (libraries.md §4, §5, §6, §7, §10, §15); every scan is followed by check_index."""

import os
import stat
from pathlib import Path

import pytest
import trio

from daemon.access import Principal
from daemon.scan import LibraryScan, ScanMode
from tests.library_helpers import World, write


def b(path: Path) -> bytes:
    return os.fsencode(path)


async def test_supported_extensions_any_case_only(world):  # §4.2
    root = world.external / "p"
    for name in ["a.jpg", "b.JPG", "c.Jpeg", "d.NEF", "e.mp4", "f.txt", "g", "h.xmp", "i.jpg.bak"]:
        write(root / name)
    library = world.library(root)
    summary = await world.scan(library)
    assert world.paths(library) == {b(root / n) for n in ["a.jpg", "b.JPG", "c.Jpeg", "d.NEF", "e.mp4"]}
    assert summary.new == 5
    types = {os.path.basename(p): a.type for p, a in world.assets(library).items()}
    assert types[b"e.mp4"] == "VIDEO" and types[b"a.jpg"] == "IMAGE"


async def test_hidden_entries_skipped_but_import_path_may_be_hidden(world):  # §4.3
    root = world.external / ".hidden-root" / "photos"
    write(root / "a.jpg")
    write(root / ".b.jpg")
    write(root / ".cache" / "c.jpg")
    library = world.library(root)
    await world.scan(library)
    assert world.paths(library) == {b(root / "a.jpg")}


async def test_exclusions(world):  # §4.4
    root = world.external / "photos"
    for rel in ["raw/a.jpg", "folder/raw/b.jpg", "raw2/c.jpg", "image.TIF", "keep.png", "directoryA/x.jpg"]:
        write(root / rel)
    library = world.library(root, exclusions=["**/raw/**", "**/*.tif", "**/directoryA"])
    summary = await world.scan(library)
    assert world.paths(library) == {b(root / "raw2/c.jpg"), b(root / "keep.png")}
    assert summary.report.skipped["excluded folder"] >= 2


async def test_odd_names_and_literal_import_paths(world):  # §4.5, §4.10
    root = world.external / "trip {2020}, [a]*?!@#$%^&=+~|<>;: 'q' \"d\""
    names = [
        b"space name.jpg",
        "café.jpg".encode(),
        "cafe\u0301.jpg".encode(),
        b"bad-\xff\xfe.jpg",
        b"new\nline.jpg",
    ]
    for name in names:
        write(b(root) + b"/" + name)
    library = world.library(root)
    await world.scan(library)
    assert world.paths(library) == {b(root) + b"/" + n for n in names}  # NFC and NFD are different paths


async def test_overlapping_import_paths_import_once(world):  # §4.1, §4.6
    root = world.external / "photos"
    write(root / "2020" / "a.jpg")
    write(root / "b.jpg")
    library = world.library(root, root / "2020", str(root / "2020") + "/", str(root / "x" / ".." / "2020"))
    summary = await world.scan(library)
    assert summary.new == 2 and world.paths(library) == {b(root / "2020" / "a.jpg"), b(root / "b.jpg")}


async def test_only_regular_files(world):  # §4.7: FIFOs, sockets and devices are skipped, never opened
    import socket

    root = world.external / "p"
    write(root / "ok.jpg")
    os.mkfifo(root / "fifo.jpg")  # opening it would block the crawl forever
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(root / "socket.jpg"))
        library = world.library(root)
        summary = await world.scan(library)
    assert world.paths(library) == {b(root / "ok.jpg")}
    assert summary.report.skipped["not a regular file"] == 2


def test_unreadable_folder_warns_and_the_crawl_goes_on(tmp_path, monkeypatch):  # §4.7
    from daemon.crawl import Crawler
    from daemon.exclusions import ExclusionMatcher

    root = tmp_path / "p"
    write(root / "a" / "x.jpg")
    write(root / "b" / "y.jpg")
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_DIRECTORY and os.fsencode(path).split(b"/")[-1] == b"a":
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)  # root ignores chmod; fake only the refusal
    crawler = Crawler(
        [b(root)], external_path=b(tmp_path), data_dir=b"/nonexistent", exclusions=ExclusionMatcher([])
    )
    assert [f.path for f in crawler.files()] == [b(root / "b" / "y.jpg")]
    assert any("Skipping unreadable folder" in w and "EACCES" in w for w in crawler.report.warnings)


async def test_worker_skip_counts_reach_the_scan_summary(world):
    root = world.external / "p"
    write(root / "a.jpg")
    library = world.library(root)
    os.symlink(world.external / "nowhere", root / "gone")  # a folder link that cannot be followed
    os.mkdir(root / "sub")
    os.symlink(root / "sub" / "missing-dir", root / "sub" / "dangling.jpg")
    summary = await world.scan(library)
    assert summary.new == 1
    assert summary.report.skipped["broken link"] >= 1


async def test_symlinks_inside_followed_outside_refused_loops_ended(world, tmp_path):  # §4.8, §3.10
    root = world.external / "p"
    write(root / "real" / "a.jpg")
    write(world.external / "elsewhere" / "b.jpg")
    write(tmp_path / "secret" / "s.jpg")
    os.symlink(world.external / "elsewhere", root / "link-in")
    os.symlink(tmp_path / "secret", root / "link-out")
    os.symlink(tmp_path / "secret" / "s.jpg", root / "file-out.jpg")
    os.symlink(root, root / "real" / "loop")
    os.symlink(root / "missing.jpg", root / "broken.jpg")
    library = world.library(root)
    summary = await world.scan(library)
    assert world.paths(library) == {b(root / "link-in" / "b.jpg"), b(root / "real" / "a.jpg")}
    assert summary.report.skipped["link outside the external path"] == 2


async def test_external_path_is_compared_by_components(services, tmp_path):  # §3.3
    user1 = tmp_path / "nas" / "user1"
    write(tmp_path / "nas" / "user10" / "x.jpg")
    write(user1 / "y.jpg")
    os.symlink(tmp_path / "nas" / "user10", user1 / "sneaky")
    user = services.users.create(email="p@example.com", password="pw", name="P", external_path=str(user1))
    world = World(services, user, Principal(user=user), user1, Path(services.settings.data_dir))
    library = world.library(user1)
    await world.scan(library)
    assert world.paths(library) == {b(user1 / "y.jpg")}


async def test_data_directory_is_never_crawled(services, tmp_path):  # §4.9
    data_dir = Path(services.settings.data_dir)
    write(data_dir / "upload" / "x.jpg")
    write(tmp_path / "z.jpg")
    user = services.users.create(email="p@example.com", password="pw", name="P", external_path=str(tmp_path))
    world = World(services, user, Principal(user=user), tmp_path, data_dir)
    library = world.library(tmp_path)
    await world.scan(library)
    assert world.paths(library) == {b(tmp_path / "z.jpg")}


async def test_new_asset_fields(world):  # §4.11
    write(world.external / "p" / "a.jpg", mtime=1_600_000_000.5)
    library = world.library(world.external / "p")
    await world.scan(library)
    (asset,) = world.assets(library).values()
    assert asset.owner_id == world.user.id and asset.library_id == library.id
    assert asset.original_path == b(world.external / "p" / "a.jpg") and asset.is_offline is False
    assert asset.file_mtime_ns == 1_600_000_000_500_000_000
    assert (
        asset.file_created_at.timestamp()
        == asset.local_date_time.timestamp()
        == pytest.approx(1_600_000_000.5)
    )


async def test_rescan_without_changes_changes_nothing(world):  # §5.6
    for i in range(30):
        write(world.external / "p" / f"d{i % 3}" / f"{i}.jpg")
    library = world.library(world.external / "p")
    await world.scan(library)
    before = world.assets(library)
    for mode in ScanMode:
        summary = await world.scan(library, mode if mode is not ScanMode.ALL else ScanMode.MODIFIED)
        assert summary.unchanged == 30 and summary.new == summary.modified == summary.offline == 0
    assert world.assets(library) == before


async def test_three_modes(world):  # §5.3, §5.5
    root = world.external / "p"
    write(root / "a.jpg", b"one", mtime=1000)
    write(root / "b.jpg", b"two", mtime=1000)
    library = world.library(root)
    await world.scan(library)
    ids = {p: a.id for p, a in world.assets(library).items()}
    write(root / "a.jpg", b"ONE!", mtime=2000)  # size and mtime change
    write(root / "b.jpg", b"TWO", mtime=1000)  # same size, same mtime: only a forced scan sees it
    assert (await world.scan(library, ScanMode.NEW)).modified == 0
    assert world.assets(library)[b(root / "a.jpg")].file_mtime_ns == 1000 * 10**9
    assert (await world.scan(library, ScanMode.MODIFIED)).modified == 1
    assert world.assets(library)[b(root / "a.jpg")].file_size == 4
    assert (await world.scan(library, ScanMode.ALL)).modified == 2
    assert {p: a.id for p, a in world.assets(library).items()} == ids  # refresh keeps identity


async def test_offline_and_back_online(world):  # §6.1-6.3
    root = world.external / "p"
    write(root / "a.jpg", mtime=1000)
    write(root / "b.jpg", mtime=1000)
    library = world.library(root)
    await world.scan(library)
    ids = {p: a.id for p, a in world.assets(library).items()}
    os.rename(root / "a.jpg", world.external / "aside.jpg")
    summary = await world.scan(library)
    assert summary.offline == 1
    offline = world.assets(library)[b(root / "a.jpg")]
    assert offline.is_offline and offline.trashed_at is None  # never deleted nor trashed
    os.rename(world.external / "aside.jpg", root / "a.jpg")
    summary = await world.scan(library)
    assert summary.restored == 1 and summary.modified == 0  # same mtime: no re-read
    assert {p: a.id for p, a in world.assets(library).items()} == ids
    assert not any(a.is_offline for a in world.assets(library).values())


async def test_excluded_uncovered_or_unavailable_files_go_offline(world):  # §6.1, §8.2
    root = world.external / "p"
    write(root / "keep" / "a.jpg")
    write(root / "Raw" / "b.jpg")
    write(world.external / "q" / "c.jpg")
    library = world.library(root, world.external / "q")
    await world.scan(library)
    assert len(world.paths(library, online=True)) == 3
    world.services.libraries.update(world.principal, library.id, exclusion_patterns=["**/Raw/**"])
    assert (await world.scan(library)).offline == 1
    world.services.libraries.update(world.principal, library.id, import_paths=[str(root)])
    assert (await world.scan(library)).offline == 1
    os.rename(root, world.external / "unplugged")
    await world.scan(library)
    assert world.paths(library, online=True) == set() and len(world.paths(library)) == 3
    os.rename(world.external / "unplugged", root)
    world.services.libraries.update(world.principal, library.id, import_paths=[str(root), str(world.external / "q")],
                                    exclusion_patterns=[])  # fmt: skip
    assert (await world.scan(library)).restored == 3


async def test_remove_offline_files(world):  # §7
    root = world.external / "p"
    write(root / "a.jpg")
    write(root / "b.jpg")
    library = world.library(root)
    await world.scan(library)
    assert await world.services.library_jobs.remove_offline(library.id) == 0
    os.remove(root / "a.jpg")
    await world.scan(library)
    removed = await world.services.library_jobs.remove_offline(library.id)
    assert removed == 1 and world.paths(library) == {b(root / "b.jpg")}
    assert (root / "b.jpg").exists()
    write(root / "a.jpg")
    await world.scan(library)
    assert len(world.paths(library)) == 2  # a returning file is a new asset


async def test_library_deletion_removes_assets_never_files(world):  # §9
    root = world.external / "p"
    write(root / "a.jpg")
    library = world.library(root)
    await world.scan(library)
    world.services.libraries.delete(world.principal, library.id)
    await world.services.library_jobs.delete_library(library.id)
    assert world.paths(library) == set() and (root / "a.jpg").exists()


async def test_sidecars(world):  # §10
    root = world.external / "p"
    write(root / "a.jpg", mtime=1000)
    library = world.library(root)
    await world.scan(library)
    write(root / "a.XMP", b"<x/>")
    assert (await world.scan(library, ScanMode.MODIFIED)).modified == 1
    assert world.assets(library)[b(root / "a.jpg")].sidecar_path == b(root / "a.XMP")
    write(root / "a.jpg.xmp", b"<x/>")
    await world.scan(library, ScanMode.MODIFIED)
    assert world.assets(library)[b(root / "a.jpg")].sidecar_path == b(root / "a.jpg.xmp")  # name.ext.xmp wins
    os.remove(root / "a.jpg.xmp")
    os.remove(root / "a.XMP")
    assert (await world.scan(library, ScanMode.MODIFIED)).modified == 1
    assert world.assets(library)[b(root / "a.jpg")].sidecar_path is None
    assert b(root / "a.XMP") not in world.paths(library)  # never an asset


async def hashed(world):
    """Let the media queues hash every pending original."""
    await world.process_media()


async def test_moves_keep_identity(world):  # §15.1
    root = world.external / "p"
    write(root / "z-old.jpg", b"same bytes", mtime=1000)
    write(root / "other.jpg", b"other bytes", mtime=1000)
    library = world.library(root)
    await world.scan(library)
    await hashed(world)
    original = world.assets(library)[b(root / "z-old.jpg")]
    os.rename(root / "z-old.jpg", root / "a-new.jpg")  # sorts before the old name: found first
    summary = await world.scan(library)
    assert summary.moved == 1 and summary.new == 0 and summary.offline == 0
    moved = world.assets(library)[b(root / "a-new.jpg")]
    assert moved.id == original.id and not moved.is_offline and len(world.assets(library)) == 2
    (root / "sub").mkdir()
    os.rename(root / "a-new.jpg", root / "sub" / "zz.jpg")
    summary = await world.scan(library)
    assert summary.moved == 1 and world.assets(library)[b(root / "sub" / "zz.jpg")].id == original.id


async def test_same_size_and_mtime_but_different_content_is_not_a_move(world):
    root = world.external / "p"
    write(root / "a.jpg", b"content-A", mtime=1000)
    library = world.library(root)
    await world.scan(library)
    await hashed(world)
    os.remove(root / "a.jpg")
    await world.scan(library)
    write(root / "b.jpg", b"content-B", mtime=1000)
    summary = await world.scan(library)
    assert summary.new == 1 and summary.moved == 0
    assert world.assets(library)[b(root / "a.jpg")].is_offline


def test_fifo_is_never_opened_by_the_hasher(tmp_path):
    from daemon.originals import NotConfined, open_original

    os.mkfifo(tmp_path / "f.jpg")
    with pytest.raises(NotConfined):
        open_original(b(tmp_path / "f.jpg"), b(tmp_path))
    assert stat.S_ISFIFO(os.stat(tmp_path / "f.jpg").st_mode)


async def test_too_long_paths_are_skipped_with_a_warning_not_fatal(world):  # LMDB's 511-byte key limit
    root = world.external / "p"
    deep = root / ("d" * 200) / ("e" * 200)
    write(deep / ("f" * 100 + ".jpg"))
    write(root / "ok.jpg")
    library = world.library(root)
    summary = await world.scan(library)
    assert world.paths(library) == {b(root / "ok.jpg")}
    assert summary.report.skipped["path too long for the index"] == 1
    assert any("the index's limit" in w for w in summary.report.warnings)


async def test_exclusions_apply_to_the_import_path_itself(world):  # §4.4 on the full path
    write(world.external / "photos" / "raw" / "a.jpg")
    library = world.library(world.external / "photos" / "raw", exclusions=["**/raw/**"])
    await world.scan(library)
    assert world.paths(library) == set()


async def test_a_hidden_folder_is_entered_only_toward_a_nested_import_path(world):  # §4.3
    root = world.external / "p"
    write(root / "a.jpg")
    write(root / ".h" / "y.jpg")
    write(root / ".h" / "other" / "z.jpg")
    write(root / ".h" / "sub" / "x.jpg")
    library = world.library(root, root / ".h" / "sub")
    await world.scan(library)
    assert world.paths(library) == {b(root / "a.jpg"), b(root / ".h" / "sub" / "x.jpg")}


async def test_folders_named_like_sidecars_are_crawled(world):
    write(world.external / "p" / "trip.xmp" / "a.jpg")
    library = world.library(world.external / "p")
    await world.scan(library)
    assert world.paths(library) == {b(world.external / "p" / "trip.xmp" / "a.jpg")}


async def test_refused_links_are_reported_with_spec_message(world, tmp_path):  # §3.10
    write(tmp_path / "secret" / "s.jpg")
    write(world.external / "p" / "ok.jpg")
    os.symlink(tmp_path / "secret" / "s.jpg", world.external / "p" / "s.jpg")
    summary = await world.scan(world.library(world.external / "p"))
    assert any(
        w.startswith("Asset must be within the user's external path: ") for w in summary.report.warnings
    )


def test_a_folder_swapped_for_a_link_is_not_followed(tmp_path):
    """The listing saw a real folder; by the time it is opened it is a link to outside: not followed."""
    from daemon.crawl import Crawler
    from daemon.exclusions import ExclusionMatcher

    external = tmp_path / "ext"
    write(external / "p" / "sub" / "a.jpg")
    write(tmp_path / "outside" / "secret.jpg")
    crawler = Crawler([b(external / "p")], external_path=b(external), data_dir=b"/nonexistent",
                      exclusions=ExclusionMatcher([]))  # fmt: skip
    real_entries = crawler._entries

    def swap_then_list(folder, entries, restricted):
        listed = real_entries(folder, entries, restricted)
        if folder.endswith(b"/p"):
            os.rename(external / "p" / "sub", tmp_path / "moved-away")
            os.symlink(tmp_path / "outside", external / "p" / "sub")
        return listed

    crawler._entries = swap_then_list
    assert list(crawler.files()) == []
    assert crawler.report.skipped["changed during the crawl"] == 1


async def test_a_library_deleted_during_its_scan_gets_nothing_more(world):  # §5.9
    write(world.external / "p" / "a.jpg")
    library = world.library(world.external / "p")
    world.services.libraries.jobs = None
    scan = LibraryScan(
        world.services.index, library, world.user, data_dir=str(world.data_dir), mode=ScanMode.NEW
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(scan.run)  # the scan starts with the library as it is now...
        world.services.libraries.delete(world.principal, library.id)  # ...and it is deleted before any write
    assert world.paths(library) == set()


async def test_long_runs_of_missing_files_are_sent_in_bounded_frames(world, monkeypatch):
    from daemon import scan_worker

    root = world.external / "p"
    for i in range(50):
        write(root / f"{i:02d}.jpg")
    library = world.library(root)
    await world.scan(library)
    for i in range(50):
        os.remove(root / f"{i:02d}.jpg")
    monkeypatch.setattr(scan_worker, "FRAME_DECISIONS", 10)
    merger = scan_worker.Merger(world.services.index, library.id.bytes, "new")
    plans = []
    merger.on_full = lambda: plans.append(merger.take())
    merger.finish()  # nothing crawled: all 50 are missing, found in one walk
    plans.append(merger.take())
    assert sum(len(p.offline) for p in plans) == 50
    assert max(len(p.offline) for p in plans) <= 10
