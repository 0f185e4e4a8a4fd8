"""The nightly library job (`libraries.md` §12): on the cron schedule of `library.scan`, finish libraries stuck
in deletion, then rescan every external library for modified files (`LibraryJobQueue.request_nightly`).

The schedule is local wall-clock time (cronsim), converted to a delay on trio's clock; `wall_now` is injectable so
tests run a schedule under `trio.testing.MockClock`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import trio
from cronsim import CronSim

from .config import NightlyScanSettings
from .library_jobs import LibraryJobQueue

log = logging.getLogger(__name__)

JOB_NAME = "libraryScan"


def next_run(expression: str, now: datetime) -> datetime:
    """The first time after `now` (naive local time) that matches the cron expression."""
    return next(CronSim(expression, now))


class NightlyJob:
    def __init__(
        self,
        settings: NightlyScanSettings,
        jobs: LibraryJobQueue,
        *,
        wall_now: Callable[[], datetime] = datetime.now,
    ):
        self.settings = settings
        self.jobs = jobs
        self.wall_now = wall_now
        self.next_run: datetime | None = None
        self.runs = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self.settings.enabled:
            log.info("the nightly library job is disabled (library.scan.enabled)")
            await trio.sleep_forever()
        while True:
            now = self.wall_now()
            self.next_run = next_run(self.settings.cron_expression, now)
            # Through timestamps, so a daylight-saving change between now and then is accounted for.
            await trio.sleep(max(0.0, self.next_run.timestamp() - now.timestamp()))
            log.info("%s: cleaning up deleted libraries and rescanning external libraries", JOB_NAME)
            self.runs += 1
            self.jobs.request_nightly()
