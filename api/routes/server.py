"""Discovery and `/api/server/*`: what clients ask first (CLI: well-known; aioimmich/Home Assistant: version)."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_response

from daemon import server_info
from daemon.media_types import media_type_lists

from ..access import access, principal, services

blueprint = Blueprint("server", __name__)


class WellKnownApi(BaseModel):
    endpoint: str


class WellKnown(BaseModel):
    api: WellKnownApi


class Pong(BaseModel):
    res: str


class ServerVersion(BaseModel):
    major: int
    minor: int
    patch: int
    prerelease: str | None = None


class ServerAbout(BaseModel):
    version: str
    versionUrl: str
    licensed: bool
    build: str | None = None
    ffmpeg: str | None = None
    repository: str | None = None


class MediaTypes(BaseModel):
    image: list[str]
    video: list[str]
    sidecar: list[str]


class ServerFeatures(BaseModel):
    configFile: bool
    duplicateDetection: bool
    email: bool
    facialRecognition: bool
    importFaces: bool
    map: bool
    oauth: bool
    oauthAutoLaunch: bool
    ocr: bool
    passwordLogin: bool
    realtimeTranscoding: bool
    reverseGeocoding: bool
    search: bool
    sidecar: bool
    smartSearch: bool
    trash: bool


class ServerStorage(BaseModel):
    diskSize: str
    diskUse: str
    diskAvailable: str
    diskSizeRaw: int
    diskUseRaw: int
    diskAvailableRaw: int
    diskUsagePercentage: float


class UsageByUser(BaseModel):
    userId: str
    userName: str
    photos: int
    videos: int
    usage: int
    usagePhotos: int
    usageVideos: int
    quotaSizeInBytes: int | None


class ServerStatistics(BaseModel):
    photos: int
    videos: int
    usage: int
    usagePhotos: int
    usageVideos: int
    usageByUser: list[UsageByUser]


class VersionCheck(BaseModel):
    checkedAt: str | None
    releaseVersion: str | None


@blueprint.get("/.well-known/immich")
@blueprint.get("/api/.well-known/immich")
@access(public=True)
@validate_response(WellKnown)
async def well_known() -> WellKnown:
    return WellKnown(api=WellKnownApi(endpoint="/api"))


@blueprint.get("/api/server/ping")
@access(public=True)
@validate_response(Pong)
async def ping() -> Pong:
    return Pong(res="pong")


@blueprint.get("/api/server/version")
@access(public=True)
@validate_response(ServerVersion)
async def version() -> ServerVersion:
    major, minor, patch = server_info.IMMICH_API_VERSION
    return ServerVersion(major=major, minor=minor, patch=patch)


@blueprint.get("/api/server/features")
@access(public=True)
@validate_response(ServerFeatures)
async def features() -> ServerFeatures:
    return ServerFeatures(**server_info.features(config_file_in_use=bool(services().settings.config_file)))


@blueprint.get("/api/server/media-types")
@access(public=True)
@validate_response(MediaTypes)
async def media_types() -> MediaTypes:
    return MediaTypes(**media_type_lists())


@blueprint.get("/api/server/about")
@access(permission="server.about")
@validate_response(ServerAbout)
async def about() -> ServerAbout:
    return ServerAbout(**server_info.about())


@blueprint.get("/api/server/storage")
@access(permission="server.storage")
@validate_response(ServerStorage)
async def storage() -> ServerStorage:
    return ServerStorage(**server_info.storage(services().settings.data_path))


@blueprint.get("/api/server/statistics")
@access(permission="server.statistics", admin=True)
@validate_response(ServerStatistics)
async def statistics() -> ServerStatistics:
    per_user = server_info.statistics(services().index, principal())
    rows = [
        UsageByUser(
            userId=u.user_id,
            userName=u.user_name,
            photos=u.photos,
            videos=u.videos,
            usage=u.usage_photos + u.usage_videos,
            usagePhotos=u.usage_photos,
            usageVideos=u.usage_videos,
            quotaSizeInBytes=u.quota_size_in_bytes,
        )
        for u in per_user
    ]
    return ServerStatistics(
        photos=sum(r.photos for r in rows),
        videos=sum(r.videos for r in rows),
        usage=sum(r.usage for r in rows),
        usagePhotos=sum(r.usagePhotos for r in rows),
        usageVideos=sum(r.usageVideos for r in rows),
        usageByUser=rows,
    )


@blueprint.get("/api/server/version-check")
@access(permission="server.versionCheck")
@validate_response(VersionCheck)
async def version_check() -> VersionCheck:
    # filmroll never phones home: there is no release check to report.
    return VersionCheck(checkedAt=None, releaseVersion=None)
