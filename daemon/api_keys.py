"""API keys: created by a user for themselves, scoped by Immich permissions, secrets stored only as hashes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from .access import Principal
from .credentials import new_secret, secret_digest
from .errors import InvalidInput, NotFoundOrNoAccess
from .ids import new_id
from .index import API_KEY_BY_SECRET, API_KEYS, Index, Txn
from .permissions import ALL, PERMISSIONS, grants
from .records import ApiKey
from .timeutil import utc_now

DEFAULT_NAME = "API Key"


@dataclass(frozen=True)
class CreatedKey:
    secret: str
    api_key: ApiKey


def _validated_permissions(principal: Principal, permissions: Iterable[str] | None) -> list[str]:
    wanted = list(dict.fromkeys(permissions)) if permissions is not None else [ALL]
    unknown = [p for p in wanted if p not in PERMISSIONS]
    if unknown:
        allowed = ", ".join(sorted(PERMISSIONS))
        raise InvalidInput([f"each value in permissions must be one of the following values: {allowed}"])
    if not wanted:
        raise InvalidInput(["permissions should not be empty"])
    # A scoped key cannot mint a key stronger than itself.
    if not all(grants(principal.permissions, permission) for permission in wanted):
        raise InvalidInput("Cannot grant permissions you do not have")
    return wanted


class ApiKeyService:
    def __init__(self, index: Index):
        self.index = index

    def create(
        self, principal: Principal, *, name: str | None, permissions: Iterable[str] | None
    ) -> CreatedKey:
        granted = _validated_permissions(principal, permissions)
        secret = new_secret()
        now = utc_now()
        api_key = ApiKey(
            id=new_id(),
            user_id=principal.user.id,
            name=name or DEFAULT_NAME,
            permissions=granted,
            secret_hash=secret_digest(secret),
            created_at=now,
            updated_at=now,
        )

        def work(txn: Txn) -> None:
            txn.put(API_KEYS, api_key.id.bytes, api_key)
            txn.put(API_KEY_BY_SECRET, api_key.secret_hash, api_key.id.bytes)

        self.index.write(work)
        return CreatedKey(secret=secret, api_key=api_key)

    def list(self, principal: Principal) -> list[ApiKey]:
        with self.index.read() as txn:
            keys = [k for k in txn.values(API_KEYS) if k.user_id == principal.user.id]
        return sorted(keys, key=lambda k: k.created_at)

    def get(self, principal: Principal, key_id: uuid.UUID, permission: str = "apiKey.read") -> ApiKey:
        with self.index.read() as txn:
            api_key = txn.get(API_KEYS, key_id.bytes)
        if api_key is None:
            raise NotFoundOrNoAccess(permission)
        principal.require_owner(api_key.user_id, permission)
        return api_key

    def current(self, principal: Principal) -> ApiKey:
        if principal.api_key is None:
            raise InvalidInput("Not authenticated with an API key")
        return principal.api_key

    def update(
        self, principal: Principal, key_id: uuid.UUID, *, name: str | None, permissions: Iterable[str] | None
    ) -> ApiKey:
        self.get(principal, key_id, "apiKey.update")
        changes: dict[str, object] = {}
        if name is not None:
            if not name:
                raise InvalidInput(["name should not be empty"])
            changes["name"] = name
        if permissions is not None:
            changes["permissions"] = _validated_permissions(principal, permissions)

        def work(txn: Txn) -> ApiKey:
            current = txn.get(API_KEYS, key_id.bytes)
            if current is None:
                raise NotFoundOrNoAccess("apiKey.update")
            updated = msgspec.structs.replace(current, **changes, updated_at=utc_now())
            txn.put(API_KEYS, key_id.bytes, updated)
            return updated

        return self.index.write(work)

    def delete(self, principal: Principal, key_id: uuid.UUID) -> None:
        self.get(principal, key_id, "apiKey.delete")

        def work(txn: Txn) -> None:
            current = txn.get(API_KEYS, key_id.bytes)
            if current is None:
                raise NotFoundOrNoAccess("apiKey.delete")
            txn.delete(API_KEY_BY_SECRET, current.secret_hash)
            txn.delete(API_KEYS, key_id.bytes)

        self.index.write(work)
