"""Shared fixtures: real LMDB indexes in tmp_path, the real daemon serving HTTP on 127.0.0.1:0, real HTTP clients.

A test that logs an unexpected ERROR fails (mark it `allow_error_logs` when the error is what it tests).
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

from daemon.check import check_index
from daemon.config import Settings, load_settings
from daemon.index import Index
from daemon.serve import serve
from daemon.services import Services

ADMIN = {"email": "admin@example.com", "password": "admin-password", "name": "Admin"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_error_logs: the test expects ERROR log records")


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
