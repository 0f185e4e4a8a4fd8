"""The one domain exception hierarchy.

Services raise these; the edges translate them exactly once: `api.errors` into HTTP status codes and Immich's
error body, `fsview` into errno values, the CLI into exit codes. Messages are the user-facing text (Immich's
wording where Immich has one), so the edges pass them through unchanged.
"""


class FilmrollError(Exception):
    """Base of every error filmroll raises on purpose.

    `message` is either a string or, for field validation, a list of strings (class-validator wording);
    `str(error)` is the message as one line of text (a list joined with "; "), for pages, logs and the CLI.
    """

    def __init__(self, message: str | list[str]):
        super().__init__(message if isinstance(message, str) else "; ".join(message))
        self.message = message


class InvalidInput(FilmrollError):
    """The request is malformed or breaks a rule (HTTP 400)."""


class NotFoundOrNoAccess(InvalidInput):
    """The resource does not exist or the caller may not use it. Immich answers both with the same 400."""

    def __init__(self, permission: str):
        super().__init__(f"Not found or no {permission} access")
        self.permission = permission


class AuthenticationRequired(FilmrollError):
    """No credentials, or credentials that do not identify anyone (HTTP 401)."""


class Forbidden(FilmrollError):
    """The caller is known but may not do this (HTTP 403)."""


class QuotaExceeded(InvalidInput):
    def __init__(self) -> None:
        super().__init__("Quota has been exceeded!")


class FileUnavailable(FilmrollError):
    """The bytes asked for do not exist (yet): an offline or unreadable original, a thumbnail not rendered yet
    (HTTP 404)."""


class StorageFull(FilmrollError):
    """The data directory's filesystem is full (HTTP 507)."""


class IndexUnusable(FilmrollError):
    """The index cannot be opened or used (wrong schema version, corrupt file)."""


class BadMedia(FilmrollError):
    """A file cannot be read as the media it claims to be (truncated, corrupt, no decoder, decompression bomb,
    a video without a video stream). The message names the file and the reason; the asset stays."""
