"""Timestamps: always timezone-aware UTC inside filmroll; written as ISO 8601 with milliseconds and `Z`."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_ms(value: datetime) -> str:
    """`2024-01-01T00:00:00.000Z`: Immich's wire format (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
