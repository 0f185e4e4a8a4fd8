"""`filmroll backup` writes only into an empty folder or its own earlier backup, never into somebody's photos."""

from __future__ import annotations

import pytest

from daemon.backup import MARKER, backup
from daemon.errors import InvalidInput
from daemon.index import Index


def test_backup_refuses_a_folder_that_is_not_its_own(settings, tmp_path):
    Index(settings.index_path).close()
    photos = tmp_path / "immich-data"
    (photos / "upload").mkdir(parents=True)
    (photos / "upload" / "precious.jpg").write_bytes(b"not ours")
    with pytest.raises(InvalidInput, match="not empty and holds no earlier filmroll backup"):
        backup(settings, photos)
    assert (photos / "upload" / "precious.jpg").read_bytes() == b"not ours"

    fresh = tmp_path / "backup"
    backup(settings, fresh)
    assert (fresh / MARKER).exists() and (fresh / "index").is_dir()
    backup(settings, fresh)  # its own earlier backup: updated in place
