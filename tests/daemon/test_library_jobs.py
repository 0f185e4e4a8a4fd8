"""The `library` queue: merged requests (§5.8), deletions resumed at start (§9.5), one library at a time."""

import trio

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
