"""`POST /api/assets` (upload, streamed) and `POST /api/assets/bulk-upload-check`."""

from __future__ import annotations

from typing import Literal

import trio
from pydantic import BaseModel
from quart import Blueprint, request
from quart_schema import document_response, validate_request
from werkzeug.exceptions import RequestTimeout

from ..access import access, principal, services
from ..openapi import ASSET_MEDIA_CREATE_DTO, header_parameter, multipart_body
from ..streaming import StreamedBody, streams_body
from ..validation import parse_uuid

blueprint = Blueprint("uploads", __name__)

BODY_IDLE_TIMEOUT = 300.0
"""Seconds an upload may go without sending a byte before it is given up (408) and its temp file deleted."""


class UploadResponse(BaseModel):
    id: str
    status: Literal["created", "duplicate"]


class BulkCheckItem(BaseModel):
    id: str
    checksum: str


class BulkCheckRequest(BaseModel):
    assets: list[BulkCheckItem]


class BulkCheckResultResponse(BaseModel):
    id: str
    action: Literal["accept", "reject"]
    reason: Literal["duplicate"] | None = None
    assetId: str | None = None
    isTrashed: bool | None = None


class BulkCheckResponse(BaseModel):
    results: list[BulkCheckResultResponse]


def _receiver(body: StreamedBody):
    async def receive() -> bytes:
        with trio.move_on_after(BODY_IDLE_TIMEOUT):
            return await body.receive()
        raise RequestTimeout(f"No upload data for {BODY_IDLE_TIMEOUT:.0f} seconds")

    return receive


@blueprint.post("/api/assets")
@access(permission="asset.upload")
@streams_body
@document_response(UploadResponse, 201)
@document_response(UploadResponse, 200)  # a duplicate
@multipart_body("AssetMediaCreateDto", ASSET_MEDIA_CREATE_DTO,
                file_names={"assetData": "IMG_0001.jpg", "sidecarData": "IMG_0001.jpg.xmp"})  # fmt: skip
@header_parameter("x-immich-checksum", "sha1 checksum that can be used for duplicate detection before the file is "
                  "uploaded (40 hex or 28 base64 characters; anything else is ignored)")  # fmt: skip
async def upload_asset() -> tuple[dict, int]:
    """Multipart parts as Immich's `AssetMediaCreateDto`; the body is streamed to disk, never held in memory.
    With an `x-immich-checksum` header the caller already has, the answer comes before the body is read."""
    uploads = services().uploads
    caller = principal()
    header = request.headers.get("x-immich-checksum")
    if header:
        existing = uploads.duplicate_of_header(caller, header)
        if existing is not None:
            return {"id": str(existing), "status": "duplicate"}, 200
    boundary = request.mimetype_params.get("boundary") if request.mimetype == "multipart/form-data" else None
    body = request.body
    assert isinstance(body, StreamedBody), "the upload route must be marked @streams_body"
    result = await uploads.upload(
        caller,
        _receiver(body),
        boundary.encode("latin-1", "replace") if boundary else None,
        parse_id=parse_uuid,
    )
    return {"id": str(result.asset_id), "status": result.status}, 201 if result.created else 200


@blueprint.post("/api/assets/bulk-upload-check")
@access(permission="asset.upload")
@validate_request(BulkCheckRequest)
@document_response(BulkCheckResponse)
async def bulk_upload_check(data: BulkCheckRequest) -> dict:
    """Which of these files (client id + SHA-1, hex or base64) the caller already has: same order, ids echoed."""
    results = services().uploads.bulk_check(principal(), [(item.id, item.checksum) for item in data.assets])
    answers = []
    for result in results:
        if result.action == "accept":
            answers.append({"id": result.id, "action": "accept"})
        else:
            answers.append({"id": result.id, "action": "reject", "reason": "duplicate",
                            "assetId": str(result.asset_id), "isTrashed": result.is_trashed})  # fmt: skip
    return {"results": answers}
