"""What `/api/openapi.json` says beyond quart-schema's decorators: the answers that have no pydantic model.

- `@no_content`: the route answers 204 with an empty body (Immich documents these as `204` without content);
- `@binary_content(*media_types)`: the route answers 200 with file bytes (originals, thumbnails, playback);
- every operation documents its `4XX` answers with the one error body of `api.errors.error_response`, so a client
  (and the schemathesis test, tests/hostile/test_openapi_fuzz.py) can rely on its shape. Immich's own document
  lists success codes only; this is a superset of it;
- public routes (`@access(public=True)`) say so (`security: []`) instead of inheriting the global requirement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quart_schema import OpenAPIProvider
from werkzeug.routing import Rule

from .access import policy_for

T = TypeVar("T", bound=Callable[..., Any])

RESPONSES_ATTRIBUTE = "_filmroll_openapi_responses"
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


class FilmrollOpenAPIProvider(OpenAPIProvider):
    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        extra = getattr(self._app.view_functions[rule.endpoint], RESPONSES_ATTRIBUTE, {})
        public = policy_for(self._app, rule.endpoint).public
        for operations in paths.values():
            for operation in operations.values():
                documented = {str(status): response for status, response in operation["responses"].items()}
                operation["responses"] = {**extra, **documented, "4XX": ERROR_RESPONSE}
                if public:
                    operation["security"] = []  # no credentials needed (`api.access`)
        return paths, {**components, ERROR_SCHEMA_NAME: ERROR_SCHEMA}
