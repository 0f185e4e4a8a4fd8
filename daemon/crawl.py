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

import errno
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec

from .exclusions import ExclusionMatcher
from .media_types import IMAGE_EXTENSIONS, RAW_EXTENSIONS, VIDEO_EXTENSIONS
from .paths import ASSET_OUTSIDE_MESSAGE, is_within, os_error_text, resolve

log = logging.getLogger(__name__)

MTIME_RANGE = (-(1 << 63), 1 << 63)  # mtimes in ns the index stores (64 bits): about 1677 to 2262
MAX_PATH_BYTES = 495  # LMDB keys hold at most 511 bytes: a 16-byte library id and the path
MEDIA_EXTENSIONS = frozenset(e.encode() for e in IMAGE_EXTENSIONS | RAW_EXTENSIONS | VIDEO_EXTENSIONS)
VIDEO_EXTENSIONS_BYTES = frozenset(e.encode() for e in VIDEO_EXTENSIONS)


def media_or_sidecar_name(name: bytes) -> bool:
    """A name worth a watcher's or poller's look: not hidden, and a media file or a sidecar. (The crawl decides;
    exclusions and everything else are its job.)"""
    if name.startswith(b"."):
        return False
    dot = name.rfind(b".")
    extension = name[dot:].lower() if dot > 0 else b""
    return extension in MEDIA_EXTENSIONS or extension == b".xmp"


class FoundFile(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A media file the crawl found. A msgspec Struct: cheap to build a million times, and it crosses the pipe
    from the scan worker as a compact msgpack array that decodes straight back into this type."""

    path: bytes
    size: int
    mtime_ns: int
    is_video: bool
    sidecar_path: bytes | None = None
    sidecar_mtime_ns: int | None = None


class ScopeEntry(msgspec.Struct, array_like=True, frozen=True):
    """A path a targeted scan examines (a watcher event): a file, or a folder with everything below it."""

    path: bytes
    is_folder: bool


def normalize_scope(entries: list[ScopeEntry]) -> list[ScopeEntry]:
    """Sorted in crawl order, one entry per path (a folder wins over a file), none inside a folder entry."""
    folders = {entry.path for entry in entries if entry.is_folder}
    unique = {entry.path: entry for entry in entries if entry.is_folder or entry.path not in folders}
    ordered = sorted(unique.values(), key=lambda entry: entry.path + b"/" if entry.is_folder else entry.path)
    result: list[ScopeEntry] = []
    enclosing: bytes | None = None
    for entry in ordered:
        if enclosing is not None and entry.path.startswith(enclosing + b"/"):
            continue
        result.append(entry)
        if entry.is_folder:
            enclosing = entry.path
    return result


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


@dataclass
class _Listing:
    """One folder's media entries (name -> `Crawler._entries` tuple), listed for a targeted crawl."""

    folder: bytes
    descriptor: int | None = None
    media: dict[bytes, tuple] = field(default_factory=dict)

    def close(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


class _Refused(Exception):
    """A folder on the way to a scoped path may not be entered."""


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def _grouped(entries: list[tuple]) -> list[tuple | list[tuple]]:
    """A sorted listing as the walk takes it: each sub-folder entry as it is, each run of consecutive files as
    one list."""
    grouped: list[tuple | list[tuple]] = []
    run: list[tuple] | None = None
    for entry in entries:
        if entry[1]:
            grouped.append(entry)
            run = None
        elif run is None:
            run = [entry]
            grouped.append(run)
        else:
            run.append(entry)
    return grouped


class Crawler:
    """Crawls `roots` (valid, lexically normalised, absolute import paths) for one library.

    Every folder is opened relative to its parent's descriptor (`O_NOFOLLOW` unless it was listed as a link) and
    then proven by its own descriptor — `/proc/self/fd/N` inside the external path, not the data directory, not
    visited before — so swapping a folder for a symlink mid-crawl cannot lead the crawl outside. Files are `stat`ed
    relative to their folder without following links, unless they were listed as links (then the target must lie
    inside the external path).
    """

    def __init__(
        self,
        roots: list[bytes],
        *,
        external_path: bytes,
        data_dir: bytes,
        exclusions: ExclusionMatcher,
        report: CrawlReport | None = None,
        known: Callable[[bytes], bool] | None = None,
        known_run: Callable[[bytes, list[bytes]], bool] | None = None,
    ):
        self.external_path = resolve(external_path)
        self.data_dir = resolve(data_dir)
        self.exclusions = exclusions
        self.report = report or CrawlReport()
        # `known(path)` True: the caller already has this file and needs no `stat` (size and mtime come as -1).
        # It is asked in crawl order, which lets the caller answer by walking its index in step.
        self.known = known
        # `known_run(folder + b"/", names)` True: the caller has all of a folder's consecutive files (sorted names)
        # already, and nothing between them: the whole run is skipped, no file `stat`ed or yielded.
        self.known_run = known_run
        # A root below another root is reached through the outer one (nothing is crawled twice, order stays sorted).
        ordered = sorted(set(roots), key=lambda root: root.rstrip(b"/") + b"/")
        self.roots: list[bytes] = []
        for root in ordered:
            if not any(is_within(root, outer) for outer in self.roots):
                self.roots.append(root)
        self._all_roots = set(roots)
        # Folders on the way to an import path: a hidden one is entered, but only toward that import path (§4.3).
        self._root_ancestry = {
            root[:i] for root in roots for i in range(1, len(root) + 1) if root[i : i + 1] in (b"/", b"")
        }
        self._visited: set[tuple[int, int]] = set()
        try:
            data_status = os.stat(self.data_dir)
            self._data_dir_identity: tuple[int, int] | None = (data_status.st_dev, data_status.st_ino)
        except OSError:
            self._data_dir_identity = None

    # -- the walk -----------------------------------------------------------------------------------------

    def files(self) -> Iterator[FoundFile]:
        for root in self.roots:
            if self.exclusions and self.exclusions.excludes_folder(root):
                self.report.skipped["excluded folder"] += 1
                continue
            try:
                descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as error:
                self.report.warn(f"Skipping import path {_show(root)}: {os_error_text(error)}")
                continue
            opened = self._open_folder(root, descriptor, restricted=False)
            if opened is not None:
                yield from self._walk(opened)

    def scoped(self, scope: list[ScopeEntry]) -> Iterator[tuple[bytes, bytes, Iterator[FoundFile]]]:
        """A targeted crawl: for each entry of `scope`, ranges (lo, hi, files) — every path p with lo <= p < hi
        was examined, and `files` are the importable ones among them, sorted. Consume each `files` before the next.

        The same rules as `files()` apply: the path must lie in an import path, every folder on the way must be
        neither hidden nor excluded, and every folder opened is proven inside the external path. A sidecar entry
        (`x.jpg.xmp`, `x.xmp`) stands for the media files it belongs to."""
        listing: _Listing | None = None  # consecutive file entries usually share their folder's listing
        examined: set[bytes] = set()  # `x.jpg` and its sidecar `x.xmp` in one scope: `x.jpg` is examined once
        try:
            for entry in normalize_scope(scope):
                if entry.is_folder:
                    self._visited = set()
                    yield (
                        entry.path + b"/",
                        entry.path + b"0",
                        self._folder_files(entry.path),
                    )  # b"0" follows b"/"
                    continue
                folder, _, name = entry.path.rpartition(b"/")
                if listing is None or listing.folder != folder:
                    if listing is not None:
                        listing.close()
                    listing = self._listing(folder)
                names = [name]
                if name[-4:].lower() == b".xmp":
                    base = name[:-4]
                    names = sorted(n for n in listing.media if n == base or n[: n.rfind(b".")] == base)
                for media_name in names:
                    path = folder + b"/" + media_name
                    if path not in examined:
                        examined.add(path)
                        yield path, path + b"\0", self._listed_file(listing, media_name)
        finally:
            if listing is not None:
                listing.close()

    def folders(self, below: bytes | None = None) -> Iterator[bytes]:
        """Every folder the crawl would enter (the watcher watches these): from the import paths, or from one
        folder below them. Same rules as `files()`; no file is `stat`ed."""
        self._visited = set()
        for start in self.roots if below is None else [below]:
            opened = self._enter(start)
            if opened is None:
                continue
            stack = [opened]
            try:
                yield start
                while stack:
                    path, descriptor, entries, restricted = stack[-1]
                    entry = next((item for item in entries if isinstance(item, tuple)), None)  # next sub-folder
                    if entry is None:
                        os.close(descriptor)
                        stack.pop()
                        continue
                    child = self._descend(path, descriptor, entry[0][:-1], entry[2], restricted)
                    if child is not None:
                        yield child[0]
                        stack.append(child)
            finally:
                for _, descriptor, _, _ in stack:
                    os.close(descriptor)

    def _enter(self, folder: bytes) -> tuple | None:
        """`_open_chain` then `_open_folder`: the folder admitted and listed, ready to walk, or None."""
        chain = self._open_chain(folder)
        return None if chain is None else self._open_folder(folder, chain[0], restricted=chain[1])

    def _folder_files(self, folder: bytes) -> Iterator[FoundFile]:
        opened = self._enter(folder)
        if opened is not None:
            yield from self._walk(opened)

    def _listing(self, folder: bytes) -> _Listing:
        """The media files of a folder reached by `_open_chain`; none when it cannot be reached or read."""
        chain = self._open_chain(folder)
        if chain is None:
            return _Listing(folder)
        descriptor, restricted = chain
        try:
            with os.scandir(descriptor) as iterator:
                entries = self._entries(folder, list(iterator), restricted)
        except OSError as error:
            os.close(descriptor)
            self.report.warn(f"Skipping unreadable folder {_show(folder)}: {os_error_text(error)}")
            return _Listing(folder)
        if restricted:  # a hidden folder on the way to an import path: none of its files are imported
            return _Listing(folder, descriptor)
        return _Listing(folder, descriptor, {entry[0]: entry for entry in entries if not entry[1]})

    def _listed_file(self, listing: _Listing, name: bytes) -> Iterator[FoundFile]:
        entry = listing.media.get(name)
        if entry is not None:
            _, _, is_link, is_video, sidecars = entry
            found = self._file(listing.folder, listing.descriptor, name, is_link, is_video, sidecars)
            if found is not None:
                yield found

    def _open_chain(self, folder: bytes) -> tuple[int, bool] | None:
        """Open `folder` from the import path that holds it, one component at a time, checking each folder as
        the walk would (hidden, excluded, inside the external path): (descriptor, restricted), or None."""
        root = next((root for root in self.roots if is_within(folder, root)), None)
        if root is None or (self.exclusions and self.exclusions.excludes_folder(root)):
            return None
        try:
            descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        restricted = False
        current = root
        try:
            if not self._inside(descriptor):
                raise _Refused
            for name in folder[len(root) :].strip(b"/").split(b"/") if folder != root else ():
                current = current + b"/" + name
                hidden = name.startswith(b".")
                if (hidden or restricted) and current not in self._root_ancestry:
                    raise _Refused
                if self.exclusions and self.exclusions.excludes_directory(current, name):
                    raise _Refused
                restricted = (restricted or hidden) and current not in self._all_roots
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=descriptor)
                os.close(descriptor)
                descriptor = child
                if not self._inside(descriptor):
                    raise _Refused
        except (OSError, _Refused):
            os.close(descriptor)
            return None
        return descriptor, restricted

    def _inside(self, descriptor: int) -> bool:
        status = os.fstat(descriptor)
        return self._refusal(descriptor, (status.st_dev, status.st_ino)) is None

    def _walk(self, opened: tuple) -> Iterator[FoundFile]:
        """Depth-first, entries sorted with folders keyed `name/`, so full paths come out byte-sorted.

        Each open folder keeps its descriptor; its files are `stat`ed and its sub-folders opened relative to it.
        In a `restricted` folder (a hidden folder entered only on the way to an import path) nothing but the way
        on is taken. A folder's listing comes as sub-folder entries and runs of consecutive files (`_grouped`)."""
        stack = [opened]
        try:
            while stack:
                folder, descriptor, items, restricted = stack[-1]
                item = next(items, None)
                if item is None:
                    os.close(descriptor)
                    stack.pop()
                elif isinstance(item, tuple):  # a sub-folder
                    child = self._descend(folder, descriptor, item[0][:-1], item[2], restricted)
                    if child is not None:
                        stack.append(child)
                elif not restricted and not (self.known_run is not None and self._all_known(folder, item)):
                    for name, _, is_link, is_video, sidecars in item:
                        found = self._file(folder, descriptor, name, is_link, is_video, sidecars)
                        if found is not None:
                            yield found
        finally:
            for _, descriptor, _, _ in stack:
                os.close(descriptor)

    def _all_known(self, folder: bytes, run: list[tuple]) -> bool:
        """Whether the caller already has every file of this run (`known_run`), so none needs a look. Only plain
        runs qualify: no link, no over-long path, nothing excluded; any other run is looked at file by file."""
        names = [entry[0] for entry in run if not entry[2]]
        if len(names) < len(run) or len(folder) + 1 + max(map(len, names)) > MAX_PATH_BYTES:
            return False
        base = folder + b"/"
        if self.exclusions and any(self.exclusions.excludes_file(base + name, name) for name in names):
            return False
        return self.known_run(base, names)

    def _descend(self, parent: bytes, parent_descriptor: int, name: bytes, is_link: bool, restricted: bool):
        path = parent + b"/" + name
        if self.exclusions and self.exclusions.excludes_directory(path, name):
            self.report.skipped["excluded folder"] += 1
            return None
        restricted = (restricted or name.startswith(b".")) and path not in self._all_roots
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if is_link else os.O_NOFOLLOW)
        try:
            descriptor = os.open(name, flags, dir_fd=parent_descriptor)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                self.report.skipped["changed during the crawl"] += 1
            else:
                self.report.warn(f"Skipping unreadable folder {_show(path)}: {os_error_text(error)}")
                self.report.skipped["unreadable folder"] += 1
            return None
        return self._open_folder(path, descriptor, restricted=restricted)

    def _open_folder(self, folder: bytes, descriptor: int, *, restricted: bool) -> tuple | None:
        """Admit a just-opened folder and list it: (folder, descriptor, entries, restricted), or None (closed)."""
        if not self._admit(folder, descriptor):
            os.close(descriptor)
            return None
        self.report.folders += 1
        try:
            with os.scandir(descriptor) as iterator:
                entries = list(iterator)
        except OSError as error:
            os.close(descriptor)
            self.report.warn(f"Skipping unreadable folder {_show(folder)}: {os_error_text(error)}")
            self.report.skipped["unreadable folder"] += 1
            return None
        return folder, descriptor, iter(_grouped(self._entries(folder, entries, restricted))), restricted

    def _admit(self, folder: bytes, descriptor: int) -> bool:
        """Proven by its descriptor: not visited (links, loops), and allowed (`_refusal`). Records it as visited."""
        status = os.fstat(descriptor)
        identity = (status.st_dev, status.st_ino)
        if identity in self._visited:  # (the data directory is never visited)
            self.report.skipped["folder already visited (link or loop)"] += 1
            return False
        refusal = self._refusal(descriptor, identity)
        if refusal is not None:
            reason, real = refusal
            self.report.skipped[reason] += 1
            if real is not None:
                self.report.warn(f"{ASSET_OUTSIDE_MESSAGE}: {_show(folder)} (resolves to {_show(real)})")
            return False
        self._visited.add(identity)
        return True

    def _refusal(self, descriptor: int, identity: tuple[int, int]) -> tuple[str, bytes | None] | None:
        """Why an open folder may not be entered — it is the data directory, or it resolves (to the returned real
        path) outside the external path or inside the data directory — or None."""
        if identity == self._data_dir_identity:
            return "data directory", None
        real = os.readlink(f"/proc/self/fd/{descriptor}".encode())
        if not is_within(real, self.external_path) or is_within(real, self.data_dir):
            return "link outside the external path", real
        return None

    def _entries(self, folder: bytes, entries: list, restricted: bool) -> list[tuple]:
        """The folder's candidates as (sort key, is_dir, is_link, is_video, sidecars), sorted by key."""
        sidecars: dict[bytes, bytes] = {}
        listed = []
        for entry in entries:
            name = os.fsencode(entry.name)
            try:
                is_dir = entry.is_dir()
                is_link = entry.is_symlink()
            except OSError:
                continue
            if is_dir:
                if (name.startswith(b".") or restricted) and folder + b"/" + name not in self._root_ancestry:
                    self.report.skipped["hidden"] += 1
                    continue
                listed.append((name + b"/", True, is_link, False, sidecars))
                continue
            if restricted:
                continue
            if name[-4:].lower() == b".xmp":
                sidecars[name[:-4]] = name
                continue
            if name.startswith(b"."):
                self.report.skipped["hidden"] += 1
                continue
            dot = name.rfind(b".")
            extension = name[dot:].lower() if dot > 0 else b""
            if extension in MEDIA_EXTENSIONS:
                listed.append((name, False, is_link, extension in VIDEO_EXTENSIONS_BYTES, sidecars))
            elif is_link and not os.path.exists(folder + b"/" + name):
                self.report.skipped["broken link"] += 1
        listed.sort(key=lambda item: item[0])
        return listed

    def _file(
        self, folder: bytes, descriptor: int, name: bytes, is_link: bool, is_video: bool, sidecars: dict
    ) -> FoundFile | None:
        path = folder + b"/" + name
        if len(path) > MAX_PATH_BYTES:
            self.report.skipped["path too long for the index"] += 1
            self.report.warn(
                f"Skipping {_show(path)}: its path is over {MAX_PATH_BYTES} bytes (the index's limit)"
            )
            return None
        if self.exclusions and self.exclusions.excludes_file(path, name):
            self.report.skipped["excluded"] += 1
            return None
        try:
            if is_link:
                target = resolve(path)
                if not is_within(target, self.external_path) or is_within(target, self.data_dir):
                    self.report.skipped["link outside the external path"] += 1
                    self.report.warn(f"{ASSET_OUTSIDE_MESSAGE}: {_show(path)} (resolves to {_show(target)})")
                    return None
                status = os.stat(name, dir_fd=descriptor)
            else:
                if self.known is not None and self.known(path):
                    return FoundFile(path, -1, -1, is_video)  # a regular file the caller has: no stat needed
                status = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
        except OSError as error:
            self.report.skipped["vanished or unreadable"] += 1
            log.info("skipping %s: %s", _show(path), os_error_text(error))
            return None
        if stat.S_ISLNK(status.st_mode):
            self.report.skipped["changed during the crawl"] += 1
            return None
        if not stat.S_ISREG(status.st_mode):
            self.report.skipped["not a regular file"] += 1
            return None
        if not MTIME_RANGE[0] <= status.st_mtime_ns < MTIME_RANGE[1]:
            self.report.skipped["mtime outside the index's range"] += 1
            self.report.warn(f"Skipping {_show(path)}: its mtime ({status.st_mtime_ns} ns) is outside the index's "
                             f"range (1677 to 2262)")  # fmt: skip
            return None
        if sidecars:
            sidecar_path, sidecar_mtime_ns = self._sidecar(folder, name, sidecars)
            return FoundFile(
                path, status.st_size, status.st_mtime_ns, is_video, sidecar_path, sidecar_mtime_ns
            )
        return FoundFile(path, status.st_size, status.st_mtime_ns, is_video)

    def _sidecar(
        self, folder: bytes, name: bytes, sidecars: dict[bytes, bytes]
    ) -> tuple[bytes | None, int | None]:
        """`name.ext.xmp` wins over `name.xmp` (§10.1); the first that is a readable regular file inside."""
        stem = name[: name.rfind(b".")]
        for sidecar_name in (sidecars.get(name), sidecars.get(stem)):
            if sidecar_name is None:
                continue
            candidate = folder + b"/" + sidecar_name
            if os.path.islink(candidate) and not is_within(resolve(candidate), self.external_path):
                continue
            try:
                status = os.stat(candidate)
            except OSError:
                continue
            if stat.S_ISREG(status.st_mode) and os.access(candidate, os.R_OK):
                return candidate, status.st_mtime_ns
        return None, None
