"""Folders whose entries survive a power loss: `mkdir -p` with every new entry fsynced, and fsyncing a folder.

A renamed or created file is durable only once its folder is fsynced, and that folder only once its own entry is
fsynced into its parent, and so on up. Uploads (`uploads.py`) and storage moves (`storage_moves.py`) both land
files this way. Both functions block: call them in a thread (`trio.to_thread.run_sync`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def make_folders(folder: Path) -> None:
    """`mkdir -p`, each new folder's entry fsynced into its parent. A folder another process makes meanwhile is
    fine. Raises OSError."""
    missing: list[Path] = []
    probe = folder
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            pass  # made meanwhile (a twin upload, another mover): its entry is fsynced below all the same
        fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make the entries of `folder` durable. A filesystem that cannot fsync a folder (EINVAL) is left as durable
    as it makes them. Raises OSError."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno != errno.EINVAL:  # some filesystems cannot fsync a folder; nothing more to do there
            raise
    finally:
        os.close(descriptor)
