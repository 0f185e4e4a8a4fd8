"""Cross-process locks (`flock` on files under the data directory): one daemon per data directory, and library work.

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

from .errors import FilmrollError
from .paths import os_error_text

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


DAEMON_LOCK = "locks/daemon.lock"
"""Under the data directory: `flock`ed by the `filmroll serve` using it, for its whole life, with its pid inside."""


class DataDirectoryInUse(FilmrollError):
    """Another `filmroll serve` runs on this data directory (two would sweep each other's work in progress), or
    the data directory cannot be locked at all."""


def hold_data_directory(data_dir: Path) -> int:
    """Take the daemon lock of `data_dir` for this process: the descriptor to keep open (closing it releases the
    lock; so does the kernel, when the process dies). Raises DataDirectoryInUse naming the holder's pid."""
    path = data_dir / DAEMON_LOCK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:  # a `locks/` folder or file made by another user, a read-only data directory
        raise DataDirectoryInUse(f"Cannot lock the data directory: {path}: {os_error_text(error)}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise DataDirectoryInUse(
            f"Another filmroll serve (pid {holder}) is using the data directory {data_dir}; stop it first"
        ) from None
    except OSError as error:  # ENOLCK: a network filesystem without locks (LMDB needs them too)
        os.close(descriptor)
        raise DataDirectoryInUse(f"Cannot lock the data directory: {path}: {os_error_text(error)}") from None
    return descriptor
