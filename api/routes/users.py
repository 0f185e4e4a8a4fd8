"""`/api/users/me` (a user's own profile) and `/api/admin/users` (admin user management)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from daemon.credentials import hash_password_off_loop

from ..access import access, principal, services
from ..dto import UserAdminResponse, user_admin_response
from ..validation import Email, parse_uuid

blueprint = Blueprint("users", __name__)


class UpdateMe(BaseModel):
    name: str | None = None
    email: Email | None = None
    password: str | None = None
    avatarColor: str | None = None


class AdminCreateUser(BaseModel):
    email: Email
    password: str
    name: str
    isAdmin: bool = False
    storageLabel: str | None = None
    quotaSizeInBytes: int | None = Field(default=None, ge=0)
    shouldChangePassword: bool = False
    externalPath: str | None = None
    avatarColor: str = "primary"


class AdminUpdateUser(BaseModel):
    name: str | None = None
    email: Email | None = None
    password: str | None = None
    avatarColor: str | None = None
    isAdmin: bool | None = None
    storageLabel: str | None = None
    quotaSizeInBytes: int | None = Field(default=None, ge=0)
    shouldChangePassword: bool | None = None
    externalPath: str | None = None


class AdminDeleteUser(BaseModel):
    force: bool | None = None


class ListUsersQuery(BaseModel):
    withDeleted: bool | None = None


# Wire names -> service names. Nullable admin fields (externalPath, storageLabel, quota) are applied when the
# key is present in the request, even as null ("clear it"); the rest only when given a value.
_FIELDS = {
    "name": "name", "email": "email", "password": "password", "avatarColor": "avatar_color",
    "isAdmin": "is_admin", "storageLabel": "storage_label", "quotaSizeInBytes": "quota_size_in_bytes",
    "shouldChangePassword": "should_change_password", "externalPath": "external_path",
}  # fmt: skip
_NULLABLE = {"storageLabel", "quotaSizeInBytes", "externalPath"}


async def _changes(data: BaseModel) -> dict[str, object]:
    """Service-side change set; a new password is hashed here, off the event loop."""
    given = data.model_dump(exclude_unset=True)
    changes = {_FIELDS[k]: v for k, v in given.items() if v is not None or k in _NULLABLE}
    if "password" in changes:
        changes["password_hash"] = await hash_password_off_loop(changes.pop("password"))
    return changes


@blueprint.get("/api/users/me")
@access(permission="user.read")
@validate_response(UserAdminResponse)
async def get_me() -> UserAdminResponse:
    return user_admin_response(principal().user)


@blueprint.put("/api/users/me")
@access(permission="user.update")
@validate_request(UpdateMe)
@validate_response(UserAdminResponse)
async def update_me(data: UpdateMe) -> UserAdminResponse:
    user = services().users.update_own_profile(principal(), await _changes(data))
    return user_admin_response(user)


@blueprint.get("/api/admin/users")
@access(permission="adminUser.read", admin=True)
@validate_querystring(ListUsersQuery)
@validate_response(list[UserAdminResponse])
async def list_users(query_args: ListUsersQuery) -> list[UserAdminResponse]:
    users = services().users.list(with_deleted=bool(query_args.withDeleted))
    return [user_admin_response(u) for u in users]


@blueprint.post("/api/admin/users")
@access(permission="adminUser.create", admin=True)
@validate_request(AdminCreateUser)
@validate_response(UserAdminResponse, 201)
async def create_user(data: AdminCreateUser) -> tuple[UserAdminResponse, int]:
    user = services().users.create(
        email=data.email,
        password_hash=await hash_password_off_loop(data.password),
        name=data.name,
        is_admin=data.isAdmin,
        storage_label=data.storageLabel,
        quota_size_in_bytes=data.quotaSizeInBytes,
        should_change_password=data.shouldChangePassword,
        external_path=data.externalPath,
        avatar_color=data.avatarColor,
    )
    return user_admin_response(user), 201


@blueprint.get("/api/admin/users/<user_id>")
@access(permission="adminUser.read", admin=True)
@validate_response(UserAdminResponse)
async def get_user(user_id: str) -> UserAdminResponse:
    return user_admin_response(services().users.get_for_admin(principal(), parse_uuid(user_id)))


@blueprint.put("/api/admin/users/<user_id>")
@access(permission="adminUser.update", admin=True)
@validate_request(AdminUpdateUser)
@validate_response(UserAdminResponse)
async def update_user(user_id: str, data: AdminUpdateUser) -> UserAdminResponse:
    target = services().users.get_for_admin(principal(), parse_uuid(user_id))
    return user_admin_response(services().users.update(target.id, await _changes(data), as_admin=True))


@blueprint.delete("/api/admin/users/<user_id>")
@access(permission="adminUser.delete", admin=True)
@validate_response(UserAdminResponse)
async def delete_user(user_id: str) -> UserAdminResponse:
    # The body's `force` is accepted for compatibility; external files are never touched either way.
    return user_admin_response(services().users.delete(principal(), parse_uuid(user_id)))


class TransferRequest(BaseModel):
    """filmroll's addition: where the user's data goes."""

    targetUserId: str


class SkippedAssetResponse(BaseModel):
    assetId: str
    originalFileName: str
    duplicateOf: str


class TransferResponse(BaseModel):
    albums: int
    libraries: int
    assets: int
    skipped: list[SkippedAssetResponse]
    uncoveredLibraries: list[str]


@blueprint.post("/api/admin/users/<user_id>/transfer")
@access(permission="adminUser.update", admin=True)
@validate_request(TransferRequest)
@validate_response(TransferResponse)
async def transfer_user_data(user_id: str, data: TransferRequest) -> TransferResponse:
    """filmroll's addition (the Immich FAQ's manual SQL, made a feature): move the user's albums, external
    libraries and assets to `targetUserId`. Assets whose content the target already has stay behind and are
    listed in `skipped`; their albums hold the target's copy instead."""
    source = services().users.get_for_admin(principal(), parse_uuid(user_id))
    target = services().users.get_for_admin(principal(), parse_uuid(data.targetUserId, "targetUserId"))
    report = services().transfers.transfer(principal(), source.id, target.id)
    return TransferResponse(
        albums=report.albums,
        libraries=report.libraries,
        assets=report.assets,
        skipped=[
            SkippedAssetResponse(
                assetId=str(s.asset_id), originalFileName=s.file_name, duplicateOf=str(s.duplicate_of)
            )
            for s in report.skipped
        ],
        uncoveredLibraries=report.uncovered_libraries,
    )
