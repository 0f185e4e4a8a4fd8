"""Who is asking, and what they may do: the one place for authorization rules.

A `Principal` is an authenticated caller: a user plus the credential they used. Services take a principal and call
these checks before touching anything, so the HTTP API, the web pages and any future adapter share one policy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from .errors import Forbidden, NotFoundOrNoAccess
from .permissions import ALL, grants
from .records import ApiKey, Session, User


@dataclass(frozen=True)
class Principal:
    user: User
    session: Session | None = None
    api_key: ApiKey | None = None

    @property
    def permissions(self) -> frozenset[str]:
        """A login session holds every permission; an API key holds what it was given."""
        if self.api_key is None:
            return frozenset({ALL})
        return frozenset(self.api_key.permissions)

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin

    def require_permission(self, permission: str) -> None:
        """Raises Forbidden when the credential lacks `permission`."""
        if not grants(self.permissions, permission):
            raise Forbidden(f"Missing required permission: {permission}")

    def require_admin(self) -> None:
        if not self.user.is_admin:
            raise Forbidden("Forbidden")

    def require_owner_or_admin(self, owner_id: uuid.UUID, permission: str) -> None:
        """Access to a resource owned by `owner_id` (libraries): its owner and admins.

        Anyone else gets the same answer as for an unknown id, so ids cannot be probed.
        """
        if owner_id != self.user.id and not self.user.is_admin:
            raise NotFoundOrNoAccess(permission)

    def require_owner(self, owner_id: uuid.UUID, permission: str) -> None:
        """Access to a strictly personal resource (API keys, assets, albums): its owner only."""
        if owner_id != self.user.id:
            raise NotFoundOrNoAccess(permission)
