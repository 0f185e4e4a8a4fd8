"""Response shapes shared by several blueprints, and their builders from daemon records.

Field names are Immich's (camelCase) on purpose: these classes *are* the wire format and the OpenAPI schema.
"""

from __future__ import annotations

from pydantic import BaseModel

from daemon.records import ApiKey, User

from .validation import Timestamp


class UserResponse(BaseModel):
    id: str
    email: str
    name: str
    avatarColor: str
    profileImagePath: str
    profileChangedAt: Timestamp


class UserAdminResponse(UserResponse):
    createdAt: Timestamp
    updatedAt: Timestamp
    deletedAt: Timestamp | None
    isAdmin: bool
    oauthId: str
    shouldChangePassword: bool
    status: str
    storageLabel: str | None
    quotaSizeInBytes: int | None
    quotaUsageInBytes: int
    license: None = None
    externalPath: str | None


def user_admin_response(user: User) -> UserAdminResponse:
    return UserAdminResponse(
        id=str(user.id),
        email=user.email,
        name=user.name,
        avatarColor=user.avatar_color,
        profileImagePath="",
        profileChangedAt=user.profile_changed_at,
        createdAt=user.created_at,
        updatedAt=user.updated_at,
        deletedAt=user.deleted_at,
        isAdmin=user.is_admin,
        oauthId="",
        shouldChangePassword=user.should_change_password,
        status=user.status,
        storageLabel=user.storage_label,
        quotaSizeInBytes=user.quota_size_in_bytes,
        quotaUsageInBytes=user.quota_usage_in_bytes,
        externalPath=user.external_path,
    )


class ApiKeyResponse(BaseModel):
    id: str
    name: str
    createdAt: Timestamp
    updatedAt: Timestamp
    permissions: list[str]


def api_key_response(api_key: ApiKey) -> ApiKeyResponse:
    return ApiKeyResponse(
        id=str(api_key.id),
        name=api_key.name,
        createdAt=api_key.created_at,
        updatedAt=api_key.updated_at,
        permissions=list(api_key.permissions),
    )
