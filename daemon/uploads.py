"""Uploads (`POST /api/assets`) and the bulk duplicate check (`libraries.md` §14, `api-compat.md` §6-§7).

The rules that live here:
- an upload goes into an upload library of the caller: the one named by `libraryId` (which must be theirs and of
  type UPLOAD), else their oldest;
- a duplicate is content (SHA-1) the owner already has in an upload library, trashed assets included; it is
  answered 200 `duplicate` with the existing id and the received bytes are dropped. Owners are never compared with
  each other, and external assets never count;
- the quota: usage + size > quota refuses the upload (`'Quota has been exceeded!'`); a stored upload adds its size;
- the body is received to a temp file under the data directory while hashing (`daemon.upload_stream`), and the
  file lands at `storage_template.legacy_upload_path` (the storage template moves it later);
- landing is one synchronous step — duplicate re-check, rename into place, one write transaction (asset, checksum
  entry, quota usage, media jobs) — with no await inside, so of concurrent identical uploads exactly one creates
  the asset and the others are answered `duplicate` with its id (trio runs one task at a time);
- on a duplicate, an error, a cancelled request (client gone) or a full disk, nothing is left behind: no temp
  file, no index entry;
- a killed daemon leaves nothing either, once it restarts (`sweep_incoming`): temp files no process holds go, and
  a landing the kill cut between its renames and its write transaction is undone, found by the marker
  `<data>/upload/.incoming/<asset id>.landing` (holding the landing path) that lives exactly that long.

Public API (`UploadService`): `duplicate_of_header`, `bulk_check`, `upload`; and `parse_checksum`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import os
import re
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import msgspec
import trio

from . import assets as asset_index
from . import job_queue
from .access import Principal
from .asset_edits import visibility_of
from .durable import fsync_folder, make_folders
from .errors import FilmrollError, InvalidInput, NotFoundOrNoAccess, QuotaExceeded
from .ids import new_id
from .index import LIBRARIES, USERS, Index, Txn
from .libraries import oldest_upload_library
from .media_types import SIDECAR_EXTENSIONS, asset_type, extension
from .paths import is_within
from .records import Asset, Library, Visibility
from .storage_template import legacy_upload_path
from .timeutil import utc_now
from .upload_stream import (
    DISK_FULL,
    IncomingFile,
    incoming_folder,
    receive_form,
    storage_full,
    sweep_incoming,
)
from .xmp import sidecar_of

log = logging.getLogger(__name__)

PERMISSION = "asset.upload"
ASSET_PART = "assetData"
SIDECAR_PART = "sidecarData"
LANDING_MARKER = ".landing"
"""`<asset id>.landing` in the incoming folder: a landing in progress (its content is the landing path)."""
MAX_SIDECAR_BYTES = 16 * 1024 * 1024
"""An XMP sidecar is text of a few KiB; anything near this is not one."""
VISIBILITIES = ("archive", "timeline", "hidden", "locked")
"""Immich's `AssetVisibility`, in its order (the validation message lists them so)."""

_HEX_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_checksum(text: str) -> bytes | None:
    """A SHA-1 given as 40 hex or 28 base64 characters (`api-compat.md` §7); None when it is neither."""
    text = text.strip()
    if len(text) == 40 and _HEX_SHA1.fullmatch(text):
        return bytes.fromhex(text)
    if len(text) == 28:
        try:
            digest = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
        return digest if len(digest) == 20 else None
    return None


def safe_file_name(name: str) -> str:
    """The last component of a client's file name (`/` and `\\` both separate), without control characters and
    lone surrogates; `''` when nothing usable is left (`..`, `.`, empty). It is a label: uploads land under names
    filmroll makes, so a client's name can never choose where a file goes."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c for c in last if unicodedata.category(c) not in ("Cc", "Cs")).strip()
    return "" if kept in (".", "..") else kept


@dataclass(frozen=True)
class UploadResult:
    asset_id: uuid.UUID
    status: Literal["created", "duplicate"]

    @property
    def created(self) -> bool:
        return self.status == "created"


@dataclass(frozen=True)
class BulkCheckResult:
    """One answer of `bulk_check`: `accept`, or `reject` (a duplicate) with the existing asset."""

    id: str
    action: Literal["accept", "reject"]
    asset_id: uuid.UUID | None = None
    is_trashed: bool | None = None


@dataclass(frozen=True)
class UploadForm:
    """The validated text parts of an upload."""

    file_created_at: datetime
    """The instant, UTC."""
    local_date_time: datetime
    """The client's wall-clock time, labelled UTC (Immich's `localDateTime` convention)."""
    file_mtime_ns: int
    is_favorite: bool
    visibility: Visibility
    library_id: uuid.UUID | None
    file_name: str | None
    """The `filename` override, sanitised (None when absent or unusable)."""
    device_asset_id: str
    device_id: str


def _parse_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        parsed.astimezone(UTC)  # `0001-01-01T00:00+01:00` lies before year 1 in UTC: not a date Python can hold
    except (ValueError, OverflowError):
        return None
    return parsed


def _parse_bool(value: str | None, name: str, problems: list[str]) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    problems.append(f"{name} must be a boolean value")
    return None


MTIME_RANGE = (_EPOCH + timedelta(microseconds=-(1 << 63) // 1000 + 1),
               _EPOCH + timedelta(microseconds=((1 << 63) - 1) // 1000))  # fmt: skip
"""The moments an mtime in ns can hold (what filesystems and the index store): about 1677-09-22 to 2262-04-11."""


_REPEATED_MESSAGES = {
    "fileCreatedAt": "must be a Date instance", "fileModifiedAt": "must be a Date instance",
    "isFavorite": "must be a boolean value", "isArchived": "must be a boolean value",
    "libraryId": "must be a UUID", "livePhotoVideoId": "must be a UUID",
}  # fmt: skip
"""What class-validator says of a text part sent twice (an array); any other name: `must be a string`."""


IdParser = Callable[[str, str], uuid.UUID]
"""How the HTTP adapter reads an id sent as text: `api.validation.parse_uuid(value, field)`, the one place that
holds Immich's UUID rule; it raises InvalidInput `["<field> must be a UUID"]`."""


def parse_form(
    fields: dict[str, str], *, has_asset_data: bool, parse_id: IdParser, repeated: set[str] | None = None
) -> UploadForm:
    """Validate the text parts (`api-compat.md` §7 table). Raises InvalidInput with class-validator messages.
    `libraryId` is read by `parse_id` (Immich's `@ValidateUUID({ optional: true })`: when present, even empty, it
    must be a UUID).

    Unknown parts, `fileSize`, `duration`, `livePhotoVideoId` and `metadata` are ignored."""
    problems: list[str] = []
    if not has_asset_data:
        problems.append(f"{ASSET_PART} should not be empty")
    for name in sorted(repeated or ()):
        problems.append(f"{name} {_REPEATED_MESSAGES.get(name, 'must be a string')}")
    created = _parse_date(fields.get("fileCreatedAt"))
    if created is None:
        problems.append("fileCreatedAt must be a Date instance")
    modified = _parse_date(fields.get("fileModifiedAt"))
    if modified is None:
        problems.append("fileModifiedAt must be a Date instance")
    elif not MTIME_RANGE[0] <= modified <= MTIME_RANGE[1]:  # a file's mtime, in ns, fits in 64 bits (the index's)
        problems.append("fileModifiedAt must be a date between 1677-09-22 and 2262-04-11")
    is_favorite = _parse_bool(fields.get("isFavorite"), "isFavorite", problems)
    is_archived = _parse_bool(fields.get("isArchived"), "isArchived", problems)
    visibility = fields.get("visibility")
    if visibility is not None and visibility not in VISIBILITIES:
        problems.append("visibility must be one of the following values: " + ", ".join(VISIBILITIES))
    library_id = None
    # present, even empty, it is validated (Immich's `Optional` skips only an absent value)
    if "libraryId" in fields and "libraryId" not in (repeated or ()):
        try:
            library_id = parse_id(fields["libraryId"], "libraryId")
        except InvalidInput as error:
            problems.extend([error.message] if isinstance(error.message, str) else error.message)
    if problems:
        raise InvalidInput(problems)
    assert created is not None and modified is not None
    visibility = visibility_of(visibility, is_archived) or "timeline"
    override = safe_file_name(fields["filename"]) if fields.get("filename") else ""
    return UploadForm(
        file_created_at=created.astimezone(UTC),
        local_date_time=created.replace(tzinfo=UTC),
        file_mtime_ns=(modified - _EPOCH) // timedelta(microseconds=1) * 1000,
        is_favorite=bool(is_favorite),
        visibility=visibility,  # type: ignore[arg-type]
        library_id=library_id,
        file_name=override or None,
        device_asset_id=fields.get("deviceAssetId", ""),
        device_id=fields.get("deviceId", ""),
    )


class _AlreadyStored(Exception):
    """A signal out of the write transaction (not an error): the content was stored meanwhile."""

    def __init__(self, asset_id: uuid.UUID):
        self.asset_id = asset_id


Receive = Callable[[], Awaitable[bytes]]
"""The next chunk of the request body; b"" once it has all arrived."""


class UploadService:
    """Uploads into the caller's upload libraries, and the duplicate checks that go with them."""

    def __init__(self, index: Index, data_dir: str | os.PathLike[str]):
        self.index = index
        self.data_dir = Path(data_dir)
        self.incoming = incoming_folder(data_dir)

    # -- duplicates ----------------------------------------------------------------------------------------

    def duplicate_of_header(self, principal: Principal, checksum: str) -> uuid.UUID | None:
        """The id of the caller's upload asset with the SHA-1 of an `x-immich-checksum` header, if there is
        one (an unparsable header is no answer: the upload goes on and deduplicates on the bytes)."""
        digest = parse_checksum(checksum)
        if digest is None:
            return None
        with self.index.read() as txn:
            existing = asset_index.by_checksum(txn, principal.user.id, digest)
        return None if existing is None else existing.id

    def bulk_check(self, principal: Principal, items: Sequence[tuple[str, str]]) -> list[BulkCheckResult]:
        """Per (client id, checksum), in order and in one read transaction: `accept`, or `reject` with the
        caller's existing upload asset. An unparsable checksum is accepted (the upload deduplicates later)."""
        owner = principal.user.id
        results = []
        with self.index.read() as txn:
            for item_id, checksum in items:
                digest = parse_checksum(checksum)
                existing = None if digest is None else asset_index.by_checksum(txn, owner, digest)
                if existing is None:
                    results.append(BulkCheckResult(id=item_id, action="accept"))
                else:
                    results.append(BulkCheckResult(id=item_id, action="reject", asset_id=existing.id,
                                                   is_trashed=existing.trashed_at is not None))  # fmt: skip
        return results

    # -- uploading -----------------------------------------------------------------------------------------

    async def upload(
        self, principal: Principal, receive: Receive, boundary: bytes | None, *, parse_id: IdParser
    ) -> UploadResult:
        """Receive a multipart body (`boundary` None: not multipart, read and dropped) and store its asset;
        `parse_id` reads `libraryId` (`IdParser`).

        Returns `created` with the new id, or `duplicate` with the existing one. Raises InvalidInput (unsupported
        file type, validation, bad `libraryId`: NotFoundOrNoAccess, QuotaExceeded) or StorageFull, after the
        body has been read; a cancellation (client gone) propagates. In every case but `created`, every temp file
        is deleted and the index is untouched. The caller has checked the `asset.upload` permission.
        """
        owner_id = principal.user.id
        opened: list[IncomingFile] = []
        early: list[FilmrollError] = []

        async def open_part(name: str, sent_name: str) -> IncomingFile | None:
            if early or name not in (ASSET_PART, SIDECAR_PART):
                return None  # after a refused part, the rest of the body is only read
            label = safe_file_name(sent_name)
            if name == ASSET_PART:
                supported = asset_type(label) is not None
            else:
                supported = extension(label) in SIDECAR_EXTENSIONS
            if not supported:
                early.append(InvalidInput(f"Unsupported file type {label or sent_name}"))
                return None
            if name == ASSET_PART:
                limit, too_large = self._remaining_quota(owner_id), QuotaExceeded
            else:
                limit, too_large = MAX_SIDECAR_BYTES, None
            incoming = await IncomingFile.create(self.incoming, label, limit=limit, too_large=too_large)
            opened.append(incoming)
            return incoming

        try:
            if boundary is None:
                while await receive():
                    pass
                fields, files, names, repeated = {}, {}, {}, set()
            else:
                form = await receive_form(receive, boundary, open_part)
                fields, files, names, repeated = form.fields, form.files, form.file_names, form.repeated
            if early:
                raise early[0]
            parsed = parse_form(
                fields, has_asset_data=ASSET_PART in files, parse_id=parse_id, repeated=repeated
            )
            return await self._store(principal, parsed, files[ASSET_PART], files.get(SIDECAR_PART),
                                     safe_file_name(names[ASSET_PART]))  # fmt: skip
        finally:
            for incoming in opened:
                await incoming.discard()  # shielded; nothing left unless it landed

    async def _store(
        self,
        principal: Principal,
        form: UploadForm,
        original: IncomingFile,
        sidecar: IncomingFile | None,
        sent_name: str,
    ) -> UploadResult:
        owner_id = principal.user.id
        library = self._library(principal, form.library_id)
        with self.index.read() as txn:
            existing = asset_index.by_checksum(txn, owner_id, original.sha1)
        if existing is not None:
            return UploadResult(existing.id, "duplicate")
        if original.failure is not None:
            raise original.failure  # over quota while streaming, or the disk filled up
        self._check_quota(owner_id, original.size)
        if sidecar is not None and sidecar.failure is not None:
            raise sidecar.failure

        asset_id = new_id()
        ext = extension(sent_name)
        landing = legacy_upload_path(self.data_dir, owner_id, asset_id, ext)
        try:
            await trio.to_thread.run_sync(make_folders, landing.parent)
        except OSError as error:
            if error.errno in DISK_FULL:
                raise storage_full(sent_name, error) from error
            raise
        sidecar_stat = None
        if sidecar is not None:
            sidecar_stat = await trio.to_thread.run_sync(os.stat, sidecar.path)
        now = utc_now()
        asset = Asset(
            id=asset_id,
            owner_id=owner_id,
            library_id=library.id,
            type=asset_type(sent_name),  # type: ignore[arg-type]  (checked when the part started)
            original_path=os.fsencode(landing),
            file_size=original.size,
            file_mtime_ns=form.file_mtime_ns,
            file_created_at=form.file_created_at,
            local_date_time=form.local_date_time,
            created_at=now,
            updated_at=now,
            is_favorite=form.is_favorite,
            visibility=form.visibility,
            content_sha1=original.sha1,
            sidecar_path=os.fsencode(sidecar_of(landing)) if sidecar is not None else None,
            sidecar_mtime_ns=sidecar_stat.st_mtime_ns if sidecar_stat is not None else None,
            device_asset_id=form.device_asset_id,
            device_id=form.device_id,
            original_file_name=form.file_name or sent_name,
        )
        # the stored file carries the client's modification time, as the index does (and Immich does): the FUSE
        # view and backups show the same mtime as the API
        await trio.to_thread.run_sync(
            functools.partial(os.utime, original.path, ns=(time.time_ns(), form.file_mtime_ns))
        )
        result = self._land(asset, original, sidecar, landing)
        if result.created:
            try:
                await trio.to_thread.run_sync(fsync_folder, landing.parent)
            except OSError as error:  # the asset exists; the rename is as durable as the filesystem makes it
                log.warning("could not fsync %s after an upload: %s", landing.parent, error.strerror)
        return result

    def _land(
        self, asset: Asset, original: IncomingFile, sidecar: IncomingFile | None, landing: Path
    ) -> UploadResult:
        """The one synchronous step (no await: no other task runs until it returns): re-check for a duplicate,
        rename the received files into place, write the index. Any failure puts the files back where `discard`
        finds them."""
        with self.index.read() as txn:
            existing = asset_index.by_checksum(txn, asset.owner_id, original.sha1)
        if existing is not None:
            return UploadResult(existing.id, "duplicate")
        renamed: list[tuple[Path, Path]] = []
        taken = [original] if sidecar is None else [original, sidecar]
        marker = self.incoming / f"{asset.id}{LANDING_MARKER}"
        try:
            # until the index has the asset, the marker says where a crash left files to undo (at the next start)
            marker.write_bytes(os.fsencode(landing))
            renamed.append((original.take(), landing))
            if sidecar is not None:
                renamed.append((sidecar.take(), sidecar_of(landing)))
            for source, destination in renamed:
                os.rename(source, destination)
            self.index.write(lambda txn: _create(txn, asset, utc_now()))
        except BaseException as error:
            _undo_renames(renamed)
            for incoming in taken:
                incoming.give_back()
            if isinstance(error, _AlreadyStored):
                return UploadResult(error.asset_id, "duplicate")
            if (
                isinstance(error, OSError) and error.errno in DISK_FULL
            ):  # a rename may need a new folder block
                raise storage_full(asset.original_file_name, error) from error
            raise
        finally:
            marker.unlink(missing_ok=True)
        log.info("upload stored: %s (%d bytes) as %s", asset.original_file_name, asset.file_size, asset.id)
        return UploadResult(asset.id, "created")

    # -- rules ---------------------------------------------------------------------------------------------

    def _library(self, principal: Principal, library_id: uuid.UUID | None) -> Library:
        """The named upload library of the caller, else their oldest; NotFoundOrNoAccess otherwise."""
        with self.index.read() as txn:
            if library_id is not None:
                library = txn.get(LIBRARIES, library_id.bytes)
                if _is_upload_library_of(library, principal.user.id):
                    assert library is not None
                    return library
            else:
                library = oldest_upload_library(txn, principal.user.id)
                if library is not None:
                    return library
        raise NotFoundOrNoAccess(PERMISSION)

    def _remaining_quota(self, owner_id: uuid.UUID) -> int | None:
        with self.index.read() as txn:
            user = txn.get(USERS, owner_id.bytes)
        if user is None or user.quota_size_in_bytes is None:
            return None
        return max(0, user.quota_size_in_bytes - user.quota_usage_in_bytes)

    def _check_quota(self, owner_id: uuid.UUID, size: int) -> None:
        remaining = self._remaining_quota(owner_id)
        if remaining is not None and size > remaining:
            raise QuotaExceeded()

    async def sweep_incoming(self) -> None:
        """What uploads that died with their process left (the daemon does it as it starts, before serving):
        landings cut before their write transaction are undone, then temp files no process holds go."""
        markers = await trio.to_thread.run_sync(_landing_markers, self.incoming, self.data_dir / "upload")
        with self.index.read() as txn:
            undone = [landing for asset_id, landing in markers if asset_index.get(txn, asset_id) is None]
        for landing in undone:
            await trio.to_thread.run_sync(_remove_landed, landing)
        if undone:
            log.info(
                "undid %d upload(s) cut short while landing: %s", len(undone), ", ".join(map(str, undone))
            )
        removed = await trio.to_thread.run_sync(sweep_incoming, self.incoming)
        if removed:
            log.info("removed %d temp file(s) of interrupted uploads from %s", removed, self.incoming)


def _is_upload_library_of(library: Library | None, owner_id: uuid.UUID) -> bool:
    return (
        library is not None
        and library.type == "UPLOAD"
        and library.owner_id == owner_id
        and library.deleted_at is None
    )


def _create(txn: Txn, asset: Asset, now: datetime) -> None:
    """The upload's write transaction: the rules re-checked against the committed state, then the asset, its
    checksum entry, the owner's quota usage and its media work, together."""
    existing = asset_index.by_checksum(txn, asset.owner_id, asset.content_sha1 or b"")
    if existing is not None:
        raise _AlreadyStored(existing.id)
    owner = txn.get(USERS, asset.owner_id.bytes)
    if owner is None or owner.deleted_at is not None:
        raise NotFoundOrNoAccess(PERMISSION)
    if not _is_upload_library_of(txn.get(LIBRARIES, asset.library_id.bytes), asset.owner_id):
        raise NotFoundOrNoAccess(PERMISSION)
    usage = owner.quota_usage_in_bytes + asset.file_size
    if owner.quota_size_in_bytes is not None and usage > owner.quota_size_in_bytes:
        raise QuotaExceeded()
    keys = asset_index.insert_many(txn, [asset])
    asset_index.add_checksum(txn, asset)
    txn.put(USERS, owner.id.bytes, msgspec.structs.replace(owner, quota_usage_in_bytes=usage))
    job_queue.enqueue_new_many(txn, keys, keys if asset.type == "VIDEO" else [], now)


def _landing_markers(folder: Path, upload_root: Path) -> list[tuple[uuid.UUID, Path]]:
    """(asset id, landing path) of every landing marker in `folder` (blocking). A marker the crash cut short names
    no file of its asset below `upload_root` and is skipped: nothing was renamed yet (the sweep deletes it)."""
    found = []
    root = os.fsencode(os.path.realpath(upload_root))
    for marker in folder.glob(f"*{LANDING_MARKER}"):
        try:
            asset_id = uuid.UUID(marker.name.removesuffix(LANDING_MARKER))
            landing = Path(os.path.realpath(os.fsdecode(marker.read_bytes())))  # no `..` or link leads out
        except (ValueError, OSError):
            continue
        if landing.stem == str(asset_id) and is_within(os.fsencode(landing), root):
            found.append((asset_id, landing))
    return found


def _remove_landed(landing: Path) -> None:
    """Delete the original (and sidecar) an interrupted landing renamed into place (blocking)."""
    for path in (landing, sidecar_of(landing)):
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("could not remove %s of an interrupted upload: %s", path, error.strerror)


def _undo_renames(renamed: list[tuple[Path, Path]]) -> None:
    for source, destination in reversed(renamed):
        try:
            os.rename(destination, source)
        except FileNotFoundError:
            continue  # this one was never renamed
        except OSError as error:
            log.warning("could not move %s back after a failed upload: %s", destination, error.strerror)
