"""One `filmroll serve` per data directory (`locks.hold_data_directory`); the two-process case is in
tests/e2e/test_daemon_process.py."""

import os

import pytest

from daemon.locks import DAEMON_LOCK, DataDirectoryInUse, hold_data_directory

pytestmark = pytest.mark.no_originals


def test_the_lock_holds_the_pid_and_goes_when_closed(tmp_path):
    descriptor = hold_data_directory(tmp_path)
    assert (tmp_path / DAEMON_LOCK).read_text() == f"{os.getpid()}\n"
    with pytest.raises(DataDirectoryInUse, match=f"pid {os.getpid()}"):  # flock: per open file, even in one process
        hold_data_directory(tmp_path)
    os.close(descriptor)
    os.close(hold_data_directory(tmp_path))  # released: taken again


def test_a_lock_that_cannot_be_made_is_a_clear_error(tmp_path):
    (tmp_path / DAEMON_LOCK).mkdir(parents=True)  # e.g. left by hand; root could not be refused by permissions
    with pytest.raises(DataDirectoryInUse) as refused:
        hold_data_directory(tmp_path)
    assert refused.value.message == f"Cannot lock the data directory: {tmp_path / DAEMON_LOCK}: EISDIR: Is a directory"
