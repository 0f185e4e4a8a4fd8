"""Asset updates, deletion and the trash over real HTTP: edits stored in the index (never in files) that survive
re-extraction, all-or-nothing bulk changes, external assets that cannot be deleted, upload assets trashed,
restored and deleted for good (original, sidecar, derived files, quota)."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from daemon import assets as asset_index
from daemon import derived, libraries
from daemon.check import check_index
from daemon.index import USERS
from daemon.records import Asset
from tests.api.test_libraries_api import settle
from tests.library_helpers import write
from tests.media_files import fingerprint, jpeg

NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def put_upload(
    daemon,
    session,
    name: str,
    content: bytes | None = None,
    *,
    taken: datetime = NOW,
    local: datetime | None = None,
    library_id: uuid.UUID | None = None,
    sidecar: bool = False,
    **fields,
) -> str:
    """An upload-library asset with a real original (and `.xmp` with `sidecar`) under the data directory,
    stored as the upload path stores it (checksum entry, quota usage). Returns its id."""
    services = daemon.services
    owner_id = uuid.UUID(session.user["id"])
    offline = fields.pop("is_offline", False)
    content = content if content is not None else name.encode() + b" \xff\xd8\xff\xe0 bytes"
    if library_id is None:
        with services.index.read() as txn:
            uploads = [lib for lib in libraries.libraries_of(txn, owner_id) if lib.type == "UPLOAD"]
        library_id = min(uploads, key=lambda lib: lib.created_at).id
    asset_id = uuid.uuid4()
    path = os.path.join(services.settings.data_dir, "upload", str(owner_id), f"{asset_id}-{name}").encode()
    write(path, content)
    if sidecar:
        write(path + b".xmp", b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    asset = Asset(
        id=asset_id, owner_id=owner_id, library_id=library_id, type=fields.pop("type", "IMAGE"),
        original_path=path, file_size=len(content), file_mtime_ns=0, file_created_at=taken,
        local_date_time=local or taken, created_at=NOW, updated_at=NOW,
        content_sha1=hashlib.sha1(content).digest(), sidecar_path=path + b".xmp" if sidecar else None, **fields,
    )  # fmt: skip

    def work(txn):
        asset_index.insert_many(txn, [asset])
        asset_index.add_checksum(txn, asset)
        if offline:  # `insert_many` stores online assets; going offline moves the signature entry
            asset_index.update(txn, asset, is_offline=True)
        user = txn.get(USERS, owner_id.bytes)
        txn.put(USERS, owner_id.bytes, msgspec.structs.replace(
            user, quota_usage_in_bytes=user.quota_usage_in_bytes + len(content)))  # fmt: skip

    services.index.write(work)
    return str(asset_id)


def quota_usage(daemon, session) -> int:
    with daemon.services.index.read() as txn:
        return txn.get(USERS, uuid.UUID(session.user["id"]).bytes).quota_usage_in_bytes


def stored(daemon, asset_id: str) -> Asset | None:
    with daemon.services.index.read() as txn:
        return asset_index.get(txn, uuid.UUID(asset_id))


@pytest.fixture
async def photo(daemon, admin, user, tmp_path):
    """The user's external library with one JPEG (EXIF date, no GPS), scanned and processed.
    Returns (asset id, path); at teardown the external folder must be byte-for-byte unchanged (no sidecar)."""
    external = tmp_path / "nas"
    path = jpeg(external / "photos" / "photo.jpg", (320, 240), taken="2021:06:07 08:09:10")
    reply = await admin.client.put(
        f"/api/admin/users/{user.user['id']}", json={"externalPath": str(external)}
    )
    assert reply.status_code == 200
    created = await user.client.post("/api/libraries", json={"importPaths": [str(external / "photos")]})
    library_id = created.json()["id"]
    before = fingerprint(external)
    assert (await user.client.post(f"/api/libraries/{library_id}/scan")).status_code == 204
    await settle(admin)
    with daemon.services.index.read() as txn:
        [(_, entry)] = list(asset_index.of_library(txn, uuid.UUID(library_id)))
    yield str(entry.asset_id), path
    assert fingerprint(external) == before  # edits never touch originals, and no sidecar appears


EDITS = {
    "isFavorite": True,
    "description": "Sunset over the lake",
    "rating": 4,
    "latitude": 47.04,
    "longitude": 9.07,
    "dateTimeOriginal": "2023-11-19T18:11:00.000-07:00",
}


def assert_edited(body: dict) -> None:
    exif = body["exifInfo"]
    assert body["isFavorite"] is True
    assert exif["description"] == "Sunset over the lake" and exif["rating"] == 4
    assert (exif["latitude"], exif["longitude"]) == (47.04, 9.07)
    assert exif["dateTimeOriginal"] == "2023-11-20T01:11:00.000Z" and exif["timeZone"] == "UTC-7"
    assert body["fileCreatedAt"] == "2023-11-20T01:11:00.000Z"
    assert body["localDateTime"] == "2023-11-19T18:11:00.000Z"


async def test_edits_are_shown_stored_in_the_index_and_survive_re_extraction(daemon, admin, user, photo):
    asset_id, _ = photo
    before = (await user.client.get(f"/api/assets/{asset_id}")).json()
    assert before["exifInfo"]["dateTimeOriginal"] == "2021-06-07T08:09:10.000Z"
    reply = await user.client.put(f"/api/assets/{asset_id}", json=EDITS)
    assert reply.status_code == 200, reply.text
    assert_edited(reply.json())
    assert reply.json()["exifInfo"]["exifImageWidth"] == 320  # extracted values stay beside the edits
    assert reply.json()["updatedAt"] > before["updatedAt"]
    assert_edited((await user.client.get(f"/api/assets/{asset_id}")).json())
    buckets = (await user.client.get("/api/timeline/buckets")).json()
    assert buckets == [{"timeBucket": "2023-11-01", "count": 1}]  # the local capture month moved

    reply = await user.client.post(
        "/api/assets/jobs", json={"assetIds": [asset_id], "name": "refresh-metadata"}
    )
    assert reply.status_code == 204
    await settle(admin)
    again = (await user.client.get(f"/api/assets/{asset_id}")).json()
    assert again["hasMetadata"] is True and again["exifInfo"]["exifImageWidth"] == 320
    assert_edited(again)

    # A later edit of one field leaves the others; a null rating clears it (and stays cleared).
    reply = await user.client.put(f"/api/assets/{asset_id}", json={"rating": None, "isFavorite": False})
    body = reply.json()
    assert body["exifInfo"]["rating"] is None and body["isFavorite"] is False
    assert body["exifInfo"]["description"] == "Sunset over the lake"
    assert check_index(daemon.services.index) == []


async def test_visibility_and_the_legacy_is_archived(daemon, user):
    asset_id = put_upload(daemon, user, "a.jpg")
    body = (await user.client.put(f"/api/assets/{asset_id}", json={"isArchived": True})).json()
    assert body["visibility"] == "archive" and body["isArchived"] is True
    body = (await user.client.put(f"/api/assets/{asset_id}", json={"visibility": "timeline"})).json()
    assert body["visibility"] == "timeline" and body["isArchived"] is False
    body = (
        await user.client.put(f"/api/assets/{asset_id}", json={"isArchived": False, "visibility": "hidden"})
    ).json()
    assert body["visibility"] == "hidden"
    assert stored(daemon, asset_id).visibility == "hidden"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"latitude": 10}, ["longitude must be a longitude string or number"]),
        ({"longitude": 10}, ["latitude must be a latitude string or number"]),
        ({"latitude": 91, "longitude": 10}, ["latitude must be a latitude string or number"]),
        ({"latitude": 10, "longitude": -180.5}, ["longitude must be a longitude string or number"]),
        ({"rating": 6}, ["rating must not be greater than 5"]),
        ({"rating": -2}, ["rating must not be less than -1"]),
        ({"dateTimeOriginal": "yesterday"}, ["dateTimeOriginal must be a valid ISO 8601 date string"]),
        (
            {"dateTimeOriginal": "2023-02-30T10:00:00Z"},
            ["dateTimeOriginal must be a valid ISO 8601 date string"],
        ),
        ({"isFavorite": "yes"}, ["isFavorite must be a boolean value"]),
        (
            {"visibility": "public"},
            ["visibility must be one of the following values: archive, timeline, hidden, locked"],
        ),
    ],
)
async def test_invalid_updates_are_refused_and_change_nothing(daemon, user, body, message):
    asset_id = put_upload(daemon, user, "a.jpg")
    before = stored(daemon, asset_id)
    reply = await user.client.put(f"/api/assets/{asset_id}", json=body)
    assert reply.status_code == 400 and reply.json()["message"] == message
    assert stored(daemon, asset_id) == before


async def test_rating_zero_means_unrated_and_dates_take_any_offset(daemon, user):
    asset_id = put_upload(daemon, user, "a.jpg")
    body = (await user.client.put(f"/api/assets/{asset_id}", json={"rating": 0})).json()
    assert body["exifInfo"]["rating"] is None
    body = (await user.client.put(f"/api/assets/{asset_id}", json={"rating": -1})).json()
    assert body["exifInfo"]["rating"] == -1
    for text, instant, local, zone in (
        ("2020-01-02T03:04:05Z", "2020-01-02T03:04:05.000Z", "2020-01-02T03:04:05.000Z", "UTC"),
        ("2020-01-02T03:04:05.5+05:30", "2020-01-01T21:34:05.500Z", "2020-01-02T03:04:05.500Z", "UTC+5:30"),
        ("2020-01-02T03:04:05", "2020-01-02T03:04:05.000Z", "2020-01-02T03:04:05.000Z", None),
    ):
        body = (await user.client.put(f"/api/assets/{asset_id}", json={"dateTimeOriginal": text})).json()
        exif = body["exifInfo"]
        assert (exif["dateTimeOriginal"], body["localDateTime"], exif["timeZone"]) == (
            instant,
            local,
            zone,
        ), text
        assert body["fileCreatedAt"] == instant


async def test_bulk_updates_are_all_or_nothing(daemon, admin, user):
    mine = [put_upload(daemon, user, f"{n}.jpg") for n in range(3)]
    theirs = put_upload(daemon, admin, "x.jpg")
    reply = await user.client.put(
        "/api/assets", json={"ids": mine, "isFavorite": True, "visibility": "archive", "description": "Trip"}
    )
    assert reply.status_code == 204 and reply.content == b""
    for asset_id in mine:
        body = (await user.client.get(f"/api/assets/{asset_id}")).json()
        assert body["isFavorite"] and body["isArchived"] and body["exifInfo"]["description"] == "Trip"
    reply = await user.client.put("/api/assets", json={"ids": [*mine, theirs], "isFavorite": False})
    assert reply.status_code == 400 and reply.json()["message"] == "Not found or no asset.update access"
    assert all(stored(daemon, asset_id).is_favorite for asset_id in mine)
    assert stored(daemon, theirs).is_favorite is False
    reply = await user.client.put("/api/assets", json={"ids": [mine[0], "nope"], "isFavorite": False})
    assert reply.status_code == 400 and reply.json()["message"] == ["each value in ids must be a UUID"]
    unknown = str(uuid.uuid4())
    reply = await user.client.put("/api/assets", json={"ids": [unknown], "rating": 3})
    assert reply.status_code == 400 and reply.json()["message"] == "Not found or no asset.update access"

    # dateTimeRelative shifts each asset's own capture time
    reply = await user.client.put("/api/assets", json={"ids": mine[:2], "dateTimeRelative": -90})
    assert reply.status_code == 204
    body = (await user.client.get(f"/api/assets/{mine[0]}")).json()
    assert (
        body["fileCreatedAt"] == "2024-03-04T03:36:07.000Z"
        and body["localDateTime"] == "2024-03-04T03:36:07.000Z"
    )
    assert stored(daemon, mine[2]).file_created_at == NOW
    huge = await user.client.put("/api/assets", json={"ids": mine[:1], "dateTimeRelative": 10**10})
    assert huge.status_code == 400 and huge.json()["message"] == [
        "dateTimeRelative must not be greater than 527040000"
    ]
    # timeZone shows each asset's instant in that zone
    reply = await user.client.put("/api/assets", json={"ids": [mine[2]], "timeZone": "America/Denver"})
    assert reply.status_code == 204
    body = (await user.client.get(f"/api/assets/{mine[2]}")).json()
    assert (
        body["fileCreatedAt"] == "2024-03-04T05:06:07.000Z"
        and body["localDateTime"] == "2024-03-03T22:06:07.000Z"
    )
    assert body["exifInfo"]["timeZone"] == "America/Denver"
    reply = await user.client.put("/api/assets", json={"ids": [mine[2]], "timeZone": "Mars/Olympus"})
    assert reply.status_code == 400 and reply.json()["message"] == ["timeZone must be a valid IANA time zone"]


async def test_another_user_cannot_update_delete_or_restore(daemon, admin, user):
    asset_id = put_upload(daemon, user, "a.jpg")
    reply = await admin.client.put(f"/api/assets/{asset_id}", json={"isFavorite": True})
    assert reply.status_code == 400 and reply.json()["message"] == "Not found or no asset.update access"
    reply = await admin.client.request("DELETE", "/api/assets", json={"ids": [asset_id], "force": True})
    assert reply.status_code == 400 and reply.json()["message"] == "Not found or no asset.delete access"
    await user.client.request("DELETE", "/api/assets", json={"ids": [asset_id]})
    reply = await admin.client.post("/api/trash/restore/assets", json={"ids": [asset_id]})
    assert reply.status_code == 400 and reply.json()["message"] == "Not found or no asset.delete access"
    assert (await admin.client.post("/api/trash/empty")).json() == {"count": 0}
    assert (await admin.client.post("/api/trash/restore")).json() == {"count": 0}
    assert stored(daemon, asset_id).trashed_at is not None and os.path.exists(
        stored(daemon, asset_id).original_path
    )


async def test_external_assets_cannot_be_deleted(daemon, user, photo):
    asset_id, path = photo
    upload = put_upload(daemon, user, "a.jpg")
    for force in (False, True):
        reply = await user.client.request(
            "DELETE", "/api/assets", json={"ids": [upload, asset_id], "force": force}
        )
        assert reply.status_code == 400 and reply.json()["message"] == "Cannot delete external assets"
    assert stored(daemon, asset_id).trashed_at is None and stored(daemon, upload).trashed_at is None
    assert path.exists()
    reply = await user.client.request("DELETE", "/api/assets", json={"ids": ["x"]})
    assert reply.status_code == 400 and reply.json()["message"] == ["each value in ids must be a UUID"]


async def test_trash_restore_and_empty(daemon, user):
    ids = [put_upload(daemon, user, f"{n}.jpg", sidecar=True) for n in range(3)]
    paths = [stored(daemon, asset_id).original_path for asset_id in ids]
    usage = quota_usage(daemon, user)
    reply = await user.client.request("DELETE", "/api/assets", json={"ids": ids})
    assert reply.status_code == 204
    body = (await user.client.get(f"/api/assets/{ids[0]}")).json()
    assert body["isTrashed"] is True
    stats = (await user.client.get("/api/assets/statistics")).json()
    assert stats == {"images": 0, "videos": 0, "total": 0}
    stats = (await user.client.get("/api/assets/statistics", params={"isTrashed": "true"})).json()
    assert stats == {"images": 3, "videos": 0, "total": 3}
    # a trashed upload still is its content's asset: uploading it again would be a duplicate
    original = stored(daemon, ids[0])
    with daemon.services.index.read() as txn:
        assert asset_index.by_checksum(txn, original.owner_id, original.content_sha1).id == original.id
    assert quota_usage(daemon, user) == usage  # the trash still counts

    reply = await user.client.post("/api/trash/restore/assets", json={"ids": [ids[0]]})
    assert reply.status_code == 200 and reply.json() == {"count": 1}
    assert stored(daemon, ids[0]).trashed_at is None

    reply = await user.client.post("/api/trash/empty")
    assert reply.status_code == 200 and reply.json() == {"count": 2}
    for asset_id in ids[1:]:
        assert stored(daemon, asset_id) is None
    assert all(not os.path.exists(path) and not os.path.exists(path + b".xmp") for path in paths[1:])
    assert os.path.exists(original.original_path) and os.path.exists(original.original_path + b".xmp")
    assert quota_usage(daemon, user) == original.file_size
    assert (await user.client.get(f"/api/assets/{ids[1]}")).status_code == 400

    await user.client.request("DELETE", "/api/assets", json={"ids": [ids[0]]})
    assert (await user.client.post("/api/trash/restore")).json() == {"count": 1}
    assert (await user.client.get("/api/assets/statistics")).json()["total"] == 1
    assert check_index(daemon.services.index) == []


async def test_force_delete_removes_original_sidecar_derived_files_and_quota(daemon, user):
    keep = put_upload(daemon, user, "keep.jpg")
    doomed = put_upload(daemon, user, "doomed.jpg", sidecar=True, thumbnail_version=1)
    asset = stored(daemon, doomed)
    folder = derived.folder(derived.derived_root(daemon.settings.data_dir), asset.id)
    write(folder / "thumbnail-1.webp", b"webp")
    usage = quota_usage(daemon, user)
    reply = await user.client.request("DELETE", "/api/assets", json={"ids": [doomed], "force": True})
    assert reply.status_code == 204
    assert stored(daemon, doomed) is None and not folder.exists()
    assert not os.path.exists(asset.original_path) and not os.path.exists(asset.original_path + b".xmp")
    assert quota_usage(daemon, user) == usage - asset.file_size
    assert stored(daemon, keep) is not None
    with daemon.services.index.read() as txn:
        assert (
            asset_index.by_checksum(txn, asset.owner_id, asset.content_sha1) is None
        )  # no longer a duplicate
    assert (await user.client.get("/api/assets/statistics")).json() == {"images": 1, "videos": 0, "total": 1}


async def test_statistics_filters(daemon, admin, user):
    put_upload(daemon, user, "plain.jpg")
    put_upload(daemon, user, "fav.jpg", is_favorite=True)
    put_upload(daemon, user, "clip.mp4", type="VIDEO")
    put_upload(daemon, user, "old.jpg", visibility="archive")
    put_upload(daemon, user, "part.mov", type="VIDEO", visibility="hidden")
    put_upload(daemon, user, "secret.jpg", visibility="locked")
    put_upload(daemon, user, "bin.jpg", trashed_at=NOW)
    put_upload(daemon, user, "offline.jpg", is_offline=True)
    put_upload(daemon, admin, "admins.jpg")

    async def stats(**params) -> tuple[int, int, int]:
        reply = await user.client.get("/api/assets/statistics", params=params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        return body["images"], body["videos"], body["total"]

    assert await stats() == (4, 1, 5)  # hidden, locked and trashed left out; archived and offline counted
    assert await stats(isFavorite="true") == (1, 0, 1)
    assert await stats(isFavorite="false") == (3, 1, 4)
    assert await stats(isArchived="true") == (1, 0, 1)
    assert await stats(isArchived="false") == (3, 1, 4)
    assert await stats(visibility="hidden") == (0, 1, 1)
    assert await stats(visibility="timeline") == (3, 1, 4)
    assert await stats(isTrashed="true") == (1, 0, 1)
    assert await stats(isTrashed="false") == (4, 1, 5)
    reply = await user.client.get("/api/assets/statistics", params={"visibility": "nope"})
    assert reply.status_code == 400
