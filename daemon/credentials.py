"""Passwords and bearer secrets.

Passwords are hashed with argon2id (slow on purpose). Login tokens and API-key secrets are 32 random bytes; being
unguessable already, they are stored as SHA-256 digests, which makes the per-request lookup a single index get.
"""

import hashlib
import secrets
import string

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import InvalidInput

_HASHER = PasswordHasher()
# Verified against when the email is unknown, so a login takes as long whether or not the account exists.
_DUMMY_HASH = _HASHER.hash("filmroll-no-such-user")


def _require(password: str) -> None:
    if not password:
        raise InvalidInput(["password should not be empty"])


def hash_password(password: str) -> str:
    """The argon2id hash of a new password; an empty one is refused (class-validator's wording)."""
    _require(password)
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


_ALPHANUMERIC = string.ascii_letters + string.digits


def new_secret() -> str:
    """A fresh token or API-key secret: 43 random letters and digits (256 bits), like Immich's keys. No `-` or
    `_`: a secret that starts with `-` is read as an option by command-line clients (`immich login URL KEY`)."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(43))


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


# argon2 costs ~0.1 s of CPU by design: off the event loop, and at most two at a time, so a burst of logins
# slows logins down instead of stalling every request.
_PASSWORD_WORK = trio.CapacityLimiter(2)


async def hash_password_off_loop(password: str) -> str:
    _require(password)  # refuse before taking a worker thread
    return await trio.to_thread.run_sync(hash_password, password, limiter=_PASSWORD_WORK)


async def verify_password_off_loop(password_hash: str | None, password: str) -> bool:
    return await trio.to_thread.run_sync(verify_password, password_hash, password, limiter=_PASSWORD_WORK)
