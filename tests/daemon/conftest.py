"""Fixtures for the daemon tier."""

from pathlib import Path

import pytest

from daemon.access import Principal
from tests.library_helpers import World


@pytest.fixture
def world(services, tmp_path) -> World:
    external = tmp_path / "external"
    external.mkdir()
    user = services.users.create(email="u@example.com", password="pw", name="U", external_path=str(external))
    return World(services, user, Principal(user=user), external, Path(services.settings.data_dir))
