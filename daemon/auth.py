"""Authentication: logins (sessions) and turning a request's credentials into a `Principal`.

Credentials are tried in Immich's order (`AuthService.validate`): a session token — `Authorization: Bearer`, else
the `immich_access_token` cookie — and only without one, `x-api-key`. So a bad session token beside a good key is
a 401, as in Immich. The 401 message says what was wrong (`api-compat.md` §1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from .access import Principal
from .credentials import new_secret, secret_digest, verify_password_off_loop
from .errors import AuthenticationRequired
from .ids import new_id
from .index import API_KEY_BY_SECRET, API_KEYS, SESSIONS, USER_BY_EMAIL, USERS, Index, Txn
from .records import Session, User
from .timeutil import utc_now
from .users import email_key


@dataclass(frozen=True)
class Credentials:
    api_key: str | None = None
    bearer: str | None = None
    cookie: str | None = None


@dataclass(frozen=True)
class Login:
    access_token: str
    user: User


class AuthService:
    def __init__(self, index: Index):
        self.index = index

    async def login(self, email: str, password: str, *, device_type: str = "", device_os: str = "") -> Login:
        """Check the password and open a session. Raises AuthenticationRequired('Incorrect email or password')."""
        with self.index.read() as txn:
            key = email_key(email or "")
            # LMDB keys are 1-511 bytes: no account has an empty or longer email, and asking would raise
            user_id = txn.get(USER_BY_EMAIL, key) if 0 < len(key) <= 511 else None
            user = None if user_id is None else txn.get(USERS, user_id)
        if user is not None and user.deleted_at is not None:
            user = None
        if (
            not await verify_password_off_loop(user.password_hash if user else None, password or "")
            or user is None
        ):
            raise AuthenticationRequired("Incorrect email or password")
        token = new_secret()
        now = utc_now()
        session = Session(
            id=new_id(),
            user_id=user.id,
            created_at=now,
            updated_at=now,
            device_type=device_type[:200],
            device_os=device_os[:200],
        )
        self.index.write(lambda txn: txn.put(SESSIONS, secret_digest(token), session))
        return Login(access_token=token, user=user)

    def logout(self, principal: Principal) -> None:
        """End the session this principal logged in with (an API key is not ended by logout)."""
        session = principal.session
        if session is None:
            return

        def work(txn: Txn) -> None:
            doomed = [key for key, stored in txn.items(SESSIONS) if stored.id == session.id]
            for key in doomed:
                txn.delete(SESSIONS, key)

        self.index.write(work)

    def authenticate(self, credentials: Credentials) -> Principal:
        """The principal behind the credentials, or AuthenticationRequired with Immich's message."""
        with self.index.read() as txn:
            token = credentials.bearer if credentials.bearer is not None else credentials.cookie
            if token is None:
                if credentials.api_key is None:
                    raise AuthenticationRequired("Authentication required")
                key_id = txn.get(API_KEY_BY_SECRET, secret_digest(credentials.api_key))
                api_key = None if key_id is None else txn.get(API_KEYS, key_id)
                user = None if api_key is None else txn.get(USERS, api_key.user_id.bytes)
                if api_key is None or user is None or user.deleted_at is not None:
                    raise AuthenticationRequired("Invalid API key")
                return Principal(user=user, api_key=api_key)
            session = txn.get(SESSIONS, secret_digest(token))
            user = None if session is None else txn.get(USERS, session.user_id.bytes)
            if session is None or user is None or user.deleted_at is not None:
                raise AuthenticationRequired("Invalid user token")
            return Principal(user=user, session=session)
