"""Cross-process locks on library work (`flock` on files under the data directory).

A scan, a remove-offline or a deletion of one library runs in one place at a time: in the daemon, or in a
`filmroll library …` command beside it. The kernel drops a lock when its holder dies, so a killed CLI never leaves
a library locked.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

POLL_SECONDS = 0.2


def _lock_path(data_dir: str, library_id: uuid.UUID) -> Path:
    folder = Path(data_dir) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"library-{library_id}.lock"


@asynccontextmanager
async def library_lock(data_dir: str, library_id: uuid.UUID) -> AsyncIterator[None]:
    """Hold the library's lock for the block; waits (without blocking the event loop) while another holds it."""
    descriptor = os.open(_lock_path(data_dir, library_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await trio.sleep(POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
