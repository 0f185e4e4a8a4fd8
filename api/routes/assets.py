"""`/api/assets/{id}`, its bytes (original, thumbnail, playback), updates (`PUT /api/assets…`), deletion
(`DELETE /api/assets`), `GET /api/assets/statistics` and `POST /api/assets/jobs`."""

from __future__ import annotations

import base64
import uuid
from typing import Literal

from pydantic import BaseModel, Field, StrictBool, StrictStr
from quart import Blueprint, Response
from quart_schema import validate_querystring, validate_request, validate_response

from daemon import asset_edits
from daemon import assets as asset_index
from daemon.asset_edits import AssetChanges
from daemon.asset_service import AssetDetails
from daemon.assets import mtime_datetime
from daemon.errors import InvalidInput
from daemon.media_types import mime_type
from daemon.records import Asset, ExifInfo, JobFailure

from ..access import access, principal, services
from ..openapi import binary_content, no_content
from ..serving import file_response
from ..validation import Timestamp, parse_uuid

blueprint = Blueprint("assets", __name__)


class ExifResponse(BaseModel):
    make: str | None = None
    model: str | None = None
    exifImageWidth: int | None = None
    exifImageHeight: int | None = None
    fileSizeInByte: int | None = None
    orientation: str | None = None
    dateTimeOriginal: Timestamp | None = None
    modifyDate: Timestamp | None = None
    timeZone: str | None = None
    lensModel: str | None = None
    fNumber: float | None = None
    focalLength: float | None = None
    iso: int | None = None
    exposureTime: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    description: str | None = None
    projectionType: str | None = None
    rating: int | None = None


class JobFailureResponse(BaseModel):
    """filmroll's addition: a media job that failed for good, and why."""

    queue: str
    reason: str
    attempts: int
    failedAt: Timestamp


class AssetResponse(BaseModel):
    id: str
    type: str
    checksum: str
    deviceAssetId: str
    deviceId: str
    ownerId: str
    libraryId: str | None
    originalPath: str
    originalFileName: str
    originalMimeType: str
    createdAt: Timestamp
    updatedAt: Timestamp
    fileCreatedAt: Timestamp
    fileModifiedAt: Timestamp
    localDateTime: Timestamp
    isFavorite: bool
    isArchived: bool
    isTrashed: bool
    isOffline: bool
    isEdited: bool = False
    visibility: str
    hasMetadata: bool
    duration: int | None
    width: int | None
    height: int | None
    thumbhash: str | None
    resized: bool
    livePhotoVideoId: str | None = None
    duplicateId: str | None = None
    stack: None = None
    people: list[dict] = Field(default_factory=list)
    tags: list[dict] = Field(default_factory=list)
    exifInfo: ExifResponse | None = None
    jobFailures: list[JobFailureResponse] = Field(default_factory=list)


class AssetJobsRequest(BaseModel):
    assetIds: list[str]
    name: Literal["refresh-faces", "refresh-metadata", "regenerate-thumbnail", "transcode-video"]


VisibilityName = Literal["archive", "timeline", "hidden", "locked"]


class UpdateAssetRequest(BaseModel):
    """`UpdateAssetDto`, plus the legacy `isArchived` (api-compat §7). Absent fields stay as they are."""

    isFavorite: StrictBool | None = None
    isArchived: StrictBool | None = None
    visibility: VisibilityName | None = None
    description: StrictStr | None = None
    dateTimeOriginal: StrictStr | None = None
    latitude: float | None = None
    longitude: float | None = None
    rating: int | None = Field(default=None, ge=-1, le=5)


MAX_RELATIVE_MINUTES = 1000 * 366 * 24 * 60


class BulkUpdateAssetsRequest(UpdateAssetRequest):
    """`AssetBulkUpdateDto`: the same changes for every asset in `ids`; `duplicateId` is accepted and ignored."""

    ids: list[str]
    dateTimeRelative: int | None = Field(default=None, ge=-MAX_RELATIVE_MINUTES, le=MAX_RELATIVE_MINUTES)
    """Minutes; bounded so every shifted date stays a date (±1000 years)."""
    timeZone: StrictStr | None = None


class DeleteAssetsRequest(BaseModel):
    ids: list[str]
    force: StrictBool | None = None


class StatisticsQuery(BaseModel):
    isFavorite: bool | None = None
    isArchived: bool | None = None
    isTrashed: bool | None = None
    visibility: VisibilityName | None = None


class AssetStatisticsResponse(BaseModel):
    images: int
    videos: int
    total: int


class ThumbnailQuery(BaseModel):
    size: Literal["thumbnail", "preview", "fullsize"] = "thumbnail"
    c: str | None = None
    """The thumbhash the client knows (Immich's cache key): when it is current the response is immutable."""


def text(path: bytes) -> str:
    """Paths are bytes; JSON needs text (undecodable bytes shown as U+FFFD)."""
    return path.decode("utf-8", "replace")


def exif_response(asset: Asset, info: ExifInfo | None) -> ExifResponse:
    if info is None:
        return ExifResponse(fileSizeInByte=asset.file_size)
    return ExifResponse(
        make=info.make,
        model=info.model,
        exifImageWidth=info.exif_image_width,
        exifImageHeight=info.exif_image_height,
        fileSizeInByte=asset.file_size,
        orientation=info.orientation,
        dateTimeOriginal=info.date_time_original,
        modifyDate=info.modify_date,
        timeZone=info.time_zone,
        lensModel=info.lens_model,
        fNumber=info.f_number,
        focalLength=info.focal_length,
        iso=info.iso,
        exposureTime=info.exposure_time,
        latitude=info.latitude,
        longitude=info.longitude,
        description=info.description,
        projectionType=info.projection_type,
        rating=info.rating,
    )


def asset_response(asset: Asset, checksum: bytes, details: AssetDetails | None = None) -> AssetResponse:
    """`AssetResponseDto`. `checksum`: Immich's (`daemon.assets.Checksums`), which the caller reads with the
    asset, in the transaction it reads a whole list in (`AssetService.checksums`), never one per asset."""
    return AssetResponse(
        id=str(asset.id),
        type=asset.type,
        checksum=base64.b64encode(checksum).decode(),
        deviceAssetId="",
        deviceId="",
        ownerId=str(asset.owner_id),
        libraryId=str(asset.library_id),
        originalPath=text(asset.original_path),
        originalFileName=asset_index.file_name(asset),
        originalMimeType=mime_type(asset.original_path),
        createdAt=asset.created_at,
        updatedAt=asset.updated_at,
        fileCreatedAt=asset.file_created_at,
        fileModifiedAt=mtime_datetime(asset.file_mtime_ns),
        localDateTime=asset.local_date_time,
        isFavorite=asset.is_favorite,
        isArchived=asset.visibility == "archive",
        isTrashed=asset.trashed_at is not None,
        isOffline=asset.is_offline,
        visibility=asset.visibility,
        hasMetadata=asset.metadata_extracted_at is not None,
        duration=asset.duration_ms,
        width=asset.width,
        height=asset.height,
        thumbhash=asset_index.thumbhash_text(asset),
        resized=asset.thumbnail_version > 0,
        exifInfo=exif_response(asset, details.exif) if details else None,
        jobFailures=[failure_response(f) for f in details.failures] if details else [],
    )


def parse_ids(values: list[str], field: str = "ids") -> list[uuid.UUID]:
    """Every value a UUID, or 400 `["each value in ids must be a UUID"]` (nothing else happens)."""
    try:
        return [parse_uuid(value, field) for value in values]
    except InvalidInput:
        raise InvalidInput([f"each value in {field} must be a UUID"]) from None


def asset_changes(data: UpdateAssetRequest) -> AssetChanges:
    """The request's fields (only those present) as daemon changes; InvalidInput with Immich's wording."""
    given = data.model_fields_set
    edits: dict[str, object] = {}
    if "latitude" in given or "longitude" in given:
        asset_edits.check_position(
            data.latitude,
            data.longitude,
            latitude_given="latitude" in given,
            longitude_given="longitude" in given,
        )
        edits.update(latitude=data.latitude, longitude=data.longitude)
    if data.dateTimeOriginal is not None:
        edits.update(asset_edits.parse_capture_time(data.dateTimeOriginal).as_edits())
    if data.description is not None:
        edits["description"] = data.description
    if "rating" in given:
        edits["rating"] = asset_edits.normalize_rating(data.rating)
    visibility = asset_edits.visibility_of(data.visibility, data.isArchived)
    shift = zone = None
    if (
        isinstance(data, BulkUpdateAssetsRequest) and "date_time_original" not in edits
    ):  # an absolute date wins
        shift = data.dateTimeRelative
        zone = None if data.timeZone is None else asset_edits.check_time_zone(data.timeZone)
    return AssetChanges(
        is_favorite=data.isFavorite, visibility=visibility, edits=edits, shift_minutes=shift, time_zone=zone
    )


def failure_response(failure: JobFailure) -> JobFailureResponse:
    return JobFailureResponse(
        queue=failure.queue, reason=failure.reason, attempts=failure.attempts, failedAt=failure.failed_at
    )


@blueprint.post("/api/assets/jobs")
@access(permission="job.create")
@validate_request(AssetJobsRequest)
@no_content
async def run_asset_jobs(data: AssetJobsRequest) -> tuple[str, int]:
    ids = [parse_uuid(value, "assetIds") for value in data.assetIds]
    services().assets.request_jobs(principal(), ids, data.name)
    return "", 204


@blueprint.get("/api/assets/statistics")
@access(permission="asset.statistics")
@validate_querystring(StatisticsQuery)
@validate_response(AssetStatisticsResponse)
async def asset_statistics(query_args: StatisticsQuery) -> AssetStatisticsResponse:
    visibility = asset_edits.visibility_of(query_args.visibility, query_args.isArchived)
    found = services().timeline.statistics(
        principal(), is_favorite=query_args.isFavorite, is_trashed=query_args.isTrashed, visibility=visibility
    )
    return AssetStatisticsResponse(images=found.images, videos=found.videos, total=found.total)


@blueprint.put("/api/assets")
@access(permission="asset.update")
@validate_request(BulkUpdateAssetsRequest)
@no_content
async def update_assets(data: BulkUpdateAssetsRequest) -> tuple[str, int]:
    ids = parse_ids(data.ids)
    services().assets.update_many(principal(), ids, asset_changes(data))
    return "", 204


@blueprint.delete("/api/assets")
@access(permission="asset.delete")
@validate_request(DeleteAssetsRequest)
@no_content
async def delete_assets(data: DeleteAssetsRequest) -> tuple[str, int]:
    ids = parse_ids(data.ids)
    await services().trash.delete(principal(), ids, force=bool(data.force))
    return "", 204


@blueprint.put("/api/assets/<asset_id>")
@access(permission="asset.update")
@validate_request(UpdateAssetRequest)
@validate_response(AssetResponse)
async def update_asset(asset_id: str, data: UpdateAssetRequest) -> AssetResponse:
    changes = asset_changes(data)
    details = services().assets.update(principal(), parse_uuid(asset_id), changes)
    return asset_response(details.asset, details.checksum, details)


@blueprint.get("/api/assets/<asset_id>")
@access(permission="asset.read")
@validate_response(AssetResponse)
async def get_asset(asset_id: str) -> AssetResponse:
    details = services().assets.details(principal(), parse_uuid(asset_id))
    return asset_response(details.asset, details.checksum, details)


@blueprint.get("/api/assets/<asset_id>/original")
@access(permission="asset.download")
@binary_content("application/octet-stream", "image/*", "video/*")
async def download_original(asset_id: str) -> Response:
    opened = await services().assets.open_original(principal(), parse_uuid(asset_id))
    return await file_response(opened, cache_control="private, no-cache", attachment=True)


@blueprint.get("/api/assets/<asset_id>/thumbnail")
@access(permission="asset.view")
@validate_querystring(ThumbnailQuery)
@binary_content("image/webp", "image/jpeg")
async def view_thumbnail(asset_id: str, query_args: ThumbnailQuery) -> Response:
    opened, asset = await services().assets.open_thumbnail(principal(), parse_uuid(asset_id), query_args.size)
    current = asset_index.thumbhash_text(asset)
    immutable = query_args.c is not None and query_args.c == current
    cache = "private, max-age=31536000, immutable" if immutable else "private, no-cache"
    return await file_response(opened, cache_control=cache)


@blueprint.get("/api/assets/<asset_id>/video/playback")
@access(permission="asset.view")
@binary_content("video/*", "application/octet-stream")
async def play_video(asset_id: str) -> Response:
    opened = await services().assets.open_playback(principal(), parse_uuid(asset_id))
    return await file_response(opened, cache_control="private, no-cache")
