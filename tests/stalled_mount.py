"""A real mount that can hang, as a network share does when its server stops answering.

`python -m tests.stalled_mount MOUNTPOINT` serves a tiny read-only FUSE filesystem (`photos/` and `photos/a.jpg`,
an empty file) with every cache timeout at zero, so each `stat` or path lookup below MOUNTPOINT reaches this
process. `StalledMount` runs it as a child: after `stall()` anything touching the mount blocks, as on a hung NFS
mount, until `resume()` — or until `MAX_STALL` seconds have passed, so a test of code that wrongly waits on the
mount fails instead of hanging forever.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pyfuse3
import trio

ROOT, PHOTOS, PHOTO = pyfuse3.ROOT_INODE, pyfuse3.ROOT_INODE + 1, pyfuse3.ROOT_INODE + 2
CHILDREN = {ROOT: {b"photos": PHOTOS}, PHOTOS: {b"a.jpg": PHOTO}}
MAX_STALL = 10.0  # seconds a stalled call waits before it is answered anyway


class TinyFs(pyfuse3.Operations):
    def __init__(self) -> None:
        super().__init__()
        self.answering = trio.Event()
        self.answering.set()

    def stall(self) -> None:
        if self.answering.is_set():
            self.answering = trio.Event()

    def resume(self) -> None:
        self.answering.set()

    async def _wait_if_stalled(self) -> None:
        with trio.move_on_after(MAX_STALL):
            await self.answering.wait()

    def _attributes(self, inode: int) -> pyfuse3.EntryAttributes:
        attributes = pyfuse3.EntryAttributes()
        attributes.st_ino = inode
        attributes.st_mode = (stat.S_IFREG | 0o444) if inode == PHOTO else (stat.S_IFDIR | 0o555)
        attributes.st_nlink = 1 if inode == PHOTO else 2
        attributes.st_uid, attributes.st_gid = os.getuid(), os.getgid()
        attributes.attr_timeout = attributes.entry_timeout = 0  # nothing cached: every look comes here
        return attributes

    async def getattr(self, inode, ctx=None):
        await self._wait_if_stalled()
        return self._attributes(inode)

    async def lookup(self, parent_inode, name, ctx=None):
        await self._wait_if_stalled()
        child = CHILDREN.get(parent_inode, {}).get(name)
        if child is None:
            raise pyfuse3.FUSEError(2)  # ENOENT
        return self._attributes(child)

    async def opendir(self, inode, ctx):
        await self._wait_if_stalled()
        if inode not in CHILDREN:
            raise pyfuse3.FUSEError(20)  # ENOTDIR
        return inode

    async def readdir(self, fh, start_id, token):
        for position, (name, child) in enumerate(sorted(CHILDREN[fh].items()), start=1):
            if position > start_id and not pyfuse3.readdir_reply(token, name, self._attributes(child), position):
                return

    async def releasedir(self, fh):
        pass


class StalledMount:
    """The filesystem above, mounted at `path` by a child process; a context manager that always unmounts."""

    def __init__(self, path: Path):
        self.path = path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> StalledMount:
        self.path.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([sys.executable, "-m", "tests.stalled_mount", str(self.path)],
                                        cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE)  # fmt: skip
        assert self.process.stdout is not None
        if self.process.stdout.readline() != b"ready\n" or not os.path.ismount(self.path):
            self.__exit__()
            raise RuntimeError(f"the test filesystem did not mount at {self.path}")
        return self

    def stall(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR2)

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        self.resume()
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def serve(filesystem: TinyFs) -> None:
    """Answer FUSE requests; SIGUSR1 stalls them, SIGUSR2 lets them through."""
    with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pyfuse3.main)
            print("ready", flush=True)  # mounted, and the signals are ours
            async for number in signals:
                filesystem.stall() if number == signal.SIGUSR1 else filesystem.resume()


def main(mountpoint: str) -> None:
    filesystem = TinyFs()
    pyfuse3.init(filesystem, mountpoint, {"fsname=filmroll-stall", "ro"})
    try:
        trio.run(serve, filesystem)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main(sys.argv[1])
