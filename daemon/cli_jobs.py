"""`filmroll jobs`: the media queues as the index records them — progress, waiting work, failures and why.

It reads the index read-only (beside a running daemon), so it shows durable state: how many assets each queue has
done out of how many it covers, what waits, what failed for good. `--watch` redraws until nothing waits, and
gives up (exit 1, saying why) when waiting would be forever: no daemon runs the queues (`media_jobs.running`), or
every queue with work left is paused — a paused queue is named once and no longer waited for. `--failed` lists
each failure with its file and reason.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from . import job_queue
from .index import ASSETS, JOB_FAILURES, Index
from .media_jobs import MetadataJobs, ThumbnailJobs, VideoJobs, running
from .records import Asset

POLL_SECONDS = 1.0


def add_commands(commands: argparse._SubParsersAction, add_settings) -> None:
    jobs = commands.add_parser("jobs", help="show the media queues: progress, waiting, failures")
    add_settings(jobs)
    jobs.add_argument(
        "--watch",
        action="store_true",
        help="redraw every second until no work waits (the daemon does the work); exit 1 if no daemon runs "
        "or only paused queues have work left",
    )
    jobs.add_argument("--failed", action="store_true", help="list failed jobs with the file and the reason")


@dataclass
class QueueProgress:
    name: str
    done: int
    total: int
    waiting: int
    failed: int


HANDLERS = {job_queue.METADATA: MetadataJobs, job_queue.THUMBNAILS: ThumbnailJobs, job_queue.VIDEO: VideoJobs}
"""Per queue, the handler whose `wanted` says which assets it covers (`force`) and which still need it."""


def progress(index: Index) -> list[QueueProgress]:
    """One pass over the assets (online ones: offline files cannot be worked on)."""
    counts = {name: [0, 0] for name in HANDLERS}
    with index.read() as txn:
        for asset in txn.values(ASSETS):
            if asset.is_offline:
                continue
            _count(counts, asset)
        return [
            QueueProgress(
                name,
                done,
                total,
                job_queue.waiting(txn, name),
                job_queue.failed_count(txn, name),
            )
            for name, (done, total) in counts.items()
        ]


def _count(counts: dict[str, list[int]], asset: Asset) -> None:
    for name, handler in HANDLERS.items():
        if handler.wanted(asset, force=True):
            counts[name][1] += 1
            counts[name][0] += not handler.wanted(asset, force=False)


def run(args: argparse.Namespace, index: Index) -> int:
    console = Console()
    if args.failed:
        _print_failures(index)
        return 0
    if not args.watch:
        _print_table(console, progress(index))
        return 0
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
    )
    data_dir = index.path.parent  # the index is always `<data dir>/index` (`Settings.index_path`)
    with Progress(*columns, console=console) as bars:
        tasks = {}
        named: set[str] = set()  # paused queues already reported
        while True:
            rows = progress(index)
            for row in rows:
                note = f"{row.waiting} waiting, {row.failed} failed"
                if row.name not in tasks:
                    tasks[row.name] = bars.add_task(row.name, total=row.total, completed=row.done, note=note)
                bars.update(tasks[row.name], total=row.total, completed=row.done, note=note)
            waiting = {row.name: row.waiting for row in rows if row.waiting}
            if not waiting:
                return 0
            runner = running(data_dir)
            if runner is None:
                bars.stop()
                jobs = ", ".join(f"{name} {count}" for name, count in waiting.items())
                _say(f"no filmroll daemon is running on {data_dir}, so nothing works on the waiting jobs "
                     f"({jobs}); start it with `filmroll serve`")  # fmt: skip
                return 1
            paused = {name for name in waiting if name in runner.paused}
            for name in sorted(paused - named):
                _say(f"queue {name} is paused with {waiting[name]} jobs waiting: not waiting for it (resume it on "
                     f"/admin/jobs, or PUT /api/jobs/{name} {{\"command\": \"resume\"}})")  # fmt: skip
            named = paused  # a queue resumed and paused again is named again
            if paused == set(waiting):
                bars.stop()
                _say(f"stopped: only paused queues have work left ({', '.join(sorted(paused))})")
                return 1
            time.sleep(POLL_SECONDS)


def _say(message: str) -> None:
    """A line on stderr (above the bars while they are drawn: rich redirects stderr meanwhile)."""
    print(f"filmroll jobs: {message}", file=sys.stderr, flush=True)


def _print_table(console: Console, rows: list[QueueProgress]) -> None:
    table = Table("queue", "done", "of", "waiting", "failed")
    for row in rows:
        table.add_row(row.name, str(row.done), str(row.total), str(row.waiting), str(row.failed))
    console.print(table)


def _print_failures(index: Index) -> None:
    """One line per failure (never wrapped: reasons hold whole paths, and people grep them)."""
    with index.read() as txn:
        for key, failure in txn.items(JOB_FAILURES):
            reason = " ".join(failure.reason.splitlines())  # a file name may hold a newline
            print(f"{failure.queue}\t{uuid.UUID(bytes=key[:16])}\tattempts={failure.attempts}\t{reason}")
