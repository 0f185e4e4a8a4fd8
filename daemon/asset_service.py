"""Assets as the API sees them: access checks, their metadata and job failures, the owner's changes (favourite,
visibility, metadata edits: `daemon.asset_edits`), and the bytes clients download (originals, thumbnails,
previews, playback), opened read-only and confined before anything is read. Deletion and the trash are
`daemon.trash`; statistics and the timeline `daemon.timeline`; search `daemon.search`.

Access (`Principal.require_owner`): assets are personal; anyone else gets Immich's `Not found or no asset.<x>
access`, the same answer as for an id that does not exist.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import trio

from . import asset_edits, job_queue
from . import assets as asset_index
from .access import Principal
from .asset_edits import AssetChanges
from .derived import MIME_TYPES, DerivedFiles
from .errors import FileUnavailable, InvalidInput, NotFoundOrNoAccess
from .index import ASSET_EDITS, EXIF, Index, Txn
from .media_queue import open_located
from .media_types import mime_type
from .originals import NotConfined, open_original
from .records import Asset, ExifInfo, JobFailure
from .timeutil import utc_now

AssetJobName = Literal["regenerate-thumbnail", "refresh-metadata", "transcode-video", "refresh-faces"]


@dataclass
class OpenedFile:
    """A file opened for a download; whoever receives it owns (and must close) the descriptor."""

    descriptor: int
    size: int
    mtime_ns: int
    mime_type: str
    etag: str
    file_name: str


@dataclass
class AssetDetails:
    asset: Asset
    exif: ExifInfo | None
    failures: list[JobFailure]
    checksum: bytes
    """Immich's `checksum` (`assets.Checksums`)."""


def owned_assets(
    index: Index, principal: Principal, asset_ids: list[uuid.UUID], permission: str
) -> list[Asset]:
    """The caller's assets with these ids, all of them or none: any id that is unknown or not the caller's
    raises NotFoundOrNoAccess for `permission`."""
    with index.read() as txn:
        found = [asset_index.get(txn, asset_id) for asset_id in asset_ids]
    for asset in found:
        if asset is None:
            raise NotFoundOrNoAccess(permission)
        principal.require_owner(asset.owner_id, permission)
    return found  # type: ignore[return-value]


class AssetService:
    def __init__(self, index: Index, derived: DerivedFiles):
        self.index = index
        self.derived = derived

    def get(self, principal: Principal, asset_id: uuid.UUID, permission: str = "asset.read") -> Asset:
        with self.index.read() as txn:
            asset = asset_index.get(txn, asset_id)
        if asset is None:
            raise NotFoundOrNoAccess(permission)
        principal.require_owner(asset.owner_id, permission)
        return asset

    def checksums(self, assets: Sequence[Asset]) -> list[bytes]:
        """Immich's `checksum` of each asset (`assets.Checksums`), in one read transaction (none for no assets)."""
        if not assets:
            return []
        with self.index.read() as txn:
            checksum = asset_index.Checksums(txn).of
            return [checksum(asset) for asset in assets]

    def details(self, principal: Principal, asset_id: uuid.UUID) -> AssetDetails:
        asset = self.get(principal, asset_id)
        with self.index.read() as txn:
            return AssetDetails(
                asset,
                txn.get(EXIF, asset_id.bytes),
                job_queue.failures_of(txn, asset_id),
                asset_index.Checksums(txn).of(asset),
            )

    # -- updates (`PUT /api/assets…`) --------------------------------------------------------------------

    def update(self, principal: Principal, asset_id: uuid.UUID, changes: AssetChanges) -> AssetDetails:
        """Change one asset (favourite, visibility, metadata edits) and return it as it is now."""
        self.update_many(principal, [asset_id], changes)
        return self.details(principal, asset_id)

    def update_many(self, principal: Principal, asset_ids: list[uuid.UUID], changes: AssetChanges) -> None:
        """Apply `changes` to every asset, in one write transaction; all of them or none (any asset not the
        caller's: NotFoundOrNoAccess for `asset.update`, nothing changed). Metadata edits are stored in
        `asset_edits` and overlaid on `exif` (`daemon.asset_edits`); never written to files."""
        owned_assets(self.index, principal, asset_ids, "asset.update")
        if changes.is_empty:
            return
        now = utc_now()

        def work(txn: Txn) -> None:
            for asset_id in dict.fromkeys(asset_ids):
                asset = asset_index.get(txn, asset_id)
                if asset is not None:  # removed since the access check: nothing to change
                    apply_changes(txn, asset, changes, now)

        self.index.write(work)

    def request_jobs(self, principal: Principal, asset_ids: list[uuid.UUID], name: AssetJobName) -> None:
        """Immich's `POST /api/assets/jobs`: all of them or none (any asset not the caller's: 400)."""
        owned = [self.get(principal, asset_id, "asset.update") for asset_id in asset_ids]
        if name == "refresh-faces":
            return  # filmroll has no face recognition: nothing to do, as for an Immich without the ML service
        queue = {
            "regenerate-thumbnail": job_queue.THUMBNAILS,
            "refresh-metadata": job_queue.METADATA,
            "transcode-video": job_queue.VIDEO,
        }[name]
        now = utc_now()

        def work(txn: Txn) -> None:
            for asset in owned:
                if queue != job_queue.VIDEO or asset.type == "VIDEO":
                    job_queue.enqueue(txn, queue, asset.id, now, force=True)

        self.index.write(work)

    # -- bytes -----------------------------------------------------------------------------------------

    async def open_original(self, principal: Principal, asset_id: uuid.UUID) -> OpenedFile:
        """The original, opened read-only and confined (`originals.open_original`). Raises FileUnavailable
        when it is offline or cannot be read."""
        asset = self.get(principal, asset_id, "asset.download")
        return await self._open_original(asset)

    async def open_thumbnail(
        self, principal: Principal, asset_id: uuid.UUID, size: str
    ) -> tuple[OpenedFile, Asset]:
        """`thumbnail` (falls back to the preview), `preview` or `fullsize` (served as the preview)."""
        asset = self.get(principal, asset_id, "asset.view")
        for _ in range(2):  # a render may switch versions between reading the asset and opening its file
            if asset.thumbnail_version:
                for candidate in ["thumbnail", "preview"] if size == "thumbnail" else ["preview"]:
                    path = self.derived.image_path(asset.id, candidate, asset.thumbnail_version)
                    mime = MIME_TYPES[self.derived.output(candidate).format]
                    opened = await trio.to_thread.run_sync(_open_derived, path, mime)
                    if opened is not None:
                        opened.etag = f"{asset.id}-{candidate}-{asset.thumbnail_version}"
                        return opened, asset
            asset = self.get(principal, asset_id, "asset.view")
        raise FileUnavailable(f"Asset {asset.id} has no {size} yet")

    async def open_playback(self, principal: Principal, asset_id: uuid.UUID) -> OpenedFile:
        """The transcode if there is one, else the original (`media.md` §4.6)."""
        asset = self.get(principal, asset_id, "asset.view")
        if asset.type != "VIDEO":
            raise InvalidInput("Asset is not a video")
        if asset.has_encoded_video:
            opened = await trio.to_thread.run_sync(
                _open_derived, self.derived.encoded_video(asset.id), "video/mp4"
            )
            if opened is not None:
                return opened
        return await self._open_original(asset)

    async def _open_original(self, asset: Asset) -> OpenedFile:
        name = os.fsdecode(os.path.basename(asset.original_path))
        if asset.is_offline:
            raise FileUnavailable(f"{name} is offline")
        try:
            opened = await open_located(self.index, asset.id, _open_confined)
        except NotConfined as error:
            raise FileUnavailable(f"{name}: {error.strerror}") from error
        except OSError as error:
            raise FileUnavailable(
                f"{name}: {error.strerror or errno.errorcode.get(error.errno or 0)}"
            ) from error
        if opened is None:
            raise FileUnavailable(f"Asset {asset.id} no longer exists")
        _, (descriptor, stat) = opened
        return OpenedFile(
            descriptor=descriptor,
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            mime_type=mime_type(asset.original_path),
            etag=f"{asset.id}-{stat.st_size}-{stat.st_mtime_ns}",
            file_name=name,
        )


def apply_changes(txn: Txn, asset: Asset, changes: AssetChanges, now: datetime) -> Asset:
    """Inside the caller's write transaction: flags on the asset; edits into `asset_edits`, over `exif`, and a
    date edit onto `fileCreatedAt`/`localDateTime` (and so the timeline)."""
    fields: dict[str, object] = {}
    if changes.is_favorite is not None:
        fields["is_favorite"] = changes.is_favorite
    if changes.visibility is not None:
        fields["visibility"] = changes.visibility
    edits = dict(changes.edits)
    info = txn.get(EXIF, asset.id.bytes)
    if changes.moves_dates:
        edits.update(asset_edits.shifted(asset, info, changes.shift_minutes or 0, changes.time_zone))
    if edits:
        stored = asset_edits.merge(txn.get(ASSET_EDITS, asset.id.bytes), edits)
        txn.put(ASSET_EDITS, asset.id.bytes, stored)
        effective = asset_edits.overlay(info, stored)
        assert effective is not None
        txn.put(EXIF, asset.id.bytes, effective)
        fields.update(asset_edits.asset_fields(edits))
    return asset_index.update(txn, asset, **fields, updated_at=now)


def _open_confined(path: bytes, root: bytes | None) -> tuple[int, os.stat_result]:
    descriptor = open_original(path, root)
    return descriptor, os.fstat(descriptor)


def _open_derived(path: os.PathLike[str], mime: str) -> OpenedFile | None:
    """A derived file, or None when it is missing or unreadable (the caller falls back or answers 404)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    stat = os.fstat(descriptor)
    name = os.path.basename(os.fspath(path))
    return OpenedFile(
        descriptor, stat.st_size, stat.st_mtime_ns, mime, f"{stat.st_size}-{stat.st_mtime_ns}", name
    )
