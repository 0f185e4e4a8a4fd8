"""Prometheus metrics: process-wide instruments the code updates, and gauges computed from the index at scrape time.

Instruments (updated where things happen, kept in this module's own registry, `REGISTRY`):
- `filmroll_http_request_duration_seconds{method,route,status}`: the HTTP app, per route *template*
  (`/api/assets/<uuid:asset_id>`), never per URL (`api/metrics.py`);
- `filmroll_library_job_duration_seconds{kind}`: the `library` queue's scans (`scan`, the watcher's targeted
  `watch`) and `remove-offline` runs, failed or cancelled ones included (`daemon/library_jobs.py`);
- `filmroll_fuse_operations_total{operation}` and `filmroll_fuse_errors_total{operation,errno}`: the FUSE view
  (`fsview/`), one increment per request it answers, and per error reply;
- the process collector (`process_*`: memory, CPU, open files, start time).

Computed at scrape time by `IndexCollector` (cheap: table counts, queue counters, one C-level pass over the raw
`timeline` flag bytes; no asset record is decoded):
- `filmroll_assets{type,state}` (state: online, offline, trashed), `filmroll_users`, `filmroll_libraries{type}`,
  `filmroll_albums`, `filmroll_jobs{queue,state}` (active, waiting, paused), `filmroll_jobs_failed{queue}`,
  `filmroll_jobs_completed_total{queue}`, `filmroll_index_bytes` / `filmroll_index_map_bytes`, `filmroll_info`.

Only aggregates: no label ever carries a user, a library name, a path or an id, so publishing `/metrics` without
authentication (`[metrics] public = true`, the default) leaks nothing about anyone's photos.
"""

from __future__ import annotations

import operator
from collections import Counter as TallyCounter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from . import __version__
from .index import ALBUMS, LIBRARIES, TIMELINE, USERS

if TYPE_CHECKING:
    from .services import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

HTTP_REQUEST_SECONDS = Histogram(
    "filmroll_http_request_duration_seconds",
    "HTTP requests: time from the request line to the response headers, by route template",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
LIBRARY_JOB_SECONDS = Histogram(
    "filmroll_library_job_duration_seconds",
    "Library queue jobs (scan, watch, remove-offline), failed or cancelled ones included",
    ["kind"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600),
    registry=REGISTRY,
)
FUSE_OPERATIONS = Counter(
    "filmroll_fuse_operations_total",
    "Requests the FUSE view answered, by operation (lookup, getattr, readdir, open, read, ...)",
    ["operation"],
    registry=REGISTRY,
)
FUSE_ERRORS = Counter(
    "filmroll_fuse_errors_total",
    "Error replies of the FUSE view, by operation and errno name (ENOENT, EROFS, EIO, ...)",
    ["operation", "errno"],
    registry=REGISTRY,
)


@lru_cache(maxsize=1)
def _flag_states() -> tuple[tuple[str, str], ...]:
    """(type, state) for every value of a `timeline` entry's flag byte, decoded by `TimelineEntry` itself."""
    from .assets import TimelineEntry

    states = []
    for flags in range(256):
        entry = TimelineEntry.decode(bytes(40), bytes([flags, 0]) + bytes(8))
        state = "trashed" if entry.is_trashed else "offline" if entry.is_offline else "online"
        states.append(("video" if entry.is_video else "image", state))
    return tuple(states)


class IndexCollector(Collector):
    """Gauges read from the running daemon's index and queues at each scrape (on the trio thread)."""

    def __init__(self, services: Services):
        self.services = services

    def collect(self) -> Iterator[Metric]:
        services = self.services
        info = GaugeMetricFamily("filmroll_info", "Always 1; the version is a label", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        assets = GaugeMetricFamily(
            "filmroll_assets", "Assets by type and state (online, offline, trashed)", labels=["type", "state"]
        )
        libraries = GaugeMetricFamily("filmroll_libraries", "Libraries by type", labels=["type"])
        with services.index.read() as txn:
            with txn.cursor(TIMELINE) as cursor:
                tally = TallyCounter(map(operator.itemgetter(0), cursor.iternext(keys=False, values=True)))
            users = txn.count(USERS)
            albums = txn.count(ALBUMS)
            library_types = TallyCounter(
                library.type for library in txn.values(LIBRARIES) if library.deleted_at is None
            )
        by_state: TallyCounter[tuple[str, str]] = TallyCounter()
        states = _flag_states()
        for flags, count in tally.items():
            by_state[states[flags]] += count
        for asset_type in ("image", "video"):
            for state in ("online", "offline", "trashed"):
                assets.add_metric([asset_type, state], by_state[(asset_type, state)])
        yield assets
        for library_type in ("UPLOAD", "EXTERNAL"):
            libraries.add_metric([library_type.lower()], library_types[library_type])
        yield libraries
        yield GaugeMetricFamily(
            "filmroll_users", "User accounts (deleted ones awaiting removal included)", users
        )
        yield GaugeMetricFamily("filmroll_albums", "Albums", albums)
        yield from self._jobs()
        stat = services.index.env.info()
        page_size = services.index.env.stat()["psize"]
        yield GaugeMetricFamily(
            "filmroll_index_bytes", "Bytes of the LMDB index in use", (stat["last_pgno"] + 1) * page_size
        )
        yield GaugeMetricFamily("filmroll_index_map_bytes", "Size of the LMDB index's map", stat["map_size"])

    def _jobs(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("filmroll_jobs", "Jobs by queue and state", labels=["queue", "state"])
        failed = GaugeMetricFamily(
            "filmroll_jobs_failed", "Jobs that failed for good (until cleared)", labels=["queue"]
        )
        completed = CounterMetricFamily(
            "filmroll_jobs_completed", "Jobs completed since the daemon started", labels=["queue"]
        )
        queues = {"library": self.services.library_jobs, **self.services.media.by_name()}
        for name, queue in queues.items():
            counts = queue.counts()
            for state in ("active", "waiting", "paused"):
                jobs.add_metric([name, state], getattr(counts, state))
            failed.add_metric([name], counts.failed)
            completed.add_metric([name], counts.completed)
        yield from (jobs, failed, completed)


class _Scrape(Collector):
    def __init__(self, collectors: list[Collector]):
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def render(services: Services | None) -> bytes:
    """The text exposition of every metric: the process-wide instruments plus, with `services`, the index's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape([REGISTRY, *([IndexCollector(services)] if services is not None else [])]))
    return generate_latest(registry)
