"""`filmroll serve`: the daemon's one process, one top-level nursery, and its orderly shutdown.

Shape (DESIGN.md §1): resources are opened in order on an `ExitStack`, each registering its cleanup right after it
is created, so teardown runs in reverse: HTTP drains first, the index is synced and closed last. SIGINT/SIGTERM set
one `stop` event; a second signal cancels everything at once.
"""

from __future__ import annotations

import logging
import signal
from contextlib import ExitStack
from dataclasses import dataclass

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .config import Settings
from .index import Index
from .services import Services

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


@dataclass(frozen=True)
class Running:
    """What `serve` reports once it is ready: where it listens, and the services it runs."""

    urls: list[str]
    services: Services


async def serve(
    settings: Settings,
    *,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until `stop` is set (or SIGINT/SIGTERM arrives); `task_status` gets a `Running`."""
    stop = stop if stop is not None else trio.Event()
    with ExitStack() as resources:
        settings.data_path.mkdir(parents=True, exist_ok=True)
        index = Index(settings.index_path, migrate=True)
        resources.callback(index.close)
        services = Services.build(settings, index)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signals, stop, nursery.cancel_scope)
            async with trio.open_nursery() as jobs:
                await jobs.start(services.library_jobs.run)
                await jobs.start(services.media.run)
                await jobs.start(services.watchers.run)
                await jobs.start(services.nightly.run)
                async with trio.open_nursery() as http:
                    urls = await http.start(_serve_http, services, stop)
                    for url in urls:
                        log.info("listening on %s", url, extra={"url": url})
                    _announce_first_run(services, urls[0])
                    task_status.started(Running(urls=urls, services=services))
                # HTTP has drained (`stop` is its shutdown trigger). The job workers stop where they are: every
                # batch they committed is consistent, pending media work is durable, scans are redone by the next.
                jobs.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        log.info("stopped cleanly")
