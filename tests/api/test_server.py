"""Discovery and server endpoints against the real daemon on 127.0.0.1."""

import json
from pathlib import Path

from daemon.media_types import media_type_lists

SPEC = Path(__file__).resolve().parents[3] / "shared" / "immich-api" / "immich-openapi-specs.json"


async def test_well_known_and_ping_are_public_even_with_bad_credentials(daemon):
    async with daemon.client(**{"x-api-key": "garbage"}) as client:
        for path in ("/.well-known/immich", "/api/.well-known/immich"):
            reply = await client.get(path)
            assert reply.status_code == 200 and reply.json() == {"api": {"endpoint": "/api"}}
        reply = await client.get("/api/server/ping")
        assert reply.json() == {"res": "pong"}
        assert reply.headers["content-type"] == "application/json; charset=utf-8"
        assert reply.headers["x-correlation-id"]


async def test_version_reports_major_3(daemon):
    async with daemon.client() as client:
        assert (await client.get("/api/server/version")).json() == {
            "major": 3, "minor": 0, "patch": 3, "prerelease": None,
        }  # fmt: skip


async def test_features_has_all_sixteen_flags(daemon):
    async with daemon.client() as client:
        features = (await client.get("/api/server/features")).json()
    assert len(features) == 16
    assert {k for k, v in features.items() if v} == {"trash", "sidecar", "search", "passwordLogin"}
    assert features["configFile"] is False


async def test_media_types_are_the_spec_lists(daemon):
    async with daemon.client() as client:
        types = (await client.get("/api/server/media-types")).json()
    assert types == media_type_lists()
    assert ".jpg" in types["image"] and ".nef" in types["image"] and ".mp4" in types["video"]
    assert types["sidecar"] == [".xmp"]
    assert all(t == t.lower() and t.startswith(".") for t in types["image"] + types["video"])
    assert types["image"] == sorted(types["image"])


async def test_about_storage_statistics_shapes(admin):
    about = (await admin.client.get("/api/server/about")).json()
    assert {"licensed", "versionUrl", "version"} <= about.keys() and about["version"] == "v3.0.3"
    storage = (await admin.client.get("/api/server/storage")).json()
    assert set(storage) == {
        "diskSize", "diskUse", "diskAvailable", "diskSizeRaw", "diskUseRaw", "diskAvailableRaw",
        "diskUsagePercentage",
    }  # fmt: skip
    assert storage["diskSize"].endswith("iB") and 0 <= storage["diskUsagePercentage"] <= 100
    stats = (await admin.client.get("/api/server/statistics")).json()
    assert {"photos", "videos", "usage", "usagePhotos", "usageVideos", "usageByUser"} <= stats.keys()
    (entry,) = stats["usageByUser"]
    assert set(entry) == {
        "photos", "videos", "usage", "usagePhotos", "usageVideos", "userId", "userName", "quotaSizeInBytes",
    }  # fmt: skip
    check = (await admin.client.get("/api/server/version-check")).json()
    assert check == {"checkedAt": None, "releaseVersion": None}


async def test_unknown_route_and_method_give_nest_style_404(daemon):
    async with daemon.client() as client:
        reply = await client.get("/api/foo")
        assert reply.status_code == 404
        body = reply.json()
        assert body["message"] == "Cannot GET /api/foo"
        assert body["error"] == "Not Found" and body["statusCode"] == 404
        assert body["correlationId"] == reply.headers["x-correlation-id"]
        reply = await client.delete("/api/server/ping")
        assert reply.status_code == 404 and reply.json()["message"] == "Cannot DELETE /api/server/ping"


async def test_malformed_json_is_a_json_400(admin):
    reply = await admin.client.post(
        "/api/api-keys", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    assert {"message", "error", "statusCode", "correlationId"} <= reply.json().keys()


async def test_openapi_document_is_generated_from_the_schemas(daemon):
    async with daemon.client() as client:
        document = (await client.get("/api/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert "/api/users/me" in document["paths"] and "/api/auth/login" in document["paths"]
    schemas = document["components"]["schemas"]
    user = next(v for k, v in schemas.items() if k.startswith("UserAdminResponse"))
    reference = json.loads(SPEC.read_text())["components"]["schemas"]["UserAdminResponseDto"]["required"]
    assert set(reference) <= set(user["properties"]), "every Immich user field is in our schema"


async def test_openapi_document_declares_507_and_the_checksum_header(daemon):
    async with daemon.client() as client:
        document = (await client.get("/api/openapi.json")).json()
    upload = document["paths"]["/api/assets"]["post"]
    [checksum] = [p for p in upload["parameters"] if p["name"] == "x-immich-checksum"]
    immich = json.loads(SPEC.read_text())["paths"]["/assets"]["post"]["parameters"]  # servers: /api
    [reference] = [p for p in immich if p["name"] == "x-immich-checksum"]
    header = ("header", False, {"type": "string"})
    for declared in (checksum, reference):  # declared as Immich declares it
        assert (declared["in"], declared["required"], declared["schema"]) == header
    error_body = {"$ref": "#/components/schemas/ErrorResponseDto"}
    assert upload["responses"]["507"]["content"]["application/json"]["schema"] == error_body
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            # every write may meet a full disk; reads never answer 507
            assert ("507" in operation["responses"]) == (method not in ("get", "head")), (method, path)
            if (path, method) != ("/api/assets", "post"):
                names = [p["name"] for p in operation.get("parameters", [])]
                assert "x-immich-checksum" not in names, (method, path)
    assert "507" in document["paths"]["/api/admin/users/{user_id}"]["delete"]["responses"]


async def test_missing_body_reads_as_empty_object(admin):
    created = await admin.client.post("/api/api-keys")  # every field optional: defaults apply
    assert created.status_code == 201 and created.json()["name"] == "API Key"
    reply = await admin.client.post(
        "/api/admin/users", content=b"email=x", headers={"content-type": "text/plain"}
    )
    assert reply.status_code == 400
    assert set(reply.json()["message"]) >= {"email should not be empty", "password should not be empty"}


async def test_body_that_is_not_an_object(admin):
    reply = await admin.client.post("/api/api-keys", json=[1, 2])
    assert reply.status_code == 400 and reply.json()["message"] == ["Request body must be a JSON object"]
    reply = await admin.client.post("/api/api-keys", json={"name": 5, "permissions": "all"})
    assert reply.status_code == 400
    assert reply.json()["message"] == ["name must be a string", "permissions must be an array"]


async def test_oversized_body_is_refused_without_reading_it_all(admin):
    reply = await admin.client.post(
        "/api/api-keys", content=b"x" * (17 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 413
    assert reply.headers["content-type"] == "application/json; charset=utf-8"


async def test_public_routes_ignore_any_bad_credentials(daemon):
    bad = [{"x-api-key": "nope"}, {"Authorization": "Bearer nope"}, {"Cookie": "immich_access_token=nope"}]
    for headers in bad:
        async with daemon.client(**headers) as client:
            for path in ("/api/server/version", "/api/server/features", "/api/server/media-types"):
                assert (await client.get(path)).status_code == 200, (headers, path)
            login = await client.post("/api/auth/login", json={"email": "x@example.com", "password": "x"})
            assert login.json()["message"] == "Incorrect email or password"
            sign_up = await client.post("/api/auth/admin-sign-up", json={"email": "bad"})
            assert sign_up.status_code == 400


async def test_bad_cookie_and_bearer_messages(daemon):
    async with daemon.client(Cookie="immich_access_token=nope") as client:
        reply = await client.get("/api/users/me")
        assert reply.status_code == 401 and reply.json()["message"] == "Invalid user token"
    async with daemon.client(Authorization="Bearer nope") as client:
        assert (await client.get("/api/users/me")).json()["message"] == "Invalid user token"


async def test_uuid_must_be_canonical(admin):
    for bad in ("urn:uuid:12345678-1234-1234-1234-123456789abc", "12345678123412341234123456789abc", "{x}"):
        reply = await admin.client.get(f"/api/api-keys/{bad}")
        assert reply.status_code == 400 and reply.json()["message"] == ["id must be a UUID"], bad
