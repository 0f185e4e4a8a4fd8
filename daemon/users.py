"""Users: creation (with their upload library), profile updates, admin-only settings, deletion.

Rules that live here:
- emails are unique without regard to case;
- every user is created together with exactly one upload library, in the same transaction;
- only an admin sets `is_admin`, `storage_label`, `quota_size_in_bytes` and `external_path`;
- `external_path` is absolute and stored normalised (`libraries.md` §3.1);
- a deleted user keeps their record (`deleted_at` set) but loses every session and API key at once.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from . import libraries
from .access import Principal
from .credentials import hash_password
from .errors import InvalidInput, NotFoundOrNoAccess
from .index import API_KEY_BY_SECRET, API_KEYS, SESSIONS, USER_BY_EMAIL, USERS, Index, Txn
from .records import AVATAR_COLORS, User
from .timeutil import utc_now

# class-validator's isEmail, close enough: local@domain with a dot-separated domain of valid labels.
_EMAIL = re.compile(
    r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)

ADMIN_ONLY_FIELDS = (
    "is_admin",
    "storage_label",
    "quota_size_in_bytes",
    "external_path",
    "should_change_password",
)
PROFILE_FIELDS = ("name", "email", "password", "avatar_color")


def normalize_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email):
        raise InvalidInput(["email must be an email"])
    return email


def email_key(email: str) -> bytes:
    return email.casefold().encode()


def normalize_external_path(value: str | None) -> str | None:
    """`''`/None -> None (no external access); otherwise absolute and lexically normalised."""
    if value is None or value == "":
        return None
    if not os.path.isabs(value):
        raise InvalidInput("External path must be absolute")
    normalized = os.path.normpath(value)
    return "/" + normalized.lstrip("/") if normalized.startswith("//") else normalized


def _check_storage_label(txn: Txn, label: str | None, user_id: uuid.UUID) -> None:
    if label is None:
        return
    for other in txn.values(USERS):
        if other.storage_label == label and other.id != user_id and other.deleted_at is None:
            raise InvalidInput("Storage label already exists")


class UserService:
    def __init__(self, index: Index):
        self.index = index

    # -- reading ------------------------------------------------------------------------------------------

    def get(self, user_id: uuid.UUID) -> User | None:
        with self.index.read() as txn:
            return txn.get(USERS, user_id.bytes)

    def find_by_email(self, email: str) -> User | None:
        with self.index.read() as txn:
            user_id = txn.get(USER_BY_EMAIL, email_key(email))
            return None if user_id is None else txn.get(USERS, user_id)

    def list(self, *, with_deleted: bool = False) -> list[User]:
        with self.index.read() as txn:
            users = [u for u in txn.values(USERS) if with_deleted or u.deleted_at is None]
        return sorted(users, key=lambda u: u.created_at)

    def has_admin(self) -> bool:
        with self.index.read() as txn:
            return any(u.is_admin for u in txn.values(USERS))

    def count(self) -> int:
        with self.index.read() as txn:
            return txn.count(USERS)

    def get_for_admin(self, principal: Principal, user_id: uuid.UUID) -> User:
        principal.require_admin()
        user = self.get(user_id)
        if user is None:
            raise InvalidInput("User not found")
        return user

    # -- writing ------------------------------------------------------------------------------------------

    def create(
        self,
        *,
        email: str,
        password: str,
        name: str,
        is_admin: bool = False,
        storage_label: str | None = None,
        quota_size_in_bytes: int | None = None,
        should_change_password: bool = False,
        external_path: str | None = None,
        avatar_color: str = "primary",
    ) -> User:
        """Create a user and their Default Library in one transaction. Raises InvalidInput ('User exists', …)."""
        email = normalize_email(email)
        if not password:
            raise InvalidInput(["password should not be empty"])
        if not name:
            raise InvalidInput(["name should not be empty"])
        if avatar_color not in AVATAR_COLORS:
            raise InvalidInput(
                [f"avatarColor must be one of the following values: {', '.join(AVATAR_COLORS)}"]
            )
        now = utc_now()
        user = User(
            id=uuid.uuid4(),
            email=email,
            name=name,
            password_hash=hash_password(password),
            is_admin=is_admin,
            avatar_color=avatar_color,
            storage_label=storage_label or None,
            external_path=normalize_external_path(external_path),
            quota_size_in_bytes=quota_size_in_bytes,
            should_change_password=should_change_password,
            created_at=now,
            updated_at=now,
            profile_changed_at=now,
        )

        def work(txn: Txn) -> User:
            if not txn.put(USER_BY_EMAIL, email_key(email), user.id.bytes, overwrite=False):
                raise InvalidInput("User exists")
            _check_storage_label(txn, user.storage_label, user.id)
            txn.put(USERS, user.id.bytes, user)
            libraries.create_default_upload_library(txn, user.id, now)
            return user

        return self.index.write(work)

    def admin_sign_up(self, *, email: str, password: str, name: str) -> User:
        """The first admin, only while the server has none."""
        if self.has_admin():
            raise InvalidInput("The server already has an admin")
        return self.create(email=email, password=password, name=name, is_admin=True, storage_label="admin")

    def update(self, user_id: uuid.UUID, changes: Mapping[str, Any], *, as_admin: bool) -> User:
        """Apply `changes` (keys: PROFILE_FIELDS, plus ADMIN_ONLY_FIELDS when `as_admin`; others are ignored).

        A user updating themselves (`as_admin=False`) silently cannot touch the admin-only fields.
        """
        allowed = PROFILE_FIELDS + (ADMIN_ONLY_FIELDS if as_admin else ())
        changes = {key: value for key, value in changes.items() if key in allowed}
        if "email" in changes:
            changes["email"] = normalize_email(changes["email"])
        if "name" in changes and not changes["name"]:
            raise InvalidInput(["name should not be empty"])
        if "avatar_color" in changes and changes["avatar_color"] not in AVATAR_COLORS:
            raise InvalidInput(
                [f"avatarColor must be one of the following values: {', '.join(AVATAR_COLORS)}"]
            )
        if "external_path" in changes:
            changes["external_path"] = normalize_external_path(changes["external_path"])
        if "storage_label" in changes:
            changes["storage_label"] = changes["storage_label"] or None
        if "password" in changes:
            if not changes["password"]:
                raise InvalidInput(["password should not be empty"])
            changes["password_hash"] = hash_password(changes.pop("password"))

        def work(txn: Txn) -> User:
            user = txn.get(USERS, user_id.bytes)
            if user is None or user.deleted_at is not None:
                raise InvalidInput("User not found")
            if "email" in changes and email_key(changes["email"]) != email_key(user.email):
                if not txn.put(USER_BY_EMAIL, email_key(changes["email"]), user.id.bytes, overwrite=False):
                    raise InvalidInput("User exists")
                txn.delete(USER_BY_EMAIL, email_key(user.email))
            if "storage_label" in changes:
                _check_storage_label(txn, changes["storage_label"], user.id)
            now = utc_now()
            extra = {"profile_changed_at": now} if "avatar_color" in changes else {}
            updated = msgspec.structs.replace(user, **changes, **extra, updated_at=now)
            txn.put(USERS, user.id.bytes, updated)
            return updated

        return self.index.write(work)

    def delete(self, principal: Principal, user_id: uuid.UUID) -> User:
        """Mark a user deleted: sessions and API keys revoked at once, libraries queued for deletion."""
        principal.require_admin()
        if user_id == principal.user.id:
            raise InvalidInput("Cannot delete your own account")

        def work(txn: Txn) -> User:
            user = txn.get(USERS, user_id.bytes)
            if user is None:
                raise NotFoundOrNoAccess("adminUser.delete")
            if user.deleted_at is not None:
                return user
            now = utc_now()
            deleted = msgspec.structs.replace(user, deleted_at=now, updated_at=now, status="deleted")
            txn.put(USERS, user.id.bytes, deleted)
            revoke_all_credentials(txn, user.id)
            libraries.mark_all_deleted(txn, user.id, now)
            return deleted

        return self.index.write(work)


def revoke_all_credentials(txn: Txn, user_id: uuid.UUID) -> None:
    """Drop every session and API key of a user (inside the caller's write transaction)."""
    doomed_sessions = [key for key, session in txn.items(SESSIONS) if session.user_id == user_id]
    for key in doomed_sessions:
        txn.delete(SESSIONS, key)
    doomed_keys = [key for key in txn.values(API_KEYS) if key.user_id == user_id]
    for api_key in doomed_keys:
        txn.delete(API_KEY_BY_SECRET, api_key.secret_hash)
        txn.delete(API_KEYS, api_key.id.bytes)
