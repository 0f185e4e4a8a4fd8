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
from typing import TYPE_CHECKING, Any

import msgspec

from . import libraries
from .access import Principal
from .credentials import hash_password
from .errors import InvalidInput
from .ids import new_id
from .index import API_KEY_BY_SECRET, API_KEYS, SESSIONS, USER_BY_EMAIL, USERS, Index, Txn
from .permissions import ALL
from .records import AVATAR_COLORS, User
from .timeutil import utc_now

if TYPE_CHECKING:
    from .library_jobs import LibraryJobQueue

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
USER_NOT_FOUND = "User not found"


def normalize_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.fullmatch(email):
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


def _live_admins(txn: Txn) -> list[uuid.UUID]:
    return [u.id for u in txn.values(USERS) if u.is_admin and u.deleted_at is None]


def _check_avatar_color(color: str) -> None:
    if color not in AVATAR_COLORS:
        raise InvalidInput([f"avatarColor must be one of the following values: {', '.join(AVATAR_COLORS)}"])


_STORAGE_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def normalize_storage_label(label: str | None) -> str | None:
    """A storage label becomes a folder name under the upload root: letters, digits, `.`, `_`, `-` only."""
    if not label:
        return None
    if not _STORAGE_LABEL.fullmatch(label):
        raise InvalidInput("Invalid storage label: use letters, digits, '.', '_' and '-' only")
    return label


def _check_storage_label(txn: Txn, label: str | None, user_id: uuid.UUID) -> None:
    if label is None:
        return
    for other in txn.values(USERS):
        if other.storage_label == label and other.id != user_id and other.deleted_at is None:
            raise InvalidInput("Storage label already exists")


class UserService:
    def __init__(self, index: Index, library_jobs: LibraryJobQueue | None = None):
        self.index = index
        self.library_jobs = library_jobs

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
            return bool(_live_admins(txn))

    def count(self) -> int:
        with self.index.read() as txn:
            return txn.count(USERS)

    def get_for_admin(self, principal: Principal, user_id: uuid.UUID) -> User:
        principal.require_admin()
        user = self.get(user_id)
        if user is None:
            raise InvalidInput(USER_NOT_FOUND)
        return user

    # -- writing ------------------------------------------------------------------------------------------

    def create(
        self,
        *,
        email: str,
        name: str,
        password: str | None = None,
        password_hash: str | None = None,
        is_admin: bool = False,
        storage_label: str | None = None,
        quota_size_in_bytes: int | None = None,
        should_change_password: bool = False,
        external_path: str | None = None,
        avatar_color: str = "primary",
        only_if_no_admin: bool = False,
    ) -> User:
        """Create a user and their Default Library in one transaction. Raises InvalidInput ('User exists', …).

        Give `password` (hashed here, slowly) or `password_hash` (hashed by the caller off the event loop).
        """
        email = normalize_email(email)
        if password_hash is None:
            password_hash = hash_password(password or "")
        if not name:
            raise InvalidInput(["name should not be empty"])
        _check_avatar_color(avatar_color)
        now = utc_now()
        user = User(
            id=new_id(),
            email=email,
            name=name,
            password_hash=password_hash,
            is_admin=is_admin,
            avatar_color=avatar_color,
            storage_label=normalize_storage_label(storage_label),
            external_path=normalize_external_path(external_path),
            quota_size_in_bytes=quota_size_in_bytes,
            should_change_password=should_change_password,
            created_at=now,
            updated_at=now,
            profile_changed_at=now,
        )

        def work(txn: Txn) -> User:
            if only_if_no_admin and _live_admins(txn):
                raise InvalidInput("The server already has an admin")
            if not txn.put(USER_BY_EMAIL, email_key(email), user.id.bytes, overwrite=False):
                raise InvalidInput("User exists")
            _check_storage_label(txn, user.storage_label, user.id)
            txn.put(USERS, user.id.bytes, user)
            libraries.create_default_upload_library(txn, user.id, now)
            return user

        return self.index.write(work)

    def admin_sign_up(
        self, *, email: str, name: str, password: str | None = None, password_hash: str | None = None
    ) -> User:
        """The first admin, only while the server has no live admin (checked inside the write transaction)."""
        return self.create(
            email=email,
            name=name,
            password=password,
            password_hash=password_hash,
            is_admin=True,
            storage_label="admin",
            only_if_no_admin=True,
        )

    def update(
        self,
        user_id: uuid.UUID,
        changes: Mapping[str, Any],
        *,
        as_admin: bool,
        current_session_id: uuid.UUID | None = None,
    ) -> User:
        """Apply `changes` (keys: PROFILE_FIELDS, plus ADMIN_ONLY_FIELDS when `as_admin`; others are ignored).

        A user updating themselves (`as_admin=False`) silently cannot touch the admin-only fields; changing their
        own password clears `should_change_password` and ends their other sessions. The last live admin cannot be
        demoted (that would reopen the public admin sign-up).
        """
        allowed = (*PROFILE_FIELDS, "password_hash", *(ADMIN_ONLY_FIELDS if as_admin else ()))
        changes = {key: value for key, value in changes.items() if key in allowed}
        if "email" in changes:
            changes["email"] = normalize_email(changes["email"])
        if "name" in changes and not changes["name"]:
            raise InvalidInput(["name should not be empty"])
        if "avatar_color" in changes:
            _check_avatar_color(changes["avatar_color"])
        if "external_path" in changes:
            changes["external_path"] = normalize_external_path(changes["external_path"])
        if "storage_label" in changes:
            changes["storage_label"] = normalize_storage_label(changes["storage_label"])
        if "password" in changes:
            changes["password_hash"] = hash_password(changes.pop("password"))
        password_changed = "password_hash" in changes
        if password_changed and not as_admin:
            changes["should_change_password"] = False

        def work(txn: Txn) -> User:
            user = txn.get(USERS, user_id.bytes)
            if user is None or user.deleted_at is not None:
                raise InvalidInput(USER_NOT_FOUND)
            if user.is_admin and changes.get("is_admin") is False and _live_admins(txn) == [user.id]:
                raise InvalidInput("Cannot remove the admin rights of the last admin")
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
            if password_changed:
                end_sessions(txn, user.id, keep=current_session_id)
            return updated

        return self.index.write(work)

    def update_own_profile(self, principal: Principal, changes: Mapping[str, Any]) -> User:
        """`PUT /users/me`: a scoped API key may rename, but only a login or an `all` key changes the password or
        email (otherwise a `user.update` key could take over the account)."""
        if {"password", "password_hash", "email"} & changes.keys():
            principal.require_permission(ALL)
        session_id = principal.session.id if principal.session else None
        return self.update(principal.user.id, changes, as_admin=False, current_session_id=session_id)

    def delete(self, principal: Principal, user_id: uuid.UUID) -> User:
        """Mark a user deleted: sessions and API keys revoked at once, libraries queued for deletion.

        Raises `InvalidInput("User not found")` for an unknown user and for one already deleted, as Immich does
        (its `findOrFail(id, {})` leaves deleted users out, with or without `force`).
        """
        principal.require_admin()
        if user_id == principal.user.id:
            raise InvalidInput("Cannot delete your own account")

        def work(txn: Txn) -> User:
            user = txn.get(USERS, user_id.bytes)
            if user is None or user.deleted_at is not None:
                raise InvalidInput(USER_NOT_FOUND)
            now = utc_now()
            deleted = msgspec.structs.replace(user, deleted_at=now, updated_at=now, status="deleted")
            txn.put(USERS, user.id.bytes, deleted)
            revoke_all_credentials(txn, user.id)
            libraries.mark_all_deleted(txn, user.id, now)
            return deleted

        deleted = self.index.write(work)
        if self.library_jobs is not None:
            self.library_jobs.resume_deletions()  # §9.6: their libraries go the way of any deleted library
        return deleted


def end_sessions(txn: Txn, user_id: uuid.UUID, *, keep: uuid.UUID | None = None) -> None:
    """End a user's login sessions, except `keep` (inside the caller's write transaction)."""
    doomed = [
        key for key, session in txn.items(SESSIONS) if session.user_id == user_id and session.id != keep
    ]
    for key in doomed:
        txn.delete(SESSIONS, key)


def revoke_all_credentials(txn: Txn, user_id: uuid.UUID) -> None:
    """Drop every session and API key of a user (inside the caller's write transaction)."""
    end_sessions(txn, user_id)
    doomed_keys = [key for key in txn.values(API_KEYS) if key.user_id == user_id]
    for api_key in doomed_keys:
        txn.delete(API_KEY_BY_SECRET, api_key.secret_hash)
        txn.delete(API_KEYS, api_key.id.bytes)
