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
    width: int | None = None
    """Pixel width after orientation/rotation; None until metadata or a render has told."""
    height: int | None = None
    duration_ms: int | None = None
    """Videos: length in milliseconds."""
    thumbnail_version: int = 0
    """Version of the current thumbnail and preview (`daemon.derived`); 0 until the first render. Every render
    bumps it, so paths and ETags change and no client keeps a stale thumbnail."""
    has_encoded_video: bool = False
    """A transcode exists (`daemon.derived`); playback serves it instead of the original."""
    video_decided_at: datetime | None = None
    """Videos: when the transcode policy last ran for this asset (None: never decided)."""
    device_asset_id: str = ""
    """Uploads: the client's own id for the file (legacy Immich field, stored when sent)."""
    device_id: str = ""
    storage_placed_at: datetime | None = None
    """Uploads: when the storage template last placed the original (None: still where the upload landed)."""
    original_file_name: str = ""
    """Uploads: the name the client sent (`originalFileName`, the template's `{{filename}}`); the stored file is
    named by filmroll. Empty for external assets, whose name is their path's basename."""


AlbumOrder = Literal["asc", "desc"]


class Album(Record, kw_only=True):
    """A user's album. Its members are in `album_assets` (and the reverse `asset_albums`); deleting an album
    never deletes assets."""

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str = ""
    thumbnail_asset_id: uuid.UUID | None = None
    created_at: datetime
    updated_at: datetime
    is_activity_enabled: bool = True
    order: AlbumOrder = "desc"


EDITABLE_FIELDS = ("date_time_original", "time_zone", "latitude", "longitude", "description", "rating")


class AssetEdits(msgspec.Struct, frozen=True, kw_only=True):
    """What the owner set through `PUT /api/assets…` (`media.md` §6.3). Only the names in `fields` were set (so
    an edit can set a value to null); they override the file and its sidecar and survive every re-extraction.
    Stored apart from the asset (table `asset_edits`)."""

    fields: tuple[str, ...] = ()
    date_time_original: datetime | None = None
    time_zone: str | None = None
    local_date_time: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    description: str | None = None
    rating: int | None = None


class ExifInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What metadata extraction read from a file and its sidecar (`media.md` §6.1): the API's `exifInfo`.

    Stored apart from the asset (table `exif`), keyed by field name so fields can be added with defaults.
    """

    date_time_original: datetime | None = None
    """The capture instant, UTC."""
    time_zone: str | None = None
    """`UTC+2`, `UTC-7`, `UTC+5:30`, or an IANA name; None when the file gave no offset."""
    local_date_time: datetime | None = None
    """The capture wall-clock time in its own zone (naive)."""
    modify_date: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    make: str | None = None
    model: str | None = None
    lens_model: str | None = None
    exposure_time: str | None = None
    f_number: float | None = None
    focal_length: float | None = None
    iso: int | None = None
    orientation: str | None = None
    exif_image_width: int | None = None
    exif_image_height: int | None = None
    description: str | None = None
    rating: int | None = None
    projection_type: str | None = None
    duration_ms: int | None = None
    fps: float | None = None
    rotation: int | None = None


class PendingJob(Record, kw_only=True):
    """A unit of media work waiting in its queue's table (key: asset id). Enqueuing twice merges. It stays there
    while it runs and is deleted when it is done, so a restart resumes it."""

    queued_at: datetime
    force: bool = False
    attempts: int = 0
    last_error: str | None = None
    retry_after: datetime | None = None
    """After a failed attempt: not taken again before this time (backoff)."""
    leftovers: list[bytes] = msgspec.field(default_factory=list)
    """`storageTemplateMigration`: old names of a moved original (and sidecar) that the committed move has yet to
    remove: kept here, durably, until they are gone, so a kill in between cannot orphan them."""


class JobFailure(Record, kw_only=True):
    """A media job that failed for good (key: asset id + queue name): shown on the asset and counted as the
    queue's `failed` until `clear-failed` or a later success."""

    queue: str
    reason: str
    attempts: int
    failed_at: datetime
