"""`filmroll serve`: the daemon's one process, one top-level nursery, and its orderly shutdown.

Shape (DESIGN.md §1): resources are opened in order on an `ExitStack`, each registering its cleanup right after it
is created, so teardown runs in reverse: HTTP drains first, the index is synced and closed last. SIGINT/SIGTERM set
one `stop` event; a second signal cancels everything at once.

Under systemd (`Type=notify`, `daemon/systemd_notify.py`): `STATUS=` lines say what it is doing from the start,
`WATCHDOG=1` pings come from this trio loop for as long as it runs, `READY=1` goes out right after
`task_status.started(...)` (so only once the index is open, the job queues run, HTTP listens and — when configured —
the FUSE view is mounted: whatever `serve` starts must be started before that line), and `STOPPING=1` as soon as
`stop` is set.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from contextlib import ExitStack
from dataclasses import dataclass

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from . import assets as asset_index
from . import exiftool, storage_moves
from .config import Settings
from .derived import DerivedFiles
from .index import Index
from .locks import hold_data_directory
from .services import Services
from .systemd_notify import Notifier, StatusRefresh, watch

log = logging.getLogger("filmroll")

SHUTDOWN_GRACE_SECONDS = 5.0


async def _stop_on_signals(stop: trio.Event, everything: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not stop.is_set():
                log.info("received %s: shutting down", signal.Signals(signum).name)
                stop.set()
            else:
                log.warning("received %s again: stopping now", signal.Signals(signum).name)
                everything.cancel()


async def _serve_http(services: Services, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    from api.app import create_app  # the adapter imports the daemon, never the other way round at import time

    host, port = services.settings.listen_address()
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = SHUTDOWN_GRACE_SECONDS
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    app = create_app(services)
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)


def _announce_first_run(services: Services, url: str) -> None:
    if services.users.count() == 0:
        log.warning(
            "No users yet. Create the admin account with\n"
            "    .venv/bin/filmroll user create --admin --email you@example.com --name 'Your Name'\n"
            "or by POSTing {email, password, name} to %s/api/auth/admin-sign-up (Immich's first-run sign-up).",
            url,
        )


def service_status(services: Services) -> str:
    """One line for systemd's `STATUS=`: what runs in the library queue and how much media work waits
    (`scanning library Photos: 12,345 files, 40%; 3,210 jobs queued (metadataExtraction 1,210, …)`). Cheap:
    in-memory state and table counts."""
    parts = []
    activity = services.library_jobs.describe_active()
    if activity is not None:
        parts.append(activity)
    queued = {}
    for name, queue in services.media.by_name().items():
        counts = queue.counts()
        if counts.active + counts.waiting + counts.paused:
            queued[name] = counts.active + counts.waiting + counts.paused
    library_waiting = services.library_jobs.counts().waiting
    if library_waiting:
        queued["library"] = library_waiting
    if queued:
        detail = ", ".join(f"{name} {count:,}" for name, count in queued.items())
        parts.append(f"{sum(queued.values()):,} jobs queued ({detail})")
    return "; ".join(parts) if parts else "idle"


async def _announce_stopping(stop: trio.Event, notifier: Notifier) -> None:
    await stop.wait()
    notifier.stopping("stopping: draining HTTP, then stopping the jobs")


async def _sweep_after_a_crash(services: Services) -> None:
    """What a kill (SIGKILL, power loss) of the previous run left behind goes, before any job or request runs:
    none of this daemon's uploads, moves or renders is under way yet, so whatever their journals and notes name is
    a dead one's (work of other live processes is flock-held and stays)."""
    settings = services.settings
    await services.uploads.sweep_incoming()  # uploads cut short
    removed = await trio.to_thread.run_sync(storage_moves.sweep_interrupted_moves, settings.data_dir)
    if removed:
        log.info("removed %d temp file(s) of storage moves cut short while copying", removed)
    # Renders killed after their version switch (or before it): every thumbnail and preview but the current go.
    derived = DerivedFiles(settings.data_dir, settings.image)
    interrupted = await trio.to_thread.run_sync(derived.interrupted_renders)
    if interrupted:
        with services.index.read() as txn:
            versions = {}
            for asset_id in interrupted:
                asset = asset_index.get(txn, asset_id)
                versions[asset_id] = None if asset is None else asset.thumbnail_version
        await trio.to_thread.run_sync(derived.finish_interrupted, versions)
        log.info("cleaned up after %d thumbnail render(s) cut short", len(interrupted))
    # exiftool link folders of metadata workers killed outright (here or in any daemon of this user): unlocked.
    removed = await trio.to_thread.run_sync(exiftool.sweep_link_directories)
    if removed:
        log.info("removed %d link folder(s) of killed metadata workers", removed)


@dataclass(frozen=True)
class Running:
    """What `serve` reports once it is ready: where it listens, and the services it runs."""

    urls: list[str]
    services: Services


async def serve(
    settings: Settings,
    *,
    stop: trio.Event | None = None,
    notifier: Notifier | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until `stop` is set (or SIGINT/SIGTERM arrives); `task_status` gets a `Running`.
    `notifier` speaks systemd's notify protocol (`Notifier.from_environment()`; by default nobody listens); `serve`
    closes it."""
    stop = stop if stop is not None else trio.Event()
    notifier = notifier if notifier is not None else Notifier()
    ready = False

    def status_line() -> str:
        if stop.is_set():
            return "stopping: draining HTTP, then stopping the jobs"
        return service_status(services) if ready else "starting"

    with ExitStack() as resources:
        resources.callback(notifier.close)
        notifier.status(f"opening the index in {settings.data_dir}")
        notifier.watchdog()  # the pings start with the event loop; this covers opening (and migrating) the index
        settings.data_path.mkdir(parents=True, exist_ok=True)
        resources.callback(os.close, hold_data_directory(settings.data_path))  # before anything is opened or swept
        index = Index(settings.index_path, migrate=True)
        resources.callback(index.close)
        services = Services.build(settings, index)
        await _sweep_after_a_crash(services)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signals, stop, nursery.cancel_scope)
            refresh = StatusRefresh()
            services.library_jobs.on_activity = refresh  # a scan's start and end show at once
            # watchdog pings until the very end
            nursery.start_soon(functools.partial(watch, notifier, status_line, refresh=refresh))
            nursery.start_soon(_announce_stopping, stop, notifier)
            async with trio.open_nursery() as jobs:
                await jobs.start(services.library_jobs.run)
                await jobs.start(services.media.run)
                await jobs.start(services.watchers.run)
                await jobs.start(services.nightly.run)
                if settings.mount:  # the read-only FUSE view; unmounts on `stop`, stays mounted on a crash
                    from fsview.mount import run_mount  # adapters import the daemon, not the other way round

                    await jobs.start(run_mount, settings, index, settings.mount, stop)
                async with trio.open_nursery() as http:
                    urls = await http.start(_serve_http, services, stop)
                    for url in urls:
                        log.info("listening on %s", url, extra={"url": url})
                    _announce_first_run(services, urls[0])
                    task_status.started(Running(urls=urls, services=services))
                    # Readiness contract: everything above is up (and anything added to `serve` must start before
                    # `task_status.started`), so systemd may start what depends on us now.
                    ready = True
                    mounted = f"; albums mounted at {settings.mount}" if settings.mount else ""
                    notifier.ready(f"ready: listening on {', '.join(urls)}{mounted}")
                # HTTP has drained (`stop` is its shutdown trigger). The job workers stop where they are: every
                # batch they committed is consistent, pending media work is durable, scans are redone by the next.
                jobs.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        log.info("stopped cleanly")
