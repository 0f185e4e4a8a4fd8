"""Fixtures for the FUSE view's tree model: a real LMDB, a user with an external path, and a `Tree` over it."""


import pytest

from fsview.tree import Ownership, Tree


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
