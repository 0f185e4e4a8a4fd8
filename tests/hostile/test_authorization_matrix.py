"""The authorization matrix over real HTTP (extends tests/api/test_authorization.py, which checks 401s, admin 403s
with made-up ids, and the declared permissions): every route that takes an id in its path, enumerated from the
app's url_map, and every route that takes ids in its body or query, tried by another user (and by the admin) on
user A's real asset, album, library and API key with valid bodies. None may read, change or delete them: the
answer is Immich's 400 `Not found or no <permission> access` (or a 403/404), nothing of A's shows in any answer,
and afterwards A sees everything exactly as before. Path-bearing inputs (import paths, external path) cannot
reach into another user's files or the data directory.

The web pages (web/) get the same matrix: every page route with an id, enumerated the same way, tried by another
user's and the admin's browser session (cookie + form token); admin pages answer 403 to a non-admin; `/static/`
serves nothing outside its folder."""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

from api.access import policy_for
from api.app import create_app
from tests.api.test_libraries_api import assets_of, settle
from tests.conftest import ADMIN, Session, sign_in
from tests.library_helpers import write
from tests.media_files import jpeg

SECRET = "secret-of-user-a"
PARAMETER_OWNERS = {"asset_id": "asset", "album_id": "album", "library_id": "library", "key_id": "key"}
ADMIN_PARAMETERS = {"user_id", "name"}


def path_bodies(rule: str, method: str, mine: dict[str, str]) -> dict | None:
    """A body that would succeed on the intruder's own resource, so only the id can make it fail."""
    return {
        ("PATCH", "/api/albums/<album_id>"): {"albumName": "hijacked", "description": "hijacked"},
        ("PUT", "/api/albums/<album_id>/assets"): {"ids": [mine["asset"]]},
        ("DELETE", "/api/albums/<album_id>/assets"): {"ids": [mine["a_asset"]]},
        ("PUT", "/api/api-keys/<key_id>"): {"name": "hijacked", "permissions": ["all"]},
        ("PUT", "/api/assets/<asset_id>"): {
            "description": "hijacked",
            "isFavorite": True,
            "visibility": "archive",
        },
        ("PUT", "/api/libraries/<library_id>"): {
            "name": "hijacked",
            "importPaths": [],
            "exclusionPatterns": [],
        },
        ("POST", "/api/libraries/<library_id>/scan"): {"refreshAllFiles": True},
        ("POST", "/api/libraries/<library_id>/validate"): {"importPaths": [mine["a_import_path"]]},
    }.get((method, rule))


async def world_of_a(daemon, admin: Session, user: Session, tmp_path: Path) -> dict[str, str]:
    """User A (`user`) with an external library (scanned), an uploaded asset in an album, and an API key."""
    external = tmp_path / "nas_a"
    jpeg(external / "photos" / f"{SECRET}.jpg", taken="2021:06:07 08:09:10")
    reply = await admin.client.put(
        f"/api/admin/users/{user.user['id']}", json={"externalPath": str(external)}
    )
    assert reply.status_code == 200, reply.text
    library = await user.client.post(
        "/api/libraries", json={"name": SECRET, "importPaths": [str(external / "photos")]}
    )
    assert library.status_code == 201, library.text
    assert (await user.client.post(f"/api/libraries/{library.json()['id']}/scan")).status_code == 204
    content = (external / "photos" / f"{SECRET}.jpg").read_bytes() + b"upload"
    uploaded = await user.client.post(
        "/api/assets",
        data={"fileCreatedAt": "2022-01-01T00:00:00Z", "fileModifiedAt": "2022-01-01T00:00:00Z"},
        files={"assetData": (f"{SECRET}-upload.jpg", io.BytesIO(content), "image/jpeg")},
    )
    assert uploaded.status_code == 201, uploaded.text
    album = await user.client.post(
        "/api/albums", json={"albumName": SECRET, "assetIds": [uploaded.json()["id"]]}
    )
    assert album.status_code == 201, album.text
    key = await user.client.post("/api/api-keys", json={"name": SECRET, "permissions": ["all"]})
    assert key.status_code == 201, key.text
    await settle(admin)
    return {
        "asset": uploaded.json()["id"],
        "album": album.json()["id"],
        "library": library.json()["id"],
        "key": key.json()["apiKey"]["id"],
        "user": user.user["id"],
        "external": str(external),
        "import_path": str(external / "photos"),
        "content_sha1": hashlib.sha1(content).hexdigest(),
    }


async def what_a_sees(user: Session, ids: dict[str, str]) -> dict[str, object]:
    views = {}
    for name, path in {
        "asset": f"/api/assets/{ids['asset']}",
        "album": f"/api/albums/{ids['album']}",
        "library": f"/api/libraries/{ids['library']}",
        "key": f"/api/api-keys/{ids['key']}",
        "me": "/api/users/me",
        "albums": "/api/albums",
        "libraries": "/api/libraries",
        "statistics": "/api/assets/statistics",
    }.items():
        reply = await user.client.get(path)
        assert reply.status_code == 200, (name, reply.text)
        views[name] = reply.json()
    original = await user.client.get(f"/api/assets/{ids['asset']}/original")
    views["original"] = original.content
    return views


async def intruder(daemon, admin: Session, email: str) -> Session:
    body = {"email": email, "password": "intruder-password", "name": "Intruder"}
    assert (await admin.client.post("/api/admin/users", json=body)).status_code == 201
    return await sign_in(daemon, body["email"], body["password"])


def refused(reply, what: str) -> None:
    assert reply.status_code in (400, 403, 404), f"{what}: {reply.status_code} {reply.text[:300]}"
    if reply.status_code == 400:
        message = reply.json()["message"]
        assert re.fullmatch(r"Not found or no [A-Za-z.]+ access", message), f"{what}: {message}"
    assert SECRET not in reply.text, f"{what} leaked A's data"


async def test_no_other_user_reaches_a_s_resources_through_any_route(daemon, admin, user, tmp_path):
    a = await world_of_a(daemon, admin, user, tmp_path)
    before = await what_a_sees(user, a)
    bob = await intruder(daemon, admin, "bob@example.com")
    own = await bob.client.post(
        "/api/assets",
        data={"fileCreatedAt": "2022-01-01T00:00:00Z", "fileModifiedAt": "2022-01-01T00:00:00Z"},
        files={"assetData": ("bob.jpg", io.BytesIO(b"\xff\xd8\xff bob's own"), "image/jpeg")},
    )
    mine = {"asset": own.json()["id"], "a_asset": a["asset"], "a_import_path": a["import_path"]}
    app = create_app(daemon.services)
    covered = set()
    for intruder_session, label in ((bob, "another user"), (admin, "the admin")):
        session_is_admin = intruder_session is admin
        for rule in app.url_map.iter_rules():
            parameters = set(rule.arguments)
            if not parameters or not rule.rule.startswith("/api/"):  # web/ pages are tested with web/
                continue
            policy = policy_for(app, rule.endpoint)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                if parameters <= ADMIN_PARAMETERS:
                    assert policy.admin, f"{method} {rule.rule} takes {parameters} but is not admin-only"
                    covered.add((method, rule.rule))
                    continue  # admin routes: test_non_admins_get_403_on_admin_routes_even_with_real_ids
                assert parameters <= set(PARAMETER_OWNERS), (
                    f"{method} {rule.rule}: add {parameters} to the matrix"
                )
                if session_is_admin and "library_id" in parameters:
                    continue  # libraries.md §2.10: an admin manages every user's libraries
                path = rule.rule
                for parameter in parameters:
                    path = path.replace(f"<{parameter}>", a[PARAMETER_OWNERS[parameter]])
                body = path_bodies(rule.rule, method, mine)
                reply = await intruder_session.client.request(method, path, json=body)
                refused(reply, f"{label}: {method} {rule.rule}")
                covered.add((method, rule.rule))
    assert len(covered) >= 25, covered

    for client, label in ((bob.client, "another user"), (admin.client, "the admin")):
        for method, path, body in [
            ("PUT", "/api/assets", {"ids": [a["asset"]], "isFavorite": True, "description": "hijacked"}),
            ("DELETE", "/api/assets", {"ids": [a["asset"]], "force": True}),
            ("POST", "/api/assets/jobs", {"assetIds": [a["asset"]], "name": "regenerate-thumbnail"}),
            ("POST", "/api/albums", {"albumName": "steal", "assetIds": [a["asset"]]}),
            ("POST", "/api/trash/restore/assets", {"ids": [a["asset"]]}),
        ]:
            refused(await client.request(method, path, json=body), f"{label}: {method} {path}")
        added = await client.put(
            "/api/albums/assets", json={"albumIds": [a["album"]], "assetIds": [mine["asset"]]}
        )
        assert added.status_code in (200, 400) and added.json().get("success") is not True, added.text
        for path, params in [
            ("/api/timeline/buckets", {"albumId": a["album"]}),
            ("/api/timeline/buckets", {"userId": a["user"]}),
            ("/api/timeline/bucket", {"albumId": a["album"], "timeBucket": "2022-01-01"}),
            ("/api/timeline/bucket", {"userId": a["user"], "timeBucket": "2022-01-01"}),
        ]:
            refused(await client.get(path, params=params), f"{label}: GET {path} {params}")
        listed = await client.get("/api/albums", params={"assetId": a["asset"]})
        assert SECRET not in listed.text and a["album"] not in listed.text
        found = await client.post("/api/search/metadata", json={"originalFileName": SECRET})
        assert found.status_code in (200, 400) and SECRET not in found.text and a["asset"] not in found.text
        found = await client.post("/api/search/metadata", json={"libraryId": a["library"]})
        assert SECRET not in found.text and a["asset"] not in found.text
        for listing in ("/api/albums", "/api/api-keys") + (
            () if client is admin.client else ("/api/libraries",)
        ):
            reply = await client.get(listing)
            assert reply.status_code == 200 and SECRET not in reply.text, listing
        checked = await client.post(
            "/api/assets/bulk-upload-check", json={"assets": [{"id": "x", "checksum": a["content_sha1"]}]}
        )
        assert checked.json()["results"] == [{"id": "x", "action": "accept"}]  # A's duplicate is not revealed

    assert await what_a_sees(user, a) == before
    await bob.client.aclose()


async def test_non_admins_get_403_on_admin_routes_even_with_real_ids(daemon, admin, user):
    bob = await intruder(daemon, admin, "bob@example.com")
    app = create_app(daemon.services)
    targets = {"user_id": user.user["id"], "name": "thumbnailGeneration"}
    bodies = {
        ("PUT", "/api/admin/users/<user_id>"): {"isAdmin": True, "name": "hijacked", "externalPath": "/"},
        ("POST", "/api/admin/users"): {
            "email": "evil@example.com",
            "password": "x",
            "name": "x",
            "isAdmin": True,
        },
        ("POST", "/api/admin/users/<user_id>/transfer"): {"targetUserId": bob.user["id"]},
        ("PUT", "/api/jobs/<name>"): {"command": "pause"},
    }
    checked = 0
    for rule in app.url_map.iter_rules():
        if not policy_for(app, rule.endpoint).admin or not rule.rule.startswith("/api/"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = rule.rule
            for parameter in rule.arguments:
                path = path.replace(f"<{parameter}>", targets[parameter])
            for session in (bob, user):
                reply = await session.client.request(method, path, json=bodies.get((method, rule.rule)))
                assert reply.status_code == 403, f"{method} {rule.rule}: {reply.status_code}"
                assert reply.json()["message"] == "Forbidden"
            checked += 1
    assert checked >= 8
    me = (await user.client.get("/api/users/me")).json()
    assert me["isAdmin"] is False and me["name"] == user.user["name"]
    jobs = (await admin.client.get("/api/jobs")).json()
    assert jobs["thumbnailGeneration"]["queueStatus"]["isPaused"] is False
    await bob.client.aclose()


# --- path traversal through path-bearing inputs -----------------------------------------------------------------


async def test_import_paths_cannot_reach_another_user_or_the_data_directory(daemon, admin, user, tmp_path):
    a = await world_of_a(daemon, admin, user, tmp_path)
    bob = await intruder(daemon, admin, "bob@example.com")
    bob_external = tmp_path / "nas_b"
    write(bob_external / "own" / "mine.jpg")
    (bob_external / "link_to_a").symlink_to(a["import_path"])
    (bob_external / "own" / "file_link.jpg").symlink_to(Path(a["import_path"]) / f"{SECRET}.jpg")
    data_dir = daemon.settings.data_dir
    assert (
        await admin.client.put(f"/api/admin/users/{bob.user['id']}", json={"externalPath": str(bob_external)})
    ).status_code == 200
    hostile = [
        a["import_path"],
        a["external"],
        str(bob_external / ".." / "nas_a" / "photos"),
        str(bob_external / "link_to_a"),
        str(bob_external / "link_to_a" / ".." / ".." / "nas_a"),
        data_dir,
        os.path.join(data_dir, "upload"),
        "photos/../../nas_a",
        str(bob_external) + "\0/../nas_a",
        str(tmp_path / "nas_b0"),  # a sibling sharing the prefix
    ]
    for path in hostile:
        created = await bob.client.post("/api/libraries", json={"importPaths": [path]})
        assert created.status_code == 400, f"{path!r}: {created.status_code} {created.text}"
    library = await bob.client.post("/api/libraries", json={"importPaths": [str(bob_external / "own")]})
    assert library.status_code == 201, library.text
    library_id = library.json()["id"]
    validated = await bob.client.post(f"/api/libraries/{library_id}/validate", json={"importPaths": hostile})
    assert validated.status_code == 200
    results = validated.json()["importPaths"]
    assert len(results) == len(hostile), validated.text
    assert all(not result["isValid"] for result in results), validated.text
    updated = await bob.client.put(f"/api/libraries/{library_id}", json={"importPaths": [a["import_path"]]})
    assert updated.status_code == 400, updated.text
    assert (await bob.client.post(f"/api/libraries/{library_id}/scan")).status_code == 204
    await settle(admin)
    imported = await assets_of(daemon, library_id)
    assert all(SECRET not in path for path in imported), (
        imported
    )  # the file link into A's folder is not imported
    assert any(path.endswith("mine.jpg") for path in imported)
    # the admin cannot hand out the data directory either: an external path of `/` still excludes it
    reply = await admin.client.put(f"/api/admin/users/{bob.user['id']}", json={"externalPath": "/"})
    assert reply.status_code == 200, reply.text
    created = await bob.client.post("/api/libraries", json={"importPaths": [data_dir]})
    assert created.status_code == 400
    assert "Cannot use media upload folder for external libraries" in str(created.json()["message"])
    before = (await admin.client.get(f"/api/admin/users/{bob.user['id']}")).json()["externalPath"]
    reply = await admin.client.put(
        f"/api/admin/users/{bob.user['id']}", json={"externalPath": "relative/../x"}
    )
    assert reply.status_code == 400 and reply.json()["message"] == "External path must be absolute"
    assert (await admin.client.get(f"/api/admin/users/{bob.user['id']}")).json()["externalPath"] == before
    await bob.client.aclose()


# --- the web pages (web/) ---------------------------------------------------------------------------------------

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
PAGE_PARAMETER_OWNERS = {"asset_id": "asset", "album_id": "album", "library_id": "library"}


async def browser(daemon, email: str, password: str):
    """A client signed in through the sign-in form, holding the session cookie and a form token, as a browser."""
    client = daemon.client()
    reply = await client.post("/auth/login", data={"email": email, "password": password})
    assert reply.status_code == 303 and client.cookies.get("immich_access_token"), reply.text
    page = await client.get("/photos")
    client.csrf = CSRF.search(page.text)[1]
    return client


def page_forms(mine: dict[str, str]) -> dict[str, dict]:
    """A form that would succeed on the intruder's own resource, so only the id can make it fail."""
    return {
        "/photos/<asset_id>/favorite": {"value": "true"},
        "/photos/<asset_id>/archive": {"value": "true"},
        "/albums/<album_id>/remove-assets": {"asset": mine["a_asset"]},
        "/user-settings/libraries/<library_id>/rename": {"name": "hijacked"},
        "/user-settings/libraries/<library_id>/import-paths": {"remove": mine["a_import_path"]},
        "/user-settings/libraries/<library_id>/validate": {"paths": mine["a_import_path"]},
        "/user-settings/libraries/<library_id>/exclusions": {"add": "**/*"},
        "/user-settings/libraries/<library_id>/scan": {"mode": "all"},
        "/admin/users/<user_id>/external-path": {"external_path": "/"},
        "/admin/jobs/<name>": {"command": "pause"},
    }


async def page_request(client, method: str, path: str, form: dict | None = None):
    if method == "GET":
        return await client.get(path)
    return await client.post(path, data={**(form or {}), "csrf": client.csrf})


def page_refused(reply, what: str) -> None:
    """A page (GET) refuses with its error page (403/404); an action (POST) answers 400/403/404 or sends the
    browser back (303) with an error, which is checked by comparing A's resources afterwards. Nothing of A's
    shows either way."""
    refusals = (403, 404) if reply.request.method == "GET" else (303, 400, 403, 404)
    assert reply.status_code in refusals, f"{what}: {reply.status_code} {reply.text[:300]}"
    assert SECRET not in reply.text and SECRET not in reply.headers.get("location", ""), (
        f"{what} leaked A's data"
    )


def web_rules(app) -> list:
    return [rule for rule in app.url_map.iter_rules() if not rule.rule.startswith("/api/")]


async def test_no_other_user_reaches_a_s_resources_through_any_page(daemon, admin, user, tmp_path):
    a = await world_of_a(daemon, admin, user, tmp_path)
    before = await what_a_sees(user, a)
    await intruder(daemon, admin, "bob@example.com")
    bob = await browser(daemon, "bob@example.com", "intruder-password")
    admin_browser = await browser(daemon, ADMIN["email"], ADMIN["password"])
    mine = {"a_asset": a["asset"], "a_import_path": a["import_path"]}
    app = create_app(daemon.services)
    covered = set()
    for client, label in ((bob, "another user"), (admin_browser, "the admin")):
        for rule in web_rules(app):
            parameters = set(rule.arguments)
            policy = policy_for(app, rule.endpoint)
            if not parameters or policy.public:
                continue  # no id to misuse; /static/<filename> is checked below
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                if policy.admin or parameters == {"time_bucket"}:
                    covered.add((method, rule.rule))
                    continue  # admin pages: the next test; a time bucket is no id: below
                assert parameters <= set(PAGE_PARAMETER_OWNERS), f"{method} {rule.rule}: add {parameters}"
                if client is admin_browser and "library_id" in parameters:
                    continue  # libraries.md §2.10: an admin manages every user's libraries (as in the API)
                path = rule.rule
                for parameter in parameters:
                    path = path.replace(f"<{parameter}>", a[PAGE_PARAMETER_OWNERS[parameter]])
                form = page_forms(mine).get(rule.rule)
                page_refused(await page_request(client, method, path, form), f"{label}: {method} {rule.rule}")
                covered.add((method, rule.rule))
        for month in ("2021-06-01", "2022-01-01"):  # the months of A's assets show only the viewer's own
            reply = await client.get(f"/photos/bucket/{month}")
            assert reply.status_code == 200 and SECRET not in reply.text and a["asset"] not in reply.text
        for path in ("/photos", "/albums", "/user-settings/libraries"):
            reply = await client.get(path)
            assert reply.status_code == 200, (label, path)
            assert SECRET not in reply.text and a["album"] not in reply.text and a["asset"] not in reply.text
        own = await client.post("/albums", data={"name": "mine", "csrf": client.csrf})
        own_album = own.headers["location"].rsplit("/", 1)[1]
        for form in (
            {"asset": a["asset"], "new_album": "stolen"},  # A's asset into a new album
            {"asset": a["asset"], "album": own_album},  # A's asset into the intruder's album
            {"asset": a["asset"], "album": a["album"]},  # into A's album
        ):
            reply = await client.post("/albums/add-assets", data={**form, "csrf": client.csrf})
            page_refused(reply, f"{label}: POST /albums/add-assets {form}")
        stolen = (await client.get(f"/albums/{own_album}")).text
        assert a["asset"] not in stolen, f"{label} added A's asset to an album"
    assert len(covered) >= 15, covered
    assert await what_a_sees(user, a) == before
    for client in (bob, admin_browser):
        await client.aclose()


async def test_non_admins_get_403_on_admin_pages(daemon, admin, user):
    await intruder(daemon, admin, "bob@example.com")
    bob = await browser(daemon, "bob@example.com", "intruder-password")
    app = create_app(daemon.services)
    targets = {"user_id": user.user["id"], "name": "thumbnailGeneration"}
    forms = {
        **page_forms({"a_asset": "", "a_import_path": ""}),
        "/admin/users": {"email": "evil@example.com", "name": "x", "password": "x", "is_admin": "on"},
    }
    checked = 0
    for rule in web_rules(app):
        if not policy_for(app, rule.endpoint).admin:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = rule.rule
            for parameter in rule.arguments:
                path = path.replace(f"<{parameter}>", targets[parameter])
            reply = await page_request(bob, method, path, forms.get(rule.rule))
            assert reply.status_code == 403, f"{method} {rule.rule}: {reply.status_code}"
            checked += 1
    assert checked >= 5
    users = (await admin.client.get("/api/admin/users")).json()
    assert "evil@example.com" not in {entry["email"] for entry in users}
    assert (await admin.client.get(f"/api/admin/users/{user.user['id']}")).json()["externalPath"] is None
    jobs = (await admin.client.get("/api/jobs")).json()
    assert jobs["thumbnailGeneration"]["queueStatus"]["isPaused"] is False
    await bob.aclose()


async def test_static_files_cannot_reach_outside_their_folder(daemon, admin):
    async with daemon.client() as anonymous:
        for path in ("/static/../../daemon/config.py", "/static/%2e%2e/%2e%2e/daemon/config.py",
                     "/static/..%2f..%2fdaemon%2fconfig.py", "/static//etc/passwd", "/static/%00"):  # fmt: skip
            reply = await anonymous.get(path, follow_redirects=True)  # `//` is merged by a 308 first
            assert reply.status_code in (400, 404), (path, reply.status_code)
            assert "Settings" not in reply.text and "root:" not in reply.text
