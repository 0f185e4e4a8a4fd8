"""The crawl: which media files exist under a library's import paths (`libraries.md` §4). Filesystem only.

`Crawler.files()` yields `FoundFile`s in **byte-sorted order of their full path**, the same order as the index's
`asset_by_path` keys, so the scan can merge-join the two streams with constant memory. The trick: within a
folder, a sub-folder sorts as `name + b"/"`, so all of `b/…` lands after `b.jpg`, exactly where its paths sort.

Rules: media extensions only (any case); hidden entries skipped (except on the way to an import path); exclusions;
regular files only (FIFOs, sockets, devices are never opened); symlinks followed only when their target resolves
inside the external path and outside the data directory; each folder visited once per crawl (device, inode), which
ends loops; unreadable folders are skipped with a warning. A crawl never reads file contents; it `stat`s media files
and existing sidecars.

Blocking: run it in a worker thread (`daemon.scan` does). It owns no resources between calls.
"""

from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .exclusions import ExclusionMatcher
from .media_types import IMAGE_EXTENSIONS, RAW_EXTENSIONS, VIDEO_EXTENSIONS
from .paths import ASSET_OUTSIDE_MESSAGE, is_within, os_error_text, resolve

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = frozenset(e.encode() for e in IMAGE_EXTENSIONS | RAW_EXTENSIONS | VIDEO_EXTENSIONS)
VIDEO_EXTENSIONS_BYTES = frozenset(e.encode() for e in VIDEO_EXTENSIONS)


def media_extension(name: bytes) -> bytes | None:
    """The lower-case extension of a media file name, or None when the name is not media."""
    dot = name.rfind(b".")
    if dot <= 0:
        return None
    extension = name[dot:].lower()
    return extension if extension in MEDIA_EXTENSIONS else None


@dataclass(frozen=True, slots=True)
class FoundFile:
    path: bytes
    size: int
    mtime_ns: int
    is_video: bool
    sidecar_path: bytes | None = None
    sidecar_mtime_ns: int | None = None


@dataclass
class CrawlReport:
    """What the crawl skipped, by reason, and its warnings (the first `MAX_WARNINGS` kept verbatim)."""

    skipped: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    folders: int = 0

    MAX_WARNINGS = 200

    def warn(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < self.MAX_WARNINGS:
            self.warnings.append(message)
        log.warning("%s", message)


def _show(path: bytes) -> str:
    return os.fsdecode(path)


class Crawler:
    """Crawls `roots` (valid, lexically normalised, absolute import paths) for one library."""

    def __init__(
        self,
        roots: list[bytes],
        *,
        external_path: bytes,
        data_dir: bytes,
        exclusions: ExclusionMatcher,
        report: CrawlReport | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ):
        self.external_path = resolve(external_path)
        self.data_dir = resolve(data_dir)
        self.exclusions = exclusions
        self.report = report or CrawlReport()
        self.should_stop = should_stop
        # A root below another root is reached through the outer one (nothing is crawled twice, order stays sorted).
        ordered = sorted(set(roots), key=lambda root: root.rstrip(b"/") + b"/")
        self.roots: list[bytes] = []
        for root in ordered:
            if not any(is_within(root, outer) for outer in self.roots):
                self.roots.append(root)
        # Hidden folders on the way to an import path are entered anyway (§4.3: the import path may be hidden).
        self._root_ancestry = {
            root[:i] for root in roots for i in range(1, len(root) + 1) if root[i : i + 1] in (b"/", b"")
        }
        self._visited: set[tuple[int, int]] = set()

    # -- the walk -----------------------------------------------------------------------------------------

    def files(self) -> Iterator[FoundFile]:
        for root in self.roots:
            try:
                status = os.stat(root)
            except OSError as error:
                self.report.warn(f"Skipping import path {_show(root)}: {os_error_text(error)}")
                continue
            if self._enter(status):
                yield from self._walk(root)

    def _enter(self, status: os.stat_result) -> bool:
        identity = (status.st_dev, status.st_ino)
        if identity in self._visited:
            return False
        self._visited.add(identity)
        return True

    def _walk(self, root: bytes) -> Iterator[FoundFile]:
        stack = [iter(self._list(root))]
        while stack:
            if self.should_stop():
                return
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            key, path, is_dir, is_link, sidecars = entry
            if is_dir:
                children = self._descend(path, key[:-1], is_link)
                if children is not None:
                    stack.append(iter(children))
            else:
                found = self._file(path, key, is_link, sidecars)
                if found is not None:
                    yield found

    def _list(self, folder: bytes) -> list[tuple[bytes, bytes, bool, bool, dict[bytes, bytes]]]:
        """The folder's candidate entries as (sort key, path, is_dir, is_link, sidecars), sorted by key."""
        self.report.folders += 1
        try:
            with os.scandir(folder) as iterator:
                entries = list(iterator)
        except OSError as error:
            self.report.warn(f"Skipping unreadable folder {_show(folder)}: {os_error_text(error)}")
            self.report.skipped["unreadable folder"] += 1
            return []
        sidecars: dict[bytes, bytes] = {}
        listed = []
        for entry in entries:
            name = entry.name
            if name[-4:].lower() == b".xmp":
                sidecars[name[:-4]] = entry.path
                continue
            try:
                is_dir = entry.is_dir()
                is_link = entry.is_symlink()
            except OSError:
                continue
            if name.startswith(b"."):
                if not (is_dir and entry.path in self._root_ancestry):
                    self.report.skipped["hidden"] += 1
                    continue
            if is_dir:
                listed.append((name + b"/", entry.path, True, is_link, sidecars))
            elif media_extension(name) is not None:
                listed.append((name, entry.path, False, is_link, sidecars))
            elif is_link and not os.path.exists(entry.path):
                self.report.skipped["broken link"] += 1
        listed.sort(key=lambda item: item[0])
        return listed

    def _descend(self, path: bytes, name: bytes, is_link: bool) -> list | None:
        if self.exclusions and self.exclusions.excludes_directory(path, name):
            self.report.skipped["excluded folder"] += 1
            return None
        if is_link and not self._link_allowed(path):
            return None
        try:
            status = os.stat(path)
        except OSError as error:
            self.report.warn(f"Skipping folder {_show(path)}: {os_error_text(error)}")
            return None
        if not self._enter(status):
            self.report.skipped["folder already visited (link or loop)"] += 1
            return None
        if (status.st_dev, status.st_ino) == self._data_dir_identity():
            self.report.skipped["data directory"] += 1
            return None
        return self._list(path)

    def _data_dir_identity(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.data_dir)
        except OSError:
            return None
        return status.st_dev, status.st_ino

    def _link_allowed(self, path: bytes) -> bool:
        target = resolve(path)
        if not is_within(target, self.external_path) or is_within(target, self.data_dir):
            self.report.skipped["link outside the external path"] += 1
            log.info("%s: %s (link to %s)", ASSET_OUTSIDE_MESSAGE, _show(path), _show(target))
            return False
        return True

    def _file(
        self, path: bytes, name: bytes, is_link: bool, sidecars: dict[bytes, bytes]
    ) -> FoundFile | None:
        if self.exclusions and self.exclusions.excludes_file(path, name):
            self.report.skipped["excluded"] += 1
            return None
        if is_link and not self._link_allowed(path):
            return None
        try:
            status = os.stat(path)
        except OSError as error:
            self.report.skipped["vanished or unreadable"] += 1
            log.info("skipping %s: %s", _show(path), os_error_text(error))
            return None
        if not stat.S_ISREG(status.st_mode):
            self.report.skipped["not a regular file"] += 1
            return None
        sidecar_path, sidecar_mtime_ns = self._sidecar(name, sidecars)
        return FoundFile(
            path=path,
            size=status.st_size,
            mtime_ns=status.st_mtime_ns,
            is_video=media_extension(name) in VIDEO_EXTENSIONS_BYTES,
            sidecar_path=sidecar_path,
            sidecar_mtime_ns=sidecar_mtime_ns,
        )

    def _sidecar(self, name: bytes, sidecars: dict[bytes, bytes]) -> tuple[bytes | None, int | None]:
        """`name.ext.xmp` wins over `name.xmp` (§10.1); the first that is a readable regular file inside."""
        if not sidecars:
            return None, None
        stem = name[: name.rfind(b".")]
        for candidate in (sidecars.get(name), sidecars.get(stem)):
            if candidate is None:
                continue
            if os.path.islink(candidate) and not is_within(resolve(candidate), self.external_path):
                continue
            try:
                status = os.stat(candidate)
            except OSError:
                continue
            if stat.S_ISREG(status.st_mode) and os.access(candidate, os.R_OK):
                return candidate, status.st_mtime_ns
        return None, None
