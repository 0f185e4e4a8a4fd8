"""`/api/api-keys`: a user's own API keys. The secret is returned once, at creation."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_request, validate_response

from ..access import access, principal, services
from ..dto import ApiKeyResponse, api_key_response
from ..openapi import no_content
from ..validation import parse_uuid

blueprint = Blueprint("api_keys", __name__)


class CreateApiKey(BaseModel):
    name: str | None = None
    permissions: list[str] | None = None


class UpdateApiKey(BaseModel):
    name: str | None = None
    permissions: list[str] | None = None


class CreatedApiKey(ApiKeyResponse):
    """The SDK 3.2.2 shape: `{secret, apiKey}` plus the key's fields repeated at the top level."""

    secret: str
    apiKey: ApiKeyResponse


@blueprint.post("/api/api-keys")
@access(permission="apiKey.create")
@validate_request(CreateApiKey)
@validate_response(CreatedApiKey, 201)
async def create_key(data: CreateApiKey) -> tuple[CreatedApiKey, int]:
    created = services().api_keys.create(principal(), name=data.name, permissions=data.permissions)
    shown = api_key_response(created.api_key)
    return CreatedApiKey(secret=created.secret, apiKey=shown, **shown.model_dump()), 201


@blueprint.get("/api/api-keys")
@access(permission="apiKey.read")
@validate_response(list[ApiKeyResponse])
async def list_keys() -> list[ApiKeyResponse]:
    return [api_key_response(k) for k in services().api_keys.list(principal())]


@blueprint.get("/api/api-keys/me")
@access()
@validate_response(ApiKeyResponse)
async def current_key() -> ApiKeyResponse:
    return api_key_response(services().api_keys.current(principal()))


@blueprint.get("/api/api-keys/<key_id>")
@access(permission="apiKey.read")
@validate_response(ApiKeyResponse)
async def get_key(key_id: str) -> ApiKeyResponse:
    return api_key_response(services().api_keys.get(principal(), parse_uuid(key_id)))


@blueprint.put("/api/api-keys/<key_id>")
@access(permission="apiKey.update")
@validate_request(UpdateApiKey)
@validate_response(ApiKeyResponse)
async def update_key(key_id: str, data: UpdateApiKey) -> ApiKeyResponse:
    updated = services().api_keys.update(
        principal(), parse_uuid(key_id), name=data.name, permissions=data.permissions
    )
    return api_key_response(updated)


@blueprint.delete("/api/api-keys/<key_id>")
@access(permission="apiKey.delete")
@no_content
async def delete_key(key_id: str) -> tuple[str, int]:
    services().api_keys.delete(principal(), parse_uuid(key_id))
    return "", 204
