"""The media queue machinery with real worker processes: durable jobs, retries, crashing workers, recycling,
and Immich's queue commands. The job here is a small stand-in (its worker function lives in this module), so
each test controls exactly how the work behaves."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import uuid
from pathlib import Path

import pytest
import trio

from daemon import job_queue
from daemon.config import JobSettings
from daemon.errors import BadMedia, InvalidInput
from daemon.index import Index
from daemon.media_queue import Group, MediaQueue, Outcomes, Workers, failure_of, init_worker_logging
from daemon.records import Asset
from daemon.timeutil import utc_now
from tests.library_helpers import write


def worker_pid(_: str) -> int:
    return os.getpid()


def behave(how: str) -> int:
    """The stand-in job, run in a worker process: `ok`, `bad` (bad media), `crash-once:<marker file>` (the
    worker dies the first time, as a crashing decoder would), `crash` (dies every time)."""
    if how == "bad":
        raise BadMedia("/photos/broken.jpg: not a JPEG file")
    if how.startswith("crash-once:"):
        marker = Path(how.split(":", 1)[1])
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    if how == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "warn":
        logging.getLogger("daemon.thumbnails").warning("sidecar %s ignored: not XML", "/photos/a.xmp")
    if how == "vanished":
        raise FileNotFoundError(2, "No such file or directory", "/photos/gone.jpg")
    return os.getpid()


class StandIn:
    """A handler whose work is `behave(self.how[asset])` in a worker, one asset per call."""

    queue = job_queue.THUMBNAILS
    group_size = 1

    def __init__(self, index: Index) -> None:
        self.index = index
        self.how: dict[uuid.UUID, str] = {}
        self.pids: list[int] = []

    def wanted(self, asset: Asset, *, force: bool) -> bool:
        return force or asset.thumbnail_version == 0

    async def run(self, workers: Workers, group: Group) -> Outcomes:
        outcomes: Outcomes = {}
        for asset_id, job in group:
            try:
                self.pids.append(await workers.run(behave, self.how.get(asset_id, "ok")))
            except (BadMedia, OSError) as error:
                outcomes[asset_id] = failure_of(error)
                continue
            outcomes[asset_id] = None
            self.index.write(lambda txn, a=asset_id, j=job: job_queue.finish(txn, self.queue, a, j))
        return outcomes


@pytest.fixture
async def assets(world) -> list[uuid.UUID]:
    for name in "abcde":
        write(world.external / "p" / f"{name}.jpg")
    library = world.library(world.external / "p")
    await world.scan(library)
    # the scan queued real media work: this file's tests use the thumbnail queue's table on their own
    for queue in job_queue.QUEUE_TABLES:
        world.services.index.write(lambda txn, q=queue: job_queue.empty(txn, q))
    return sorted(asset.id for asset in world.assets(library).values())


def enqueue(index: Index, asset_ids: list[uuid.UUID]) -> None:
    now = utc_now()
    index.write(lambda txn: [job_queue.enqueue(txn, job_queue.THUMBNAILS, a, now) for a in asset_ids])


async def run_until_idle(queue: MediaQueue, timeout: float = 30) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        with trio.fail_after(timeout):
            await queue.idle()
        nursery.cancel_scope.cancel()


def make_queue(index: Index, handler: StandIn, **settings: int) -> MediaQueue:
    return MediaQueue(index, handler, concurrency=2, jobs=JobSettings(**settings))


async def test_jobs_run_and_leave_the_queue(world, assets):
    handler = StandIn(world.services.index)
    queue = make_queue(world.services.index, handler)
    enqueue(world.services.index, assets)
    await run_until_idle(queue)
    assert len(handler.pids) == 5 and os.getpid() not in handler.pids  # in worker processes
    counts = queue.counts()
    assert (counts.waiting, counts.active, counts.failed, counts.completed) == (0, 0, 0, 5)


async def test_bad_media_fails_at_once_and_the_reason_is_kept(world, assets):
    handler = StandIn(world.services.index)
    handler.how[assets[0]] = "bad"
    queue = make_queue(world.services.index, handler)
    enqueue(world.services.index, assets)
    await run_until_idle(queue)
    with world.services.index.read() as txn:
        (failure,) = job_queue.failures_of(txn, assets[0])
    assert failure.attempts == 1 and failure.reason == "/photos/broken.jpg: not a JPEG file"
    assert queue.counts().failed == 1 and queue.counts().completed == 4


@pytest.mark.allow_error_logs
async def test_a_worker_that_dies_costs_one_attempt_and_the_daemon_carries_on(world, assets, tmp_path):
    handler = StandIn(world.services.index)
    handler.how[assets[1]] = f"crash-once:{tmp_path / 'crashed'}"
    handler.how[assets[2]] = "crash"
    queue = make_queue(world.services.index, handler, max_attempts=3, retry_delay=0)
    enqueue(world.services.index, assets)
    await run_until_idle(queue, timeout=60)
    with world.services.index.read() as txn:
        assert job_queue.failures_of(txn, assets[1]) == []  # the retry, in a fresh worker, succeeded
        (failure,) = job_queue.failures_of(txn, assets[2])
    assert failure.attempts == 3 and "worker process died" in failure.reason
    assert queue.counts().completed == 4


async def test_workers_are_recycled_after_n_jobs(world, assets):
    handler = StandIn(world.services.index)
    queue = MediaQueue(world.services.index, handler, concurrency=1, jobs=JobSettings(worker_recycle_after=2))
    enqueue(world.services.index, assets)
    await run_until_idle(queue)
    assert len(set(handler.pids)) == 3  # 5 jobs, 2 per worker


async def test_pending_jobs_survive_a_restart(world, assets, tmp_path):
    enqueue(world.services.index, assets)
    copy = tmp_path / "restarted"
    world.services.index.copy_to(copy, compact=False)  # the index as a killed daemon leaves it on disk
    with Index(copy) as reopened:
        handler = StandIn(reopened)
        queue = make_queue(reopened, handler)
        assert queue.counts().waiting == 5
        await run_until_idle(queue)
        assert queue.counts().completed == 5
        assert job_queue.THUMBNAILS not in {f.queue for a in assets for f in _failures(reopened, a)}


def _failures(index: Index, asset_id: uuid.UUID) -> list:
    with index.read() as txn:
        return job_queue.failures_of(txn, asset_id)


async def test_commands_pause_resume_empty_start(world, assets):
    handler = StandIn(world.services.index)
    queue = make_queue(world.services.index, handler)
    queue.start(force=False)  # every asset lacks a thumbnail
    with pytest.raises(InvalidInput, match="Job is already running"):
        queue.start(force=False)
    queue.pause()
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        await trio.sleep(1)
        counts = queue.counts()
        assert handler.pids == [] and counts.paused == 5 and counts.waiting == 0
        queue.empty()
        assert queue.counts().paused == 0
        queue.resume()
        queue.start(force=True)
        with trio.fail_after(30):
            await queue.idle()
        nursery.cancel_scope.cancel()
    assert len(handler.pids) == 5


async def test_a_failed_attempt_waits_before_its_retry(world, assets):
    handler = StandIn(world.services.index)
    handler.how[assets[0]] = "vanished"
    queue = make_queue(world.services.index, handler, retry_delay=3600)
    enqueue(world.services.index, assets)
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        with trio.fail_after(30):
            while queue.counts().completed < 4 or queue.counts().active:
                await trio.sleep(0.05)
        await trio.sleep(1)  # the failed one is not taken again meanwhile
        nursery.cancel_scope.cancel()
    with world.services.index.read() as txn:
        (job,) = [job for _, job in txn.items(job_queue.QUEUE_TABLES[job_queue.THUMBNAILS])]
    assert job.attempts == 1 and "gone.jpg" in job.last_error and job.retry_after > utc_now()
    assert queue.counts().waiting == 1 and queue.counts().failed == 0


async def test_a_failure_of_old_content_leaves_the_re_queued_job(world, assets):
    (asset_id, *_) = assets
    enqueue(world.services.index, [asset_id])
    with world.services.index.read() as txn:
        taken = txn.get(job_queue.QUEUE_TABLES[job_queue.THUMBNAILS], asset_id.bytes)
    later = utc_now()
    world.services.index.write(
        lambda txn: job_queue.enqueue(txn, job_queue.THUMBNAILS, asset_id, later, force=True)
    )

    def fail(txn):
        return job_queue.record_failure(txn, job_queue.THUMBNAILS, asset_id, taken, "bad", later,
                                        max_attempts=3, final=True)  # fmt: skip

    assert world.services.index.write(fail) is False
    with world.services.index.read() as txn:
        assert txn.get(job_queue.QUEUE_TABLES[job_queue.THUMBNAILS], asset_id.bytes).force is True
        assert job_queue.failures_of(txn, asset_id) == []


async def test_empty_keeps_running_jobs(world, assets):
    enqueue(world.services.index, assets)
    world.services.index.write(lambda txn: job_queue.empty(txn, job_queue.THUMBNAILS, {assets[0]}))
    with world.services.index.read() as txn:
        assert [key for key, _ in txn.items(job_queue.QUEUE_TABLES[job_queue.THUMBNAILS])] == [
            assets[0].bytes
        ]


def behave_all(hows: list[str]) -> int:
    """A batch job (like metadata's): the whole batch in one worker call."""
    for how in hows:
        behave(how)
    return os.getpid()


class Batched(StandIn):
    group_size = 5

    async def run(self, workers: Workers, group: Group) -> Outcomes:
        await workers.run(behave_all, [self.how.get(asset_id, "ok") for asset_id, _ in group])
        for asset_id, job in group:
            self.index.write(lambda txn, a=asset_id, j=job: job_queue.finish(txn, self.queue, a, j))
        return dict.fromkeys((asset_id for asset_id, _ in group), None)


async def test_a_batch_whose_worker_dies_is_retried_one_by_one(world, assets):
    handler = Batched(world.services.index)
    handler.how[assets[3]] = "crash"
    queue = make_queue(world.services.index, handler, max_attempts=2, retry_delay=0)
    enqueue(world.services.index, assets)
    await run_until_idle(queue, timeout=60)
    with world.services.index.read() as txn:
        failed = {asset_id for asset_id in assets if job_queue.failures_of(txn, asset_id)}
    assert failed == {assets[3]}  # the others of its batch were spared
    assert queue.counts().completed == 4


async def test_worker_warnings_reach_the_daemons_log_stream(world, assets, capfd):
    handler = StandIn(world.services.index)
    handler.how[assets[0]] = "warn"
    init = functools.partial(init_worker_logging, "info", "json")
    queue = MediaQueue(world.services.index, handler, concurrency=1, jobs=JobSettings(), worker_init=init)
    enqueue(world.services.index, assets[:1])
    await run_until_idle(queue)
    captured = capfd.readouterr()
    lines = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    assert {
        "level": "warning",
        "logger": "daemon.thumbnails",
        "message": "sidecar /photos/a.xmp ignored: not XML",
    }.items() <= next(line for line in lines if line.get("logger") == "daemon.thumbnails").items()
