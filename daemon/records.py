"""Typed records stored in the index.

Each record is a msgspec `Struct` encoded as a msgpack array (`array_like=True`): compact, fast, no pickle.
Evolving a record: append new fields at the end with a default, so older records still decode; anything else
needs a schema migration (`daemon.index.MIGRATIONS`). Ids are `uuid.UUID`, stored as 16 raw bytes.
"""

import uuid
from datetime import datetime
from typing import Literal

import msgspec

LibraryType = Literal["UPLOAD", "EXTERNAL"]
UserStatus = Literal["active", "removing", "deleted"]
AVATAR_COLORS = ("primary", "pink", "red", "yellow", "blue", "green", "purple", "orange", "gray", "amber")


class Record(msgspec.Struct, array_like=True, kw_only=True):
    pass


class User(Record, kw_only=True):
    id: uuid.UUID
    email: str
    name: str
    password_hash: str
    is_admin: bool = False
    avatar_color: str = "primary"
    storage_label: str | None = None
    external_path: str | None = None
    quota_size_in_bytes: int | None = None
    quota_usage_in_bytes: int = 0
    should_change_password: bool = False
    created_at: datetime
    updated_at: datetime
    profile_changed_at: datetime
    deleted_at: datetime | None = None
    status: UserStatus = "active"


class Session(Record, kw_only=True):
    """A login. Stored under the SHA-256 of its token; the token itself is never stored."""

    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    device_type: str = ""
    device_os: str = ""


class ApiKey(Record, kw_only=True):
    """An API key. Its secret is stored only as a SHA-256 hash (in `api_key_secret`)."""

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    permissions: list[str]
    secret_hash: bytes
    created_at: datetime
    updated_at: datetime


class Library(Record, kw_only=True):
    id: uuid.UUID
    owner_id: uuid.UUID
    type: LibraryType
    name: str
    import_paths: list[str] = []
    exclusion_patterns: list[str] = []
    created_at: datetime
    updated_at: datetime
    refreshed_at: datetime | None = None
    deleted_at: datetime | None = None


AssetType = Literal["IMAGE", "VIDEO"]
Visibility = Literal["timeline", "archive", "hidden", "locked"]


class Asset(Record, kw_only=True):
    """One photo or video. External assets are identified by (library, original_path); upload assets by content.

    `original_path` is the exact bytes of the path as crawled (or as stored, for uploads). Derivable values are not
    stored: the file name is the path's basename, `fileModifiedAt` comes from `file_mtime_ns`, an external asset's
    path checksum is SHA-1 of `b"path:" + original_path`.
    """

    id: uuid.UUID
    owner_id: uuid.UUID
    library_id: uuid.UUID
    type: AssetType
    original_path: bytes
    file_size: int
    file_mtime_ns: int
    file_created_at: datetime
    local_date_time: datetime
    created_at: datetime
    updated_at: datetime
    is_offline: bool = False
    trashed_at: datetime | None = None
    is_favorite: bool = False
    visibility: Visibility = "timeline"
    content_sha1: bytes | None = None
    """SHA-1 of the content: the upload checksum, or for external files computed by the metadata job (moves)."""
    sidecar_path: bytes | None = None
    sidecar_mtime_ns: int | None = None
    metadata_extracted_at: datetime | None = None
    thumbhash: bytes | None = None


class PendingJob(Record, kw_only=True):
    """A unit of media work waiting for its queue (key: queue name, NUL, asset id). Enqueuing twice merges."""

    queued_at: datetime
    force: bool = False
    attempts: int = 0
    last_error: str | None = None
