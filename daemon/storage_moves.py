"""Moving an upload's original to its storage-template destination (`media.md` §5.5-5.7).

Every function here blocks (renames, copies, fsyncs): call them through `trio.to_thread.run_sync`, never on the
trio thread. The index is not touched here; the caller keeps §5.7's order:

1. `choose_destination` — the free destination (or None: stay where it is);
2. `move_file` (and `move_sidecar`) — the file is at the destination, durably; on another filesystem the source
   is still there too;
3. the caller switches the index to the new path and waits until that write is durable;
4. `remove_source` — only when `move_file` said the source is left behind.

At every step the index points at a file that exists, and nothing here ever replaces an existing file.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import itertools
import logging
import os
import re
import secrets
import shutil
from pathlib import Path, PurePosixPath

from .errors import FilmrollError
from .paths import is_within

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".xmp"
_CHUNK = 1 << 20


class MoveFailed(FilmrollError):
    """A move did not happen. The message names the file and the reason; the source is where it was.

    `errno` is the underlying OSError's number (None for a failed verification)."""

    def __init__(self, message: str, errno_value: int | None = None):
        super().__init__(message)
        self.errno = errno_value


class DestinationTaken(MoveFailed):
    """Another file appeared at the destination between `choose_destination` and the move: choose again."""


def sidecar_of(path: Path) -> Path:
    """`<path>.xmp`: where the sidecar of the original at `path` lives (§5.7)."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


# --- choosing -----------------------------------------------------------------------------------------------


def _is_taken(candidate: Path) -> bool:
    # A name is free only if its sidecar name is free too: a stale `<name>.xmp` would otherwise be adopted as the
    # new asset's sidecar, or block the sidecar's move.
    return os.path.lexists(candidate) or os.path.lexists(sidecar_of(candidate))


def choose_destination(
    root: Path, relative: str, current: Path | None, *, asset_id: object = None
) -> Path | None:
    """The path under `root` where the file described by `relative` (from `relative_destination`) should go.

    - `root` is resolved, and the destination's folder is resolved (symlinks followed) and must lie inside it
      (§5.5). If it does not, a warning names the asset (`asset_id`, `current`) and the result is None: the asset
      stays where it is.
    - When `current` already is the destination, or the destination with a `+N` suffix before the extension, in
      the same folder, `current` is returned unchanged: the asset is in place (§5.6).
    - Otherwise the first free name of `name.ext`, `name+1.ext`, `name+2.ext`, … (§5.6). Free means neither the
      name nor its `.xmp` sidecar name exists. Another mover may take it before the move: `move_file` then
      raises DestinationTaken, never overwrites.

    Reads the filesystem only (realpath, lstat); creates nothing.
    """
    root_resolved = os.path.realpath(root)
    relative_path = PurePosixPath(relative)
    name = relative_path.name
    folder = Path(os.path.realpath(Path(root_resolved, relative_path.parent)))
    if name in ("", ".", "..") or not is_within(os.fsencode(folder), os.fsencode(root_resolved)):
        log.warning(
            "storage template: asset %s (%s) would move outside %s (to %s); it stays where it is",
            asset_id, current, root, Path(root, relative),
        )  # fmt: skip
        return None
    stem, extension = os.path.splitext(name)
    if current is not None and Path(os.path.realpath(current.parent)) == folder:
        pattern = re.escape(stem) + r"(\+[0-9]+)?" + re.escape(extension)
        if re.fullmatch(pattern, current.name):
            return current
    for count in itertools.count():
        candidate = folder / (name if count == 0 else f"{stem}+{count}{extension}")
        if not _is_taken(candidate) or (current is not None and _same_file(candidate, current)):
            return candidate  # free, or this very file's link from a move interrupted before its index write
    raise AssertionError("unreachable")


# --- renaming without replacing -----------------------------------------------------------------------------

# os.rename replaces an existing destination silently, which could destroy another asset's original when two
# moves race for one name. renameat2(RENAME_NOREPLACE) is the kernel's atomic "rename unless it exists" (Linux
# 3.15+, glibc 2.28+); Python has no wrapper, so it is called through ctypes (as exiftool.py calls prctl).
# Filesystems without it (EINVAL) get a hard link + unlink, which cannot replace either (link fails with EEXIST)
# but leaves two names for a moment; filesystems without hard links get a check-then-rename, racy but last.
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
if _renameat2 is not None:
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _renameat2.restype = ctypes.c_int


def _rename_without_replacing(source: Path, destination: Path) -> None:
    """Rename `source` to `destination` unless it exists (FileExistsError). Raises OSError (EXDEV across
    filesystems)."""
    if _renameat2 is not None:
        if (
            _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(destination), _RENAME_NOREPLACE)
            == 0
        ):
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), os.fsdecode(source), None, os.fsdecode(destination))
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(destination):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(destination)) from None
        os.rename(source, destination)
        return
    try:
        os.unlink(source)
    except OSError:
        os.unlink(destination)  # undo: the file keeps exactly one name, its old one
        raise


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _make_folders(folder: Path) -> None:
    """`mkdir -p`, with each new folder's entry fsynced into its parent (a renamed file is only durable if the
    folders leading to it are)."""
    missing: list[Path] = []
    probe = folder
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            pass  # another mover made it meanwhile
        _fsync_directory(path.parent)


def _failure(action: str, error: OSError, *named: Path) -> MoveFailed:
    """MoveFailed `<action>: <reason>`, naming the file the OS complained about when it is not already named."""
    reason = error.strerror or str(error)
    if error.filename is not None and os.fsdecode(error.filename) not in {str(path) for path in named}:
        reason += f" ({os.fsdecode(error.filename)})"
    kind = DestinationTaken if isinstance(error, FileExistsError) else MoveFailed
    return kind(f"{action}: {reason}", error.errno)


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("could not remove temporary file %s: %s", path, error.strerror)


def _sha1_of(path: Path) -> bytes:
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb", buffering=0) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


# --- moving -------------------------------------------------------------------------------------------------


def _copy_into_place(source: Path, destination: Path, verify_sha1: bytes | None) -> None:
    """Copy `source` to a temporary name beside `destination`, fsync it, check its SHA-1, rename it into place
    without replacing, fsync the folder. The temporary file never survives a failure."""
    # A short hidden name: crawlers skip it, and it fits even when the destination's name is near 255 bytes.
    temporary = destination.parent / f".filmroll-move-{secrets.token_hex(8)}.tmp"
    try:
        status = os.stat(source)
        with open(source, "rb") as reading, open(temporary, "xb") as writing:
            shutil.copyfileobj(reading, writing, _CHUNK)
            writing.flush()
            os.fchmod(writing.fileno(), status.st_mode & 0o777)
            os.utime(writing.fileno(), ns=(status.st_atime_ns, status.st_mtime_ns))
            os.fsync(writing.fileno())
        if verify_sha1 is not None:
            copied = _sha1_of(temporary)
            if copied != verify_sha1:
                raise MoveFailed(
                    f"Cannot move {source} to {destination}: the copy's SHA-1 {copied.hex()} is not the "
                    f"expected {verify_sha1.hex()}"
                )
        _rename_without_replacing(temporary, destination)
    except BaseException:
        _remove_quietly(temporary)
        raise
    _fsync_directory(destination.parent)


def move_file(source: Path, destination: Path, *, verify_sha1: bytes | None) -> bool:
    """Give `source` its new name `destination` (from `choose_destination`), creating folders, never replacing a
    file, and never leaving a moment when the old name is gone before the caller's index says so.

    Same filesystem: a hard link (`link` fails rather than replace). Another filesystem: a copy to a temporary
    name in the destination's folder, fsynced, its SHA-1 checked against `verify_sha1` (skipped when None), renamed
    into place. Either way the destination's folder entry is fsynced and True is returned: the source is still
    there, and the caller removes it with `remove_source` once its index write is durable (§5.7). A destination
    that already is a link to `source` (a move interrupted before its index write) is adopted. Only on a
    filesystem without hard links is the file renamed (returns False): the index then lags the rename briefly.

    Raises DestinationTaken when another file exists at `destination`, MoveFailed (naming the file and the
    reason) for anything else — a failed verification included. After a failure the source is untouched and
    no partial destination exists (folders may have been created).
    """
    action = f"Cannot move {source} to {destination}"
    try:
        _make_folders(destination.parent)
        if _same_file(source, destination):
            _fsync_directory(destination.parent)
            return True
        try:
            os.link(source, destination, follow_symlinks=False)
        except OSError as error:
            if error.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                _rename_without_replacing(source, destination)  # no hard links here
                _fsync_directory(destination.parent)
                return False
            if error.errno != errno.EXDEV:
                raise
            if os.path.lexists(destination):  # fail before copying gigabytes, not after
                raise FileExistsError(
                    errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(destination)
                ) from None
            _copy_into_place(source, destination, verify_sha1)
            return True
        _fsync_directory(destination.parent)
    except OSError as error:
        raise _failure(action, error, source, destination) from error
    return True


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def remove_source(source: Path) -> None:
    """Remove the source a copying `move_file` left behind. Call it only after the index write that points at the
    destination is durable. A source already gone is fine (a retried job). Raises MoveFailed naming the file."""
    try:
        os.unlink(source)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise _failure(f"Cannot remove {source} after moving it", error, source) from error


def move_sidecar(sidecar: Path, destination: Path, *, verify: bool = True) -> bool | None:
    """Move the sidecar at `sidecar` to `<destination>.xmp`, `destination` being its original's new path (§5.7).

    Same contract as `move_file`: returns whether the old sidecar still needs `remove_source`, or None when there
    is no sidecar at `sidecar`. With `verify`, a copy across filesystems is checked against the SHA-1 of the
    sidecar read just before (sidecars are small). Raises DestinationTaken / MoveFailed like `move_file`.
    """
    if not os.path.lexists(sidecar):
        return None
    try:
        expected = _sha1_of(sidecar) if verify else None
    except OSError as error:
        raise _failure(f"Cannot move {sidecar} to {sidecar_of(destination)}", error, sidecar) from error
    return move_file(sidecar, sidecar_of(destination), verify_sha1=expected)
