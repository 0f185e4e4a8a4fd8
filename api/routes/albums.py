"""`/api/albums`: each user's own albums (api-compat §8). The rules live in `daemon.albums.AlbumService`; this module
only reads requests and writes Immich's shapes (`AlbumResponseDto`, `BulkIdResponseDto`, …)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    StrictBool,
    StrictStr,
)
from pydantic_core import PydanticCustomError
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from daemon.albums import AlbumView, BulkIdResult
from daemon.errors import InvalidInput

from ..access import access, principal, services
from ..dto import UserResponse
from ..openapi import no_content
from ..validation import Timestamp, parse_uuid
from .assets import AssetResponse, asset_response

blueprint = Blueprint("albums", __name__)


def _uuid(value: object) -> object:
    """class-validator's `must be a UUID` (`each value in ids must be a UUID` inside a list) for anything that is
    not a hyphenated UUID string, whatever its type."""
    try:
        return parse_uuid(value)  # type: ignore[arg-type]
    except InvalidInput:
        raise PydanticCustomError("uuid_parsing", "must be a UUID") from None


def _string(value: object) -> object:
    """class-validator's `@IsString()`: a missing or null value also reads `must be a string`."""
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "must be a string")
    return value


Uuid = Annotated[uuid.UUID, BeforeValidator(_uuid)]


class CreateAlbum(BaseModel):
    albumName: Annotated[str, BeforeValidator(_string)] = Field(default=None, validate_default=True)
    description: StrictStr = ""
    assetIds: list[Uuid] = Field(default_factory=list)
    albumUsers: list[Any] = Field(default_factory=list)


class UpdateAlbum(BaseModel):
    """Null counts as absent, as class-validator's `@IsOptional()` does."""

    albumName: StrictStr | None = None
    description: StrictStr | None = None
    albumThumbnailAssetId: Uuid | None = None
    isActivityEnabled: StrictBool | None = None
    order: Literal["asc", "desc"] | None = None


class BulkIds(BaseModel):
    ids: list[Uuid]


class AlbumsAddAssets(BaseModel):
    albumIds: list[Uuid]
    assetIds: list[Uuid]


class ListAlbumsQuery(BaseModel):
    assetId: str | None = None
    shared: bool | None = None
    """Immich 1.x/2.x's filter; `isShared`, `isOwned` and `name` are Immich 3's."""
    isShared: bool | None = None
    isOwned: bool | None = None
    name: str | None = None


class GetAlbumQuery(BaseModel):
    withoutAssets: bool = False


def _absent_when_none() -> object:
    """A field left out of the response when it is None (Immich omits these keys rather than sending null)."""
    return Field(default=None, exclude_if=lambda value: value is None)


class AlbumResponse(BaseModel):
    id: str
    albumName: str
    description: str
    albumThumbnailAssetId: str | None
    albumUsers: list[dict] = Field(default_factory=list)
    shared: bool = False
    hasSharedLink: bool = False
    isActivityEnabled: bool
    order: str
    assetCount: int
    createdAt: Timestamp
    updatedAt: Timestamp
    startDate: Timestamp | None = _absent_when_none()
    """The dates are present only when the album has members that are not trashed."""
    endDate: Timestamp | None = _absent_when_none()
    lastModifiedAssetTimestamp: Timestamp | None = _absent_when_none()
    ownerId: str
    owner: UserResponse
    assets: list[AssetResponse] = Field(default_factory=list)
    """Filled by `GET /api/albums/{id}` (without `withoutAssets`); `[]` elsewhere, as Immich 2 answered."""


class AlbumsAddAssetsResponse(BaseModel):
    success: bool
    error: str | None = _absent_when_none()


class BulkIdResponse(BaseModel):
    id: str
    success: bool
    error: str | None = _absent_when_none()


class AlbumStatisticsResponse(BaseModel):
    owned: int
    shared: int
    notShared: int


def album_response(view: AlbumView) -> AlbumResponse:
    album, owner = view.album, view.owner
    members = view.assets or []
    checksums = services().assets.checksums(members)  # one transaction for them all (none without members)
    return AlbumResponse(
        id=str(album.id),
        albumName=album.name,
        description=album.description,
        albumThumbnailAssetId=str(album.thumbnail_asset_id) if album.thumbnail_asset_id else None,
        isActivityEnabled=album.is_activity_enabled,
        order=album.order,
        assetCount=view.asset_count,
        createdAt=album.created_at,
        updatedAt=album.updated_at,
        startDate=view.start_date,
        endDate=view.end_date,
        lastModifiedAssetTimestamp=view.last_modified_asset_timestamp,
        ownerId=str(album.owner_id),
        owner=UserResponse(
            id=str(owner.id),
            email=owner.email,
            name=owner.name,
            avatarColor=owner.avatar_color,
            profileImagePath="",
            profileChangedAt=owner.profile_changed_at,
        ),
        assets=[asset_response(asset, checksum) for asset, checksum in zip(members, checksums, strict=True)],
    )


def bulk_id_responses(results: list[BulkIdResult]) -> list[BulkIdResponse]:
    return [
        BulkIdResponse(id=str(result.id), success=result.success, error=result.error) for result in results
    ]


@blueprint.get("/api/albums")
@access(permission="album.read")
@validate_querystring(ListAlbumsQuery)
@validate_response(list[AlbumResponse])
async def list_albums(query_args: ListAlbumsQuery) -> list[AlbumResponse]:
    asset_id = parse_uuid(query_args.assetId, "assetId") if query_args.assetId is not None else None
    shared = bool(query_args.shared or query_args.isShared or query_args.isOwned is False)
    views = services().albums.list(principal(), asset_id=asset_id, name=query_args.name, shared=shared)
    return [album_response(view) for view in views]


@blueprint.post("/api/albums")
@access(permission="album.create")
@validate_request(CreateAlbum)
@validate_response(AlbumResponse, 201)
async def create_album(data: CreateAlbum) -> tuple[AlbumResponse, int]:
    view = services().albums.create(
        principal(),
        name=data.albumName,
        description=data.description,
        asset_ids=data.assetIds,
        album_users=data.albumUsers,
    )
    return album_response(view), 201


@blueprint.get("/api/albums/statistics")
@access(permission="album.statistics")
@validate_response(AlbumStatisticsResponse)
async def album_statistics() -> AlbumStatisticsResponse:
    statistics = services().albums.statistics(principal())
    return AlbumStatisticsResponse(
        owned=statistics.owned, shared=statistics.shared, notShared=statistics.not_shared
    )


@blueprint.put("/api/albums/assets")
@access(permission="albumAsset.create")
@validate_request(AlbumsAddAssets)
@validate_response(AlbumsAddAssetsResponse)
async def add_assets_to_albums(data: AlbumsAddAssets) -> AlbumsAddAssetsResponse:
    result = services().albums.add_assets_to_albums(principal(), data.albumIds, data.assetIds)
    return AlbumsAddAssetsResponse(success=result.success, error=result.error)


@blueprint.get("/api/albums/<album_id>")
@access(permission="album.read")
@validate_querystring(GetAlbumQuery)
@validate_response(AlbumResponse)
async def get_album(album_id: str, query_args: GetAlbumQuery) -> AlbumResponse:
    view = services().albums.get(
        principal(), parse_uuid(album_id), include_assets=not query_args.withoutAssets
    )
    return album_response(view)


@blueprint.patch("/api/albums/<album_id>")
@access(permission="album.update")
@validate_request(UpdateAlbum)
@validate_response(AlbumResponse)
async def update_album(album_id: str, data: UpdateAlbum) -> AlbumResponse:
    view = services().albums.update(
        principal(),
        parse_uuid(album_id),
        name=data.albumName,
        description=data.description,
        thumbnail_asset_id=data.albumThumbnailAssetId,
        is_activity_enabled=data.isActivityEnabled,
        order=data.order,
    )
    return album_response(view)


@blueprint.delete("/api/albums/<album_id>")
@access(permission="album.delete")
@no_content
async def delete_album(album_id: str) -> tuple[str, int]:
    services().albums.delete(principal(), parse_uuid(album_id))
    return "", 204


@blueprint.put("/api/albums/<album_id>/assets")
@access(permission="albumAsset.create")
@validate_request(BulkIds)
@validate_response(list[BulkIdResponse])
async def add_assets(album_id: str, data: BulkIds) -> list[BulkIdResponse]:
    return bulk_id_responses(services().albums.add_assets(principal(), parse_uuid(album_id), data.ids))


@blueprint.delete("/api/albums/<album_id>/assets")
@access(permission="albumAsset.delete")
@validate_request(BulkIds)
@validate_response(list[BulkIdResponse])
async def remove_assets(album_id: str, data: BulkIds) -> list[BulkIdResponse]:
    return bulk_id_responses(services().albums.remove_assets(principal(), parse_uuid(album_id), data.ids))
