"""Moving an upload's original to its storage-template destination (`media.md` §5.5-5.7).

Every function here blocks (renames, copies, fsyncs): call them through `trio.to_thread.run_sync`, never on the
trio thread. The index is not touched here; the caller keeps §5.7's order:

1. `choose_destination` — the free destination (or None: stay where it is);
2. `move_file` (and `move_sidecar`) — the file is at the destination, durably; on another filesystem the source
   is still there too;
3. the caller switches the index to the new path and waits until that write is durable;
4. `remove_source` — only when `move_file` said the source is left behind.

At every step the index points at a file that exists, and nothing here ever replaces an existing file.

A copy across filesystems goes through a temporary file beside the destination (`.filmroll-move-<token>.tmp`).
A process killed mid-copy cannot remove it, so before creating it the mover writes a journal entry,
`<data>/moving/<token>` naming the destination's folder (fsynced), and holds an exclusive `flock` on that entry until
the temporary file is gone (renamed into place or removed). `sweep_interrupted_moves` (the daemon's start, before
any job runs) removes the temporary file of every entry no process holds, then the entry. The journal is what makes
the sweep cheap and exact: it never walks the library trees (a million originals on a NAS), and it can only ever
remove a file whose name carries the token a dead mover wrote down.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import logging
import os
import re
import secrets
import shutil
from pathlib import Path, PurePosixPath

from .durable import fsync_folder, make_folders
from .errors import FilmrollError
from .originals import content_sha1
from .paths import is_within, os_error_text
from .xmp import sidecar_of

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
JOURNAL_FOLDER = "moving"
"""`<data>/moving/`: one entry per copy across filesystems in progress (see the module docstring)."""
_TOKEN = re.compile(r"[0-9a-f]{16}", re.ASCII)
_MOVE_TREES = ("library", "upload")
"""Where in the data directory moves write (`storage_template.user_root`, `legacy_upload_path`)."""


class MoveFailed(FilmrollError):
    """A move did not happen. The message names the file and the reason; the source is where it was.

    `errno` is the underlying OSError's number (None for a failed verification)."""

    def __init__(self, message: str, errno_value: int | None = None):
        super().__init__(message)
        self.errno = errno_value


class DestinationTaken(MoveFailed):
    """Another file appeared at the destination between `choose_destination` and the move: choose again."""


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
    """A file filmroll made or owns (a copy, an upload's sidecar): unconfined (`originals.content_sha1`)."""
    return content_sha1(os.fsencode(path), None)


# --- moving -------------------------------------------------------------------------------------------------


def temporary_name(token: str) -> str:
    """The name of a copy's temporary file: short and hidden (crawlers skip it, and it fits even when the
    destination's name is near 255 bytes)."""
    return f".filmroll-move-{token}.tmp"


def journal_folder(data_dir: str | os.PathLike[str]) -> Path:
    """`<data>/moving`: where copies across filesystems note their temporary files (module docstring)."""
    return Path(data_dir) / JOURNAL_FOLDER


class _JournalEntry:
    """`<journal>/<token>`, holding the folder of the temporary file `temporary_name(token)`: created, locked
    (`flock`, exclusive, held until `close`) and durable before that file is."""

    def __init__(self, journal: Path, folder: Path):
        make_folders(journal)
        for _ in range(100):
            token = secrets.token_hex(8)
            path = journal / token
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            # waits only while a sweep (of another process) that found it unlocked removes it
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            if _still_named(descriptor, path):
                break
            os.close(descriptor)  # a sweep (of another process) took it between the open and the lock
        else:
            raise FileExistsError(errno.EEXIST, "no free journal name", str(journal))
        self.path, self.token, self._descriptor = path, token, descriptor
        try:
            os.write(descriptor, os.fsencode(folder))
            os.fsync(descriptor)
            fsync_folder(journal)  # power loss: the entry exists if the temporary file does
        except BaseException:
            self.close(Path(folder, temporary_name(token)))
            raise

    def close(self, temporary: Path) -> None:
        """Done: the entry goes, unless `temporary` is still there (its removal failed: a later sweep retries),
        and the lock is released."""
        try:
            if not os.path.lexists(temporary):
                _remove_quietly(self.path)
        finally:
            os.close(self._descriptor)


def _still_named(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _copy_into_place(
    source: Path, destination: Path, verify_sha1: bytes | None, journal: Path | None
) -> None:
    """Copy `source` to a temporary name beside `destination`, fsync it, check its SHA-1, rename it into place
    without replacing, fsync the folder. The temporary file never survives a failure; with `journal`, not a kill
    either (once `sweep_interrupted_moves` ran)."""
    entry = _JournalEntry(journal, destination.parent) if journal is not None else None
    temporary = destination.parent / temporary_name(entry.token if entry else secrets.token_hex(8))
    try:
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
        fsync_folder(destination.parent)
    finally:
        if entry is not None:
            entry.close(temporary)


def sweep_interrupted_moves(data_dir: str | os.PathLike[str]) -> int:
    """Remove the temporary files of copies across filesystems that died with their process (blocking: run it in a
    thread). Returns how many went.

    Only journal entries no process holds are used: the daemon calls this as it starts, before any job runs, so
    none of its own moves is under way, and a move running in another process keeps its entry locked. Of each
    such entry, exactly `temporary_name(<entry's name>)` in the folder it names is removed, and only when that
    folder lies inside the data directory's `library/` or `upload/` (resolved, as `choose_destination` resolves
    destinations); then the entry goes. A destination already renamed into place is never touched: it no longer
    has the temporary name.
    """
    journal = journal_folder(data_dir)
    try:  # the journal folder itself, never a link planted in its place
        journal_descriptor = os.open(journal, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    except OSError as error:
        log.warning("storage move journal %s not swept: %s", journal, os_error_text(error))
        return 0
    roots = [os.fsencode(os.path.realpath(Path(data_dir, tree))) for tree in _MOVE_TREES]
    removed = 0
    try:
        for name in os.listdir(journal_descriptor):
            if _TOKEN.fullmatch(name):  # (anything else is not ours)
                removed += _sweep_entry(journal, journal_descriptor, name, roots)
    finally:
        os.close(journal_descriptor)
    return removed


def _sweep_entry(journal: Path, journal_descriptor: int, name: str, roots: list[bytes]) -> int:
    """One journal entry of `sweep_interrupted_moves`: 1 if its temporary file was removed, else 0. The folder it
    names is opened and proven by its descriptor (`/proc/self/fd`) inside `roots`, and the file is removed
    relative to that descriptor, so no link swapped in on the way can redirect the removal."""
    try:
        descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=journal_descriptor)
    except OSError:
        return 0  # gone meanwhile, or not a plain file
    path = journal / name
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # a move under way in another process
        if not _still_named(descriptor, path):
            return 0  # removed by another sweep meanwhile
        written = os.read(descriptor, 1 << 16)
        removed = 0
        if written:  # (empty: its mover died before noting anything, so before creating anything)
            try:
                folder = os.open(written, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except (OSError, ValueError) as error:  # gone; or a damaged entry (NUL bytes, not a folder)
                if not isinstance(error, FileNotFoundError):
                    log.warning("storage move journal %s is unreadable (%s): left as it is", path, error)
                    return 0
                folder = None
            if folder is not None:
                try:
                    real = os.readlink(f"/proc/self/fd/{folder}".encode())
                    if not any(is_within(real, root) for root in roots):
                        log.warning(
                            "storage move journal %s names %s, outside %s: left as it is",
                            path, os.fsdecode(written), " and ".join(map(os.fsdecode, roots)),
                        )  # fmt: skip
                        return 0
                    os.unlink(temporary_name(name), dir_fd=folder)
                    removed = 1
                except FileNotFoundError:
                    pass  # renamed into place (or removed) before the process died
                except OSError as error:
                    log.warning("could not remove the temporary file of %s: %s", path, os_error_text(error))
                    return 0  # the entry stays: the next start tries again
                finally:
                    os.close(folder)
        os.unlink(name, dir_fd=journal_descriptor)  # while locked: a mover that opened it meanwhile finds it gone
        return removed
    finally:
        os.close(descriptor)


def move_file(
    source: Path, destination: Path, *, verify_sha1: bytes | None, journal: Path | None = None
) -> bool:
    """Give `source` its new name `destination` (from `choose_destination`), creating folders, never replacing a
    file, and never leaving a moment when the old name is gone before the caller's index says so.

    Same filesystem: a hard link (`link` fails rather than replace). Another filesystem: a copy to a temporary
    name in the destination's folder, fsynced, its SHA-1 checked against `verify_sha1` (skipped when None), renamed
    into place; with `journal` (`journal_folder(data_dir)`), a kill mid-copy leaves a temporary file that
    `sweep_interrupted_moves` removes (without, nothing ever removes it). Either way the destination's folder entry
    is fsynced and True is returned: the source is still
    there, and the caller removes it with `remove_source` once its index write is durable (§5.7). A destination
    that already is a link to `source` (a move interrupted before its index write) is adopted. Only on a
    filesystem without hard links is the file renamed (returns False): the index then lags the rename briefly.

    Raises DestinationTaken when another file exists at `destination`, MoveFailed (naming the file and the
    reason) for anything else — a failed verification included. After a failure the source is untouched and
    no partial destination exists (folders may have been created).
    """
    action = f"Cannot move {source} to {destination}"
    try:
        make_folders(destination.parent)
        if _same_file(source, destination):
            fsync_folder(destination.parent)
            return True
        try:
            os.link(source, destination, follow_symlinks=False)
        except OSError as error:
            if error.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                _rename_without_replacing(source, destination)  # no hard links here
                fsync_folder(destination.parent)
                return False
            if error.errno != errno.EXDEV:
                raise
            if os.path.lexists(destination):  # fail before copying gigabytes, not after
                raise FileExistsError(
                    errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(destination)
                ) from None
            _copy_into_place(source, destination, verify_sha1, journal)
            return True
        fsync_folder(destination.parent)
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


def move_sidecar(
    sidecar: Path, destination: Path, *, verify: bool = True, journal: Path | None = None
) -> bool | None:
    """Move the sidecar at `sidecar` to `<destination>.xmp`, `destination` being its original's new path (§5.7).

    Same contract as `move_file`: returns whether the old sidecar still needs `remove_source`, or None when there
    is no sidecar at `sidecar`. With `verify`, a copy across filesystems is checked against the SHA-1 of the
    sidecar read just before (sidecars are small); `journal` as for `move_file`. Raises DestinationTaken /
    MoveFailed like `move_file`.
    """
    if not os.path.lexists(sidecar):
        return None
    try:
        expected = _sha1_of(sidecar) if verify else None
    except OSError as error:
        raise _failure(f"Cannot move {sidecar} to {sidecar_of(destination)}", error, sidecar) from error
    return move_file(sidecar, sidecar_of(destination), verify_sha1=expected, journal=journal)
