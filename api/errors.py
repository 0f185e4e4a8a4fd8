"""Translation of failures into Immich's error responses, in one place.

Body: `{message, error, statusCode, correlationId}` with the `X-Correlation-ID` header carrying the same id.
Validation failures keep class-validator's wording (`["email must be an email"]`), see `api.validation`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from quart import Quart, Response, g, jsonify, request
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, RequestedRangeNotSatisfiable

from daemon.errors import (
    AuthenticationRequired,
    FileUnavailable,
    FilmrollError,
    Forbidden,
    InvalidInput,
    StorageFull,
)

from .validation import class_validator_messages

log = logging.getLogger("filmroll.api")

_STATUS_OF: list[tuple[type[FilmrollError], int]] = [
    (AuthenticationRequired, 401),
    (Forbidden, 403),
    (StorageFull, 507),
    (FileUnavailable, 404),
    (InvalidInput, 400),
]


def status_of(error: FilmrollError) -> int:
    """The HTTP status of a domain error (the one place for the mapping: the API and the pages use it)."""
    return next((code for kind, code in _STATUS_OF if isinstance(error, kind)), 500)


def error_response(status: int, message: str | list[str]) -> Response:
    body = {
        "message": message,
        "error": HTTPStatus(status).phrase,
        "statusCode": status,
        "correlationId": g.get("correlation_id", ""),
    }
    response = jsonify(body)
    response.status_code = status
    return response


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(FilmrollError)
    async def domain_error(error: FilmrollError) -> Response:
        status = status_of(error)
        if status == 500:
            log.error("unhandled domain error on %s %s: %s", request.method, request.path, error.message)
            return error_response(500, "Internal server error")
        return error_response(status, error.message)

    @app.errorhandler(RequestSchemaValidationError)
    async def validation_error(error: RequestSchemaValidationError) -> Response:
        return error_response(400, class_validator_messages(error.validation_error))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status in (404, 405):
            # NestJS answers an unknown method on a known path like an unknown path.
            return error_response(404, f"Cannot {request.method} {request.path}")
        if status == 400:
            return error_response(400, "Malformed request body" if request.method != "GET" else "Bad request")
        if isinstance(error, RequestedRangeNotSatisfiable):
            response = error_response(416, "Range Not Satisfiable")
            response.headers["Content-Range"] = f"{error.units} */{error.length}"
            return response
        return error_response(status, error.description or HTTPStatus(status).phrase)

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "Internal server error")
