"""`/api/timeline/buckets` (months and their counts) and `/api/timeline/bucket` (one month's assets, as the
column arrays of Immich's `TimeBucketAssetResponseDto`)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from daemon import assets as asset_index
from daemon.timeline import BucketAsset, TimelineOptions

from ..access import access, principal, services
from ..validation import Timestamp, parse_uuid

blueprint = Blueprint("timeline", __name__)


class TimelineQuery(BaseModel):
    albumId: str | None = None
    userId: str | None = None
    personId: str | None = None
    tagId: str | None = None
    isFavorite: bool | None = None
    isTrashed: bool | None = None
    visibility: Literal["archive", "timeline", "hidden", "locked"] | None = None
    order: Literal["asc", "desc"] = "desc"
    withCoordinates: bool | None = None


class BucketQuery(TimelineQuery):
    timeBucket: str


class TimeBucketResponse(BaseModel):
    timeBucket: str
    count: int


class TimeBucketAssetsResponse(BaseModel):
    """One list per field, index i describing the bucket's i-th asset."""

    id: list[str]
    ownerId: list[str]
    ratio: list[float]
    isFavorite: list[bool]
    isImage: list[bool]
    isTrashed: list[bool]
    visibility: list[str]
    thumbhash: list[str | None]
    fileCreatedAt: list[Timestamp]
    createdAt: list[Timestamp]
    localOffsetHours: list[float]
    duration: list[int | None]
    projectionType: list[str | None]
    livePhotoVideoId: list[str | None]
    city: list[str | None]
    country: list[str | None]
    latitude: list[float | None]
    longitude: list[float | None]


def _uuid_or_none(value: str | None, field: str) -> uuid.UUID | None:
    return None if value is None else parse_uuid(value, field)


def options_of(query: TimelineQuery) -> TimelineOptions:
    return TimelineOptions(
        album_id=_uuid_or_none(query.albumId, "albumId"),
        user_id=_uuid_or_none(query.userId, "userId"),
        person_id=_uuid_or_none(query.personId, "personId"),
        tag_id=_uuid_or_none(query.tagId, "tagId"),
        is_favorite=query.isFavorite,
        is_trashed=query.isTrashed,
        visibility=query.visibility,
        order=query.order,
    )


@blueprint.get("/api/timeline/buckets")
@access(permission="asset.read")
@validate_querystring(TimelineQuery)
@validate_response(list[TimeBucketResponse])
async def time_buckets(query_args: TimelineQuery) -> list[TimeBucketResponse]:
    found = services().timeline.buckets(principal(), options_of(query_args))
    return [TimeBucketResponse(timeBucket=bucket.time_bucket, count=bucket.count) for bucket in found]


@blueprint.get("/api/timeline/bucket")
@access(permission="asset.read")
@validate_querystring(BucketQuery)
@validate_response(TimeBucketAssetsResponse)
async def time_bucket(query_args: BucketQuery) -> TimeBucketAssetsResponse:
    found = services().timeline.bucket(principal(), query_args.timeBucket, options_of(query_args))
    return columns(found)


def columns(found: list[BucketAsset]) -> TimeBucketAssetsResponse:
    assets = [item.asset for item in found]
    exifs = [item.exif for item in found]
    return TimeBucketAssetsResponse(
        id=[str(a.id) for a in assets],
        ownerId=[str(a.owner_id) for a in assets],
        ratio=[a.width / a.height if a.width and a.height else 1.0 for a in assets],
        isFavorite=[a.is_favorite for a in assets],
        isImage=[a.type == "IMAGE" for a in assets],
        isTrashed=[a.trashed_at is not None for a in assets],
        visibility=[a.visibility for a in assets],
        thumbhash=[asset_index.thumbhash_text(a) for a in assets],
        fileCreatedAt=[a.file_created_at for a in assets],
        createdAt=[a.created_at for a in assets],
        localOffsetHours=[
            round((a.local_date_time - a.file_created_at).total_seconds() / 3600, 4) for a in assets
        ],
        duration=[a.duration_ms for a in assets],
        projectionType=[e.projection_type if e else None for e in exifs],
        livePhotoVideoId=[None] * len(assets),
        city=[None] * len(assets),
        country=[None] * len(assets),
        latitude=[e.latitude if e else None for e in exifs],
        longitude=[e.longitude if e else None for e in exifs],
    )
