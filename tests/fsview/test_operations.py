"""The pyfuse3 adapter's rules that need no mount: the handler wrapper, EROFS, and the `[fsview]` settings."""

from __future__ import annotations

import errno

import pyfuse3
import pytest

from daemon.config import load_settings
from fsview.mount import mount_options, ownership_of
from fsview.operations import Operations, handler
from fsview.tree import Tree


@pytest.mark.allow_error_logs
async def test_anything_but_fuse_error_becomes_a_logged_eio(caplog):
    @handler
    async def broken(self, inode):
        raise ValueError("a bug")

    @handler
    async def refusing(self, inode):
        raise pyfuse3.FUSEError(errno.ENOENT)

    with pytest.raises(pyfuse3.FUSEError) as raised:
        await broken(None, 5)
    assert raised.value.errno == errno.EIO
    assert any("broken" in record.getMessage() and record.exc_info for record in caplog.records)
    with pytest.raises(pyfuse3.FUSEError) as raised:
        await refusing(None, 5)
    assert raised.value.errno == errno.ENOENT


async def test_mutating_operations_answer_erofs(tree: Tree):
    operations = Operations(tree)
    calls = [
        operations.setattr(1, None, None, None, None),
        operations.mknod(1, b"x", 0o644, 0, None),
        operations.mkdir(1, b"x", 0o755, None),
        operations.unlink(1, b"x", None),
        operations.rmdir(1, b"x", None),
        operations.symlink(1, b"x", b"y", None),
        operations.rename(1, b"x", 1, b"y", 0, None),
        operations.link(2, 1, b"x", None),
        operations.create(1, b"x", 0o644, 0, None),
        operations.write(3, 0, b"x"),
        operations.setxattr(1, b"user.x", b"1", None),
        operations.removexattr(1, b"user.x", None),
        operations.open(1, 1, None),  # O_WRONLY
    ]
    for call in calls:
        with pytest.raises(pyfuse3.FUSEError) as raised:
            await call
        assert raised.value.errno == errno.EROFS


def test_fsview_settings_map_users_to_unix_ids():
    fsview = {
        "allow_other": True,
        "uid": 50,
        "gid": 60,
        "users": {"Alice@Example.com": {"uid": 54321}, "bob": {"uid": 1001, "gid": 7}, "root": {"uid": 0}},
    }
    settings = load_settings(None, {"data_dir": "/tmp/x", "fsview": fsview}, environ={})
    ownership = ownership_of(settings)
    assert (ownership.uid, ownership.gid) == (50, 60)
    # without a gid: the user's own primary group (root's is 0), else the shared one (no such user here)
    assert ownership.by_user == {"alice@example.com": (54321, 60), "bob": (1001, 7), "root": (0, 0)}
    assert "allow_other" in mount_options(settings) and "ro" in mount_options(settings)
    assert "allow_other" not in mount_options(load_settings(None, {"data_dir": "/tmp/x"}, environ={}))
