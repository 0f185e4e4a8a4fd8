"""`GET /metrics` (Prometheus text format) and the per-request latency histogram.

The route is declared public and decides itself, from `[metrics]`, whether to answer: `enabled = false` answers
404 like any unknown route; `public = false` requires an admin's credentials (the same `x-api-key` / Bearer /
cookie as the API). The metrics are aggregates (`daemon/metrics.py`), never per-user.

`install_request_metrics(app)` adds a `before_request` / `after_request` pair that times each request from the
start of dispatch to its response headers (a streamed body's transfer is not included), labelled by the route
*template* (`/api/assets/<uuid:asset_id>`), so the number of series stays bounded whatever URLs clients send.
"""

from __future__ import annotations

import time

from quart import Blueprint, Quart, Response, g, request
from quart_schema import hide
from werkzeug.exceptions import NotFound

from daemon import metrics

from .access import access, request_credentials, services

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
@hide
@access(public=True)  # scrapers rarely send Immich credentials; `[metrics] public = false` checks them below
async def scrape() -> Response:
    settings = services().settings.metrics
    if not settings.enabled:
        raise NotFound()
    if not settings.public:
        services().auth.authenticate(request_credentials()).require_admin()
    return Response(metrics.render(services()), content_type=metrics.CONTENT_TYPE)


def install_request_metrics(app: Quart) -> None:
    KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

    @app.before_request
    async def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    async def observe(response: Response) -> Response:
        started = g.get("request_started")
        if started is not None:
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            method = request.method if request.method in KNOWN_METHODS else "other"  # bounded label values
            metrics.HTTP_REQUEST_SECONDS.labels(method, route, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response
