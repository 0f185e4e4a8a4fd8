"""Albums over real HTTP (api-compat §8): every route, every error string, Immich's shapes, another user's view,
offline members and remove-offline, and `check_index` clean after each scenario."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest

from daemon.check import check_index
from tests.api.test_libraries_api import assets_of, settle
from tests.library_helpers import write

ALBUM_KEYS = {
    "id", "albumName", "description", "albumThumbnailAssetId", "albumUsers", "shared", "hasSharedLink",
    "isActivityEnabled", "order", "assetCount", "createdAt", "updatedAt", "ownerId", "owner", "assets",
}  # fmt: skip
DATE_KEYS = {"startDate", "endDate", "lastModifiedAssetTimestamp"}


async def start_scan(session, admin, external, folder: str) -> str:
    """Give `session`'s user `external` as external path and scan `external/folder`; returns the library id."""
    reply = await admin.client.put(
        f"/api/admin/users/{session.user['id']}", json={"externalPath": str(external)}
    )
    assert reply.status_code == 200, reply.text
    created = await session.client.post("/api/libraries", json={"importPaths": [str(external / folder)]})
    library_id = created.json()["id"]
    assert (await session.client.post(f"/api/libraries/{library_id}/scan")).status_code == 204
    return library_id


@pytest.fixture
async def photos(daemon, admin, user, tmp_path) -> dict[str, str]:
    """The user's photos jan/feb/mar (mtimes, hence fileCreatedAt, on the 15th of those months of 2021) and the
    admin's own photo, scanned; {name: asset id}, and the user's library id under `library`. Albums do not
    depend on media work, so the media queues are paused: no worker processes, and no metadata job racing a
    test by changing the assets it looks at."""
    for queue in ("metadataExtraction", "thumbnailGeneration", "videoConversion"):
        assert (await admin.client.put(f"/api/jobs/{queue}", json={"command": "pause"})).status_code == 200
    for month, name in ((1, "jan"), (2, "feb"), (3, "mar")):
        write(
            tmp_path / "user" / "photos" / f"{name}.jpg",
            mtime=datetime(2021, month, 15, 12, tzinfo=UTC).timestamp(),
        )
    write(tmp_path / "admin" / "mine" / "admins.jpg")
    user_library = await start_scan(user, admin, tmp_path / "user", "photos")
    admin_library = await start_scan(admin, admin, tmp_path / "admin", "mine")
    await settle(admin)
    ids = {"library": user_library}
    for library_id in (user_library, admin_library):
        for path, entry in (await assets_of(daemon, library_id)).items():
            ids[os.path.basename(path).removesuffix(".jpg")] = entry["id"]
    assert len(ids) == 5
    return ids


def clean(daemon) -> None:
    assert check_index(daemon.services.index) == []


def message(reply):
    return reply.status_code, reply.json()["message"]


async def test_album_lifecycle(daemon, user, photos):
    client = user.client
    created = await client.post(
        "/api/albums",
        json={"albumName": "Trip", "description": "spring", "assetIds": [photos["feb"], photos["jan"]]},
    )
    assert created.status_code == 201, created.text
    album = created.json()
    assert ALBUM_KEYS | DATE_KEYS == album.keys()
    assert album["albumName"] == "Trip" and album["description"] == "spring"
    assert album["albumThumbnailAssetId"] == photos["feb"] and album["assetCount"] == 2
    assert album["albumUsers"] == [] and album["shared"] is False and album["hasSharedLink"] is False
    assert album["isActivityEnabled"] is True and album["order"] == "desc"
    assert album["startDate"] == "2021-01-15T12:00:00.000Z" and album["endDate"] == "2021-02-15T12:00:00.000Z"
    assert album["ownerId"] == user.user["id"]
    assert album["owner"] == {key: user.user[key] for key in album["owner"]}
    assert set(album["owner"]) == {
        "id",
        "email",
        "name",
        "avatarColor",
        "profileImagePath",
        "profileChangedAt",
    }
    album_id = album["id"]

    full = (await client.get(f"/api/albums/{album_id}")).json()
    assert [a["id"] for a in full["assets"]] == [photos["feb"], photos["jan"]]  # newest first
    assert (
        full["assets"][0]["originalFileName"] == "feb.jpg" and full["assets"][0]["ownerId"] == user.user["id"]
    )
    light = (await client.get(f"/api/albums/{album_id}", params={"withoutAssets": "true"})).json()
    assert light["assets"] == [] and light["assetCount"] == 2

    patched = await client.patch(
        f"/api/albums/{album_id}",
        json={"albumName": "Spring trip", "description": "", "albumThumbnailAssetId": photos["jan"],
              "isActivityEnabled": False, "order": "asc"},
    )  # fmt: skip
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["albumName"], body["description"], body["albumThumbnailAssetId"]) == (
        "Spring trip",
        "",
        photos["jan"],
    )
    assert (
        body["isActivityEnabled"] is False
        and body["order"] == "asc"
        and body["updatedAt"] >= album["updatedAt"]
    )
    ascending = (await client.get(f"/api/albums/{album_id}")).json()
    assert [a["id"] for a in ascending["assets"]] == [photos["jan"], photos["feb"]]

    empty = (await client.post("/api/albums", json={"albumName": "Empty"})).json()
    assert ALBUM_KEYS == empty.keys()  # no dates without members
    assert empty["assetCount"] == 0 and empty["albumThumbnailAssetId"] is None and empty["description"] == ""

    listed = (await client.get("/api/albums")).json()
    assert [a["id"] for a in listed] == [album_id, empty["id"]]
    assert listed[0]["assets"] == [] and listed[0]["assetCount"] == 2 and DATE_KEYS <= listed[0].keys()
    assert (await client.get("/api/albums/statistics")).json() == {"owned": 2, "shared": 0, "notShared": 2}

    deleted = await client.delete(f"/api/albums/{album_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert message(await client.get(f"/api/albums/{album_id}")) == (400, "Not found or no album.read access")
    for name in ("jan", "feb"):
        assert (await client.get(f"/api/assets/{photos[name]}")).status_code == 200  # assets untouched
    assert [a["id"] for a in (await client.get("/api/albums")).json()] == [empty["id"]]
    clean(daemon)


async def test_adding_and_removing_assets(daemon, user, photos):
    client = user.client
    album_id = (await client.post("/api/albums", json={"albumName": "A"})).json()["id"]
    unknown = str(uuid.uuid4())
    before = (await client.get(f"/api/albums/{album_id}")).json()["updatedAt"]
    ids = [photos["mar"], photos["jan"], photos["admins"], unknown, photos["mar"]]
    added = await client.put(f"/api/albums/{album_id}/assets", json={"ids": ids})
    assert added.status_code == 200, added.text
    assert added.json() == [
        {"id": photos["mar"], "success": True},
        {"id": photos["jan"], "success": True},
        {"id": photos["admins"], "success": False, "error": "no_permission"},
        {"id": unknown, "success": False, "error": "no_permission"},
        {"id": photos["mar"], "success": False, "error": "duplicate"},
    ]
    album = (await client.get(f"/api/albums/{album_id}")).json()
    assert album["assetCount"] == 2 and album["albumThumbnailAssetId"] == photos["mar"]
    assert album["updatedAt"] > before and album["endDate"] == "2021-03-15T12:00:00.000Z"
    again = await client.put(f"/api/albums/{album_id}/assets", json={"ids": [photos["jan"]]})
    assert again.json() == [{"id": photos["jan"], "success": False, "error": "duplicate"}]  # harmless (CLI)

    removed = await client.request(
        "DELETE",
        f"/api/albums/{album_id}/assets",
        json={"ids": [photos["mar"], photos["feb"], photos["mar"]]},
    )
    assert removed.status_code == 200
    assert removed.json() == [
        {"id": photos["mar"], "success": True},
        {"id": photos["feb"], "success": False, "error": "not_found"},
        {"id": photos["mar"], "success": False, "error": "not_found"},
    ]
    album = (await client.get(f"/api/albums/{album_id}")).json()
    assert [a["id"] for a in album["assets"]] == [photos["jan"]] and album["albumThumbnailAssetId"] == photos[
        "jan"
    ]
    clean(daemon)


async def test_add_assets_to_many_albums(daemon, user, admin, photos):
    client = user.client
    first = (await client.post("/api/albums", json={"albumName": "1"})).json()["id"]
    second = (await client.post("/api/albums", json={"albumName": "2", "assetIds": [photos["jan"]]})).json()[
        "id"
    ]
    theirs = (await admin.client.post("/api/albums", json={"albumName": "admin's"})).json()["id"]
    body = {"albumIds": [first, second, theirs], "assetIds": [photos["jan"], photos["feb"], photos["admins"]]}
    reply = await client.put("/api/albums/assets", json=body)
    assert reply.status_code == 200 and reply.json() == {"success": True}
    for album_id in (first, second):
        album = (await client.get(f"/api/albums/{album_id}")).json()
        assert {a["id"] for a in album["assets"]} == {photos["jan"], photos["feb"]}
    assert (await admin.client.get(f"/api/albums/{theirs}")).json()["assetCount"] == 0
    again = await client.put("/api/albums/assets", json={"albumIds": [first], "assetIds": [photos["jan"]]})
    assert again.json() == {"success": False, "error": "duplicate"}
    denied = await client.put("/api/albums/assets", json={"albumIds": [theirs], "assetIds": [photos["jan"]]})
    assert denied.json() == {"success": False, "error": "no_permission"}
    foreign = await client.put(
        "/api/albums/assets", json={"albumIds": [first], "assetIds": [photos["admins"]]}
    )
    assert foreign.json() == {"success": False, "error": "no_permission"}
    malformed = await client.put("/api/albums/assets", json={"albumIds": ["nope"], "assetIds": []})
    assert message(malformed) == (400, ["each value in albumIds must be a UUID"])
    clean(daemon)


async def test_another_user_sees_nothing_and_touches_nothing(daemon, user, admin, photos):
    album = (
        await user.client.post("/api/albums", json={"albumName": "private", "assetIds": [photos["jan"]]})
    ).json()
    path = f"/api/albums/{album['id']}"
    other = admin.client
    assert message(await other.get(path)) == (400, "Not found or no album.read access")
    assert message(await other.patch(path, json={"albumName": "mine now"})) == (
        400,
        "Not found or no album.update access",
    )
    assert message(await other.delete(path)) == (400, "Not found or no album.delete access")
    assert message(await other.put(f"{path}/assets", json={"ids": [photos["admins"]]})) == (
        400, "Not found or no albumAsset.create access",
    )  # fmt: skip
    assert message(await other.request("DELETE", f"{path}/assets", json={"ids": [photos["jan"]]})) == (
        400, "Not found or no albumAsset.delete access",
    )  # fmt: skip
    assert (await other.get("/api/albums")).json() == []
    assert (await other.get("/api/albums/statistics")).json() == {"owned": 0, "shared": 0, "notShared": 0}
    assert message(await other.get("/api/albums", params={"assetId": photos["jan"]})) == (
        400, "Not found or no asset.read access",
    )  # fmt: skip
    created = await other.post("/api/albums", json={"albumName": "x", "assetIds": [photos["jan"]]})
    assert message(created) == (400, "Not found or no asset.share access")
    assert (await other.get("/api/albums")).json() == []  # nothing was created
    own = (await other.post("/api/albums", json={"albumName": "admin's"})).json()["id"]
    reply = await other.put(f"/api/albums/{own}/assets", json={"ids": [photos["jan"], photos["admins"]]})
    assert reply.json() == [
        {"id": photos["jan"], "success": False, "error": "no_permission"},
        {"id": photos["admins"], "success": True},
    ]
    unchanged = (await user.client.get(path)).json()
    assert unchanged["albumName"] == "private" and [a["id"] for a in unchanged["assets"]] == [photos["jan"]]
    clean(daemon)


async def test_validation_and_error_messages(daemon, user, photos):
    client = user.client
    for body in ({}, {"albumName": None}, {"albumName": 5}):
        assert message(await client.post("/api/albums", json=body)) == (400, ["albumName must be a string"])
    bad_ids = await client.post("/api/albums", json={"albumName": "x", "assetIds": ["nope", photos["jan"]]})
    assert message(bad_ids) == (400, ["each value in assetIds must be a UUID"])
    sharing = await client.post(
        "/api/albums",
        json={"albumName": "x", "albumUsers": [{"userId": str(uuid.uuid4()), "role": "editor"}]},
    )
    assert message(sharing) == (400, "Album sharing is not supported")
    assert (await client.post("/api/albums", json={"albumName": "x", "albumUsers": []})).status_code == 201

    album_id = (
        await client.post("/api/albums", json={"albumName": "A", "assetIds": [photos["jan"]]})
    ).json()["id"]
    assert message(await client.get("/api/albums/not-a-uuid")) == (400, ["id must be a UUID"])
    assert message(await client.get(f"/api/albums/{uuid.uuid4()}")) == (
        400,
        "Not found or no album.read access",
    )
    assert message(await client.get("/api/albums", params={"assetId": "nope"})) == (
        400,
        ["assetId must be a UUID"],
    )
    assert message(await client.get("/api/albums", params={"shared": "maybe"})) == (
        400, ["shared must be a boolean value"],
    )  # fmt: skip
    for ids in (["nope"], [photos["jan"], 7]):
        reply = await client.put(f"/api/albums/{album_id}/assets", json={"ids": ids})
        assert message(reply) == (400, ["each value in ids must be a UUID"])
        reply = await client.request("DELETE", f"/api/albums/{album_id}/assets", json={"ids": ids})
        assert message(reply) == (400, ["each value in ids must be a UUID"])
    patch = f"/api/albums/{album_id}"
    assert message(await client.patch(patch, json={"order": "newest"})) == (
        400, ["order must be one of the following values: asc, desc"],
    )  # fmt: skip
    assert message(await client.patch(patch, json={"albumThumbnailAssetId": "x"})) == (
        400, ["albumThumbnailAssetId must be a UUID"],
    )  # fmt: skip
    assert message(await client.patch(patch, json={"albumThumbnailAssetId": photos["feb"]})) == (
        400, "Invalid album thumbnail",
    )  # fmt: skip
    assert message(await client.patch(patch, json={"isActivityEnabled": "yes"})) == (
        400, ["isActivityEnabled must be a boolean value"],
    )  # fmt: skip
    assert (await client.patch(patch, json={})).json()["albumName"] == "A"
    assert message(await client.delete(f"/api/albums/{uuid.uuid4()}")) == (
        400,
        "Not found or no album.delete access",
    )
    clean(daemon)


async def test_filters_of_the_album_list(daemon, user, photos):
    client = user.client
    holding = []
    for name in ("one", "two", "two"):
        reply = await client.post("/api/albums", json={"albumName": name, "assetIds": [photos["jan"]]})
        holding.append(reply.json()["id"])
    other = (
        await client.post("/api/albums", json={"albumName": "other", "assetIds": [photos["feb"]]})
    ).json()["id"]
    listed = await client.get("/api/albums", params={"assetId": photos["jan"]})
    assert [a["id"] for a in listed.json()] == holding
    assert [
        a["id"] for a in (await client.get("/api/albums", params={"assetId": photos["mar"]})).json()
    ] == []
    assert [a["id"] for a in (await client.get("/api/albums", params={"name": "two"})).json()] == holding[1:]
    for params in ({"shared": "true"}, {"isShared": "true"}, {"isOwned": "false"}):
        assert (await client.get("/api/albums", params=params)).json() == []
    everything = (await client.get("/api/albums", params={"shared": "false", "isOwned": "true"})).json()
    assert [a["id"] for a in everything] == [*holding, other]
    clean(daemon)


async def test_scoped_api_keys_need_the_album_permissions(daemon, user):
    key = (await user.client.post("/api/api-keys", json={"name": "ha", "permissions": ["album.read"]})).json()
    album_id = (await user.client.post("/api/albums", json={"albumName": "A"})).json()["id"]
    async with daemon.client(**{"x-api-key": key["secret"]}) as client:
        assert (await client.get("/api/albums")).status_code == 200
        assert (await client.get(f"/api/albums/{album_id}")).status_code == 200
        for method, path, permission in (
            ("POST", "/api/albums", "album.create"),
            ("PATCH", f"/api/albums/{album_id}", "album.update"),
            ("DELETE", f"/api/albums/{album_id}", "album.delete"),
            ("PUT", f"/api/albums/{album_id}/assets", "albumAsset.create"),
            ("DELETE", f"/api/albums/{album_id}/assets", "albumAsset.delete"),
            ("PUT", "/api/albums/assets", "albumAsset.create"),
            ("GET", "/api/albums/statistics", "album.statistics"),
        ):
            reply = await client.request(method, path, json={"albumName": "x", "ids": []})
            assert message(reply) == (403, f"Missing required permission: {permission}"), (method, path)


async def test_offline_members_stay_until_removed(daemon, user, admin, photos, tmp_path):
    client = user.client
    album_id = (
        await client.post("/api/albums", json={"albumName": "A", "assetIds": [photos["mar"], photos["jan"]]})
    ).json()["id"]
    assert (await client.get(f"/api/albums/{album_id}")).json()["albumThumbnailAssetId"] == photos["mar"]
    os.remove(tmp_path / "user" / "photos" / "mar.jpg")
    assert (await client.post(f"/api/libraries/{photos['library']}/scan")).status_code == 204
    await settle(admin)
    album = (await client.get(f"/api/albums/{album_id}")).json()
    assert (
        album["assetCount"] == 2 and {a["id"]: a["isOffline"] for a in album["assets"]}[photos["mar"]] is True
    )
    clean(daemon)
    assert (await client.post(f"/api/libraries/{photos['library']}/removeOffline")).status_code == 204
    await settle(admin)
    album = (await client.get(f"/api/albums/{album_id}")).json()
    assert [a["id"] for a in album["assets"]] == [photos["jan"]] and album["assetCount"] == 1
    assert album["albumThumbnailAssetId"] == photos["jan"]
    assert album["endDate"] == "2021-01-15T12:00:00.000Z"
    clean(daemon)
