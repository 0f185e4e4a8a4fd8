"""Opening originals: read-only, and only after proving what was opened (`libraries.md` §3.11).

Every reader of an original's bytes — content hashing, metadata, thumbnails, downloads, FUSE reads — goes through
`open_original`, so none can be led outside the owner's external path by a symlink swapped in at the last moment.
"""

from __future__ import annotations

import errno
import hashlib
import os

from .paths import ASSET_OUTSIDE_MESSAGE, is_within, resolve


class NotConfined(OSError):
    """The file resolved outside the place it must stay in (or is not a regular file)."""


def open_original(path: bytes, root: bytes | None) -> int:
    """Open an original read-only and return the descriptor, after proving what was opened (§3.11).

    The check happens on the open descriptor (`/proc/self/fd/N`), which closes the check-then-open race: a
    symlink swapped in between cannot redirect the read. `root` None means no confinement (upload originals under
    the data directory, whose paths filmroll made). FIFOs and devices are refused without blocking (O_NONBLOCK).
    Raises OSError (NotConfined for a file outside `root` or not regular).
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        if not os.path.stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotConfined(errno.EINVAL, "Not a regular file", os.fsdecode(path))
        if root is not None and not is_within(
            os.readlink(f"/proc/self/fd/{descriptor}".encode()), resolve(root)
        ):
            raise NotConfined(errno.EACCES, ASSET_OUTSIDE_MESSAGE, os.fsdecode(path))
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def content_sha1(path: bytes, root: bytes | None) -> bytes:
    """SHA-1 of an original's content (blocking: run it in a thread). Raises OSError like `open_original`."""
    digest = hashlib.sha1(usedforsecurity=False)
    with open(open_original(path, root), "rb", buffering=0, closefd=True) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.digest()
