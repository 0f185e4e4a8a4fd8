"""What every page shares: the blueprint, the page decorator, the login redirect, CSRF, flash messages, errors.

Access: a page is an ordinary route of the app, so `api.access.enforce_access` resolves the caller before the
view runs, with the same credentials as the API (a browser sends the `immich_access_token` cookie). Its failures
are turned into page answers here, by blueprint error handlers (which Quart prefers to the app's JSON ones for
routes of this blueprint): not signed in → 303 to `/auth/login?next=…`; not allowed → a 403 page.

CSRF: the login is a cookie, so every POST to a page must prove it comes from one of our pages. Each page embeds
a token, HMAC-SHA256 keyed by the session's own secret (the cookie value) over a fixed label: a page of another
origin cannot read the cookie nor our pages, so it cannot compute the token; it needs no server-side state,
survives restarts and dies with the session. It is checked on every POST (form field `csrf` or header
`X-CSRF-Token`, which htmx sends from `hx-headers`). Sign-in and sign-up have no session yet: there the browser's
`Origin` (or `Referer`) must name this host when it is sent (login CSRF). Only there: a reverse proxy that rewrites
`Host` would otherwise break every form, and the token already proves the origin.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from quart import Blueprint, Response, after_this_request, g, redirect, render_template, request
from quart_schema import hide
from werkzeug.exceptions import HTTPException

from api.access import access, principal, services
from api.errors import status_of
from daemon.access import Principal
from daemon.errors import AuthenticationRequired, FileUnavailable, FilmrollError, Forbidden, InvalidInput

log = logging.getLogger("filmroll.web")

blueprint = Blueprint("web", __name__, template_folder="templates")

TOKEN_COOKIE = "immich_access_token"  # noqa: S105 - a cookie name, not a secret (the API's login sets it too)
FLASH_COOKIE = "filmroll_flash"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
_CSRF_LABEL = b"filmroll web form v1"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def page(rule: str, *, methods: tuple[str, ...] = ("GET",), public: bool = False, admin: bool = False):
    """Declare a page: a route of the web blueprint, out of the OpenAPI document, with its access policy."""

    def mark(view: F) -> F:
        view = access(public=public, admin=admin)(view)
        view = hide(view)
        blueprint.route(rule, methods=list(methods))(view)
        return view

    return mark


# -- CSRF ----------------------------------------------------------------------------------------------------


def csrf_token() -> str:
    """The token the current session's forms carry ('' without a session cookie)."""
    secret = request.cookies.get(TOKEN_COOKIE)
    if not secret:
        return ""
    return hmac.new(secret.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def _same_origin() -> bool:
    """True unless the browser names another origin (`Origin`, else `Referer`) than the one it asked (`Host`, or
    `X-Forwarded-Host` from a reverse proxy: a cross-site form cannot set that header)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return True  # not a browser, or one that says nothing: nothing to compare
    parsed = urllib.parse.urlsplit(source)
    hosts = {request.host, *request.headers.get("X-Forwarded-Host", "").replace(" ", "").split(",")} - {""}
    return parsed.scheme in ("http", "https") and parsed.netloc in hosts  # `Origin: null` is refused


@blueprint.before_request
async def browser_sessions_only() -> None:
    """Pages act with everything a signed-in user may do, so they take only a login session from the cookie: an
    API key (scoped by Immich permissions) or a bearer token never reaches a page."""
    principal = g.get("principal")
    if principal is None:
        return
    if (
        principal.api_key is not None
        or principal.session is None
        or "x-api-key" in request.headers
        or "authorization" in request.headers
    ):
        raise Forbidden("The web pages need a browser sign-in; API keys and bearer tokens are for the API")


@blueprint.before_request
async def check_csrf() -> None:
    """Runs after the app's access check, so `g.principal` is set for every page but sign-in and sign-up."""
    if request.method != "POST":
        return
    if "principal" not in g:  # sign-in and sign-up: no session yet, so no token; the origin must be ours
        if not _same_origin():
            raise Forbidden("Cross-site form refused")
        return
    expected = csrf_token()
    form = await request.form
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden("Invalid or missing form token; reload the page and try again")


# -- responses -----------------------------------------------------------------------------------------------


def flash(message: str, kind: str = "ok") -> None:
    """A message for the next page the browser shows (a short-lived cookie, so redirects keep it)."""

    @after_this_request
    async def set_flash(response: Response) -> Response:
        value = urllib.parse.quote(f"{kind}:{message}"[:1000])
        response.set_cookie(FLASH_COOKIE, value, max_age=60, httponly=True, samesite="Lax", path="/")
        return response


def _take_flash() -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None

    @after_this_request
    async def clear_flash(response: Response) -> Response:
        response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    kind, _, message = urllib.parse.unquote(raw).partition(":")
    return (kind if kind in ("ok", "error") else "ok"), message


def current_user_or_none() -> Principal | None:
    return g.get("principal")


async def render(template: str, http_status: int = 200, /, **context: Any) -> Response:
    """A page (or fragment) with the context every template may use."""
    caller = current_user_or_none()
    body = await render_template(
        template, me=caller.user if caller else None, csrf=csrf_token() if caller else "", flash=_take_flash(),
        **context,
    )  # fmt: skip
    return Response(body, status=http_status, content_type="text/html; charset=utf-8")


def see_other(location: str) -> Response:
    """303 after a POST (the browser then GETs `location`)."""
    return redirect(location, 303)


def safe_next(target: str | None, default: str = "/photos") -> str:
    """A local path only: `next=` must not send a user to another site after signing in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(
        ord(char) < 0x21 or ord(char) == 0x7F for char in target
    ):  # browsers drop tabs: "/\t/evil" → "//evil"
        return default
    return target


def parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidInput("Not found") from None


async def form_ids(field: str) -> list[uuid.UUID]:
    values = (await request.form).getlist(field)
    return [parse_id(value) for value in values]


@blueprint.after_request
async def page_headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
    return response


# -- errors as pages -----------------------------------------------------------------------------------------


@blueprint.errorhandler(AuthenticationRequired)
async def sign_in_first(error: AuthenticationRequired) -> Response:
    target = request.full_path.rstrip("?") if request.method == "GET" else request.referrer or "/photos"
    location = "/auth/login?" + urllib.parse.urlencode({"next": safe_next(target)})
    response = see_other(location)
    if request.headers.get("HX-Request"):  # an htmx fragment: send the whole page to the login
        response = Response("", 204)
        response.headers["HX-Redirect"] = location
    if request.cookies.get(TOKEN_COOKIE):  # a stale cookie (session ended): forget it
        response.delete_cookie(TOKEN_COOKIE, path="/")
    return response


@blueprint.errorhandler(Forbidden)
async def forbidden(error: Forbidden) -> Response:
    return await render("error.html", 403, title="Forbidden", message=str(error))


@blueprint.errorhandler(InvalidInput)
async def invalid(error: InvalidInput) -> Response:
    text = str(error)
    status = 404 if text.startswith("Not found") else 400
    return await render("error.html", status, title="Not found" if status == 404 else "Error", message=text)


@blueprint.errorhandler(FileUnavailable)
async def unavailable(error: FileUnavailable) -> Response:
    return await render("error.html", 404, title="Unavailable", message=str(error))


@blueprint.errorhandler(FilmrollError)
async def other_domain_error(error: FilmrollError) -> Response:
    """Any other domain error (a full disk, bad media…): the status the API gives it, as a page."""
    return await render("error.html", status_of(error), title="Error", message=str(error))


@blueprint.errorhandler(HTTPException)
async def http_error(error: HTTPException) -> Response:
    status = error.code or 500
    return await render("error.html", status, title=error.name, message=error.description or "")


@blueprint.errorhandler(Exception)
async def unexpected(error: Exception) -> Response:
    log.exception("internal error on page %s %s", request.method, request.path)
    return await render("error.html", 500, title="Internal error", message="Something went wrong.")


def me() -> Principal:
    return principal()


__all__ = ["blueprint", "me", "page", "render", "services"]
