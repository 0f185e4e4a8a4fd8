"""The worker's exiftool: one `exiftool -stay_open` process per worker process, fed whole batches of open files.

exiftool costs a Perl start-up (≈0.3 s) once, then reads a few hundred small files a second when a whole batch
goes in ONE `-execute`; an execute per file is several times slower. Only the tags `metadata.py` maps are asked
for, which is much faster than all tags.

Confinement: exiftool is never given an original's path. The caller opens each file (`open_original`) and passes
the descriptor; exiftool reads it through a symlink in a private directory, `<n><ext>` → `/proc/<pid>/fd/<fd>`.
That is a "magic link" to the file already checked, so a symlink swapped into the library afterwards cannot
redirect the read, and names with newlines or non-UTF-8 bytes never reach exiftool's line-based argument stream.
The link keeps the original's extension because exiftool picks the file type by it for some formats (RAW, MTS).

The private directory, `$TMPDIR/filmroll-exiftool-<pid>-<random>`, is removed at exit; a worker killed outright
(SIGKILL, or trio-parallel killing it on cancel) cannot, so its owner holds an exclusive `flock` on it for its whole
life and `sweep_link_directories` removes every one of these whose lock nobody holds: a new worker's first batch
does, and so does the daemon as it starts. The lock, not the pid in the name, says whether the owner lives: pids are
reused, and /tmp may be shared by daemons (and test runs) of other pid namespaces. Folders of the older unlocked
form (`filmroll-exiftool-<8 characters>`) are never swept: their owner cannot be told alive or dead.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import fcntl
import itertools
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

BATCH_TIMEOUT = 60.0

# What metadata.py maps (media.md §6.1), and nothing more: exiftool's cost grows with every tag asked for (about
# 40 µs a tag per file), so fallbacks that are never reached in practice (ExifImageWidth when ImageWidth is always
# there, GPS references when the composite GPSLatitude is already signed) are left out.
# Numbers are asked for as numbers (`TAG#`: no print conversion, like `-n` for that tag alone); text keeps the
# print conversion, which LensID needs (with `-n` it is a numeric code). Date strings come out as stored either way.
NUMERIC_TAGS = (
    "GPSLatitude GPSLongitude ExposureTime FNumber FocalLength ISO Orientation ImageWidth ImageHeight Rating "
    "Duration VideoFrameRate Rotation"
).split()
TEXT_TAGS = (
    "DateTimeOriginal SubSecTimeOriginal OffsetTimeOriginal CreateDate SubSecTimeDigitized OffsetTimeDigitized "
    "DateTimeDigitized OffsetTime DateCreated CreationDate ModifyDate Make Model LensModel LensID Lens "
    "Description ImageDescription Caption-Abstract ProjectionType MIMEType Error"
).split()

_COMMAND = [
    *("exiftool", "-stay_open", "True", "-@", "-", "-common_args"),
    *("-json", "-fast", "-api", "LargeFileSupport=1"),
    *(f"-{tag}#" for tag in NUMERIC_TAGS),
    *(f"-{tag}" for tag in TEXT_TAGS),
]
_EXTENSION = re.compile(r"\.[a-z0-9]{1,16}", re.ASCII)
LINKS_PREFIX = "filmroll-exiftool-"
_LINKS_NAME = re.compile(re.escape(LINKS_PREFIX) + r"[0-9]+-[0-9a-f]{16}", re.ASCII)
_PR_SET_PDEATHSIG = 1


class ExiftoolFailed(OSError):
    """exiftool hung, died or could not start: none of the batch's files were read (errno ETIMEDOUT, EIO...)."""


class _Died(Exception):
    """exiftool closed its pipes before answering."""


def read_open_files(files: Sequence[tuple[int, str]], timeout: float | None = None) -> list[dict[str, Any]]:
    """exiftool's tags for already-open files, given as (descriptor, extension such as ".jpg"), in ONE execute.

    Returns one dict per file, in order: tag name → value, numbers and text alike as the strings exiftool wrote
    (so "007" or "1.50" in a text tag stays as written), lists for repeated values. A file exiftool could not read
    has an "Error" key with exiftool's reason. A batch exiftool does not answer within `timeout` seconds
    (BATCH_TIMEOUT by default) gets the process killed (the next call starts a new one) and raises
    ExiftoolFailed(ETIMEDOUT); a process that died is restarted and the batch retried once, then
    ExiftoolFailed(EIO). The descriptors stay open; the links to them are removed.
    """
    if not files:
        return []
    links = _link_directory()
    batch = next(_batches)
    paths = []
    try:
        for number, (descriptor, extension) in enumerate(files):
            suffix = extension.lower() if _EXTENSION.fullmatch(extension.lower()) else ""
            path = os.path.join(links, f"{batch}-{number}{suffix}")
            os.symlink(f"/proc/{os.getpid()}/fd/{descriptor}", path)
            paths.append(path)
        by_path = _execute_with_retry(paths, BATCH_TIMEOUT if timeout is None else timeout)
    finally:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    return [by_path[path] for path in paths]


def shutdown() -> None:
    """Stop this process's exiftool, if any (at exit): `-stay_open False`, then a kill if it lingers.

    Closing its stdin alone is not enough: at end of input exiftool keeps polling for more arguments.
    """
    global _process
    process, _process = _process, None
    if process is not None and process.owner == os.getpid():
        process.close()


def _execute_with_retry(paths: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    global _process
    for attempt in (1, 2):
        if _process is not None and _process.owner != os.getpid():
            _process = None  # inherited through a fork: the parent's exiftool, not ours to use or stop
        if _process is None or not _process.alive():
            _process = _StayOpen()
        try:
            output, messages = _process.execute(paths, timeout)
        except _Died:
            _process.kill()
            _process = None
            if attempt == 2:
                raise ExiftoolFailed(errno.EIO, "exiftool exited while reading the batch") from None
            continue
        except TimeoutError:
            _process.kill()
            _process = None
            raise ExiftoolFailed(errno.ETIMEDOUT, f"exiftool did not answer within {timeout:g} s") from None
        except BaseException:
            # Interrupted half-way, the pipes hold a stale answer: start afresh next time.
            _process.kill()
            _process = None
            raise
        return _parse(output, messages, paths)
    raise AssertionError("unreachable")


def _parse(output: bytes, messages: bytes, paths: list[str]) -> dict[str, dict[str, Any]]:
    """exiftool's JSON array → SourceFile → tags; files missing from it get the stderr line naming them."""
    text = output.decode("utf-8", "replace").strip()
    try:
        entries = json.loads(text, parse_float=str, parse_int=str) if text else []
    except ValueError as error:
        raise ExiftoolFailed(errno.EIO, f"exiftool wrote unreadable output ({error})") from None
    by_path = {entry.pop("SourceFile", None): entry for entry in entries if isinstance(entry, dict)}
    lines = messages.decode("utf-8", "replace").splitlines()
    for path in paths:
        if path not in by_path:
            said = [line.removesuffix(f" - {path}") for line in lines if path in line]
            by_path[path] = {"Error": "; ".join(said) or "exiftool returned nothing for this file"}
    return by_path


class _StayOpen:
    """One `exiftool -stay_open True -@ -` process and the `-executeN` / `{readyN}` protocol."""

    def __init__(self) -> None:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        parent = os.getpid()

        def die_with_parent() -> None:
            # A worker killed outright (trio-parallel kills on cancel) must not leave exiftool polling forever.
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(1)

        try:
            self.process = subprocess.Popen(
                _COMMAND,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=die_with_parent,  # worker processes run no threads of their own
            )
        except OSError as error:
            raise ExiftoolFailed(error.errno, f"cannot start exiftool: {error.strerror}") from None
        self.sequence = itertools.count(1)
        self.owner = os.getpid()

    def alive(self) -> bool:
        return self.process.poll() is None

    def execute(self, paths: list[str], timeout: float) -> tuple[bytes, bytes]:
        """Run one `-execute` over `paths`; returns (stdout, stderr) without the ready markers.

        Raises TimeoutError when exiftool does not finish within `timeout`, _Died when it exits. stderr is read
        alongside stdout (`-echo4` puts the same marker there), so neither pipe can fill up and block exiftool.
        """
        number = next(self.sequence)
        marker = b"{ready%d}\n" % number
        request = b"".join(os.fsencode(path) + b"\n" for path in paths)
        request += b"-echo4\n" + marker + b"-execute%d\n" % number
        stdin, stdout, stderr = self.process.stdin, self.process.stdout, self.process.stderr
        assert stdin is not None and stdout is not None and stderr is not None
        try:
            stdin.write(request)
            stdin.flush()
        except (BrokenPipeError, ValueError):
            raise _Died from None
        received = {stdout.fileno(): bytearray(), stderr.fileno(): bytearray()}
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for descriptor in received:
                selector.register(descriptor, selectors.EVENT_READ)
            while not all(data.endswith(marker) for data in received.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                for key, _events in selector.select(remaining):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        raise _Died
                    received[key.fd] += chunk
        output, messages = (bytes(data[: -len(marker)]) for data in received.values())
        return output, messages

    def close(self) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(b"-stay_open\nFalse\n")
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError, ValueError):
                pipe.close()  # type: ignore[union-attr]


def _link_directory() -> str:
    """This process's private directory for links to open descriptors (0700, locked while this process lives,
    removed at exit). The first one a process makes sweeps those of dead processes first."""
    global _links, _links_owner
    if _links is not None and _links_owner == os.getpid():
        if os.path.isdir(_links):
            return _links
        _remove_link_directory(_links, os.getpid())  # removed under us: release its lock, make another
    else:  # this process's first (a fork inherits its parent's: not ours, and its lock is the parent's)
        sweep_link_directories()
    _links = _new_link_directory()
    _links_owner = os.getpid()
    atexit.register(_remove_link_directory, _links, _links_owner)
    return _links


def _new_link_directory() -> str:
    folder = tempfile.gettempdir()
    for _ in range(100):
        path = os.path.join(folder, f"{LINKS_PREFIX}{os.getpid()}-{secrets.token_hex(8)}")
        try:
            os.mkdir(path, 0o700)
            descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileExistsError, FileNotFoundError):
            continue  # taken, or a sweep removed it between the mkdir and the open
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # waits only while a sweep that found it unlocked removes it
        if _still_named(descriptor, path):
            _link_locks[path] = descriptor  # kept open, so locked, until this process ends
            return path
        os.close(descriptor)  # a sweep took it between the mkdir and the lock: another name
    raise FileExistsError(errno.EEXIST, "no free name for exiftool's link directory", folder)


def _remove_link_directory(path: str, owner: int) -> None:
    if owner != os.getpid():
        return  # a forked child runs its parent's exit hooks too: not its folder
    shutil.rmtree(path, ignore_errors=True)
    descriptor = _link_locks.pop(path, None)
    if descriptor is not None:
        os.close(descriptor)


def _still_named(descriptor: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def sweep_link_directories(folder: str | None = None) -> int:
    """Remove the link directories (in `folder`, by default the temp directory) of processes that died without
    removing theirs: those of this user whose lock nobody holds (blocking). A live worker's directory, in any
    daemon, stays. Returns how many went."""
    folder = tempfile.gettempdir() if folder is None else folder
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not _LINKS_NAME.fullmatch(entry.name):
            continue
        try:
            if (
                not entry.is_dir(follow_symlinks=False)
                or entry.stat(follow_symlinks=False).st_uid != os.getuid()
            ):
                continue
            descriptor = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _still_named(descriptor, entry.path):
                # while locked: an owner that made it meanwhile finds it gone and takes another name
                shutil.rmtree(entry.path)
                removed += 1
        except (BlockingIOError, FileNotFoundError):
            continue  # its owner lives, or another sweep removed it
        except OSError:
            continue  # not ours to remove after all (permissions)
        finally:
            os.close(descriptor)
    return removed


_process: _StayOpen | None = None
_links: str | None = None
_links_owner: int | None = None
_link_locks: dict[str, int] = {}
_batches = itertools.count(1)
atexit.register(shutdown)
