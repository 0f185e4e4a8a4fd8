"""The `library` queue: merged requests (§5.8), deletions resumed at start (§9.5), lanes (one job per library at a
time, a stuck one never holding up the others)."""

import os

import trio
import trio.testing

from daemon.library_jobs import LibraryJobQueue
from daemon.scan import ScanMode
from tests.library_helpers import write


async def test_pending_requests_merge_and_the_strongest_mode_wins(world):
    write(world.external / "p" / "a.jpg")
    library = world.library(world.external / "p")
    queue = LibraryJobQueue(world.services.index, str(world.data_dir))
    for mode in (ScanMode.NEW, ScanMode.ALL, ScanMode.MODIFIED, ScanMode.NEW):
        queue.request_scan(library.id, mode)
    assert queue.counts().waiting == 1
    assert list(queue._pending.values()) == [ScanMode.ALL]
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        await queue.wait_idle()
        nursery.cancel_scope.cancel()
    assert queue.counts().completed == 1 and queue.counts().failed == 0
    assert len(world.paths(library)) == 1


async def test_interrupted_deletion_resumes_at_start(world):
    write(world.external / "p" / "a.jpg")
    library = world.library(world.external / "p")
    await world.scan(library)
    world.services.libraries.jobs = None  # the daemon "stops" right after the library was marked deleted
    world.services.libraries.delete(world.principal, library.id)
    assert len(world.paths(library)) == 1
    queue = LibraryJobQueue(world.services.index, str(world.data_dir))  # a fresh start
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        await queue.wait_idle()
        nursery.cancel_scope.cancel()
    assert world.paths(library) == set()
    assert (world.external / "p" / "a.jpg").exists()


async def test_a_failing_scan_is_counted_and_the_queue_goes_on(world, services):
    library = world.library(world.external / "p")
    services.users.update(world.user.id, {"external_path": ""}, as_admin=True)  # scan will refuse
    queue = LibraryJobQueue(world.services.index, str(world.data_dir))
    queue.request_scan(library.id, ScanMode.NEW)
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        await queue.wait_idle()
        nursery.cancel_scope.cancel()
    assert queue.counts().failed == 1 and not queue.is_active


async def test_a_stuck_scan_holds_one_lane_and_other_libraries_go_on(world, monkeypatch):
    """A scan that never ends (a hung network mount) keeps its library's later requests waiting, never running
    beside it, while another library's scan runs and finishes in the other lane."""
    from daemon import library_jobs

    stuck_path = world.external / "stuck"
    write(stuck_path / "a.jpg")
    write(world.external / "fine" / "b.jpg")
    stuck, fine = world.library(stuck_path), world.library(world.external / "fine")
    release = trio.Event()
    running = []
    real_run = library_jobs.LibraryScan.run

    async def run(self):
        running.append(self.library.id)
        if self.library.id == stuck.id:
            await release.wait()
        return await real_run(self)

    monkeypatch.setattr(library_jobs.LibraryScan, "run", run)
    queue = LibraryJobQueue(world.services.index, str(world.data_dir))
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        queue.request_scan(stuck.id, ScanMode.NEW)
        await trio.testing.wait_all_tasks_blocked()
        queue.request_scan(stuck.id, ScanMode.MODIFIED)  # waits behind its own library's scan
        queue.request_scan(fine.id, ScanMode.NEW)
        with trio.fail_after(30):
            while queue.counts().completed < 1:
                await trio.sleep(0.05)
        assert world.paths(fine) == {os.fsencode(world.external / "fine" / "b.jpg")}
        assert queue.counts().active == 1 and queue.counts().waiting == 1 and running == [stuck.id, fine.id]
        assert "scanning library" in queue.describe_active()
        release.set()
        with trio.fail_after(30):
            await queue.wait_idle()
        nursery.cancel_scope.cancel()
    assert running == [stuck.id, fine.id, stuck.id] and queue.counts().completed == 3
    assert len(world.paths(stuck)) == 1
