"""Per-route access policy, declared on each view and enforced once, before any handler runs.

Every route is authenticated unless declared `public`; an undeclared route is therefore closed by default.
`permission` is the Immich permission an API key must hold; `admin` additionally requires an admin user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from quart import Quart, current_app, g, request

from daemon.access import Principal
from daemon.auth import Credentials
from daemon.services import Services

F = TypeVar("F", bound=Callable[..., object])

ACCESS_ATTRIBUTE = "_filmroll_access"


@dataclass(frozen=True)
class Access:
    public: bool = False
    permission: str | None = None
    admin: bool = False


DEFAULT_ACCESS = Access()


def access(*, public: bool = False, permission: str | None = None, admin: bool = False) -> Callable[[F], F]:
    def mark(view: F) -> F:
        setattr(view, ACCESS_ATTRIBUTE, Access(public=public, permission=permission, admin=admin))
        return view

    return mark


def policy_for(app: Quart, endpoint: str) -> Access:
    """The policy of a registered endpoint (`FILMROLL_PUBLIC_ENDPOINTS` covers views we did not write)."""
    if endpoint in app.config.get("FILMROLL_PUBLIC_ENDPOINTS", ()):
        return Access(public=True)
    return getattr(app.view_functions[endpoint], ACCESS_ATTRIBUTE, DEFAULT_ACCESS)


def services() -> Services:
    return current_app.config["FILMROLL_SERVICES"]


def principal() -> Principal:
    """The authenticated caller of the current request (set by `enforce_access`)."""
    return g.principal


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for any other value (another scheme, no
    token), which is ignored as Immich ignores it: the request is judged by its other credentials."""
    bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
    return bearer or None


def request_credentials() -> Credentials:
    return Credentials(
        api_key=request.headers.get("x-api-key"),
        bearer=bearer_token(request.headers.get("Authorization", "")),
        cookie=request.cookies.get("immich_access_token"),
    )


async def enforce_access() -> None:
    """`before_request` hook: resolve the caller and apply the matched route's policy. Raises domain errors."""
    if request.url_rule is None:  # unknown route: the 404 handler answers
        return
    policy = policy_for(current_app, request.url_rule.endpoint)
    if policy.public:
        return
    caller = services().auth.authenticate(request_credentials())
    g.principal = caller
    if policy.admin:
        caller.require_admin()
    if policy.permission is not None:
        caller.require_permission(policy.permission)
