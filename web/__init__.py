"""The web pages: server-rendered Jinja pages (autoescaped) over the same daemon services as the API.

`install(app)` registers the blueprint; `api/app.py` calls it. The pages live outside `/api` (`/auth/login`,
`/photos`, `/albums`, `/user-settings/libraries`, `/admin/users`, `/admin/jobs`); see `web/common.py` for access,
CSRF and errors, and `web/static/vendor/README.md` for the vendored JavaScript (htmx, a thumbhash decoder).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from quart import Quart, Response, request, send_from_directory
from werkzeug.exceptions import NotFound

from . import pages_account, pages_libraries, pages_photos  # noqa: F401 - their routes join the blueprint
from .common import blueprint, page, see_other

STATIC_DIR = Path(__file__).resolve().parent / "static"


@lru_cache(maxsize=128)  # bounded: any client may ask for any spelling of a path
def _static_version(name: str) -> str:
    try:
        return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    except OSError:
        return "0"


def static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>`: served as immutable, so a changed file gets a new URL."""
    return f"/static/{name}?v={_static_version(name)}"


@page("/static/<path:filename>", public=True)
async def static(filename: str) -> Response:
    try:
        response = await send_from_directory(STATIC_DIR, filename)
    except (NotFound, OSError):
        raise NotFound() from None
    if request.args.get("v") == _static_version(filename):
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response.headers["Cache-Control"] = "no-cache"
    if filename.endswith(".js"):
        response.headers["Content-Type"] = "text/javascript; charset=utf-8"
    return response


@page("/")
async def home() -> Response:
    return see_other("/photos")


def install(app: Quart) -> None:
    app.jinja_env.globals["static_url"] = static_url
    app.register_blueprint(blueprint)
