"""`/api/libraries`: each user's own libraries (admins: everyone's), Immich C's paths with era A's semantics."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, SerializerFunctionWrapHandler, StrictBool, model_serializer
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from daemon.records import Library
from daemon.scan import ScanMode

from ..access import access, principal, services
from ..openapi import no_content
from ..validation import Timestamp, parse_uuid

blueprint = Blueprint("libraries", __name__)


class WatchStatusResponse(BaseModel):
    """filmroll's addition: how the library is watched now (`inotify`, `polling`, `off`, `starting`) and why."""

    mode: str
    reason: str | None = None


class LibraryResponse(BaseModel):
    id: str
    ownerId: str
    type: str
    name: str
    assetCount: int
    importPaths: list[str]
    exclusionPatterns: list[str]
    createdAt: Timestamp
    updatedAt: Timestamp
    refreshedAt: Timestamp | None
    watch: WatchStatusResponse


class CreateLibrary(BaseModel):
    type: Literal["UPLOAD", "EXTERNAL"] = "EXTERNAL"
    name: str | None = None
    importPaths: list[str] | None = None
    exclusionPatterns: list[str] | None = None
    isWatched: StrictBool | None = None
    ownerId: str | None = None


class UpdateLibrary(BaseModel):
    name: str | None = None
    importPaths: list[str] | None = None
    exclusionPatterns: list[str] | None = None


class ListLibrariesQuery(BaseModel):
    type: Literal["UPLOAD", "EXTERNAL"] | None = None


class ScanRequest(BaseModel):
    refreshModifiedFiles: StrictBool = False
    refreshAllFiles: StrictBool = False


class ValidateRequest(BaseModel):
    importPaths: list[str] | None = None
    exclusionPatterns: list[str] | None = None


class ValidatedPath(BaseModel):
    importPath: str
    isValid: bool
    message: str | None = None

    @model_serializer(mode="wrap")
    def _without_absent_message(self, handler: SerializerFunctionWrapHandler) -> dict:
        """A valid path has no `message` key at all (§3.7)."""
        data = handler(self)
        if data.get("message") is None:
            data.pop("message", None)
        return data


class ValidateResponse(BaseModel):
    importPaths: list[ValidatedPath]


class LibraryStatisticsResponse(BaseModel):
    photos: int
    videos: int
    total: int
    usage: int


def library_response(library: Library) -> LibraryResponse:
    return LibraryResponse(
        id=str(library.id),
        ownerId=str(library.owner_id),
        type=library.type,
        name=library.name,
        assetCount=services().libraries.asset_count(library),
        importPaths=list(library.import_paths),
        exclusionPatterns=list(library.exclusion_patterns),
        createdAt=library.created_at,
        updatedAt=library.updated_at,
        refreshedAt=library.refreshed_at,
        watch=WatchStatusResponse(**vars(services().watchers.status(library.id))),
    )


@blueprint.get("/api/libraries")
@access(permission="library.read")
@validate_querystring(ListLibrariesQuery)
@validate_response(list[LibraryResponse])
async def list_libraries(query_args: ListLibrariesQuery) -> list[LibraryResponse]:
    return [library_response(lib) for lib in services().libraries.list(principal(), query_args.type)]


@blueprint.post("/api/libraries")
@access(permission="library.create")
@validate_request(CreateLibrary)
@validate_response(LibraryResponse, 201)
async def create_library(data: CreateLibrary) -> tuple[LibraryResponse, int]:
    library = await services().libraries.create_async(
        principal(),
        library_type=data.type,
        name=data.name,
        import_paths=data.importPaths,
        exclusion_patterns=data.exclusionPatterns,
        is_watched=data.isWatched,
        owner_id=parse_uuid(data.ownerId, "ownerId") if data.ownerId is not None else None,
    )
    return library_response(library), 201


@blueprint.get("/api/libraries/<library_id>")
@access(permission="library.read")
@validate_response(LibraryResponse)
async def get_library(library_id: str) -> LibraryResponse:
    return library_response(services().libraries.get(principal(), parse_uuid(library_id)))


@blueprint.put("/api/libraries/<library_id>")
@access(permission="library.update")
@validate_request(UpdateLibrary)
@validate_response(LibraryResponse)
async def update_library(library_id: str, data: UpdateLibrary) -> LibraryResponse:
    library = await services().libraries.update_async(
        principal(),
        parse_uuid(library_id),
        name=data.name,
        import_paths=data.importPaths,
        exclusion_patterns=data.exclusionPatterns,
    )
    return library_response(library)


@blueprint.delete("/api/libraries/<library_id>")
@access(permission="library.delete")
@no_content
async def delete_library(library_id: str) -> tuple[str, int]:
    services().libraries.delete(principal(), parse_uuid(library_id))
    return "", 204


@blueprint.get("/api/libraries/<library_id>/statistics")
@access(permission="library.statistics")
@validate_response(LibraryStatisticsResponse)
async def library_statistics(library_id: str) -> LibraryStatisticsResponse:
    stats = services().libraries.statistics(principal(), parse_uuid(library_id))
    return LibraryStatisticsResponse(
        photos=stats.photos, videos=stats.videos, total=stats.total, usage=stats.usage
    )


@blueprint.post("/api/libraries/<library_id>/scan")
@access(permission="library.update")
@validate_request(ScanRequest)
@no_content
async def scan_library(library_id: str, data: ScanRequest) -> tuple[str, int]:
    mode = ScanMode.from_flags(data.refreshModifiedFiles, data.refreshAllFiles)
    services().libraries.request_scan(principal(), parse_uuid(library_id), mode)
    return "", 204


@blueprint.post("/api/libraries/<library_id>/removeOffline")
@access(permission="library.update")
@no_content
async def remove_offline(library_id: str) -> tuple[str, int]:
    services().libraries.request_remove_offline(principal(), parse_uuid(library_id))
    return "", 204


@blueprint.post("/api/libraries/<library_id>/validate")
@access(permission="library.update")
@validate_request(ValidateRequest)
@validate_response(ValidateResponse)
async def validate_library(library_id: str, data: ValidateRequest) -> ValidateResponse:
    checked = await services().libraries.validate(principal(), parse_uuid(library_id), data.importPaths or [])
    return ValidateResponse(
        importPaths=[
            ValidatedPath(importPath=path, isValid=problem is None, message=problem)
            for path, problem in checked
        ]
    )
