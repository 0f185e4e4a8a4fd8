"""The pyfuse3 `Operations` adapter over `fsview.tree.Tree`: read-only, and nothing but `FUSEError` ever leaves a
handler (one wrapper logs anything else and answers EIO; under trio any other exception would end the mount).

- Every mutating operation answers EROFS (the mount is also `ro`, so the kernel mostly answers first).
- Entries and attributes are cached by the kernel for `CACHE_SECONDS`; `fsview.invalidation` makes it forget
  sooner what changed. Files are immutable per inode (see `fsview.tree`), so their attributes never go stale.
- `open` opens the original read-only and confined (`daemon.originals.open_original`, in a thread: a slow disk
  must not stall the loop) and keeps the descriptor for the handle; `read` is `pread` on it, in the trio task
  (DESIGN.md §10: cheaper than a thread hop). `keep_cache` is set while the original is the same file (device,
  inode, size, mtime) as when this FUSE inode was first opened, so re-reads come from the page cache but a file
  replaced behind the index's back is read afresh.
- Extended attributes: `user.filmroll.id` (asset, album or library id) and, for files whose content hash is known,
  `user.filmroll.checksum` (base64 SHA-1: the API's `checksum`).
"""

from __future__ import annotations

import base64
import errno
import functools
import logging
import os
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pyfuse3
import trio

from daemon import assets as asset_index
from daemon.media_queue import open_located
from daemon.metrics import FUSE_ERRORS, FUSE_OPERATIONS
from daemon.originals import open_original
from daemon.watchers import NETWORK_FILESYSTEMS, filesystem_type

from .tree import ALBUM, LIBRARY, File, Folder, Node, Tree

REMOTE_READ_THREADS = 8
"""Reads of originals on network filesystems run in threads, at most this many at once."""

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
"""Kernel entry and attribute timeout: short, so even a change nobody invalidated shows within a second."""
BLOCK_SIZE = 128 * 1024
XATTR_ID = b"user.filmroll.id"
XATTR_CHECKSUM = b"user.filmroll.checksum"
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])


def handler(function: F) -> F:
    """Let FUSEError through; log anything else (with the traceback) and answer EIO. Counts every request and
    every error reply (`filmroll_fuse_operations_total`, `filmroll_fuse_errors_total` in `daemon.metrics`)."""
    operation = function.__name__
    answered = FUSE_OPERATIONS.labels(operation)

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        answered.inc()
        try:
            return await function(*args, **kwargs)
        except pyfuse3.FUSEError as error:
            FUSE_ERRORS.labels(operation, errno.errorcode.get(error.errno, str(error.errno))).inc()
            raise
        except Exception:
            log.exception("FUSE %s%r failed; answering EIO", operation, args[1:])
            FUSE_ERRORS.labels(operation, "EIO").inc()
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


def _read_only() -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(errno.EROFS)


class Operations(pyfuse3.Operations):
    """Answers the kernel from a `Tree`. Owns the descriptors of open files (closed on release)."""

    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, tree: Tree):
        super().__init__()
        self.tree = tree
        self._open: dict[int, tuple[File, bool]] = {}
        """Open descriptors → (the file, on a network filesystem?)."""
        self._remote_devices: dict[int, bool] = {}
        self._remote_reads = trio.CapacityLimiter(REMOTE_READ_THREADS)
        self._backing: dict[int, tuple[int, int, int, int]] = {}
        """FUSE inode → (st_dev, st_ino, st_size, st_mtime_ns) of the original its cached pages came from."""

    # -- attributes ----------------------------------------------------------------------------------------

    def attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        attributes = pyfuse3.EntryAttributes()
        attributes.st_ino = node.inode
        attributes.generation = 0
        attributes.entry_timeout = CACHE_SECONDS
        attributes.attr_timeout = CACHE_SECONDS
        attributes.st_mode = self.tree.mode_of(node)
        attributes.st_uid, attributes.st_gid = self.tree.ids_of(node)
        attributes.st_rdev = 0
        attributes.st_blksize = BLOCK_SIZE
        attributes.st_mtime_ns = attributes.st_ctime_ns = attributes.st_atime_ns = node.mtime_ns
        if isinstance(node, File):
            attributes.st_nlink = 1
            attributes.st_size = node.size
            attributes.st_blocks = (node.size + 511) // 512
        else:
            attributes.st_nlink = 1  # "unknown": keeps find(1) from guessing subfolder counts from it
            attributes.st_size = 0
            attributes.st_blocks = 0
        return attributes

    def _node(self, inode: int) -> Node:
        node = self.tree.node(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _folder(self, inode: int) -> Folder:
        node = self._node(inode)
        if not isinstance(node, Folder):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return node

    @handler
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        node = self.tree.lookup(parent_inode, name)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        self.tree.remember(node)
        return self.attributes(node)

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        try:
            for inode, count in inode_list:
                self.tree.forget(inode, count)
                if self.tree.node(inode) is None:
                    self._backing.pop(inode, None)
        except Exception:  # forget must not raise at all
            log.exception("FUSE forget failed")

    @handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.attributes(self._node(inode))

    # -- folders -------------------------------------------------------------------------------------------

    @handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        self._folder(inode)
        return inode

    @handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self.tree.listing(self._folder(fh))
        if listing is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if listing.attributes is None:  # built once per listing, then every readdir reuses them
            listing.attributes = [self.attributes(node) for node in listing.nodes]
        attributes, names, cursors = listing.attributes, listing.names, listing.cursors
        first = position = listing.position_after(start_id)
        reply = pyfuse3.readdir_reply
        for position in range(first, len(cursors)):
            if not reply(token, names[position], attributes[position], cursors[position]):
                break
        else:
            position = len(cursors)
        self.tree.remember_many(listing.nodes[first:position])

    @handler
    async def releasedir(self, fh: int) -> None:
        return None

    # -- files ---------------------------------------------------------------------------------------------

    @handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if flags & WRITE_FLAGS:
            raise _read_only()
        node = self._node(inode)
        if not isinstance(node, File):
            raise pyfuse3.FUSEError(errno.EISDIR)
        path = "?"
        try:
            opened = await open_located(self.tree.index, node.asset_id, self._open_original)
            if opened is None:
                raise FileNotFoundError(errno.ENOENT, "the asset is no longer in the index")
            source, (descriptor, facts, remote) = opened
            path = os.fsdecode(source.path)
        except OSError as error:
            path = os.fsdecode(error.filename) if isinstance(error.filename, (str, bytes)) else path
            log.warning(
                "FUSE view: cannot open the original of asset %s (%s): %s",
                node.asset_id, path, error.strerror or error,
                extra={"asset_id": str(node.asset_id), "path": path},
            )  # fmt: skip
            raise pyfuse3.FUSEError(errno.ENOENT if error.errno == errno.ENOENT else errno.EIO) from None
        if facts.st_size != node.size:
            # rewritten in place and not rescanned yet: its bytes must not be served under the old size (a copy
            # would be cut or padded); the rescan gives the file a new inode. (A changed mtime alone is served:
            # the bytes fit, and `keep_cache` below is off for a backing file that is not the one cached.)
            os.close(descriptor)
            log.info(
                "FUSE view: the original of asset %s changed on disk (%d bytes, the index says %d); "
                "it is served again once rescanned", node.asset_id, facts.st_size, node.size,
            )  # fmt: skip
            raise pyfuse3.FUSEError(errno.ESTALE)
        identity = (facts.st_dev, facts.st_ino, facts.st_size, facts.st_mtime_ns)
        keep_cache = self._backing.get(inode) == identity
        self._backing[inode] = identity
        self._open[descriptor] = (node, remote)
        return pyfuse3.FileInfo(fh=descriptor, keep_cache=keep_cache)

    def _open_original(self, path: bytes, root: bytes | None) -> tuple[int, os.stat_result, bool]:
        """(descriptor, its stat, on a network filesystem?): runs in a worker thread."""
        descriptor = open_original(path, root)
        facts = os.fstat(descriptor)
        remote = self._remote_devices.get(facts.st_dev)
        if remote is None:
            remote = filesystem_type(path) in NETWORK_FILESYSTEMS
            self._remote_devices[facts.st_dev] = remote
        return descriptor, facts, remote

    @handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        node, remote = self._open.get(fh, (None, False))
        try:
            if remote:  # a hung server blocks its reader: a thread's, never the loop
                return await trio.to_thread.run_sync(os.pread, fh, size, off, limiter=self._remote_reads)
            return os.pread(fh, size, off)  # local disks: faster than a thread hop (DESIGN §10)
        except OSError as error:
            log.warning(
                "FUSE view: reading the original of asset %s failed: %s",
                node.asset_id if node else "?", error.strerror or error,
            )  # fmt: skip
            raise pyfuse3.FUSEError(errno.EIO) from None

    @handler
    async def release(self, fh: int) -> None:
        _, remote = self._open.pop(fh, (None, False))
        if remote:
            await trio.to_thread.run_sync(os.close, fh, limiter=self._remote_reads)
        else:
            os.close(fh)

    @handler
    async def flush(self, fh: int) -> None:
        return None

    @handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        return None

    # -- extended attributes -------------------------------------------------------------------------------

    def _xattrs(self, node: Node) -> dict[bytes, bytes]:
        if isinstance(node, File):
            values = {XATTR_ID: str(node.asset_id).encode()}
            with self.tree.index.read() as txn:  # the API's `checksum`, so the two always agree
                asset = asset_index.get(txn, node.asset_id)
                if asset is not None:
                    values[XATTR_CHECKSUM] = base64.b64encode(asset_index.Checksums(txn).of(asset))
            return values
        if node.kind in (ALBUM, LIBRARY):
            return {XATTR_ID: str(uuid.UUID(bytes=node.ident[:16])).encode()}
        return {}

    @handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if name not in (XATTR_ID, XATTR_CHECKSUM):  # ls -l asks every file for ACLs and SELinux labels
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        value = self._xattrs(self._node(inode)).get(name)
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value

    @handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return list(self._xattrs(self._node(inode)))

    # -- the rest ------------------------------------------------------------------------------------------

    @handler
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        self._node(inode)
        if mode & os.W_OK:
            raise _read_only()
        return True

    @handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        disk = os.statvfs(self.tree.data_dir)
        data = pyfuse3.StatvfsData()
        data.f_bsize = BLOCK_SIZE
        data.f_frsize = disk.f_frsize
        data.f_blocks = disk.f_blocks
        data.f_bfree = data.f_bavail = 0  # read-only: nothing is free to write
        data.f_files = self.tree.known_count()
        data.f_ffree = data.f_favail = 0
        data.f_namemax = 255
        return data

    @handler
    async def setattr(self, inode, attr, fields, fh, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def mknod(self, parent_inode, name, mode, rdev, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def mkdir(self, parent_inode, name, mode, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def unlink(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def rmdir(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def symlink(self, parent_inode, name, target, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def link(self, inode, new_parent_inode, new_name, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def create(self, parent_inode, name, mode, flags, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def write(self, fh, off, buf):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def setxattr(self, inode, name, value, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def removexattr(self, inode, name, ctx):  # type: ignore[no-untyped-def]
        raise _read_only()

    @handler
    async def readlink(self, inode, ctx):  # type: ignore[no-untyped-def]
        raise pyfuse3.FUSEError(errno.EINVAL)
