"""The one place that tells the kernel to forget (DESIGN.md §6): never called from inside a request handler.

Changes reach the index behind the kernel's back (scans, uploads, album and asset edits over HTTP, watchers,
storage moves, the CLI in another process). Rather than have every service report what it changed, this module
polls the index's last transaction id (LMDB `env.info()`, a few microseconds) every `POLL_SECONDS`. When it moved,
`Tree.refresh` recomputes the listings the view has cached and returns what the kernel must forget; this module
then invalidates those entries (`invalidate_entry_async`, ENOENT ignored: the kernel may never have seen them) and
attributes (`invalidate_inode` in a thread: it may block). New entries need nothing: FUSE readdir is not cached by
the kernel, and lookups of unknown names reach the daemon.

Refreshing costs about as much as computing the cached listings again, so while the index keeps moving (a big
scan) a pass starts at most every `POLL_SECONDS` or three times the last pass's duration, whichever is longer:
the view lags by at most a few passes and never takes more than a quarter of the event loop.
"""

from __future__ import annotations

import errno
import logging
import time

import pyfuse3
import trio

from .tree import Invalidations, Tree

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
BUSY_FACTOR = 3.0


def _invalidate_inodes(inodes: list[int]) -> None:
    for inode in inodes:
        try:
            pyfuse3.invalidate_inode(inode, attr_only=True)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ENOSYS):
                log.warning("FUSE view: invalidating inode %d failed: %s", inode, error)


async def apply(changes: Invalidations) -> None:
    """Make the kernel forget `changes` (entries asynchronously, attributes in a worker thread)."""
    for parent, name in changes.entries:
        pyfuse3.invalidate_entry_async(parent, name, ignore_enoent=True)
    if changes.attributes:
        await trio.to_thread.run_sync(_invalidate_inodes, list(changes.attributes))


async def follow_index(tree: Tree, *, poll_seconds: float = POLL_SECONDS) -> None:
    """Run until cancelled: refresh the tree whenever the index moved, and apply what changed."""
    while True:
        await trio.sleep(poll_seconds)
        started = time.perf_counter()
        changes = Invalidations()
        try:
            for _ in tree.refresh_steps(changes):
                await trio.lowlevel.checkpoint()  # between listings: HTTP, FUSE and the watchdog run
        except Exception:  # a bad record must not end live updates; the next change tries again
            log.exception("FUSE view: refreshing the tree failed")
            continue
        took = time.perf_counter() - started
        if changes:
            log.debug(
                "FUSE view: refreshed in %.3f s; forgetting %d entries, %d attributes",
                took, len(changes.entries), len(changes.attributes),
            )  # fmt: skip
            await apply(changes)
        await trio.sleep(max(0.0, took * BUSY_FACTOR - poll_seconds))
