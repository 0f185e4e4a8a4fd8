"""Request validation helpers: pydantic errors rendered in class-validator's words, as Immich clients expect.

Immich validates DTOs with class-validator, whose messages clients display and tests compare:
`["name should not be empty"]`, `["email must be an email"]`, `["each value in ids must be a UUID"]`.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, PlainSerializer, ValidationError
from pydantic_core import PydanticCustomError

from daemon.errors import InvalidInput
from daemon.timeutil import iso_ms
from daemon.users import normalize_email

_TYPE_PHRASES = {
    "string_type": "must be a string",
    "bool_type": "must be a boolean value",
    "bool_parsing": "must be a boolean value",
    "int_type": "must be an integer number",
    "int_parsing": "must be an integer number",
    "int_from_float": "must be an integer number",
    "float_type": "must be a number conforming to the specified constraints",
    "float_parsing": "must be a number conforming to the specified constraints",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
    "datetime_type": "must be a Date instance",
    "datetime_parsing": "must be a Date instance",
    "datetime_from_date_parsing": "must be a Date instance",
    "list_type": "must be an array",
    "missing": "should not be empty",
    "string_too_short": "should not be empty",
    "email": "must be an email",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
}


def _phrase(error: dict[str, Any]) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind in _TYPE_PHRASES:
        return _TYPE_PHRASES[kind]
    if kind in ("literal_error", "enum"):
        expected = context.get("expected", "")
        values = [
            part.strip().strip("'") for part in expected.replace(" or ", ",").split(",") if part.strip()
        ]
        return "must be one of the following values: " + ", ".join(values)
    if kind == "too_long":
        return f"must contain no more than {context.get('max_length')} elements"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must not be less than {context.get('ge', context.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must not be greater than {context.get('le', context.get('lt'))}"
    return str(error.get("msg", "is invalid"))


def class_validator_messages(error: Exception) -> list[str] | str:
    if not isinstance(error, ValidationError):
        return "Malformed request body"
    messages: list[str] = []
    for item in error.errors():
        location = [part for part in item["loc"] if isinstance(part, str)]
        in_list = any(isinstance(part, int) for part in item["loc"])
        field = ".".join(location) or "body"
        if field == "body" and item["type"] in ("model_attributes_type", "dict_type", "model_type"):
            messages.append("Request body must be a JSON object")
            continue
        message = f"{field} {_phrase(item)}"
        messages.append(f"each value in {message}" if in_list else message)
    return list(dict.fromkeys(messages))


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def parse_uuid(value: str, field: str = "id") -> uuid.UUID:
    """A lower-case UUID from a path or query parameter; 400 `["id must be a UUID"]` otherwise."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise InvalidInput([f"{field} must be a UUID"])
    return uuid.UUID(value)


def _email(value: str) -> str:
    try:
        return normalize_email(value)
    except InvalidInput:
        raise PydanticCustomError("email", "must be an email") from None


Email = Annotated[str, AfterValidator(_email)]
"""An email field; a bad one gives `["email must be an email"]`."""

Timestamp = Annotated[datetime, PlainSerializer(iso_ms, return_type=str)]
"""A datetime written as `2024-01-01T00:00:00.000Z`."""
