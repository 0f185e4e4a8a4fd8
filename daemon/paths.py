"""Path confinement and import-path validation (`libraries.md` §3), on bytes so any file name works.

Containment is the only test for "inside the external path", everywhere: both sides resolved with `realpath`
(symlinks and `..` resolved), then equal or a prefix *followed by `/`* — `/data/user1` covers `/data/user1/x`
but not `/data/user10/x`.
"""

from __future__ import annotations

import errno
import os

DATA_DIR_MESSAGE = "Cannot use media upload folder for external libraries"
NO_EXTERNAL_PATH_MESSAGE = "User has no external path set"
OUTSIDE_EXTERNAL_PATH_MESSAGE = "Import path must be within the user's external path"
NUL_MESSAGE = "Import path must not contain NUL bytes"
ASSET_OUTSIDE_MESSAGE = "Asset must be within the user's external path"


def fs(path: str | bytes) -> bytes:
    return path if isinstance(path, bytes) else os.fsencode(path)


def resolve(path: str | bytes) -> bytes:
    """`realpath` on bytes. Never raises for missing files: it resolves what exists and keeps the rest."""
    return os.path.realpath(fs(path))


def is_within(candidate: bytes, root: bytes) -> bool:
    """Whether the *already resolved* `candidate` equals `root` or lies below it, by whole path components."""
    if candidate == root:
        return True
    prefix = root if root.endswith(b"/") else root + b"/"
    return candidate.startswith(prefix)


def normalize_import_path(path: str | bytes) -> bytes:
    """Lexical normalisation of an absolute import path: `..`, `.`, repeated and trailing `/` (no symlinks)."""
    normalized = os.path.normpath(fs(path))
    return b"/" + normalized.lstrip(b"/") if normalized.startswith(b"//") else normalized


def not_absolute_message(path: str) -> str:
    return "Import path must be absolute, try " + os.path.abspath(path)


def import_path_problem(
    path: str, *, external_path: str | None, data_dir: str, check_disk: bool = True
) -> str | None:
    """The first failing check of `libraries.md` §3.8 for `path`, as its message; None when the path is valid.

    Checks 3 and 4 (external path) run before anything touches the disk, so this cannot probe files outside a
    user's external path. The disk checks use the same lexically normalised path that was checked and that a scan
    crawls, never the raw one (whose `..` the kernel would apply after following links). With `check_disk=False`
    only checks 1-4 run (create/update, §3.6). Blocking (it may touch a network mount): call it off the event loop.
    """
    if "\0" in path:
        return NUL_MESSAGE
    normalized = normalize_import_path(os.path.abspath(path))
    resolved = resolve(normalized)
    if is_within(resolved, resolve(data_dir)):
        return DATA_DIR_MESSAGE
    if not os.path.isabs(path):
        return not_absolute_message(path)
    if external_path is None:
        return NO_EXTERNAL_PATH_MESSAGE
    if not is_within(resolved, resolve(external_path)):
        return OUTSIDE_EXTERNAL_PATH_MESSAGE
    if not check_disk:
        return None
    try:
        status = os.stat(normalized)
    except FileNotFoundError:
        return "Path does not exist (ENOENT)"
    except OSError as error:
        return os_error_text(error)
    if not os.path.stat.S_ISDIR(status.st_mode):
        return "Not a directory"
    if not os.access(normalized, os.R_OK):
        return "Lacking read permission for folder"
    return None


def os_error_text(error: OSError) -> str:
    """`EACCES: Permission denied`: the errno name and its description."""
    name = errno.errorcode.get(error.errno or 0, "EIO")
    return f"{name}: {error.strerror or os.strerror(error.errno or errno.EIO)}"
