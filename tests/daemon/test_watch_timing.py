"""Debounce and the nightly schedule on trio's MockClock (no real waiting)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import msgspec
import pytest
import trio

from daemon.config import NightlyScanSettings
from daemon.crawl import ScopeEntry
from daemon.index import USERS
from daemon.nightly import NightlyJob, next_run
from daemon.scan import ScanMode
from daemon.settle import Settler
from tests.library_helpers import write

A = ScopeEntry(b"/lib/a.jpg", False)
B = ScopeEntry(b"/lib/b.jpg", False)
FOLDER = ScopeEntry(b"/lib/new", True)


async def test_a_burst_of_events_is_one_hand_off_after_the_settle_time(autojump_clock):
    settler = Settler(settle=0.3, look=lambda path: (1, 1))
    start = trio.current_time()
    for _ in range(5):
        settler.touch(A, complete=True)
        settler.touch(FOLDER, complete=True)
        await trio.sleep(0.1)
    ready = await settler.settled()
    assert sorted(ready, key=lambda e: e.path) == [A, FOLDER]
    assert trio.current_time() - start == pytest.approx(0.4 + 0.3)  # last touch at 0.4 s, then 0.3 s quiet
    assert len(settler) == 0


async def test_a_file_still_growing_is_held_until_its_size_is_stable(autojump_clock):
    sizes = iter([(10, 1), (20, 2), (30, 3), (30, 3)])
    settler = Settler(settle=0.5, look=lambda path: next(sizes))
    start = trio.current_time()
    settler.touch(B, complete=False)  # e.g. IN_MODIFY from an SMB writer that keeps the file open
    assert await settler.settled() == [B]
    assert trio.current_time() - start == pytest.approx(2.0)  # 4 looks, 0.5 s apart


async def test_a_vanished_file_is_handed_on_without_waiting_for_stability(autojump_clock):
    settler = Settler(settle=0.3, look=lambda path: None)
    settler.touch(B, complete=False)
    assert await settler.settled() == [B]


def test_next_run_follows_the_cron_expression():
    assert next_run("0 0 * * *", datetime(2026, 11, 21, 10, 30)) == datetime(2026, 11, 22, 0, 0)
    assert next_run("30 2 * * 1", datetime(2026, 11, 21, 10, 30)) == datetime(2026, 11, 23, 2, 30)  # a Monday


async def test_nightly_job_runs_on_schedule_cleans_up_and_rescans(autojump_clock, world, caplog):
    caplog.set_level(logging.INFO)
    jobs = world.services.library_jobs
    root = world.external / "p"
    write(root / "a.jpg")
    scanned = world.library(root)
    empty = world.services.libraries.create(world.principal, name="x", import_paths=[], exclusion_patterns=[])
    anchor = datetime(2026, 11, 21, 23, 59, 0)
    base = trio.current_time()
    job = NightlyJob(NightlyScanSettings(cron_expression="0 0 * * *"), jobs,
                     wall_now=lambda: anchor + timedelta(seconds=trio.current_time() - base))  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(job.run)
        await trio.sleep(59)
        assert job.runs == 0 and jobs.counts().waiting == 0
        await trio.sleep(2)
        assert job.runs == 1 and job.next_run == datetime(2026, 11, 23, 0, 0)  # the next one
        assert jobs._pending[("scan", scanned.id)] == ScanMode.MODIFIED
        assert ("scan", empty.id) in jobs._pending  # no import paths, but an external path: scanned (a no-op)
        jobs._pending.clear()
        await trio.sleep(24 * 3600)
        assert job.runs == 2
        nursery.cancel_scope.cancel()


async def test_nightly_job_warns_about_owners_without_external_path(world, caplog):
    library = world.library(world.external)
    user = world.services.users.get(world.user.id)
    no_external_path = msgspec.structs.replace(user, external_path=None)
    world.services.index.write(lambda txn: txn.put(USERS, user.id.bytes, no_external_path))
    world.services.library_jobs.request_nightly(force=True)
    assert ("scan", library.id) not in world.services.library_jobs._pending
    assert any(
        "User has no external path set, cannot refresh library" in r.getMessage() for r in caplog.records
    )
