"""`/api/auth/*`: first-run admin sign-up, login (bearer token + cookies), logout, token validation."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, after_this_request, request
from quart_schema import validate_request, validate_response

from daemon.credentials import hash_password_off_loop

from ..access import access, principal, services
from ..dto import UserAdminResponse, user_admin_response
from ..validation import Email

blueprint = Blueprint("auth", __name__)

TOKEN_COOKIE = "immich_access_token"  # noqa: S105 - a cookie name, not a secret
COOKIE_MAX_AGE = 400 * 24 * 3600


class SignUp(BaseModel):
    email: Email
    password: str
    name: str


class LoginCredentials(BaseModel):
    email: str
    password: str


class LoginResponse(BaseModel):
    accessToken: str
    userId: str
    userEmail: str
    name: str
    profileImagePath: str
    isAdmin: bool
    shouldChangePassword: bool
    isOnboarded: bool


class LogoutResponse(BaseModel):
    successful: bool
    redirectUri: str


class ValidateToken(BaseModel):
    authStatus: bool


@blueprint.post("/api/auth/admin-sign-up")
@access(public=True)
@validate_request(SignUp)
@validate_response(UserAdminResponse, 201)
async def admin_sign_up(data: SignUp) -> tuple[UserAdminResponse, int]:
    password_hash = await hash_password_off_loop(data.password)
    user = services().users.admin_sign_up(email=data.email, password_hash=password_hash, name=data.name)
    return user_admin_response(user), 201


@blueprint.post("/api/auth/login")
@access(public=True)
@validate_request(LoginCredentials)
@validate_response(LoginResponse, 201)
async def login(data: LoginCredentials) -> tuple[LoginResponse, int]:
    result = await services().auth.login(
        data.email, data.password, device_type=request.headers.get("User-Agent", "")
    )
    user = result.user
    body = LoginResponse(
        accessToken=result.access_token,
        userId=str(user.id),
        userEmail=user.email,
        name=user.name,
        profileImagePath="",
        isAdmin=user.is_admin,
        shouldChangePassword=user.should_change_password,
        isOnboarded=True,
    )
    set_session_cookies(result.access_token)
    return body, 201


SESSION_COOKIES = (TOKEN_COOKIE, "immich_auth_type", "immich_is_authenticated")


def clear_session_cookies(response: Response) -> None:
    """Forget the login cookies `set_session_cookies` sets (API logout and the sign-out page)."""
    for name in SESSION_COOKIES:
        response.delete_cookie(name, path="/")


def set_session_cookies(access_token: str) -> None:
    """Immich's login cookies on this request's response (the API's login and the sign-in page both set them)."""
    secure = request.scheme == "https"

    @after_this_request
    async def set_cookies(response: Response) -> Response:
        for name, value, http_only in (
            (TOKEN_COOKIE, access_token, True),
            ("immich_auth_type", "password", True),
            ("immich_is_authenticated", "true", False),
        ):
            response.set_cookie(
                name,
                value,
                max_age=COOKIE_MAX_AGE,
                httponly=http_only,
                samesite="Lax",
                secure=secure,
                path="/",
            )
        return response


@blueprint.post("/api/auth/logout")
@access()
@validate_response(LogoutResponse)
async def logout() -> LogoutResponse:
    services().auth.logout(principal())

    @after_this_request
    async def clear_cookies(response: Response) -> Response:
        clear_session_cookies(response)
        return response

    return LogoutResponse(successful=True, redirectUri="/auth/login?autoLaunch=0")


@blueprint.post("/api/auth/validateToken")
@access()
@validate_response(ValidateToken)
async def validate_token() -> ValidateToken:
    return ValidateToken(authStatus=True)
