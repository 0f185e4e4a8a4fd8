"""`POST /api/search/metadata` (api-compat §9), and the empty people and tags lists Home Assistant asks for
(filmroll has no face recognition and no tags)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, StrictBool, StrictStr
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from daemon.asset_service import AssetDetails
from daemon.search import MetadataQuery
from daemon.uploads import parse_checksum

from ..access import access, principal, services
from ..validation import parse_uuid
from .assets import AssetResponse, asset_response, parse_ids

blueprint = Blueprint("search", __name__)


class MetadataSearchRequest(BaseModel):
    """`MetadataSearchDto`: the filters filmroll can answer; others are accepted and ignored, and a non-empty
    `personIds` or `tagIds` matches nothing."""

    page: int = Field(default=1, ge=1)
    size: int = Field(default=250, ge=1, le=1000)
    order: Literal["asc", "desc"] = "desc"
    albumIds: list[str] | None = None
    personIds: list[str] | None = None
    tagIds: list[str] | None = None
    id: str | None = None
    libraryId: str | None = None
    type: Literal["IMAGE", "VIDEO", "AUDIO", "OTHER"] | None = None
    isFavorite: StrictBool | None = None
    isOffline: StrictBool | None = None
    visibility: Literal["archive", "timeline", "hidden", "locked"] | None = None
    withDeleted: StrictBool | None = None
    withExif: StrictBool | None = None
    originalPath: StrictStr | None = None
    originalFileName: StrictStr | None = None
    checksum: StrictStr | None = None
    takenAfter: datetime | None = None
    takenBefore: datetime | None = None


class SearchAssets(BaseModel):
    items: list[AssetResponse]
    total: int
    count: int
    nextPage: str | None
    facets: list[dict] = Field(default_factory=list)


class SearchAlbums(BaseModel):
    items: list[dict] = Field(default_factory=list)
    total: int = 0
    count: int = 0
    facets: list[dict] = Field(default_factory=list)


class SearchResponse(BaseModel):
    assets: SearchAssets
    albums: SearchAlbums = Field(default_factory=SearchAlbums)


class PeopleQuery(BaseModel):
    page: int = Field(default=1, ge=1)
    size: int = Field(default=500, ge=1, le=1000)
    withHidden: bool | None = None


class PeopleResponse(BaseModel):
    people: list[dict] = Field(default_factory=list)
    total: int = 0
    hidden: int = 0
    hasNextPage: bool = False


def query_of(data: MetadataSearchRequest) -> MetadataQuery:
    album_ids = tuple(parse_ids(data.albumIds, "albumIds")) if data.albumIds else ()
    checksum = parse_checksum(data.checksum) if data.checksum is not None else None
    nothing = (
        bool(data.personIds)
        or bool(data.tagIds)
        or data.type in ("AUDIO", "OTHER")
        or (data.checksum is not None and checksum is None)
    )
    return MetadataQuery(
        page=data.page,
        size=data.size,
        order=data.order,
        album_ids=album_ids,
        asset_id=parse_uuid(data.id, "id") if data.id is not None else None,
        library_id=parse_uuid(data.libraryId, "libraryId") if data.libraryId is not None else None,
        type=data.type if data.type in ("IMAGE", "VIDEO") else None,  # type: ignore[arg-type]
        is_favorite=data.isFavorite,
        is_offline=data.isOffline,
        visibility=data.visibility,
        with_deleted=bool(data.withDeleted),
        original_path=data.originalPath,
        original_file_name=data.originalFileName,
        checksum=checksum,
        taken_after=data.takenAfter,
        taken_before=data.takenBefore,
        nothing=nothing,
        with_exif=bool(data.withExif),
    )


@blueprint.post("/api/search/metadata")
@access(permission="asset.read")
@validate_request(MetadataSearchRequest)
@validate_response(SearchResponse)
async def search_metadata(data: MetadataSearchRequest) -> SearchResponse:
    query = query_of(data)
    page = services().search.search_metadata(principal(), query)
    items = [
        asset_response(
            found.asset,
            found.checksum,
            AssetDetails(found.asset, found.exif, [], found.checksum) if query.with_exif else None,
        )
        for found in page.items
    ]
    return SearchResponse(
        assets=SearchAssets(
            items=items,
            total=len(items),
            count=len(items),
            nextPage=None if page.next_page is None else str(page.next_page),
        )
    )


@blueprint.get("/api/people")
@access(permission="person.read")
@validate_querystring(PeopleQuery)
@validate_response(PeopleResponse)
async def list_people(query_args: PeopleQuery) -> PeopleResponse:
    return PeopleResponse()


@blueprint.get("/api/tags")
@access(permission="tag.read")
@validate_response(list[dict])
async def list_tags() -> list[dict]:
    return []
