"""One library's inotify watches: a watch per folder the crawl would enter, kept in step as folders come and go.

`InotifyTree` owns one inotify descriptor (closing it drops every watch) and the maps between watch descriptors
and folder paths (exact bytes). `changes()` turns raw events into what the watcher acts on: paths to re-examine,
folders to start or stop watching, roots that vanished, and queue overflows. Blocking calls (`add`) run in a thread.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio
from inotify_simple import INotify
from inotify_simple import flags as f

from .crawl import ScopeEntry, media_or_sidecar_name

MASK = (
    f.CLOSE_WRITE | f.CREATE | f.DELETE | f.MOVED_FROM | f.MOVED_TO | f.ATTRIB | f.MODIFY
    | f.DELETE_SELF | f.MOVE_SELF | f.ONLYDIR
)  # fmt: skip
COMPLETE = f.CLOSE_WRITE | f.MOVED_TO | f.MOVED_FROM | f.DELETE


class WatchLimitReached(Exception):
    """inotify ran out of watches (`fs.inotify.max_user_watches`, ENOSPC) or instances."""


@dataclass
class Changes:
    touched: list[tuple[ScopeEntry, bool]] = field(default_factory=list)  # (entry, complete)
    new_folders: list[bytes] = field(default_factory=list)
    renames: dict[bytes, bytes] = field(
        default_factory=dict
    )  # new path -> old path (paired by inotify's cookie)
    roots_changed: bool = False
    overflow: bool = False


class InotifyTree:
    def __init__(self, roots: list[bytes]):
        try:
            self.inotify = INotify(nonblocking=True)
        except OSError as error:
            if error.errno == errno.EMFILE:
                raise WatchLimitReached("no inotify instance left (fs.inotify.max_user_instances)") from error
            raise
        self.roots = set(roots)
        self.folder_of: dict[int, bytes] = {}
        self.watch_of: dict[bytes, int] = {}

    def fileno(self) -> int:
        return self.inotify.fileno()

    def close(self) -> None:
        trio.lowlevel.notify_closing(self.inotify.fileno())
        self.inotify.close()

    def add(self, folders: Iterable[bytes]) -> int:
        """Watch each folder (one quick syscall each). Raises WatchLimitReached on ENOSPC; a folder that
        vanished is skipped."""
        added = 0
        for folder in folders:
            try:
                wd = self.inotify.add_watch(folder, MASK)
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    raise WatchLimitReached(
                        f"inotify watch limit reached at {os.fsdecode(folder)} (fs.inotify.max_user_watches)"
                    ) from error
                continue
            if wd not in self.folder_of:  # the same folder reached twice (a link) keeps its first path
                self.folder_of[wd] = folder
                self.watch_of[folder] = wd
                added += 1
        return added

    def drop_below(self, folder: bytes) -> None:
        """Stop watching `folder` and everything below it."""
        prefix = folder + b"/"
        for path in [p for p in self.watch_of if p == folder or p.startswith(prefix)]:
            wd = self.watch_of.pop(path)
            del self.folder_of[wd]
            try:
                self.inotify.rm_watch(wd)
            except OSError:
                pass  # already gone with its folder

    def changes(self) -> Changes:
        """Read and interpret every pending event (never blocks)."""
        changes = Changes()
        moved_from: dict[int, bytes] = {}
        for event in self.inotify.read(timeout=0):
            mask = event.mask
            if mask & f.Q_OVERFLOW:
                changes.overflow = True
                continue
            folder = self.folder_of.get(event.wd)
            if folder is None:
                continue
            if mask & f.IGNORED:
                self.watch_of.pop(folder, None)
                del self.folder_of[event.wd]
                changes.roots_changed |= folder in self.roots
                continue
            if mask & (f.DELETE_SELF | f.MOVE_SELF | f.UNMOUNT):
                changes.roots_changed |= folder in self.roots
                continue  # any other folder is reported by its parent, by name
            if not event.name:
                continue  # an event on the watched folder itself (e.g. IN_ATTRIB): its parent reports it too
            path = folder + b"/" + os.fsencode(event.name)
            if mask & f.ISDIR:
                if mask & (f.DELETE | f.MOVED_FROM):
                    self.drop_below(path)
                if mask & (f.CREATE | f.MOVED_TO):
                    changes.new_folders.append(path)
                changes.touched.append((ScopeEntry(path, True), True))
            elif media_or_sidecar_name(os.fsencode(event.name)):
                changes.touched.append((ScopeEntry(path, False), bool(mask & COMPLETE)))
                if mask & f.MOVED_FROM:
                    moved_from[event.cookie] = path
                elif mask & f.MOVED_TO and event.cookie in moved_from:
                    changes.renames[path] = moved_from.pop(event.cookie)
        return changes
