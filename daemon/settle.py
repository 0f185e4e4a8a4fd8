"""Debouncing watcher events (`libraries.md` §11.4): a path is handed on once it has settled.

A path settles when it has had no event for `settle` seconds and then either its last event said the file is
complete (closed after writing, moved in, deleted) or its size and mtime are the same at two looks one settle time
apart — the only sign a file has finished arriving when its writer never closes it (some SMB/NFS clients). A burst
of events on one path is one hand-off. Time is trio's clock, so tests drive it with `trio.testing.MockClock`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

from .crawl import ScopeEntry

SETTLE_SECONDS = 0.3

Signature = tuple[int, int] | None  # (size, mtime_ns) of a file, None when it is missing


def signature(path: bytes) -> Signature:
    try:
        status = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


class Settler:
    def __init__(self, settle: float = SETTLE_SECONDS, look: Callable[[bytes], Signature] = signature):
        self.settle = settle
        self.look = look
        self._due: dict[ScopeEntry, float] = {}
        self._complete: dict[ScopeEntry, bool] = {}
        self._seen: dict[ScopeEntry, Signature] = {}
        self._arrived = trio.Event()

    def __len__(self) -> int:
        return len(self._due)

    def touch(self, entry: ScopeEntry, *, complete: bool) -> None:
        """An event on `entry`; `complete` when the event says the file is whole (or gone)."""
        self._due[entry] = trio.current_time() + self.settle
        self._complete[entry] = complete
        self._arrived.set()

    def _look_all(self, entries: list[ScopeEntry]) -> list[Signature]:
        return [self.look(entry.path) for entry in entries]

    async def settled(self) -> list[ScopeEntry]:
        """Wait until at least one path has settled, and return every path that has."""
        while True:
            if not self._due:
                self._arrived = trio.Event()
                await self._arrived.wait()
                continue
            await trio.sleep_until(min(self._due.values()))
            now = trio.current_time()
            due = [entry for entry, when in self._due.items() if when <= now]
            to_look = [entry for entry in due if not entry.is_folder and not self._complete[entry]]
            looks = await trio.to_thread.run_sync(self._look_all, to_look) if to_look else []
            ready = [entry for entry in due if entry.is_folder or self._complete[entry]]
            for entry, seen in zip(to_look, looks, strict=True):
                if self._due.get(entry, now + 1) > now:
                    continue  # a new event arrived while we looked
                if seen is None or self._seen.get(entry, ()) == seen:
                    ready.append(entry)
                else:  # still changing (or first look): look again one settle time later
                    self._seen[entry] = seen
                    self._due[entry] = now + self.settle
            for entry in ready:
                if self._due.get(entry, now + 1) <= now:
                    del self._due[entry], self._complete[entry]
                    self._seen.pop(entry, None)
            ready = [entry for entry in ready if entry not in self._due]
            if ready:
                return ready
