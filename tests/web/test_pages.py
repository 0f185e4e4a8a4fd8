"""The web pages against the real daemon (httpx, cookies as a browser keeps them): sign-in redirects, admin-only
pages, CSRF refusals, escaping, and every page rendering what the services hold."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, Daemon, Session
from tests.media_files import jpeg

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


async def browser(daemon: Daemon, email: str, password: str) -> httpx.AsyncClient:
    """A client signed in through the sign-in form (it keeps the cookie, as a browser does)."""
    client = daemon.client()
    reply = await client.post("/auth/login", data={"email": email, "password": password, "next": "/photos"})
    assert reply.status_code == 303, reply.text
    assert reply.headers["location"] == "/photos"
    assert client.cookies.get("immich_access_token")
    return client


async def csrf_of(client: httpx.AsyncClient, path: str = "/photos") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    match = CSRF.search(page.text)
    assert match, "the page carries a form token"
    return match[1]


@pytest.fixture
async def admin_browser(daemon: Daemon, admin: Session):
    client = await browser(daemon, ADMIN["email"], ADMIN["password"])
    yield client
    await client.aclose()


@pytest.fixture
async def user_browser(daemon: Daemon, user: Session):
    client = await browser(daemon, "user@example.com", "user-password")
    yield client
    await client.aclose()


async def test_pages_redirect_to_sign_in_without_a_session(daemon, admin):
    async with daemon.client() as anonymous:
        for path in ("/", "/photos", "/albums", "/user-settings/libraries", "/admin/users", "/admin/jobs"):
            reply = await anonymous.get(path)
            assert reply.status_code == 303, path
            assert reply.headers["location"].startswith("/auth/login?next=")
        reply = await anonymous.get("/photos?x=1")
        assert reply.headers["location"] == "/auth/login?next=%2Fphotos%3Fx%3D1"
    async with daemon.client() as stale:
        stale.cookies.set("immich_access_token", "not-a-session")
        reply = await stale.get("/photos")
        assert reply.status_code == 303
    async with daemon.client() as anonymous:
        login = await anonymous.get("/auth/login")
        assert login.status_code == 200 and "<form" in login.text
        # the API is untouched: JSON 401s
        api = await anonymous.get("/api/users/me")
        assert api.status_code == 401 and api.json()["message"] == "Authentication required"
        assert (await anonymous.get("/.well-known/immich")).status_code == 200


async def test_first_run_sign_up_then_sign_in(daemon):
    async with daemon.client() as client:
        assert (await client.get("/auth/login")).headers["location"] == "/auth/register"
        form = await client.get("/auth/register")
        assert form.status_code == 200 and "Create the admin account" in form.text
        created = await client.post(
            "/auth/register", data={"email": "root@example.com", "name": "Root", "password": "secret"}
        )
        assert created.status_code == 303 and created.headers["location"] == "/admin/users"
        users = await client.get("/admin/users")
        assert users.status_code == 200 and "root@example.com" in users.text
        # sign-up is closed once there is an admin
        assert (await client.get("/auth/register")).headers["location"] == "/auth/login"
        token = await csrf_of(client)
        out = await client.post("/auth/logout", data={"csrf": token})
        assert out.status_code == 303
        assert (await client.get("/photos")).status_code == 303
    async with daemon.client() as client:
        wrong = await client.post("/auth/login", data={"email": "root@example.com", "password": "nope"})
        assert wrong.status_code == 401 and "Incorrect email or password" in wrong.text
        right = await client.post(
            "/auth/login", data={"email": "root@example.com", "password": "secret", "next": "//evil.example/"}
        )
        assert right.headers["location"] == "/photos"  # never off-site
        for target in ("/\t/evil.example/", "/\\evil.example", "https://evil.example/"):
            again = await client.post(
                "/auth/login", data={"email": "root@example.com", "password": "secret", "next": target}
            )
            assert again.headers["location"] == "/photos", target


async def test_admin_pages_are_forbidden_to_users(user_browser):
    for path in ("/admin/users", "/admin/jobs", "/admin/jobs/table"):
        reply = await user_browser.get(path)
        assert reply.status_code == 403, path
        assert "Forbidden" in reply.text and reply.headers["content-type"].startswith("text/html")
    token = await csrf_of(user_browser)
    reply = await user_browser.post("/admin/users", data={"csrf": token, "email": "x@example.com"})
    assert reply.status_code == 403


async def test_posts_need_the_form_token_and_our_origin(daemon, user_browser):
    token = await csrf_of(user_browser)
    for data in ({"name": "A"}, {"name": "A", "csrf": "0" * 64}):
        reply = await user_browser.post("/albums", data=data)
        assert reply.status_code == 403 and "form token" in reply.text
    cross = await user_browser.post("/albums", data={"name": "A"}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    async with daemon.client() as anonymous:
        login = await anonymous.post(
            "/auth/login",
            data={"email": "user@example.com", "password": "user-password"},
            headers={"Origin": "https://evil.example"},
        )
        assert login.status_code == 403 and "immich_access_token" not in login.cookies
        proxied = await anonymous.post(
            "/auth/login",
            data={"email": "user@example.com", "password": "user-password"},
            headers={"Origin": "https://photos.example", "X-Forwarded-Host": "photos.example"},
        )
        assert proxied.status_code == 303
    ok = await user_browser.post("/albums", data={"name": "A", "csrf": token}, headers={"Origin": daemon.url})
    assert ok.status_code == 303 and ok.headers["location"].startswith("/albums/")
    assert (await user_browser.get(ok.headers["location"])).status_code == 200
    # the header form (htmx) works too
    header = await user_browser.post("/albums", data={"name": "B"}, headers={"X-CSRF-Token": token})
    assert header.status_code == 303
    # another session's token is refused
    other = await browser(daemon, "user@example.com", "user-password")
    try:
        assert await csrf_of(other) != token
        reply = await other.post("/albums", data={"name": "C", "csrf": token})
        assert reply.status_code == 403
    finally:
        await other.aclose()


async def test_admin_creates_a_user_and_sets_the_external_path(daemon, admin_browser, tmp_path):
    token = await csrf_of(admin_browser, "/admin/users")
    created = await admin_browser.post(
        "/admin/users",
        data={"csrf": token, "email": "ann@example.com", "name": "Ann <b>", "password": "pw"},
    )
    assert created.status_code == 303
    page = (await admin_browser.get("/admin/users")).text
    assert "Created ann@example.com" in page and "Ann &lt;b&gt;" in page and "Ann <b>" not in page
    ann = daemon.services.users.find_by_email("ann@example.com")
    assert ann is not None and ann.external_path is None
    reply = await admin_browser.post(
        f"/admin/users/{ann.id}/external-path", data={"csrf": token, "external_path": str(tmp_path)}
    )
    assert reply.status_code == 303
    assert daemon.services.users.get(ann.id).external_path == str(tmp_path)
    bad = await admin_browser.post(
        f"/admin/users/{ann.id}/external-path", data={"csrf": token, "external_path": "relative/path"}
    )
    assert bad.status_code == 303
    assert "External path must be absolute" in (await admin_browser.get("/admin/users")).text
    jobs = await admin_browser.get("/admin/jobs")
    assert jobs.status_code == 200 and "metadataExtraction" in jobs.text
    paused = await admin_browser.post(
        "/admin/jobs/thumbnailGeneration", data={"csrf": token, "command": "pause"}
    )
    assert paused.status_code == 303 and daemon.services.media.thumbnails.paused
    await admin_browser.post("/admin/jobs/thumbnailGeneration", data={"csrf": token, "command": "resume"})
    assert not daemon.services.media.thumbnails.paused


async def test_libraries_page_edits_scans_and_shows_the_timeline(daemon, admin, user, user_browser, tmp_path):
    external = tmp_path / "media"
    trip = external / "christmas-trip"
    jpeg(trip / "tree.jpg", taken="2023:12:24 18:00:00")
    jpeg(trip / "Raw" / "tree-raw.jpg", taken="2023:12:24 18:00:00")
    odd = os.fsencode(trip) + b"/caf\xe9.jpg"
    jpeg(Path(os.fsdecode(odd)), taken="2023:12:25 10:00:00")
    reply = await admin.client.put(
        f"/api/admin/users/{user.user['id']}", json={"externalPath": str(external)}
    )
    assert reply.status_code == 200, reply.text

    token = await csrf_of(user_browser, "/user-settings/libraries")
    page = (await user_browser.get("/user-settings/libraries")).text
    assert "Default Library" in page and "Upload library" in page
    created = await user_browser.post("/user-settings/libraries", data={"csrf": token})
    assert created.status_code == 303
    library_id = created.headers["location"].split("#library-")[1]
    base = f"/user-settings/libraries/{library_id}"

    async def post(path: str, **data: str) -> str:
        reply = await user_browser.post(base + path, data={"csrf": token, **data})
        assert reply.status_code == 303, reply.text
        return (await user_browser.get("/user-settings/libraries")).text

    page = await post("/rename", name="<script>alert(1)</script>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    page = await post("/rename", name="Christmas Trip")
    page = await post("/import-paths", add="/etc")
    assert "Import path must be within the user&#39;s external path" in page  # refused, with Immich's reason
    stored = daemon.services.libraries.get(user_principal(daemon, user), uuid.UUID(library_id))
    assert "/etc" not in stored.import_paths
    page = await post("/import-paths", add=str(external / "missing"))
    assert "but it is not accessible" in page  # stored, with the reason it cannot be imported
    page = await post("/import-paths", remove=str(external / "missing"))
    page = await post("/import-paths", add=str(trip))
    assert f"Added import path {trip}" in page
    for pattern in ("**/@eaDir/**", "**/._*", "**/#recycle/**", "**/#snapshot/**"):
        page = await post("/exclusions", remove=pattern)
    assert "Removed exclusion **/#snapshot/**" in page
    page = await post("/exclusions", add="**/Raw/**")
    assert "Added exclusion **/Raw/**" in page
    for form, entry, refusal in (("/import-paths", str(trip), f"{trip} is already an import path"),
                                 ("/exclusions", "**/Raw/**", "**/Raw/** is already excluded")):  # fmt: skip
        assert refusal in await post(form, add=entry)
    assert "Enter a path to add" in await post("/import-paths", add="  ")
    assert "Enter a pattern to add" in await post("/exclusions", add="")
    library = daemon.services.libraries.get(user_principal(daemon, user), uuid.UUID(library_id))
    assert library.name == "Christmas Trip"
    assert library.import_paths == [str(trip)] and library.exclusion_patterns == ["**/Raw/**"]
    checked = await user_browser.post(base + "/validate", data={"csrf": token, "paths": f"{trip}\n/nowhere"})
    assert checked.status_code == 303
    assert "/nowhere" in (await user_browser.get("/user-settings/libraries")).text

    page = await post("/scan", mode="new")
    status = await user_browser.get("/user-settings/libraries/status")
    assert status.status_code == 200 and 'id="library-status"' in status.text
    await daemon.services.library_jobs.wait_idle()
    await daemon.services.media.idle()  # metadata: the capture dates place the assets in their month
    refresh = await user_browser.get("/user-settings/libraries/status?was=active")
    assert refresh.headers.get("HX-Refresh") == "true" and "No scan running" in refresh.text
    page = (await user_browser.get("/user-settings/libraries")).text
    assert "2 assets" in page and "Last scan: 2 new" in page

    timeline = (await user_browser.get("/photos")).text
    assert "December 2023" in timeline
    assert "tree.jpg" in timeline and "tree-raw.jpg" not in timeline
    assert "caf\N{REPLACEMENT CHARACTER}.jpg" in timeline
    ids = re.findall(r'name="asset" value="([0-9a-f-]+)"', timeline)
    assert len(ids) == 2
    bucket = await user_browser.get("/photos/bucket/2023-12-01")
    assert bucket.status_code == 200 and ids[0] in bucket.text

    asset_page = await user_browser.get(f"/photos/{ids[0]}")
    assert asset_page.status_code == 200 and f"/api/assets/{ids[0]}/original" in asset_page.text
    reply = await user_browser.post(f"/photos/{ids[0]}/favorite", data={"csrf": token, "value": "true"})
    assert reply.status_code == 303
    assert "♥ Favourite" in (await user_browser.get(f"/photos/{ids[0]}")).text
    reply = await user_browser.post(f"/photos/{ids[1]}/archive", data={"csrf": token, "value": "true"})
    assert ids[1] not in (await user_browser.get("/photos")).text  # archived: hidden from the timeline

    added = await user_browser.post(
        "/albums/add-assets", data={"csrf": token, "asset": ids, "new_album": "Christmas"}
    )
    assert added.status_code == 303
    album = await user_browser.get(added.headers["location"])
    assert album.status_code == 200 and "Christmas" in album.text and "2 items" in album.text
    albums = await user_browser.get("/albums")
    assert albums.status_code == 200 and "Christmas" in albums.text

    # another user's asset and album pages answer 404, not the content
    other = await browser(daemon, ADMIN["email"], ADMIN["password"])
    try:
        assert (await other.get(f"/photos/{ids[0]}")).status_code == 404
        assert (await other.get(added.headers["location"])).status_code == 404
        assert (await other.get("/photos/not-a-uuid")).status_code == 404
    finally:
        await other.aclose()

    page = await post("/remove-offline")
    page = await post("/delete")
    assert "Deleted Christmas Trip" in page
    await daemon.services.library_jobs.wait_idle()


def user_principal(daemon: Daemon, session: Session):
    from daemon.access import Principal

    return Principal(user=daemon.services.users.get(uuid.UUID(session.user["id"])))


async def test_static_files_are_public_and_versioned(daemon):
    async with daemon.client() as client:
        page = await client.get("/auth/register")
        src = re.search(r'src="(/static/vendor/htmx[^"]+)"', page.text)[1]
        reply = await client.get(src)
        assert reply.status_code == 200 and "immutable" in reply.headers["cache-control"]
        assert reply.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/static/vendor/thumbhash-0.1.1.js")).status_code == 200
        assert (await client.get("/static/../api/app.py")).status_code == 404
        assert (await client.get("/static/nope.js")).status_code == 404
        assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_scan_progress_fragment(daemon, admin, user, user_browser, monkeypatch):
    """What the libraries page polls every second: the queue's waiting requests, then the running scan."""
    jobs = daemon.services.library_jobs
    jobs.pause()
    library = daemon.services.libraries.create(user_principal(daemon, user), name="Trip")
    await admin.client.put(f"/api/admin/users/{user.user['id']}", json={"externalPath": "/tmp"})
    token = await csrf_of(user_browser, "/user-settings/libraries")
    queued = await user_browser.post(
        f"/user-settings/libraries/{library.id}/scan", data={"csrf": token, "mode": "all"}
    )
    assert queued.status_code == 303
    page = (await user_browser.get("/user-settings/libraries")).text
    assert "Trip: force re-scan of all files queued" in page
    assert "1 library job waiting (the queue is paused)" in page
    assert 'hx-get="/user-settings/libraries/status?was=active"' in page  # polls, and reloads when done
    monkeypatch.setattr(
        jobs,
        "describe_active",
        lambda mine: "scanning library Trip: 1,234 files, 40%" if library.id in mine else None,
    )
    status = await user_browser.get("/user-settings/libraries/status")
    assert "scanning library Trip: 1,234 files, 40%" in status.text and "HX-Refresh" not in status.headers
    monkeypatch.undo()
    jobs.empty()
    jobs.resume()
    done = await user_browser.get("/user-settings/libraries/status?was=active")
    assert done.headers["HX-Refresh"] == "true"
    calm = await user_browser.get("/user-settings/libraries/status")
    assert "HX-Refresh" not in calm.headers and 'hx-trigger="every 1s"' in calm.text


async def test_other_users_scans_stay_private(daemon, admin, user_browser):
    """A user's libraries page does not show somebody else's queued scan, nor its library's name (admins, who
    manage every library, do see them)."""
    jobs = daemon.services.library_jobs
    jobs.pause()
    await admin.client.put(f"/api/admin/users/{admin.user['id']}", json={"externalPath": "/tmp"})
    library = (await admin.client.post("/api/libraries", json={"name": "Private Trip"})).json()
    assert (await admin.client.post(f"/api/libraries/{library['id']}/scan")).status_code == 204
    status = (await user_browser.get("/user-settings/libraries/status")).text
    assert "Private Trip" not in status and "waiting" not in status
    jobs.empty()
    jobs.resume()


async def test_pages_refuse_api_keys_and_bearer_tokens(daemon, admin):
    """A scoped API key must not act through the pages with everything a signed-in user may do."""
    created = await admin.client.post("/api/api-keys", json={"name": "read", "permissions": ["asset.read"]})
    secret = created.json()["secret"]
    async with daemon.client() as client:
        by_key = await client.get("/admin/users", headers={"x-api-key": secret})
        assert by_key.status_code == 403 and "browser sign-in" in by_key.text
        client.cookies.set("immich_access_token", "forged")
        forged = await client.post(
            "/admin/users", headers={"x-api-key": secret}, data={"email": "x@example.com", "csrf": "whatever"}
        )
        # a session token is tried before a key (Immich's order): the forged one is no sign-in, so off to the login
        assert forged.status_code == 303 and forged.headers["location"].startswith("/auth/login")
    bearer = await daemon.client().get("/photos", headers={"Authorization": f"Bearer {admin.token}"})
    assert bearer.status_code == 403
    users = (await admin.client.get("/api/admin/users")).json()
    assert all(u["email"] != "x@example.com" for u in users)
