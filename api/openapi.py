"""What `/api/openapi.json` says beyond quart-schema's decorators: the answers that have no pydantic model.

- `@no_content`: the route answers 204 with an empty body (Immich documents these as `204` without content);
- `@binary_content(*media_types)`: the route answers 200 with file bytes (originals, thumbnails, playback);
- every operation documents its `4XX` answers with the one error body of `api.errors.error_response`, so a client
  (and the schemathesis test, tests/hostile/test_openapi_fuzz.py) can rely on its shape. Immich's own document
  lists success codes only; this is a superset of it;
- every operation that may write (any method but GET/HEAD) documents `507` with the same body: the data
  directory's filesystem is full (`daemon.errors.StorageFull`, from an upload's temp file or an index commit);
- `@header_parameter(name, description)`: a request header the route reads itself (the upload's
  `x-immich-checksum`, declared as in Immich's document);
- `@multipart_body(name, schema)`: the route reads a multipart/form-data body itself (streamed, so quart-schema's
  `validate_request` cannot describe it); the document gets it as `requestBody`, `schema` as component `name`
  (the upload's is `ASSET_MEDIA_CREATE_DTO`);
- public routes (`@access(public=True)`) say so (`security: []`) instead of inheriting the global requirement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quart_schema import OpenAPIProvider
from werkzeug.routing import Rule

from daemon.media_types import SIDECAR_EXTENSIONS
from daemon.uploads import ASSET_PART, SIDECAR_PART, VISIBILITIES

from .access import policy_for

T = TypeVar("T", bound=Callable[..., Any])

RESPONSES_ATTRIBUTE = "_filmroll_openapi_responses"
REQUEST_BODY_ATTRIBUTE = "_filmroll_openapi_request_body"
PARAMETERS_ATTRIBUTE = "_filmroll_openapi_parameters"
ERROR_SCHEMA_NAME = "ErrorResponseDto"
ERROR_SCHEMA = {
    "type": "object",
    "required": ["message", "error", "statusCode", "correlationId"],
    "properties": {
        "message": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "error": {"type": "string"},
        "statusCode": {"type": "integer", "minimum": 400, "maximum": 599},
        "correlationId": {"type": "string"},
    },
}
ERROR_RESPONSE = {
    "description": "Immich's error body",
    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}}},
}
STORAGE_FULL_RESPONSE = {
    **ERROR_RESPONSE,
    "description": "Insufficient Storage: the data directory's filesystem is full",
}
READ_ONLY_METHODS = frozenset({"get", "head"})
"""Methods whose routes never write (no index commit, no upload), so never answer 507."""


def _documents(status: str, response: dict[str, Any]) -> Callable[[T], T]:
    def decorator(func: T) -> T:
        responses = {**getattr(func, RESPONSES_ATTRIBUTE, {}), status: response}
        setattr(func, RESPONSES_ATTRIBUTE, responses)
        return func

    return decorator


def no_content(func: T) -> T:
    return _documents("204", {"description": ""})(func)


def binary_content(*media_types: str) -> Callable[[T], T]:
    schema = {"type": "string", "format": "binary"}
    return _documents(
        "200", {"description": "", "content": {media: {"schema": schema} for media in media_types}}
    )


def header_parameter(name: str, description: str) -> Callable[[T], T]:
    """Document an optional string request header the route reads itself (without `validate_headers`)."""
    parameter = {"name": name, "in": "header", "description": description, "required": False,
                 "schema": {"type": "string"}}  # fmt: skip

    def decorator(func: T) -> T:
        setattr(func, PARAMETERS_ATTRIBUTE, [*getattr(func, PARAMETERS_ATTRIBUTE, []), parameter])
        return func

    return decorator


def multipart_body(
    name: str, schema: dict[str, Any], *, file_names: dict[str, str] | None = None
) -> Callable[[T], T]:
    """Document a multipart/form-data request body: `schema` (a component named `name`) describes its parts;
    `file_names` gives an example file name for file parts (a `Content-Disposition` example per part, which
    clients and schemathesis use to name the files they send)."""
    encoding = {
        part: {"headers": {"Content-Disposition": {
            "schema": {"type": "string"},
            "example": f'form-data; name="{part}"; filename="{file_name}"',
        }}}
        for part, file_name in (file_names or {}).items()
    }  # fmt: skip
    media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{name}"}}
    if encoding:
        media["encoding"] = encoding
    body = {"required": True, "content": {"multipart/form-data": media}}

    def decorator(func: T) -> T:
        setattr(func, REQUEST_BODY_ATTRIBUTE, (body, {name: schema}))
        return func

    return decorator


_TEXT = {"type": "string"}
ASSET_MEDIA_CREATE_DTO: dict[str, Any] = {
    "description": "Immich's AssetMediaCreateDto, as `daemon.uploads.parse_form` reads it. Every part but the "
    "files is text: booleans are `true`/`false`; parts not listed here are read and ignored.",
    "type": "object",
    "required": [ASSET_PART, "fileCreatedAt", "fileModifiedAt"],
    "properties": {
        ASSET_PART: {"type": "string", "format": "binary",
                     "description": "The file; its name's extension must be a supported image or video type"},
        SIDECAR_PART: {"type": "string", "format": "binary",
                       "description": "An XMP sidecar; its name must end in " + ", ".join(sorted(SIDECAR_EXTENSIONS))},
        "fileCreatedAt": {"type": "string", "format": "date-time", "example": "2024-01-01T00:00:00.000Z",
                          "description": "ISO 8601; without an offset, UTC"},
        "fileModifiedAt": {"type": "string", "format": "date-time", "example": "2024-01-01T00:00:00.000Z",
                           "description": "ISO 8601; without an offset, UTC; between 1677-09-22 and 2262-04-11"},
        "isFavorite": {"type": "boolean"},
        "isArchived": {"type": "boolean", "description": "Immich v1; `visibility` wins when both are given"},
        "visibility": {"type": "string", "enum": list(VISIBILITIES)},
        "libraryId": {"type": "string", "format": "uuid",
                      "description": "An upload library of the caller; absent or empty: their oldest"},
        "filename": {**_TEXT, "description": "The name to show instead of the file part's own"},
        "deviceAssetId": _TEXT,
        "deviceId": _TEXT,
        "duration": {**_TEXT, "description": "Ignored (read from the file)"},
        "fileSize": {**_TEXT, "description": "Ignored (the bytes received count)"},
        "livePhotoVideoId": {**_TEXT, "description": "Ignored"},
    },
}  # fmt: skip


class FilmrollOpenAPIProvider(OpenAPIProvider):
    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        extra = getattr(view, RESPONSES_ATTRIBUTE, {})
        body, body_components = getattr(view, REQUEST_BODY_ATTRIBUTE, (None, {}))
        parameters = getattr(view, PARAMETERS_ATTRIBUTE, [])
        public = policy_for(self._app, rule.endpoint).public
        for operations in paths.values():
            for method, operation in operations.items():
                documented = {str(status): response for status, response in operation["responses"].items()}
                # One blanket `4XX`, not each code: every refusal has the same body, and which 4xx a bad input
                # earns (400, 401, 403, 404, 408, 413, ...) depends on checks no schema states, so listing codes
                # per operation would be guesswork. The price: status-code conformance (schemathesis) cannot
                # flag a wrong 4xx; the tests that care (tests/api, the authorization matrix) assert exact codes.
                operation["responses"] = {**extra, **documented, "4XX": ERROR_RESPONSE}
                # Any write can meet a full disk: an index commit anywhere, an upload's temp file. Declared by
                # method rather than per route because nearly every non-GET route commits (login included).
                if method not in READ_ONLY_METHODS:
                    operation["responses"]["507"] = STORAGE_FULL_RESPONSE
                if parameters:
                    operation["parameters"] = [*operation.get("parameters", []), *parameters]
                if body is not None:
                    operation["requestBody"] = body
                if public:
                    operation["security"] = []  # no credentials needed (`api.access`)
        return paths, {**components, **body_components, ERROR_SCHEMA_NAME: ERROR_SCHEMA}
