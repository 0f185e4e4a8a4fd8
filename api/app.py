"""The Quart-Trio application: Immich's REST dialect over the daemon's services.

The app is built by `create_app(services)`; it owns no resources and no nursery of its own. Cross-cutting rules
live here once: correlation ids, the access policy (`api.access`), JSON content types, error translation.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from quart import Quart, Response, g
from quart_schema import QuartSchema
from quart_trio import QuartTrio
from quart_trio.wrappers import TrioRequest
from werkzeug.exceptions import BadRequest

import web
from daemon import __version__
from daemon.services import Services

from . import metrics
from .access import enforce_access
from .errors import install_error_handlers
from .openapi import FilmrollOpenAPIProvider
from .routes import (
    albums,
    api_keys,
    assets,
    auth,
    jobs,
    libraries,
    search,
    server,
    timeline,
    trash,
    uploads,
    users,
)
from .streaming import StreamingHTTPConnection

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
PUBLIC_DOCUMENTATION_ENDPOINTS = ("openapi", "swagger_ui")


MAX_JSON_BODY = 16 * 1024 * 1024


class ImmichRequest(TrioRequest):
    """A request whose missing or non-JSON body reads as `{}`, as NestJS does for Immich: clients POST without a
    body to routes whose fields are all optional, and required fields still fail validation with their names."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if not force and not self.is_json:
            return {}
        if not await self.get_data(cache=True):
            return {}  # `Content-Type: application/json` with an empty body: still "no body" (whitespace is not)
        try:
            data = await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError:  # quart_trio decodes the body before parsing: not UTF-8 is malformed JSON
            raise BadRequest("JSON body is not UTF-8") from None
        try:  # JSON may escape lone surrogates ("\ud800"), which no UTF-8 (index, file name) can hold
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise BadRequest("JSON string with a lone surrogate") from None
        return data


def create_app(services: Services) -> Quart:
    app = QuartTrio("filmroll", static_folder=None)
    app.request_class = ImmichRequest
    app.asgi_http_class = StreamingHTTPConnection  # views marked @streams_body read their body as a stream
    app.config["FILMROLL_SERVICES"] = services
    # The OpenAPI document and its viewer describe the API; they reveal nothing private.
    app.config["FILMROLL_PUBLIC_ENDPOINTS"] = PUBLIC_DOCUMENTATION_ENDPOINTS
    # Bounds every body read into memory; streamed uploads raise it for their own request.
    app.config["MAX_CONTENT_LENGTH"] = MAX_JSON_BODY
    app.url_map.strict_slashes = False
    QuartSchema(
        app,
        openapi_path="/api/openapi.json",
        redoc_ui_path=None,
        swagger_ui_path="/api/docs",
        scalar_ui_path=None,
        info={
            "title": "filmroll",
            "version": __version__,
            "description": "Immich-compatible API of filmroll",
        },
        security_schemes={
            "api_key": {"type": "apiKey", "in_": "header", "name": "x-api-key"},
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in_": "cookie", "name": "immich_access_token"},
        },
        security=[{"api_key": []}, {"bearer": []}, {"cookie": []}],
        openapi_provider_class=FilmrollOpenAPIProvider,
    )

    metrics.install_request_metrics(app)  # first, so the latency includes the access checks

    @app.before_request
    async def start_request() -> None:
        g.correlation_id = uuid.uuid4().hex[:16]
        await enforce_access()

    @app.after_request
    async def finish_response(response: Response) -> Response:
        if response.mimetype == "application/json":
            response.headers["Content-Type"] = JSON_CONTENT_TYPE
        response.headers["X-Correlation-ID"] = g.get("correlation_id", "")
        return response

    install_error_handlers(app)
    for blueprint in (
        server.blueprint,
        auth.blueprint,
        users.blueprint,
        api_keys.blueprint,
        libraries.blueprint,
        assets.blueprint,
        uploads.blueprint,
        albums.blueprint,
        jobs.blueprint,
        trash.blueprint,
        timeline.blueprint,
        search.blueprint,
        metrics.blueprint,
    ):
        app.register_blueprint(blueprint)
    web.install(app)  # the web pages (web/): outside /api, same services, same access policy
    return app
