"""Fixtures for the FUSE view's tree model: a real LMDB, a user with an external path, and a `Tree` over it."""

from pathlib import Path

import pytest

from daemon.access import Principal
from fsview.tree import Ownership, Tree
from tests.library_helpers import World


@pytest.fixture
def world(services, tmp_path) -> World:
    external = tmp_path / "external"
    external.mkdir()
    user = services.users.create(email="u@example.com", password="pw", name="U", external_path=str(external))
    return World(services, user, Principal(user=user), external, Path(services.settings.data_dir))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tree(services, clock) -> Tree:
    return Tree(services.index, services.settings.data_dir, Ownership(1000, 1000, {"u@example.com": (1234, 55)}),
                clock=clock)  # fmt: skip
