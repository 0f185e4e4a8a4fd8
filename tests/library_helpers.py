"""Helpers for library tests: real folders of real (small) JPEG/MP4-named files, and scans run for real."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import trio

from daemon import assets as asset_index
from daemon import libraries
from daemon.access import Principal
from daemon.check import check_index
from daemon.crawl import ScopeEntry
from daemon.index import ASSETS, USERS
from daemon.records import Asset, Library, User
from daemon.scan import LibraryScan, ScanMode, ScanSummary
from daemon.services import Services
from daemon.storage_template import legacy_upload_path


def write(
    path: Path | bytes, content: bytes = b"\xff\xd8\xff\xe0 jpeg-ish", mtime: float | None = None
) -> None:
    path = os.fsencode(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@dataclass
class World:
    services: Services
    user: User
    principal: Principal
    external: Path  # the user's external path
    data_dir: Path

    def library(
        self, *import_paths: Path | str, exclusions: list[str] | None = None, name: str | None = None
    ) -> Library:
        return self.services.libraries.create(
            self.principal,
            name=name,
            import_paths=[str(p) for p in import_paths],
            exclusion_patterns=exclusions if exclusions is not None else [],
        )

    def reload(self, library: Library) -> Library:
        return self.services.libraries.get(self.principal, library.id)

    async def scan(
        self, library: Library, mode: ScanMode = ScanMode.NEW, scope: list[ScopeEntry] | None = None
    ) -> ScanSummary:
        scan = LibraryScan(self.services.index, self.reload(library), self.services.users.get(self.user.id),
                           data_dir=str(self.data_dir), mode=mode, scope=scope)  # fmt: skip
        summary = await scan.run()
        assert check_index(self.services.index) == []
        return summary

    async def process_media(self, timeout: float = 60) -> None:
        """Run the media queues (real worker processes) until nothing waits or runs."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.services.media.run)
            with trio.fail_after(timeout):
                await self.services.media.idle()
            nursery.cancel_scope.cancel()

    def assets(self, library: Library) -> dict[bytes, Asset]:
        """path -> asset, for every asset of the library."""
        with self.services.index.read() as txn:
            return {
                path: txn.get(ASSETS, entry.asset_id.bytes)
                for path, entry in asset_index.of_library(txn, library.id)
            }

    def paths(self, library: Library, *, online: bool | None = None) -> set[bytes]:
        return {p for p, a in self.assets(library).items() if online is None or a.is_offline != online}


NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def upload_asset(
    services: Services,
    user: User,
    content: bytes,
    name: str,
    library_id: uuid.UUID | None = None,
    *,
    sidecar: bytes | None = None,
) -> Asset:
    """An upload-library asset with a real file under `<data>/upload/<user>/` (and, with `sidecar`, its `.xmp`),
    stored in the index as the upload path stores it (checksum entry, quota usage), without media work queued.
    Default library: the user's first upload library."""
    with services.index.read() as txn:
        library_id = library_id or next(
            lib.id for lib in libraries.libraries_of(txn, user.id) if lib.type == "UPLOAD"
        )
    asset_id = uuid.uuid4()
    extension = os.path.splitext(name)[1]
    path = os.fsencode(legacy_upload_path(services.settings.data_dir, user.id, asset_id, extension))
    write(path, content)
    if sidecar is not None:
        write(path + b".xmp", sidecar)
    asset = Asset(id=asset_id, owner_id=user.id, library_id=library_id, type="IMAGE", original_path=path,
                  file_size=len(content), file_mtime_ns=0, file_created_at=NOW, local_date_time=NOW,
                  created_at=NOW, updated_at=NOW, content_sha1=hashlib.sha1(content).digest(),
                  original_file_name=name, sidecar_path=path + b".xmp" if sidecar is not None else None)  # fmt: skip

    def work(txn):
        asset_index.insert_many(txn, [asset])
        asset_index.add_checksum(txn, asset)
        user_now = txn.get(USERS, user.id.bytes)
        txn.put(USERS, user.id.bytes, msgspec.structs.replace(
            user_now, quota_usage_in_bytes=user_now.quota_usage_in_bytes + len(content)))  # fmt: skip

    services.index.write(work)
    return asset
