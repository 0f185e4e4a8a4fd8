"""Polling for libraries inotify cannot watch (network drives): cheap passes that skip unchanged folders.

A folder's mtime changes whenever an entry in it is added, removed or renamed — also on NFS and SMB, and also when
a file is replaced by an atomic rename (how exiftool and most editors save). So a pass `stat`s each folder and
lists only the folders whose mtime changed; in those it re-examines every file (a targeted scan decides what
changed) and any sub-folder that appeared or vanished. A pass over an unchanged library costs one `stat` per
folder, not per file, and memory holds only names (no sizes, no times).

What folder mtimes cannot show is a file rewritten in place; every `FULL_PASS_EVERY`-th pass is therefore a full
modified-files rescan (and the nightly job is one too). Symlinked folders are not followed by a folder pass (the
full pass follows them, with the crawl's containment rules).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .crawl import ScopeEntry, media_or_sidecar_name
from .exclusions import ExclusionMatcher

FULL_PASS_EVERY = 30  # at the default 10 s interval: every 5 minutes
RACY_NS = 2_000_000_000  # a folder changed this recently may change again within its mtime's granularity


@dataclass(frozen=True, slots=True)
class _Folder:
    identity: tuple[int, int, int]  # (device, inode, mtime_ns)
    subfolders: frozenset[bytes]
    files: frozenset[bytes]


class FolderPoller:
    """Call `poll()` (blocking: run it in a thread) once per pass. The first pass records; later passes return
    the scope entries to re-examine."""

    def __init__(self, roots: list[bytes], exclusions: ExclusionMatcher):
        self.roots = roots
        self.exclusions = exclusions
        self.folders: dict[bytes, _Folder] | None = None

    def _list(self, folder: bytes, identity: tuple[int, int, int]) -> _Folder:
        subfolders, files = set(), set()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = os.fsencode(entry.name)
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)  # linked folders: the full pass
                    except OSError:
                        continue
                    if is_dir:
                        if not name.startswith(b".") and not (
                            self.exclusions and self.exclusions.excludes_directory(folder + b"/" + name, name)
                        ):
                            subfolders.add(name)
                    elif media_or_sidecar_name(name):
                        files.add(name)
        except OSError:
            pass  # unreadable: the targeted scan reports it
        return _Folder(identity, frozenset(subfolders), frozenset(files))

    def poll(self) -> list[ScopeEntry]:
        before = self.folders
        started = time.time_ns()
        now: dict[bytes, _Folder] = {}
        changes: list[ScopeEntry] = []
        visited: set[tuple[int, int]] = set()
        stack = list(self.roots)
        while stack:
            folder = stack.pop()
            try:
                status = os.stat(folder)
            except OSError:
                continue  # gone: found below, as a folder that was known and is not now
            if (status.st_dev, status.st_ino) in visited:
                continue  # a link back up the tree
            visited.add((status.st_dev, status.st_ino))
            identity = (status.st_dev, status.st_ino, status.st_mtime_ns)
            if (
                started - status.st_mtime_ns < RACY_NS
            ):  # listed again next pass (coarse mtimes, like git's racy-clean)
                identity = (status.st_dev, status.st_ino, -1)
            previous = None if before is None else before.get(folder)
            if previous is not None and previous.identity == identity and identity[2] != -1:
                current = previous
            else:
                current = self._list(folder, identity)
                if before is not None and previous is None:
                    changes.append(ScopeEntry(folder, True))  # a new folder: everything below it
                elif previous is not None:
                    for name in previous.files | current.files:
                        changes.append(ScopeEntry(folder + b"/" + name, False))
            now[folder] = current
            stack.extend(folder + b"/" + name for name in current.subfolders)
        if before is not None:
            changes.extend(ScopeEntry(folder, True) for folder in before.keys() - now.keys())
        self.folders = now
        return changes
