"""Originals untouched (issue 10), for every e2e test: the originals under the test's temporary folder and under
those of the daemons it talks to are fingerprinted once the test's fixtures are ready (and again by
`start_daemon` and `LiveDaemon.upload` for files made later); after the test and its fixtures, any difference
fails it, naming the file. Tests that change originals on purpose declare them (`originals_changed`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.live_daemon import Originals, install_originals, running_roots


@pytest.fixture(autouse=True)
def originals_untouched(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Originals]:
    guard = Originals(tmp_path_factory.getbasetemp())
    install_originals(guard)
    try:
        yield guard
        changed = guard.differences()
        assert not changed, "originals changed during the test:\n" + "\n".join(changed)
    finally:
        install_originals(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Before the test body (its fixtures have made their files): fingerprint the originals."""
    guard = item.funcargs.get("originals_untouched")
    if isinstance(guard, Originals):
        guard.record(item.funcargs["tmp_path"], *running_roots())
    return (yield)
