"""The mount's lifecycle: a trio task in `serve`'s nursery (`filmroll serve --mount PATH`).

`run_mount` mounts, reports itself started, and runs `pyfuse3.main()` beside the index follower
(`fsview.invalidation.follow_index`) until `stop` is set. Then it ends the FUSE loop and unmounts
(`pyfuse3.close(unmount=True)`). If it ends any other way — an exception, a cancellation without `stop` (a
crash elsewhere in the daemon) — it does *not* unmount: a dead mount answers ENOTCONN, while an unmounted
mount point looks like an empty folder, and an rsync mirror of an empty folder deletes everything (borg's
`fuse.py` makes the same choice). The next start detaches such a dead view itself (`check_mountpoint`).

One pyfuse3 mount per process (pyfuse3 keeps its session in module globals).
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import stat
import subprocess

import pyfuse3
import trio

from daemon.config import Settings
from daemon.errors import FilmrollError
from daemon.index import Index
from daemon.watchers import filesystem_type

from .invalidation import follow_index
from .operations import Operations
from .tree import Ownership, Tree

log = logging.getLogger(__name__)


def ownership_of(settings: Settings) -> Ownership:
    """The `[fsview]` uid/gid mapping, defaulting to the daemon's own ids."""
    fsview = settings.fsview
    uid = fsview.uid if fsview.uid is not None else os.getuid()
    gid = fsview.gid if fsview.gid is not None else os.getgid()
    by_user = {
        (key.casefold() if "@" in key else key): (
            owner.uid,
            owner.gid if owner.gid is not None else _primary_gid(owner.uid, gid),
        )
        for key, owner in fsview.users.items()
    }
    return Ownership(uid, gid, by_user)


def _primary_gid(uid: int, fallback: int) -> int:
    """A mapped user's own primary group, not the shared `[fsview] gid`: a user folder is group-readable, and a
    shared group (say `users`) would let every member read every mapped user's photos."""
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return fallback


def mount_options(settings: Settings) -> set[str]:
    options = set(pyfuse3.default_options) | {"ro", "fsname=filmroll", "subtype=filmroll", "noatime"}
    if settings.fsview.allow_other:
        options.add("allow_other")
    return options


FSTYPE = "fuse.filmroll"


def _dead(path: str) -> bool:
    """A mount whose server is gone (ENOTCONN). `statvfs` always asks the filesystem; `stat` of a mount point
    may be answered from the kernel's attribute cache."""
    try:
        os.statvfs(path)
    except OSError as error:
        return error.errno == errno.ENOTCONN
    return False


def check_mountpoint(path: str) -> str:
    """The absolute mount point; raises FilmrollError when it cannot be mounted on (missing, not a folder,
    already a mount). A dead view left by a crashed filmroll (`fuse.filmroll` answering ENOTCONN) is detached
    first, so `Restart=on-failure` recovers on its own; any other dead mount is refused."""
    path = os.path.abspath(path)
    if _dead(path):
        if filesystem_type(os.fsencode(path)) != FSTYPE:
            raise FilmrollError(
                f"Cannot mount at {path}: a dead mount of another program is there; "
                f"unmount it with `fusermount3 -u {path}`"
            )
        log.warning("a FUSE view left behind by a crash was still mounted at %s: detaching it", path)
        detached = subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True, text=True)
        if detached.returncode != 0:
            raise FilmrollError(
                f"Cannot mount at {path}: a previous mount was left behind (a crash?) and "
                f"`fusermount3 -u -z` failed: {detached.stderr.strip()}"
            )
    try:
        facts = os.stat(path)
    except OSError as error:
        raise FilmrollError(f"Cannot mount at {path}: {error.strerror}") from error
    if not stat.S_ISDIR(facts.st_mode):
        raise FilmrollError(f"Cannot mount at {path}: not a folder")
    if os.path.ismount(path):
        raise FilmrollError(
            f"Cannot mount at {path}: something is already mounted there (another running filmroll?)"
        )
    return path


async def run_mount(
    settings: Settings,
    index: Index,
    mountpoint: str,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Mount the view at `mountpoint` until `stop` is set; reports the absolute mount point when mounted.
    Raises FilmrollError when it cannot mount."""
    path = check_mountpoint(mountpoint)
    tree = Tree(index, settings.data_dir, ownership_of(settings))
    operations = Operations(tree)
    try:
        pyfuse3.init(operations, path, mount_options(settings))
    except RuntimeError as error:
        raise FilmrollError(f"Cannot mount at {path}: {error} (is /dev/fuse usable? see the log)") from error
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_index, tree)
            nursery.start_soon(_terminate_on, stop)
            log.info("FUSE view mounted at %s", path, extra={"mountpoint": path})
            task_status.started(path)
            await pyfuse3.main()  # returns after `terminate`, or when someone unmounted it from outside
            nursery.cancel_scope.cancel()
    finally:
        unmount = stop.is_set()
        pyfuse3.close(unmount=unmount)
        if unmount:
            log.info("FUSE view at %s unmounted", path)
        else:
            log.warning(
                "FUSE view at %s left mounted after an unexpected end (unmount with `fusermount3 -u %s`)",
                path, path,
            )  # fmt: skip


async def _terminate_on(stop: trio.Event) -> None:
    await stop.wait()
    pyfuse3.terminate()
