"""The timeline (month buckets and a bucket's column arrays), metadata search, people and tags over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from daemon import album_index
from daemon.records import Album
from tests.api.test_asset_updates_api import put_upload, stored

BUCKET_KEYS = {
    "id", "ownerId", "ratio", "isFavorite", "isImage", "isTrashed", "visibility", "thumbhash", "fileCreatedAt",
    "createdAt", "localOffsetHours", "duration", "projectionType", "livePhotoVideoId", "city", "country",
    "latitude", "longitude",
}  # fmt: skip


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_album(daemon, session, *asset_ids: str) -> str:
    now = datetime.now(UTC)
    album = Album(id=uuid.uuid4(), owner_id=uuid.UUID(session.user["id"]), name="Trip", created_at=now,
                  updated_at=now)  # fmt: skip

    def work(txn):
        album_index.put(txn, album)
        for asset_id in asset_ids:
            album_index.add(txn, album.id, uuid.UUID(asset_id), now)

    daemon.services.index.write(work)
    return str(album.id)


@pytest.fixture
def library(daemon, admin, user):
    """The user's assets across a few months (name -> id), and one of the admin's."""
    ids = {
        "march.jpg": put_upload(daemon, user, "march.jpg", taken=at("2024-03-10T12:00"), width=400, height=300),
        # 2024-03-02 10:00 at UTC+2: taken earlier than march.jpg
        "early.jpg": put_upload(daemon, user, "early.jpg", taken=at("2024-03-02T08:00"), local=at("2024-03-02T10:00")),
        # 2024-04-01 05:00 at UTC+9: an April local month, taken on March 31 (UTC)
        "tokyo.jpg": put_upload(daemon, user, "tokyo.jpg", taken=at("2024-03-31T20:00"), local=at("2024-04-01T05:00")),
        "clip.mp4": put_upload(daemon, user, "clip.mp4", taken=at("2024-01-05T09:00"), type="VIDEO",
                               is_favorite=True, duration_ms=1500),
        "archived.jpg": put_upload(daemon, user, "archived.jpg", taken=at("2023-12-31T23:30"), visibility="archive"),
        "hidden.mov": put_upload(daemon, user, "hidden.mov", taken=at("2024-03-15T00:00"), type="VIDEO",
                                 visibility="hidden"),
        "trashed.jpg": put_upload(daemon, user, "trashed.jpg", taken=at("2024-02-02T00:00"),
                                  trashed_at=at("2024-05-01")),
    }  # fmt: skip
    ids["admins.jpg"] = put_upload(daemon, admin, "admins.jpg", taken=at("2024-03-11T00:00"))
    return ids


async def buckets(session, **params) -> list[tuple[str, int]]:
    reply = await session.client.get("/api/timeline/buckets", params=params)
    assert reply.status_code == 200, reply.text
    return [(bucket["timeBucket"], bucket["count"]) for bucket in reply.json()]


async def test_buckets_by_local_month_with_filters(daemon, admin, user, library):
    assert await buckets(user) == [("2024-04-01", 1), ("2024-03-01", 2), ("2024-01-01", 1)]
    assert await buckets(user, order="asc") == [("2024-01-01", 1), ("2024-03-01", 2), ("2024-04-01", 1)]
    assert await buckets(user, visibility="archive") == [("2023-12-01", 1)]
    assert await buckets(user, visibility="timeline") == await buckets(user)
    assert await buckets(user, visibility="hidden") == [] and await buckets(user, visibility="locked") == []
    assert await buckets(user, isTrashed="true") == [("2024-02-01", 1)]
    assert await buckets(user, isFavorite="true") == [("2024-01-01", 1)]
    assert await buckets(user, isFavorite="false") == [("2024-04-01", 1), ("2024-03-01", 2)]
    assert await buckets(user, userId=user.user["id"]) == await buckets(user)
    assert await buckets(user, personId=str(uuid.uuid4())) == []
    assert await buckets(admin) == [("2024-03-01", 1)]

    reply = await user.client.get("/api/timeline/buckets", params={"userId": admin.user["id"]})
    assert reply.status_code == 400 and reply.json()["message"] == "Not found or no timeline.read access"
    reply = await user.client.get("/api/timeline/buckets", params={"albumId": "nope"})
    assert reply.status_code == 400 and reply.json()["message"] == ["albumId must be a UUID"]

    album = make_album(daemon, user, library["march.jpg"], library["archived.jpg"])
    assert await buckets(user, albumId=album) == [
        ("2024-03-01", 1),
        ("2023-12-01", 1),
    ]  # archived shows in albums
    assert await buckets(user, albumId=album, visibility="timeline") == [("2024-03-01", 1)]
    for other in (make_album(daemon, admin, library["admins.jpg"]), str(uuid.uuid4())):
        reply = await user.client.get("/api/timeline/buckets", params={"albumId": other})
        assert reply.status_code == 400 and reply.json()["message"] == "Not found or no album.read access"


async def test_a_page_far_past_the_end_is_empty(user, library):
    for page in (10**6, 2**56, 2**80):  # 2**56 pages of 250 were a 500 (past what islice counts)
        reply = await user.client.post("/api/search/metadata", json={"page": page})
        assert reply.status_code == 200, (page, reply.text)
        assert reply.json()["assets"]["items"] == [] and reply.json()["assets"]["nextPage"] is None


async def test_the_last_and_the_impossible_months(user, library):
    reply = await user.client.get("/api/timeline/bucket", params={"timeBucket": "9999-12-01"})
    assert reply.status_code == 200 and reply.json()["id"] == []  # its end lies past datetime's range
    for text in ("10000-01-01", "2024-13-01", "0000-01-01", "2024-1"):
        reply = await user.client.get("/api/timeline/bucket", params={"timeBucket": text})
        assert reply.status_code == 400, text


async def test_a_bucket_is_column_arrays_ordered_by_file_created_at(daemon, user, library):
    reply = await user.client.get("/api/timeline/bucket", params={"timeBucket": "2024-03-01"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == BUCKET_KEYS and len({len(column) for column in body.values()}) == 1
    assert body["id"] == [library["march.jpg"], library["early.jpg"]]  # newest first; hidden left out
    assert body["ownerId"] == [user.user["id"]] * 2
    assert body["fileCreatedAt"] == ["2024-03-10T12:00:00.000Z", "2024-03-02T08:00:00.000Z"]
    assert (
        body["localOffsetHours"] == [0, 2]
        and body["ratio"][0] == pytest.approx(4 / 3)
        and body["ratio"][1] == 1
    )
    assert body["isImage"] == [True, True] and body["isTrashed"] == [False, False]
    assert body["visibility"] == ["timeline", "timeline"] and body["livePhotoVideoId"] == [None, None]
    assert body["duration"] == [None, None] and body["thumbhash"] == [None, None]

    reply = await user.client.get(
        "/api/timeline/bucket", params={"timeBucket": "2024-03-01T00:00:00.000Z", "order": "asc"}
    )
    assert reply.json()["id"] == [library["early.jpg"], library["march.jpg"]]
    reply = await user.client.get("/api/timeline/bucket", params={"timeBucket": "2024-04-01"})
    assert reply.json()["id"] == [library["tokyo.jpg"]] and reply.json()["localOffsetHours"] == [9]
    clip = (await user.client.get("/api/timeline/bucket", params={"timeBucket": "2024-01-01"})).json()
    assert clip["isImage"] == [False] and clip["duration"] == [1500] and clip["isFavorite"] == [True]
    trashed = await user.client.get(
        "/api/timeline/bucket", params={"timeBucket": "2024-02-01", "isTrashed": "true"}
    )
    assert trashed.json()["id"] == [library["trashed.jpg"]] and trashed.json()["isTrashed"] == [True]
    empty = (await user.client.get("/api/timeline/bucket", params={"timeBucket": "2024-02-01"})).json()
    assert set(empty) == BUCKET_KEYS and empty["id"] == []

    reply = await user.client.get("/api/timeline/bucket", params={"timeBucket": "garbage"})
    assert reply.status_code == 400
    reply = await user.client.get("/api/timeline/bucket")
    assert reply.status_code == 400 and reply.json()["message"] == ["timeBucket should not be empty"]


async def search(session, **body) -> dict:
    reply = await session.client.post("/api/search/metadata", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


async def found(session, **body) -> list[str]:
    return [item["id"] for item in (await search(session, **body))["assets"]["items"]]


async def test_search_filters(daemon, admin, user, library):
    ids = library
    visible = [
        "tokyo.jpg",
        "march.jpg",
        "early.jpg",
        "clip.mp4",
        "archived.jpg",
    ]  # by fileCreatedAt, newest first
    assert await found(user) == [ids[name] for name in visible]
    assert await found(user, order="asc") == [ids[name] for name in reversed(visible)]
    assert await found(user, isFavorite=True) == [ids["clip.mp4"]]
    assert await found(user, type="VIDEO") == [ids["clip.mp4"]]
    assert await found(user, type="AUDIO") == []
    assert await found(user, visibility="archive") == [ids["archived.jpg"]]
    assert await found(user, visibility="hidden") == [ids["hidden.mov"]]
    assert ids["trashed.jpg"] in await found(user, withDeleted=True)
    assert await found(user, originalFileName="TOKYO") == [ids["tokyo.jpg"]]
    assert await found(user, originalPath="/upload/") == await found(user)
    assert await found(user, originalPath="/nowhere/") == []
    assert await found(user, id=ids["early.jpg"]) == [ids["early.jpg"]]
    assert await found(user, id=ids["admins.jpg"]) == []
    assert await found(user, takenAfter="2024-03-01T00:00:00Z", takenBefore="2024-03-31T00:00:00Z") == [
        ids["march.jpg"], ids["early.jpg"]
    ]  # fmt: skip
    digest = stored(daemon, ids["march.jpg"]).content_sha1
    assert await found(user, checksum=digest.hex()) == [ids["march.jpg"]]
    assert await found(user, checksum=base64.b64encode(digest).decode()) == [ids["march.jpg"]]
    assert await found(user, checksum="not-a-checksum") == []
    library_id = str(stored(daemon, ids["march.jpg"]).library_id)
    assert await found(user, libraryId=library_id) == await found(user)
    assert await found(user, libraryId=str(uuid.uuid4())) == []
    album = make_album(daemon, user, ids["march.jpg"], ids["archived.jpg"], ids["trashed.jpg"])
    assert await found(user, albumIds=[album]) == [ids["march.jpg"], ids["archived.jpg"]]
    assert await found(user, albumIds=[album, make_album(daemon, user, ids["march.jpg"])]) == [
        ids["march.jpg"]
    ]
    assert await found(user, albumIds=[make_album(daemon, admin, ids["admins.jpg"])]) == []
    assert (
        await found(user, personIds=[str(uuid.uuid4())]) == []
        and await found(user, tagIds=[str(uuid.uuid4())]) == []
    )
    assert await found(admin) == [ids["admins.jpg"]]

    plain = (await search(user, id=ids["march.jpg"]))["assets"]["items"][0]
    assert plain["exifInfo"] is None and plain["originalFileName"].endswith("march.jpg")
    with_exif = (await search(user, id=ids["march.jpg"], withExif=True))["assets"]["items"][0]
    assert with_exif["exifInfo"]["fileSizeInByte"] == stored(daemon, ids["march.jpg"]).file_size
    checksum = base64.b64encode(hashlib.sha1(b"march.jpg \xff\xd8\xff\xe0 bytes").digest()).decode()
    assert plain["checksum"] == checksum

    for body, message in (
        ({"size": 0}, ["size must not be less than 1"]),
        ({"size": 1001}, ["size must not be greater than 1000"]),
        ({"page": 0}, ["page must not be less than 1"]),
        ({"albumIds": ["x"]}, ["each value in albumIds must be a UUID"]),
    ):
        reply = await user.client.post("/api/search/metadata", json=body)
        assert reply.status_code == 400 and reply.json()["message"] == message, body


async def test_search_pages_follow_file_created_at_across_time_zones(daemon, user):
    """Local capture times and UTC instants disagree by up to 14 hours: pages must still follow the instants."""
    rng = random.Random(7)
    start = at("2024-06-01T00:00")
    taken = {}
    for number in range(60):
        instant = start + timedelta(minutes=rng.randrange(0, 4 * 24 * 60))
        offset = timedelta(minutes=15 * rng.randrange(-14 * 4, 14 * 4 + 1))
        asset_id = put_upload(daemon, user, f"{number}.jpg", taken=instant, local=instant + offset)
        taken[asset_id] = instant
    for order in ("desc", "asc"):
        expected = sorted(taken, key=lambda asset_id: (taken[asset_id], uuid.UUID(asset_id).bytes))
        if order == "desc":
            expected = sorted(
                taken, key=lambda asset_id: (-taken[asset_id].timestamp(), uuid.UUID(asset_id).bytes)
            )
        seen, page = [], 1
        while True:
            body = (await search(user, size=7, page=page, order=order))["assets"]
            assert body["count"] == body["total"] == len(body["items"]) and body["facets"] == []
            seen += [item["id"] for item in body["items"]]
            if body["nextPage"] is None:
                break
            assert body["nextPage"] == str(page + 1)
            page += 1
        assert seen == expected, order
        assert page == 9  # 60 assets, 7 a page
    empty = await search(user, page=50)
    assert empty["assets"] == {"items": [], "total": 0, "count": 0, "nextPage": None, "facets": []}
    assert empty["albums"] == {"items": [], "total": 0, "count": 0, "facets": []}


async def test_people_and_tags_are_empty(user):
    reply = await user.client.get("/api/people", params={"size": 1, "page": 1})
    assert reply.status_code == 200 and reply.json() == {
        "people": [],
        "total": 0,
        "hidden": 0,
        "hasNextPage": False,
    }
    reply = await user.client.get("/api/tags")
    assert reply.status_code == 200 and reply.json() == []
    assert reply.headers["content-type"] == "application/json; charset=utf-8"


async def test_uploads_are_found_by_the_name_they_were_sent_with(daemon, user):
    asset_id = put_upload(daemon, user, "stored.jpg", original_file_name="IMG_0001.JPG")
    assert await found(user, originalFileName="img_0001") == [asset_id]
    assert await found(user, originalFileName="stored") == []
    [item] = (await search(user, id=asset_id))["assets"]["items"]
    assert item["originalFileName"] == "IMG_0001.JPG"
