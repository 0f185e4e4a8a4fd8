"""`/api/trash`: restore the caller's trashed assets (all, or some) and empty the trash (`TrashResponseDto`)."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_request, validate_response

from ..access import access, principal, services
from .assets import parse_ids

blueprint = Blueprint("trash", __name__)


class TrashResponse(BaseModel):
    count: int


class RestoreAssetsRequest(BaseModel):
    ids: list[str]


@blueprint.post("/api/trash/restore")
@access(permission="asset.delete")
@validate_response(TrashResponse)
async def restore_trash() -> TrashResponse:
    return TrashResponse(count=services().trash.restore_all(principal()))


@blueprint.post("/api/trash/restore/assets")
@access(permission="asset.delete")
@validate_request(RestoreAssetsRequest)
@validate_response(TrashResponse)
async def restore_assets(data: RestoreAssetsRequest) -> TrashResponse:
    return TrashResponse(count=services().trash.restore(principal(), parse_ids(data.ids)))


@blueprint.post("/api/trash/empty")
@access(permission="asset.delete")
@validate_response(TrashResponse)
async def empty_trash() -> TrashResponse:
    return TrashResponse(count=await services().trash.empty(principal()))
