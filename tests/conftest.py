"""Shared fixtures: real LMDB indexes in tmp_path, the real daemon serving HTTP on 127.0.0.1:0, real HTTP clients.

A test that logs an unexpected ERROR fails (mark it `allow_error_logs` when the error is what it tests).

Originals untouched (issue 10), for every test that runs `filmroll serve` as a process (tests/e2e/live_daemon.py:
`start_daemon`, `running_daemon`): the originals under the temporary folders of its daemons are fingerprinted when
a daemon starts, before the test body while one runs, and whenever the test hands files over (`LiveDaemon.upload`,
`record_originals`); after the test and its fixtures any difference fails it, naming the file. A test that ran a
daemon but recorded no original fails too, unless marked `no_originals` (it hands the daemon no files). Tests that
change originals on purpose declare them (`originals_changed`); tests in other files that cannot are named in
`GUARD_EXCEPTIONS`, with the reason.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from daemon.access import Principal
from daemon.check import check_index
from daemon.config import Settings, load_settings
from daemon.index import Index
from daemon.serve import serve
from daemon.services import Services
from tests.e2e.live_daemon import Originals, install_originals, running_roots
from tests.library_helpers import World

ADMIN = {"email": "admin@example.com", "password": "admin-password", "name": "Admin"}


GUARD_EXCEPTIONS: dict[str, tuple[str, str]] = {
    # test (any parameters) -> (marker, why): the tests that change originals on purpose, or hand a daemon none,
    # and cannot say so themselves (`originals_changed`, a marker)
    "tests/reliability/test_faults.py::test_files_vanishing_during_a_scan": (
        "originals_deleted", "deletes import-path files while a scan runs: the fault it tests"),
    "tests/reliability/test_crash_trials.py::test_sigkill_at_random_moments_loses_and_leaves_nothing": (
        "originals_deleted", "deletes library files between trials, while the daemon is down"),
    "tests/reliability/test_faults.py::test_an_import_path_unmounted_during_a_scan_goes_offline_and_returns": (
        "no_originals", "its originals are on a tmpfs it mounts and pulls out; mount points are not fingerprinted"),
    "tests/e2e/test_service.py::test_notify_ready_status_watchdog_and_stopping": (
        "no_originals", "hands the daemon no files"),
}  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_error_logs: the test expects ERROR log records")
    config.addinivalue_line("markers", "no_originals: the test runs a daemon but hands it no original files")
    config.addinivalue_line("markers", "originals_deleted: the test deletes originals on purpose")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if exception := GUARD_EXCEPTIONS.get(item.nodeid.split("[")[0]):
            marker, why = exception
            item.add_marker(getattr(pytest.mark, marker)(reason=why))


@pytest.fixture(autouse=True)
def originals_untouched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Originals]:
    guard = Originals(tmp_path_factory.getbasetemp())
    install_originals(guard)
    try:
        yield guard
        deletes = request.node.get_closest_marker("originals_deleted") is not None
        changed = guard.differences(allow_gone=deletes)
        assert not changed, "originals changed during the test:\n" + "\n".join(changed)
        assert not guard.daemons or guard.recorded or request.node.get_closest_marker("no_originals"), (
            "the test ran a daemon but fingerprinted no original: record the files it hands over "
            "(`record_originals`) or mark it `no_originals`"
        )
    finally:
        install_originals(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Before the test body (its fixtures have made their files), with a daemon running: fingerprint the
    originals."""
    guard = item.funcargs.get("originals_untouched")
    if isinstance(guard, Originals) and (roots := running_roots()):
        guard.daemons += 1
        guard.record(*roots, *[path for path in [item.funcargs.get("tmp_path")] if path])
    return (yield)


@pytest.fixture(autouse=True)
def _fail_on_error_logs(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    if request.node.get_closest_marker("allow_error_logs"):
        return
    records = [r for phase in ("setup", "call", "teardown") for r in caplog.get_records(phase)]
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert not errors, "unexpected ERROR logs: " + "; ".join(r.getMessage() for r in errors)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Watching and the nightly job are off here, so a test decides when scans happen; the watcher's tests
    (tests/daemon/test_watch*.py, tests/e2e/test_watch_e2e.py) turn watching on."""
    environ = {"FILMROLL_LIBRARY__WATCH__ENABLED": "false", "FILMROLL_LIBRARY__SCAN__ENABLED": "false"}
    return load_settings(None, {"data_dir": str(tmp_path / "data"), "listen": "127.0.0.1:0"}, environ=environ)


@pytest.fixture
def index(settings: Settings) -> Iterator[Index]:
    with Index(settings.index_path) as opened:
        yield opened
        assert check_index(opened) == [], "index invariants broken by the test"


@pytest.fixture
def services(settings: Settings, index: Index) -> Services:
    return Services.build(settings, index)


@pytest.fixture
def world(services: Services, tmp_path: Path) -> World:
    """A user with an external path, and helpers for real folders and scans (`tests/library_helpers.py`)."""
    external = tmp_path / "external"
    external.mkdir()
    user = services.users.create(email="u@example.com", password="pw", name="U", external_path=str(external))
    return World(services, user, Principal(user=user), external, Path(services.settings.data_dir))


@dataclass
class Daemon:
    url: str
    settings: Settings
    services: Services
    stop: trio.Event

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
async def daemon(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Daemon]:
    """The real daemon (`daemon.serve.serve`) in this trio run, HTTP on a free port of 127.0.0.1."""
    stop = trio.Event()
    running = await nursery.start(functools.partial(serve, settings, stop=stop))
    yield Daemon(url=running.urls[0], settings=settings, services=running.services, stop=stop)
    assert check_index(running.services.index) == [], "index invariants broken by the test"
    stop.set()


@dataclass
class Session:
    client: httpx.AsyncClient
    user: dict
    token: str


async def sign_in(daemon: Daemon, email: str, password: str) -> Session:
    async with daemon.client() as anonymous:
        reply = await anonymous.post("/api/auth/login", json={"email": email, "password": password})
    assert reply.status_code == 201, reply.text
    token = reply.json()["accessToken"]
    client = daemon.client(Authorization=f"Bearer {token}")
    me = (await client.get("/api/users/me")).json()
    return Session(client=client, user=me, token=token)


@pytest.fixture
async def admin(daemon: Daemon) -> AsyncIterator[Session]:
    async with daemon.client() as anonymous:
        reply = await anonymous.post("/api/auth/admin-sign-up", json=ADMIN)
    assert reply.status_code == 201, reply.text
    session = await sign_in(daemon, ADMIN["email"], ADMIN["password"])
    yield session
    await session.client.aclose()


@pytest.fixture
async def user(daemon: Daemon, admin: Session) -> AsyncIterator[Session]:
    """A second, non-admin user created by the admin."""
    body = {"email": "user@example.com", "password": "user-password", "name": "User"}
    reply = await admin.client.post("/api/admin/users", json=body)
    assert reply.status_code == 201, reply.text
    session = await sign_in(daemon, body["email"], body["password"])
    yield session
    await session.client.aclose()
