"""Receiving an upload: a multipart/form-data body decoded as it arrives, file parts streamed to temp files.

Nothing here holds a body in memory. `receive_form` feeds werkzeug's sans-IO `MultipartDecoder` one chunk at a
time: text parts are kept (bounded in size and number), file parts go to an `IncomingFile` chosen by the caller
(or are read and dropped), and the decoder's own buffer is bounded too, so a body of any size costs a few MiB.

`IncomingFile` writes to a temp file in `<data>/upload/.incoming/` (the filesystem the upload lands on, so
landing is a rename) while hashing SHA-1. Writes and hashing run in worker threads, batched to about 1 MiB, so the
event loop never waits on the disk. A full disk, or a size limit (the caller's quota), does not stop the
reception: the file is deleted at once and the rest of the part is only hashed, so the request can still be
answered cleanly (a duplicate stays a duplicate even on a full disk). Whoever creates an `IncomingFile` owns it:
`discard()` deletes what is left of it (safe to call twice, and after `take()`), shielded from cancellation.

A process that dies (SIGKILL, power loss) cannot discard: each `IncomingFile` holds an exclusive `flock` on its temp
file for as long as it is open, the kernel drops it with the process, and `sweep_incoming` (at the daemon's start)
deletes every temp file that no process holds.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder

from .errors import FilmrollError, InvalidInput, StorageFull

log = logging.getLogger(__name__)

WRITE_BATCH = 1 << 20
"""Bytes gathered before one write (and hash) in a worker thread."""
MAX_FIELD_BYTES = 64 * 1024
"""A text part longer than this is refused (the longest Immich sends is an ISO date or an id)."""
MAX_FIELDS = 256
"""Parts of any kind in one body; more is refused."""
MAX_PENDING_BYTES = 256 * 1024
"""What the decoder may hold while it looks for a part's headers or a boundary (beyond the chunk it was fed)."""
INCOMING_FOLDER = ".incoming"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""errno values that mean "no room left" (StorageFull, HTTP 507)."""

MALFORMED = "Malformed multipart/form-data body"


def incoming_folder(data_dir: str | os.PathLike[str]) -> Path:
    """`<data>/upload/.incoming`: where uploads are received, beside where they land."""
    return Path(data_dir) / "upload" / INCOMING_FOLDER


class IncomingFile:
    """One file part being received into a temp file in `folder`, hashed with SHA-1 as it is written.

    - `limit`: when more than `limit` bytes arrive, the file is deleted and `failure` becomes `too_large()`;
      later data is hashed only.
    - A full disk (ENOSPC, EDQUOT) deletes the file too, with `failure` a StorageFull naming `label`. Other
      OSErrors propagate (the caller's `discard` removes the file).

    `size` and `sha1` count every byte received, stored or not. `finish()` writes what is buffered and fsyncs;
    `take()` hands the path over to the caller (who renames it into place) so `discard()` no longer deletes it.
    The file stays open, and locked against `sweep_incoming`, until `discard()`.
    """

    def __init__(
        self,
        folder: Path,
        label: str,
        *,
        limit: int | None = None,
        too_large: Callable[[], FilmrollError] | None = None,
    ):
        self.folder = folder
        self.label = label
        self.limit = limit
        self._too_large = too_large or (lambda: InvalidInput(f"{label} is too large"))
        self.path: Path | None = None
        self.size = 0
        self.failure: FilmrollError | None = None
        self._descriptor: int | None = None
        self._digest = hashlib.sha1(usedforsecurity=False)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._taken = False

    @classmethod
    async def create(
        cls,
        folder: Path,
        label: str,
        *,
        limit: int | None = None,
        too_large: Callable[[], FilmrollError] | None = None,
    ) -> IncomingFile:
        """A new, empty temp file in `folder` (created with its parents). Raises StorageFull on a full disk."""
        incoming = cls(folder, label, limit=limit, too_large=too_large)
        try:
            # Shielded: a cancellation arriving while the thread runs would lose the new file and descriptor.
            # The caller registers the result before its next checkpoint, so nothing can leak.
            with trio.CancelScope(shield=True):
                incoming._descriptor, incoming.path = await trio.to_thread.run_sync(_create_temp, folder)
        except OSError as error:
            if error.errno in DISK_FULL:
                raise storage_full(label, error) from error
            raise
        return incoming

    @property
    def sha1(self) -> bytes:
        """SHA-1 of every byte received so far (complete after `finish`)."""
        return self._digest.digest()

    @property
    def stored(self) -> bool:
        """Whether the file holds everything received (no failure, not discarded)."""
        return self.failure is None and self.path is not None

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= WRITE_BATCH:
            await self._flush()

    async def finish(self) -> None:
        """Write and hash what is buffered, then fsync the file (so a rename of it is durable once its folder
        is). After this, `failure` is final."""
        await self._flush()
        if self._descriptor is not None and self.failure is None:
            try:
                await trio.to_thread.run_sync(os.fsync, self._descriptor)
            except OSError as error:
                await self._fail_on_disk_error(error)

    def take(self) -> Path:
        """The finished temp file, now the caller's to rename (still open and locked until `discard()`, so a sweep
        cannot delete it before it is renamed)."""
        assert self.stored and self.path is not None
        self._taken = True
        return self.path

    def give_back(self) -> None:
        """Undo `take()` (the rename failed or was undone): `discard` deletes the file again."""
        self._taken = False

    async def discard(self) -> None:
        """Delete the temp file unless it was taken; safe to call more than once, and while being cancelled."""
        with trio.CancelScope(shield=True):
            self._close()
            if self.path is not None and not self._taken:
                path, self.path = self.path, None
                await trio.to_thread.run_sync(functools.partial(Path(path).unlink, missing_ok=True))

    # -- internals ------------------------------------------------------------------------------------------

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        over_limit = self.limit is not None and self.size > self.limit and self.failure is None
        if over_limit:
            self.failure = self._too_large()
            await self._drop_file()
        descriptor = self._descriptor if self.failure is None else None
        try:
            await trio.to_thread.run_sync(_write_and_hash, descriptor, batch, self._digest)
        except OSError as error:
            await self._fail_on_disk_error(error)

    async def _fail_on_disk_error(self, error: OSError) -> None:
        if error.errno not in DISK_FULL:
            raise error
        self.failure = storage_full(self.label, error)
        log.warning("upload not stored: %s", self.failure.message)
        await self._drop_file()

    async def _drop_file(self) -> None:
        self._close()
        if self.path is not None:
            path, self.path = self.path, None
            await trio.to_thread.run_sync(functools.partial(Path(path).unlink, missing_ok=True))

    def _close(self) -> None:
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            os.close(descriptor)


def storage_full(label: str, error: OSError) -> StorageFull:
    """The StorageFull for a write of `label` that failed with ENOSPC or EDQUOT."""
    return StorageFull(
        f"Not enough free space in filmroll's data directory to store {label} "
        f"({error.strerror or errno.errorcode.get(error.errno or 0, 'ENOSPC')})"
    )


def _create_temp(folder: Path) -> tuple[int, Path]:
    """A new temp file in `folder`, open for writing and locked (`flock`, exclusive) by this process."""
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = folder / f"{os.urandom(12).hex()}.part"
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # waits only while a sweep that found it unlocked deletes it
        if _still_named(descriptor, path):
            return descriptor, path
        os.close(descriptor)  # a sweep took it between the open and the lock: another name
    raise FileExistsError(errno.EEXIST, "no free temp name", str(folder))


def _still_named(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


def _write_and_hash(descriptor: int | None, data: bytes, digest: hashlib._Hash) -> None:
    """Runs in a worker thread: hashing large buffers releases the GIL."""
    digest.update(data)
    if descriptor is None:
        return
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def sweep_incoming(folder: Path) -> int:
    """Delete the temp files in `folder` that no process holds: their uploads died with their process (blocking:
    run in a thread). A running upload's file is locked and stays, in this process or another. Returns how many
    went."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            descriptor = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # unlinked while locked: a creator that opened it meanwhile finds it gone and takes another name
            os.unlink(entry.path)
            removed += 1
        except (BlockingIOError, FileNotFoundError):
            continue  # a running upload's, or landed meanwhile
        finally:
            os.close(descriptor)
    return removed


# -- multipart ---------------------------------------------------------------------------------------------------


@dataclass
class ReceivedForm:
    """What a multipart body carried: text parts by name (the first of each name), and the file parts that were
    stored, by part name, with the file name each was sent with."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, IncomingFile] = field(default_factory=dict)
    file_names: dict[str, str] = field(default_factory=dict)
    repeated: set[str] = field(default_factory=set)
    """Names of text parts sent more than once (to NestJS, an array: the caller refuses them)."""


FileTarget = Callable[[str, str], Awaitable[IncomingFile | None]]
"""Called when a file part starts, with (part name, file name as sent): an IncomingFile to stream it into (now
owned by the caller), or None to read the part and drop it."""


async def receive_form(
    receive: Callable[[], Awaitable[bytes]],
    boundary: bytes,
    open_file: FileTarget,
    *,
    max_field_bytes: int = MAX_FIELD_BYTES,
    max_parts: int = MAX_FIELDS,
) -> ReceivedForm:
    """Decode a multipart/form-data body read chunk by chunk with `receive()` (b"" at the end).

    Every file part is offered to `open_file` once; text parts are decoded as UTF-8. Each accepted file is
    `finish()`ed when the body ends. Raises InvalidInput for a malformed body, an oversized text part or too many
    parts. The files `open_file` returned stay the caller's to discard, whatever happens here.
    """
    decoder = MultipartDecoder(boundary, max_parts=max_parts)
    feeder = _DelimiterSafeFeeder(decoder, boundary)
    form = ReceivedForm()
    text_name: str | None = None
    text: bytearray | None = None
    target: IncomingFile | None = None
    in_file = False
    while True:
        chunk = await receive()
        feeder.feed(chunk)
        while True:
            try:
                event = decoder.next_event()
            except RequestEntityTooLarge:
                raise InvalidInput(
                    f"Too many parts in the multipart/form-data body (at most {max_parts})"
                ) from None
            except ValueError:  # werkzeug: missing headers or boundary, bad UTF-8 in part headers
                raise InvalidInput(MALFORMED) from None
            if event is NEED_DATA:
                break
            if isinstance(event, File):
                in_file, text_name, text = True, None, None
                target = None
                if event.name not in form.file_names:
                    form.file_names[event.name] = event.filename
                    target = await open_file(event.name, event.filename)
                    if target is not None:
                        form.files[event.name] = target
            elif isinstance(event, Field):
                in_file, target = False, None
                text_name, text = event.name, bytearray()
            elif isinstance(event, Data):
                if in_file:
                    if target is not None:
                        await target.write(event.data)
                elif text is not None:
                    text.extend(event.data)
                    if len(text) > max_field_bytes:
                        raise InvalidInput([f"{text_name} must be shorter than {max_field_bytes} bytes"])
                    if not event.more_data and text_name is not None:
                        try:
                            if text_name in form.fields:
                                form.repeated.add(text_name)
                            form.fields.setdefault(text_name, text.decode("utf-8"))
                        except UnicodeDecodeError:
                            raise InvalidInput([f"{text_name} must be UTF-8 text"]) from None
                        text_name, text = None, None
            elif isinstance(event, Epilogue):
                for incoming in form.files.values():
                    await incoming.finish()
                return form
        if not chunk:
            raise InvalidInput(MALFORMED)  # the decoder would have raised; defensive
        if len(decoder.buffer) > MAX_PENDING_BYTES + len(chunk):
            raise InvalidInput(MALFORMED)  # part headers that never end, or no boundary where one must be


class _DelimiterSafeFeeder:
    """Feeds a `MultipartDecoder` so that its buffer never ends inside a part delimiter.

    werkzeug's decoder (3.1) mistakes the leading CR of a delimiter for data when its buffer ends partway through
    the delimiter, e.g. in the closing `--boundary--` (buffer `...\r\n--boundary-`): the stored file then gains a
    stray `\r` whenever a network chunk happens to end there. So the last `window` bytes (the longest delimiter)
    are held back from their first CR or LF on, and handed over with the next chunk: a delimiter reaches the
    decoder whole, or cut only right after its leading CR, which the decoder handles. `feed(b"")` ends the body.
    """

    def __init__(self, decoder: MultipartDecoder, boundary: bytes):
        self.decoder = decoder
        self.window = len(b"\r\n--" + boundary + b"--\r\n")
        self.held = b""

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            if self.held:
                self.decoder.receive_data(self.held)
                self.held = b""
            self.decoder.receive_data(None)
            return
        data = self.held + chunk if self.held else chunk
        start = max(0, len(data) - self.window)
        breaks = [found for found in (data.find(b"\r", start), data.find(b"\n", start)) if found != -1]
        cut = min(breaks) if breaks else len(data)
        self.held = data[cut:]
        if cut:
            self.decoder.receive_data(data[:cut])
