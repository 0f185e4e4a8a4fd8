"""Sign-up, login, sessions, cookies and API keys over real HTTP."""

from tests.conftest import ADMIN, sign_in

USER_KEYS = {
    "id", "email", "name", "avatarColor", "profileChangedAt", "profileImagePath", "createdAt", "isAdmin",
    "oauthId", "shouldChangePassword", "status", "storageLabel", "deletedAt", "quotaSizeInBytes",
    "quotaUsageInBytes", "updatedAt", "license", "externalPath",
}  # fmt: skip


async def test_admin_sign_up_once(daemon):
    async with daemon.client() as client:
        reply = await client.post("/api/auth/admin-sign-up", json=ADMIN)
        assert reply.status_code == 201
        body = reply.json()
        assert body["isAdmin"] is True and body["storageLabel"] == "admin" and set(body) == USER_KEYS
        assert body["createdAt"].endswith("Z") and len(body["createdAt"]) == 24
        again = await client.post("/api/auth/admin-sign-up", json={**ADMIN, "email": "other@example.com"})
        assert again.status_code == 400 and again.json()["message"] == "The server already has an admin"


async def test_sign_up_validation_messages(daemon):
    async with daemon.client() as client:
        reply = await client.post(
            "/api/auth/admin-sign-up", json={"email": "x", "password": "p", "name": "n"}
        )
        assert reply.status_code == 400 and reply.json()["message"] == ["email must be an email"]


async def test_login_sets_cookies_and_the_cookie_authenticates(daemon, admin):
    async with daemon.client() as client:
        reply = await client.post(
            "/api/auth/login", json={"email": "ADMIN@example.com", "password": ADMIN["password"]}
        )
        assert reply.status_code == 201
        body = reply.json()
        assert (
            body["userEmail"] == ADMIN["email"] and body["isAdmin"] is True and len(body["accessToken"]) >= 40
        )
        assert reply.cookies["immich_access_token"] == body["accessToken"]
        assert reply.cookies["immich_auth_type"] == "password"
        assert reply.cookies["immich_is_authenticated"] == "true"
        assert "httponly" in reply.headers.get_list("set-cookie")[0].lower()
        me = await client.get("/api/users/me")  # the cookie jar carries the token
        assert me.status_code == 200 and me.json()["email"] == ADMIN["email"]


async def test_wrong_password(daemon, admin):
    async with daemon.client() as client:
        reply = await client.post("/api/auth/login", json={"email": ADMIN["email"], "password": "wrong"})
        assert reply.status_code == 401 and reply.json()["message"] == "Incorrect email or password"
        reply = await client.post("/api/auth/login", json={"email": "nobody@example.com", "password": "x"})
        assert reply.status_code == 401 and reply.json()["message"] == "Incorrect email or password"


async def test_logout_revokes_the_token(daemon, admin):
    session = await sign_in(daemon, ADMIN["email"], ADMIN["password"])
    try:
        assert (await session.client.post("/api/auth/validateToken")).json() == {"authStatus": True}
        reply = await session.client.post("/api/auth/logout")
        assert reply.json() == {"successful": True, "redirectUri": "/auth/login?autoLaunch=0"}
        after = await session.client.get("/api/users/me")
        assert after.status_code == 401 and after.json()["message"] == "Invalid user token"
    finally:
        await session.client.aclose()
    assert (await admin.client.get("/api/users/me")).status_code == 200  # other sessions live on


async def test_api_key_lifecycle(daemon, admin):
    reply = await admin.client.post("/api/api-keys", json={"name": "cli"})
    assert reply.status_code == 201
    created = reply.json()
    assert created["apiKey"]["permissions"] == ["all"] and created["name"] == "cli"
    assert {k: created[k] for k in created["apiKey"]} == created["apiKey"]
    secret, key_id = created["secret"], created["apiKey"]["id"]
    async with daemon.client(**{"x-api-key": secret}) as with_key:
        assert (await with_key.get("/api/users/me")).json()["email"] == ADMIN["email"]
        me = (await with_key.get("/api/api-keys/me")).json()
        assert me["id"] == key_id and me["permissions"] == ["all"] and "secret" not in me
    listed = (await admin.client.get("/api/api-keys")).json()
    assert [k["id"] for k in listed] == [key_id] and "secret" not in listed[0]
    renamed = await admin.client.put(f"/api/api-keys/{key_id}", json={"name": "renamed"})
    assert renamed.json()["name"] == "renamed"
    assert (await admin.client.get("/api/api-keys/me")).json()[
        "message"
    ] == "Not authenticated with an API key"
    assert (await admin.client.delete(f"/api/api-keys/{key_id}")).status_code == 204
    async with daemon.client(**{"x-api-key": secret}) as with_key:
        reply = await with_key.get("/api/users/me")
        assert reply.status_code == 401 and reply.json()["message"] == "Invalid API key"


async def test_scoped_key_reports_and_enforces_its_permissions(daemon, admin):
    created = (await admin.client.post("/api/api-keys", json={"permissions": ["user.read"]})).json()
    async with daemon.client(**{"x-api-key": created["secret"]}) as client:
        assert (await client.get("/api/api-keys/me")).json()["permissions"] == ["user.read"]
        assert (await client.get("/api/users/me")).status_code == 200
        reply = await client.get("/api/server/about")
        assert reply.status_code == 403
        assert reply.json()["message"] == "Missing required permission: server.about"


async def test_a_session_token_is_tried_before_an_api_key(daemon, admin):
    """Immich's order (`AuthService.validate`): a Bearer token or the cookie first, the key only without one. A bad
    token beside a good key is a 401; a good token beside a bad key acts as the session (with all its rights)."""
    key = (await admin.client.post("/api/api-keys", json={"permissions": ["user.read"]})).json()["secret"]
    async with daemon.client(**{"x-api-key": key, "Authorization": "Bearer not-a-session"}) as client:
        reply = await client.get("/api/users/me")
        assert reply.status_code == 401 and reply.json()["message"] == "Invalid user token"
    async with daemon.client(**{"x-api-key": "not-a-key", "Authorization": f"Bearer {admin.token}"}) as client:
        assert (await client.get("/api/server/about")).status_code == 200  # beyond the key's user.read
    async with daemon.client(**{"x-api-key": key, "Authorization": "Basic dXNlcjpwdw=="}) as client:
        assert (await client.get("/api/users/me")).status_code == 200  # not a Bearer token: the key is used
        assert (await client.get("/api/server/about")).status_code == 403


async def test_unknown_permission_is_a_400(admin):
    reply = await admin.client.post("/api/api-keys", json={"permissions": ["root"]})
    assert reply.status_code == 400
    assert reply.json()["message"][0].startswith(
        "each value in permissions must be one of the following values"
    )


async def test_users_cannot_read_each_others_keys(admin, user):
    key_id = (await admin.client.post("/api/api-keys", json={})).json()["apiKey"]["id"]
    reply = await user.client.get(f"/api/api-keys/{key_id}")
    assert reply.status_code == 400 and reply.json()["message"] == "Not found or no apiKey.read access"
    reply = await user.client.delete(f"/api/api-keys/{key_id}")
    assert reply.json()["message"] == "Not found or no apiKey.delete access"
    assert (await admin.client.get(f"/api/api-keys/{key_id}")).status_code == 200
    bad = await user.client.get("/api/api-keys/not-a-uuid")
    assert bad.status_code == 400 and bad.json()["message"] == ["id must be a UUID"]


async def test_admin_user_management(daemon, admin, user):
    listed = (await admin.client.get("/api/admin/users")).json()
    assert [u["email"] for u in listed] == [ADMIN["email"], "user@example.com"]
    user_id = user.user["id"]
    reply = await admin.client.put(
        f"/api/admin/users/{user_id}", json={"externalPath": "/srv/photos/user/", "quotaSizeInBytes": 1000}
    )
    assert reply.status_code == 200
    assert reply.json()["externalPath"] == "/srv/photos/user" and reply.json()["quotaSizeInBytes"] == 1000
    assert (await user.client.get("/api/users/me")).json()["externalPath"] == "/srv/photos/user"
    # a user cannot widen their own confinement or make themselves admin
    mine = await user.client.put(
        "/api/users/me", json={"externalPath": "/", "isAdmin": True, "name": "Renamed"}
    )
    assert mine.status_code == 200
    assert (mine.json()["externalPath"], mine.json()["isAdmin"], mine.json()["name"]) == (
        "/srv/photos/user",
        False,
        "Renamed",
    )
    relative = await admin.client.put(f"/api/admin/users/{user_id}", json={"externalPath": "photos"})
    assert relative.status_code == 400 and relative.json()["message"] == "External path must be absolute"
    cleared = await admin.client.put(f"/api/admin/users/{user_id}", json={"externalPath": ""})
    assert cleared.json()["externalPath"] is None
    duplicate = await admin.client.post(
        "/api/admin/users", json={"email": "USER@example.com", "password": "x", "name": "x"}
    )
    assert duplicate.status_code == 400
    deleted = await admin.client.delete(f"/api/admin/users/{user_id}")
    assert deleted.status_code == 200 and deleted.json()["deletedAt"] is not None
    assert (await user.client.get("/api/users/me")).status_code == 401
    assert [u["email"] for u in (await admin.client.get("/api/admin/users")).json()] == [ADMIN["email"]]
    with_deleted = (await admin.client.get("/api/admin/users", params={"withDeleted": "true"})).json()
    assert len(with_deleted) == 2
    own = await admin.client.delete(f"/api/admin/users/{admin.user['id']}")
    assert own.status_code == 400


async def test_deleting_a_deleted_user_is_user_not_found(daemon, admin, user):
    # Immich's delete starts with findOrFail(id, {}), which leaves deleted users out: 400 "User not found",
    # with or without force (force does not purge a user already deleted).
    path = f"/api/admin/users/{user.user['id']}"
    first = await admin.client.request("DELETE", path, json={})
    assert first.status_code == 200 and first.json()["deletedAt"] is not None
    for body in ({}, {"force": False}, {"force": True}):
        again = await admin.client.request("DELETE", path, json=body)
        assert again.status_code == 400, body
        assert again.json()["message"] == "User not found" and again.json()["error"] == "Bad Request"
    # still one deleted user, still deleted at the first time
    with_deleted = (await admin.client.get("/api/admin/users", params={"withDeleted": "true"})).json()
    [kept] = [u for u in with_deleted if u["id"] == user.user["id"]]
    assert kept["deletedAt"] == first.json()["deletedAt"] and kept["status"] == "deleted"
    unknown = await admin.client.delete("/api/admin/users/00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 400 and unknown.json()["message"] == "User not found"


async def test_empty_passwords_are_refused_everywhere(daemon, admin, user):
    expected = ["password should not be empty"]
    async with daemon.client() as client:
        reply = await client.post(
            "/api/auth/admin-sign-up", json={"email": "x@example.com", "password": "", "name": "X"}
        )
        assert reply.status_code == 400
    created = await admin.client.post(
        "/api/admin/users", json={"email": "n@example.com", "password": "", "name": "N"}
    )
    assert created.status_code == 400 and created.json()["message"] == expected
    mine = await user.client.put("/api/users/me", json={"password": ""})
    assert mine.status_code == 400 and mine.json()["message"] == expected
    theirs = await admin.client.put(f"/api/admin/users/{user.user['id']}", json={"password": ""})
    assert theirs.status_code == 400 and theirs.json()["message"] == expected
