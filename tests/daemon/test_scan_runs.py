"""The default-mode rescan decides a folder's run of consecutive files at once when it matches the index exactly
(`Merger.known_run`), and falls back to file-by-file decisions otherwise. These tests run the scan worker's `run`
in-process, counting which runs took the fast path, and check every decision against a full scan's."""

import os
import random
import shutil

import msgspec
import pytest

from daemon import assets, crawl, scan_worker
from daemon.access import Principal
from daemon.check import check_index
from daemon.index import LIBRARIES
from daemon.scan import LibraryScan, ScanMode
from tests.library_helpers import write


def request(world, library, mode="new"):
    return scan_worker.ScanRequest(
        index_path=str(world.services.index.path), library_id=library.id.bytes, mode=mode,
        roots=[os.fsencode(p) for p in library.import_paths], external_path=os.fsencode(world.external),
        data_dir=os.fsencode(world.data_dir), exclusion_patterns=list(library.exclusion_patterns),
    )  # fmt: skip


def run_worker(world, library, monkeypatch):
    """(merged plan, runs decided at once, runs looked at file by file) of an in-process worker run."""
    outcomes = []
    real = scan_worker.Merger.known_run

    def spy(self, base, names):
        outcomes.append(real(self, base, names))
        return outcomes[-1]

    monkeypatch.setattr(scan_worker.Merger, "known_run", spy)
    monkeypatch.setattr(scan_worker, "READ_BATCH", 1)  # a fresh read transaction before every question
    monkeypatch.setattr(scan_worker, "PROGRESS_FILES", 3)  # and frames sent from inside runs
    frames = []
    scan_worker.crawl_and_merge(world.services.index, request(world, library), frames.append)
    plans = [frame for frame in frames if isinstance(frame, scan_worker.Plan)]
    merged = scan_worker.Plan(
        crawled=sum(p.crawled for p in plans), unchanged=sum(p.unchanged for p in plans),
        new=[f for p in plans for f in p.new], offline=[o for p in plans for o in p.offline],
        restore=[r for p in plans for r in p.restore],
    )  # fmt: skip
    return merged, outcomes.count(True), outcomes.count(False)


def tree(root):
    """Two folders; `b` has files before and after a sub-folder, so its listing holds two runs."""
    for i in range(20):
        write(root / "a" / f"{i:02d}.jpg")
    for name in ["b1.jpg", "b2.jpg", "c/x.jpg", "c/y.jpg", "d1.jpg", "d2.jpg"]:
        write(root / "b" / name)


async def test_unchanged_runs_are_decided_at_once(world, monkeypatch):
    root = world.external / "p"
    tree(root)
    library = world.library(root)
    await world.scan(library)
    plan, fast, slow = run_worker(world, library, monkeypatch)
    assert (plan.crawled, plan.unchanged, plan.new, plan.offline) == (26, 26, [], [])
    assert (fast, slow) == (4, 0)  # a, b's two runs, c


async def test_a_changed_run_falls_back_and_decides_each_file(world, monkeypatch):
    root = world.external / "p"
    tree(root)
    library = world.library(root)
    await world.scan(library)
    ids = {p: a.id for p, a in world.assets(library).items()}
    os.remove(root / "a" / "07.jpg")  # a key between the run's files: offline
    write(root / "b" / "b15.jpg")  # a new file inside b's first run
    os.remove(root / "b" / "d2.jpg")  # the last key of b's second run
    plan, fast, slow = run_worker(world, library, monkeypatch)
    assert plan.crawled == 25 and plan.unchanged == 24
    assert [f.path for f in plan.new] == [os.fsencode(root / "b" / "b15.jpg")]
    gone = {ids[os.fsencode(root / "a" / "07.jpg")].bytes, ids[os.fsencode(root / "b" / "d2.jpg")].bytes}
    assert set(plan.offline) == gone
    assert (fast, slow) == (2, 2)  # c, and b's [d1] (d2, the key after it, goes offline on the way on)
    summary = await world.scan(library)  # and the real scan agrees, its index checked
    assert (summary.new, summary.offline, summary.unchanged) == (1, 2, 24)


async def test_an_offline_file_in_a_run_is_restored(world, monkeypatch):
    root = world.external / "p"
    tree(root)
    library = world.library(root)
    await world.scan(library)
    os.rename(root / "a" / "03.jpg", world.external / "aside.jpg")
    assert (await world.scan(library)).offline == 1
    os.rename(world.external / "aside.jpg", root / "a" / "03.jpg")
    plan, fast, slow = run_worker(world, library, monkeypatch)
    assert len(plan.restore) == 1 and plan.unchanged == 25
    assert (fast, slow) == (3, 1)  # run a holds an offline key: looked at file by file
    assert (await world.scan(library)).restored == 1


async def test_links_and_exclusions_keep_a_run_on_the_file_by_file_path(world, monkeypatch):
    root = world.external / "p"
    tree(root)
    os.symlink(root / "a" / "00.jpg", root / "b" / "b3.jpg")  # a link inside the external path: imported
    library = world.library(root, exclusions=["**/d1.jpg"])
    await world.scan(library)
    plan, fast, slow = run_worker(world, library, monkeypatch)
    assert plan.unchanged == plan.crawled == 26 and not plan.new and not plan.offline
    assert (fast, slow) == (2, 0)  # a and c; b's runs hold a link and an excluded file, so never ask
    assert (await world.scan(library, ScanMode.NEW)).unchanged == 26


async def test_mtimes_before_1970_and_to_the_nanosecond_keep_the_index_consistent(world):
    """New assets are built by the worker and stored as bytes: their timeline and path entries must be exactly
    what the asset records give (`world.scan` runs `check_index`), for odd mtimes too."""
    root = world.external / "p"
    mtimes = {"old.jpg": -1_500_000_001, "epoch.jpg": 0, "fine.jpg": 1_700_000_000_123_456_789, "neg.jpg": -3}
    for name, mtime_ns in mtimes.items():
        write(root / name)
        os.utime(root / name, ns=(mtime_ns, mtime_ns))
    library = world.library(root)
    assert (await world.scan(library)).new == 4
    stored = {os.path.basename(path).decode(): asset for path, asset in world.assets(library).items()}
    assert {name: asset.file_mtime_ns for name, asset in stored.items()} == mtimes
    assert stored["fine.jpg"].local_date_time.isoformat() == "2023-11-14T22:13:20.123456+00:00"


async def test_a_library_given_to_another_user_mid_scan_gets_assets_of_its_new_owner(world, monkeypatch):
    """The worker builds new assets for the owner the scan started with; the daemon stores them only if the
    library still has that owner, and otherwise builds them again for the new one."""
    root = world.external / "p"
    tree(root)
    library = world.library(root)
    other = world.services.users.create(email="o@example.com", password="pw", name="O",
                                        external_path=str(world.external))  # fmt: skip
    scan = LibraryScan(world.services.index, library, world.user, data_dir=str(world.data_dir),
                       mode=ScanMode.NEW)  # fmt: skip
    world.services.index.write(lambda txn: txn.put(LIBRARIES, library.id.bytes, msgspec.structs.replace(
        txn.get(LIBRARIES, library.id.bytes), owner_id=other.id)))  # fmt: skip
    built_by_the_worker = []
    real = assets.insert_new_external
    monkeypatch.setattr(assets, "insert_new_external", lambda *args: built_by_the_worker.append(1) or real(*args))
    assert (await scan.run()).new == 26
    assert {asset.owner_id for asset in world.assets(library).values()} == {other.id}
    assert check_index(world.services.index) == [] and not built_by_the_worker  # rebuilt by the daemon
    write(root / "a" / "late.jpg")
    library = world.services.libraries.get(Principal(user=other), library.id)
    again = LibraryScan(world.services.index, library, other, data_dir=str(world.data_dir), mode=ScanMode.NEW)
    assert (await again.run()).new == 1 and built_by_the_worker  # the worker's, as usual


async def test_a_file_dated_past_2262_is_skipped_with_a_warning_not_fatal(world):
    """ext4 stores mtimes past what 64-bit nanoseconds hold; such a file is skipped, the rest is imported."""
    root = world.external / "p"
    tree(root)
    far = root / "a" / "far.jpg"
    write(far)
    os.utime(far, ns=(10**19, 10**19))
    if os.stat(far).st_mtime_ns != 10**19:
        pytest.skip("this filesystem cannot store that mtime")
    library = world.library(root)
    summary = await world.scan(library)
    assert summary.new == 26 and summary.report.skipped["mtime outside the index's range"] == 1
    assert any("far.jpg" in warning for warning in summary.report.warnings)
    for mode in (ScanMode.MODIFIED, ScanMode.ALL):
        assert (await world.scan(library, mode)).crawled == 26


NAMES = [b"a", b"a-", b"a.b", b"b", b"b0", b"c", b"c c", b"d\xff"]


def random_tree(root: bytes, rnd: random.Random, depth: int = 0) -> None:
    os.makedirs(root, exist_ok=True)
    for name in rnd.sample(NAMES, rnd.randint(0, len(NAMES))):
        if depth < 2 and rnd.random() < 0.35:
            random_tree(os.path.join(root, name), rnd, depth + 1)
        else:
            write(os.path.join(root, name) + b".jpg")


def shake(root: bytes, rnd: random.Random) -> None:
    """Delete some files and folders, add some files."""
    for folder, folders, files in list(os.walk(root)):
        for name in files:
            if rnd.random() < 0.08 and os.path.exists(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
        for name in folders:
            if rnd.random() < 0.05:
                shutil.rmtree(os.path.join(folder, name))
                break
        if rnd.random() < 0.1 and os.path.isdir(folder):
            write(os.path.join(folder, rnd.choice(NAMES)) + b"x.jpg")


def decisions(world, library) -> tuple:
    frames = []
    scan_worker.crawl_and_merge(world.services.index, request(world, library), frames.append)
    plans = [frame for frame in frames if isinstance(frame, scan_worker.Plan)]
    return (
        sum(p.crawled for p in plans),
        sum(p.unchanged for p in plans),
        sorted(f.path for p in plans for f in p.new),
        sorted(o for p in plans for o in p.offline),
        sorted(r[0] for p in plans for r in p.restore),
        sorted(f.path for p in plans for f in p.deferred),
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("read_batch", [1, 2000])
async def test_runs_decided_at_once_agree_with_file_by_file_decisions(world, monkeypatch, seed, read_batch):
    """Random trees, shaken (with offline assets in the index for some seeds): the fast path and the file-by-file
    path decide exactly the same, whatever the read transactions' length and however often frames go."""
    rnd = random.Random(seed)
    root = os.fsencode(world.external / "p")
    random_tree(root, rnd)
    library = world.library(world.external / "p")
    await world.scan(library)
    shake(root, rnd)
    if seed % 2:
        await world.scan(library)
        shake(root, rnd)
    monkeypatch.setattr(scan_worker, "READ_BATCH", read_batch)
    monkeypatch.setattr(scan_worker, "PROGRESS_FILES", 2)
    fast = decisions(world, library)
    monkeypatch.setattr(crawl.Crawler, "_all_known", lambda self, folder, run: False)
    assert decisions(world, library) == fast
