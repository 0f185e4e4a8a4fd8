"""Targeted scans (the watcher's way in): only the named paths are examined, with the full crawl's rules."""

import os
from pathlib import Path

from daemon.crawl import ScopeEntry, normalize_scope
from daemon.scan import ScanMode
from tests.library_helpers import write


def b(path: Path) -> bytes:
    return os.fsencode(path)


def file(path: Path | bytes) -> ScopeEntry:
    return ScopeEntry(os.fsencode(path), False)


def folder(path: Path | bytes) -> ScopeEntry:
    return ScopeEntry(os.fsencode(path), True)


def test_scope_is_sorted_deduplicated_and_folders_absorb_their_contents():
    scope = [file(b"/r/b.jpg"), folder(b"/r/a"), file(b"/r/a/x.jpg"), folder(b"/r/a/sub"), file(b"/r/a.jpg"),
             file(b"/r/b.jpg"), file(b"/r/c"), folder(b"/r/c")]  # fmt: skip
    assert normalize_scope(scope) == [file(b"/r/a.jpg"), folder(b"/r/a"), file(b"/r/b.jpg"), folder(b"/r/c")]


async def test_only_scoped_paths_change(world):
    root = world.external / "p"
    write(root / "a.jpg")
    write(root / "gone.jpg")
    library = world.library(root)
    await world.scan(library)
    ids = {p: a.id for p, a in world.assets(library).items()}
    os.remove(root / "gone.jpg")
    write(root / "new.jpg")
    write(root / "unscoped.jpg")
    summary = await world.scan(
        library, ScanMode.MODIFIED, [file(root / "new.jpg"), file(root / "missing.jpg")]
    )
    assert summary.new == 1 and summary.offline == 0
    assert world.paths(library, online=True) == {b(root / "a.jpg"), b(root / "gone.jpg"), b(root / "new.jpg")}
    summary = await world.scan(library, ScanMode.MODIFIED, [file(root / "gone.jpg")])
    assert summary.offline == 1 and world.paths(library, online=False) == {b(root / "gone.jpg")}
    assert world.assets(library)[b(root / "a.jpg")].id == ids[b(root / "a.jpg")]
    assert (
        world.reload(library).refreshed_at is not None
    )  # set by the full scan only; a targeted one keeps it


async def test_modified_file_is_refreshed_and_keeps_its_id(world):
    root = world.external / "p"
    write(root / "a.jpg", mtime=1_600_000_000)
    library = world.library(root)
    await world.scan(library)
    before = world.assets(library)[b(root / "a.jpg")]
    write(root / "a.jpg", b"longer content now", mtime=1_700_000_000)
    summary = await world.scan(library, ScanMode.MODIFIED, [file(root / "a.jpg")])
    after = world.assets(library)[b(root / "a.jpg")]
    assert summary.modified == 1 and after.id == before.id and after.file_size == len(b"longer content now")


async def test_folder_scope_imports_a_new_tree_and_marks_a_removed_one_offline(world):
    root = world.external / "p"
    write(root / "keep.jpg")
    write(root / "old" / "x.jpg")
    library = world.library(root)
    await world.scan(library)
    os.rename(root / "old", root / "new")
    write(root / "new" / "deeper" / "y.mp4")
    summary = await world.scan(library, ScanMode.MODIFIED, [folder(root / "old"), folder(root / "new")])
    assert summary.new == 2 and summary.offline == 1
    assert world.paths(library, online=True) == {
        b(root / "keep.jpg"), b(root / "new" / "x.jpg"), b(root / "new" / "deeper" / "y.mp4")
    }  # fmt: skip


async def test_scoped_paths_follow_the_crawl_rules(world):
    root = world.external / "p"
    library = world.library(root / "in", exclusions=["**/Raw/**"])
    for rel in ["in/.hidden/a.jpg", "in/Raw/b.jpg", "in/c.txt", "in/.d.jpg", "out/e.jpg", "in/ok.jpg"]:
        write(root / rel)
    scope = [
        file(root / rel) for rel in ["in/.hidden/a.jpg", "in/Raw/b.jpg", "in/c.txt", "in/.d.jpg", "out/e.jpg"]
    ]
    scope += [folder(root / "in" / "Raw"), folder(root / "in" / ".hidden"), file(root / "in" / "ok.jpg")]
    summary = await world.scan(library, ScanMode.MODIFIED, scope)
    assert summary.new == 1 and world.paths(library) == {b(root / "in" / "ok.jpg")}


async def test_symlinked_folder_outside_the_external_path_is_refused(world, tmp_path):
    outside = tmp_path / "elsewhere"
    write(outside / "secret.jpg")
    root = world.external / "p"
    root.mkdir(parents=True)
    os.symlink(outside, root / "link")
    library = world.library(root)
    summary = await world.scan(
        library, ScanMode.MODIFIED, [folder(root / "link"), file(root / "link" / "secret.jpg")]
    )
    assert summary.new == 0 and world.paths(library) == set()


async def test_sidecar_event_refreshes_its_media_file(world):
    root = world.external / "p"
    write(root / "a.jpg")
    write(root / "a.png")
    write(root / "b.jpg")
    library = world.library(root)
    await world.scan(library)
    write(root / "a.xmp", b"<x/>")
    summary = await world.scan(library, ScanMode.MODIFIED, [file(root / "a.xmp")])
    assert summary.modified == 2  # a.jpg and a.png both fall back to a.xmp
    assert world.assets(library)[b(root / "a.jpg")].sidecar_path == b(root / "a.xmp")
    write(root / "a.jpg.xmp", b"<y/>")
    summary = await world.scan(library, ScanMode.MODIFIED, [file(root / "a.jpg.xmp")])
    assert summary.modified == 1 and world.assets(library)[b(root / "a.jpg")].sidecar_path == b(
        root / "a.jpg.xmp"
    )
    assert world.assets(library)[b(root / "b.jpg")].sidecar_path is None


async def test_a_scoped_path_in_a_vanished_import_path_goes_offline(world):
    root = world.external / "drive"
    write(root / "a.jpg")
    library = world.library(root)
    await world.scan(library)
    os.rename(root, world.external / "unplugged")
    summary = await world.scan(library, ScanMode.MODIFIED, [folder(root)])
    assert summary.offline == 1


async def test_a_file_and_its_sidecar_in_one_scope_import_it_once(world):
    root = world.external / "p"
    root.mkdir()
    library = world.library(root)
    write(root / "x.jpg")
    write(root / "x.xmp", b"<x/>")
    write(root / "x.jpg.xmp", b"<y/>")
    scope = [file(root / "x.jpg"), file(root / "x.xmp"), file(root / "x.jpg.xmp")]
    summary = await world.scan(library, ScanMode.MODIFIED, scope)
    assert summary.new == 1 and world.paths(library) == {b(root / "x.jpg")}
