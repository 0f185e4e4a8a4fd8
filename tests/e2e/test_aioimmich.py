"""aioimmich 0.18.0 (the library behind Home Assistant's `immich` integration) against the real daemon
(api-compat.md §1.12, §2, §3, §7, §8, §9).

aioimmich is asyncio and the suite runs in trio mode, so each test is a plain function that drives the client with
`asyncio.run`; waiting for the daemon (thumbnails) happens in between, over plain HTTP.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from aioimmich import Immich
from aioimmich.albums.models import AssetToAlbumError
from aioimmich.assets.models import AssetType, UploadStatus
from aioimmich.exceptions import (
    ImmichError,
    ImmichForbiddenError,
    ImmichNotFoundError,
    ImmichUnauthorizedError,
)
from aioimmich.server.models import ByUserUsage, ImmichServerVersion, ImmichServerVersionCheck
from aioimmich.users.models import AvatarColor, UserStatus

from tests.e2e.live_daemon import LiveDaemon, iso_utc, record_originals, running_daemon, sha1_base64
from tests.media_files import jpeg, png, video

T = TypeVar("T")
MTIME = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()  # whole seconds: comparable to the millisecond


@pytest.fixture
def live_daemon(tmp_path: Path) -> Iterator[LiveDaemon]:
    """The real `filmroll serve` on 127.0.0.1:<free port>, fresh data directory, an admin and their API key."""
    with running_daemon(tmp_path / "daemon") as daemon:
        yield daemon


def run(daemon: LiveDaemon, scenario: Callable[[Immich], Awaitable[T]], api_key: str | None = None) -> T:
    """Set up aioimmich exactly as Home Assistant does (plain http, host and port) and run `scenario` with it.
    The files the test made for it to upload are fingerprinted first (originals untouched)."""
    record_originals()

    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            immich = Immich(session, api_key or daemon.api_key, "127.0.0.1", daemon.port, use_ssl=False)
            await immich.async_setup()  # GET /api/server/version, before anything else
            return await scenario(immich)

    return asyncio.run(asyncio.wait_for(main(), timeout=300))


def dated(path: Path) -> Path:
    os.utime(path, (MTIME, MTIME))
    return path


def raises_exactly(kind: type[Exception], scenario: Callable[[Immich], Awaitable[object]]):
    """`scenario` must raise `kind` itself, not a subclass (ImmichNotFoundError is an ImmichError too)."""

    async def check(immich: Immich) -> Exception:
        try:
            await scenario(immich)
        except Exception as error:
            assert type(error) is kind, f"expected {kind.__name__}, got {type(error).__name__}: {error}"
            return error
        raise AssertionError(f"expected {kind.__name__}, nothing was raised")

    return check


# -- server and user: what the config flow and the 60 s poll read ----------------------------------------------------


@pytest.mark.no_originals
def test_setup_reads_version_3(live_daemon: LiveDaemon):
    async def scenario(immich: Immich):
        return immich.api.version, await immich.server.async_get_version()

    setup_version, version = run(live_daemon, scenario)
    assert setup_version == version == ImmichServerVersion(major=3, minor=0, patch=3, prerelease=None)


@pytest.mark.no_originals
def test_server_about(live_daemon: LiveDaemon):
    about = run(live_daemon, lambda immich: immich.server.async_get_about_info())
    assert about.version == "v3.0.3"
    assert about.licensed is False
    assert isinstance(about.version_url, str)
    assert about.libvips is None  # api-compat.md §3: omitted


@pytest.mark.no_originals
def test_server_storage(live_daemon: LiveDaemon):
    storage = run(live_daemon, lambda immich: immich.server.async_get_storage_info())
    stats = os.statvfs(live_daemon.data_dir)
    assert storage.disk_size_raw == stats.f_blocks * stats.f_frsize
    assert 0 < storage.disk_available_raw <= storage.disk_size_raw
    assert 0 < storage.disk_use_raw <= storage.disk_size_raw
    assert storage.disk_usage_percentage == round(storage.disk_use_raw / storage.disk_size_raw * 100, 2)
    for text in (storage.disk_size, storage.disk_use, storage.disk_available):
        assert re.fullmatch(r"\d+\.\d (B|KiB|MiB|GiB|TiB|PiB)", text), text


@pytest.mark.no_originals
def test_server_statistics_of_an_empty_server(live_daemon: LiveDaemon):
    statistics = run(live_daemon, lambda immich: immich.server.async_get_server_statistics())
    assert (statistics.photos, statistics.videos, statistics.usage) == (0, 0, 0)
    assert (statistics.usage_photos, statistics.usage_videos) == (0, 0)
    admin = ByUserUsage(photos=0, quota_size_in_bytes=None, usage=0, usage_photos=0, usage_videos=0,
                        user_id=live_daemon.admin["id"], user_name="Admin", videos=0)  # fmt: skip
    assert statistics.usage_by_user == [admin]


@pytest.mark.no_originals
def test_version_check(live_daemon: LiveDaemon):
    check = run(live_daemon, lambda immich: immich.server.async_get_version_check())
    assert check == ImmichServerVersionCheck(checked_at=None, release_version=None)


@pytest.mark.no_originals
def test_users_me(live_daemon: LiveDaemon):
    me = run(live_daemon, lambda immich: immich.users.async_get_my_user())
    assert me.user_id == live_daemon.admin["id"]
    assert (me.email, me.name, me.is_admin) == ("admin@example.com", "Admin", True)
    assert me.status is UserStatus.ACTIVE and isinstance(me.avatar_color, AvatarColor)
    assert me.storage_label == "admin"
    assert me.deleted_at is None and me.quota_size_in_bytes is None
    assert me.created_at.tzinfo is not None and me.updated_at is not None


@pytest.mark.no_originals
def test_repeated_requests_stay_correct_with_the_etag_cache(live_daemon: LiveDaemon):
    """aioimmich sends If-None-Match once it has seen an ETag, and a 304 makes it reuse what it has: a changed
    resource must never be answered with 304."""

    async def scenario(immich: Immich):
        first = await immich.users.async_get_my_user()
        again = await immich.users.async_get_my_user()
        with live_daemon.client() as client:
            reply = client.put("/api/users/me", json={"name": "Renamed"})
        assert reply.status_code == 200, reply.text
        renamed = await immich.users.async_get_my_user()
        abouts = [await immich.server.async_get_about_info() for _ in range(2)]
        return first, again, renamed, abouts

    first, again, renamed, abouts = run(live_daemon, scenario)
    assert first == again and first.name == "Admin"
    assert renamed.name == "Renamed"
    assert abouts[0] == abouts[1]


@pytest.mark.no_originals
def test_errors_carry_the_immich_error_body(live_daemon: LiveDaemon):
    bad_key = run(
        live_daemon,
        raises_exactly(ImmichUnauthorizedError, lambda immich: immich.users.async_get_my_user()),
        api_key="not-a-key",
    )
    assert "Invalid API key (error: 'Unauthorized' code: '401' correlation_id: '" in str(bad_key)
    _, user_key = live_daemon.create_user("user@example.com", "User")
    forbidden = run(
        live_daemon,
        raises_exactly(ImmichForbiddenError, lambda immich: immich.server.async_get_server_statistics()),
        api_key=user_key,
    )
    assert "Forbidden (error: 'Forbidden' code: '403'" in str(forbidden)
    missing = run(
        live_daemon, raises_exactly(ImmichNotFoundError, lambda immich: immich.api.async_do_request("foo"))
    )
    assert "Cannot GET /api/foo (error: 'Not Found' code: '404'" in str(missing)


# -- assets: upload, search, thumbnails, playback -------------------------------------------------------------------


def test_upload_and_duplicate(live_daemon: LiveDaemon, tmp_path: Path):
    photo = dated(jpeg(tmp_path / "pictures" / "IMG_0001.jpg"))
    clip = dated(video(tmp_path / "pictures" / "clip.mp4"))

    async def scenario(immich: Immich):
        created = await immich.assets.async_upload_asset(str(photo))
        duplicate = await immich.assets.async_upload_asset(str(photo))
        movie = await immich.assets.async_upload_asset(str(clip))
        return created, duplicate, movie, await immich.search.async_get_all()

    created, duplicate, movie, found = run(live_daemon, scenario)
    assert created.status is UploadStatus.CREATED and uuid.UUID(created.asset_id)
    assert duplicate.status is UploadStatus.DUPLICATED and duplicate.asset_id == created.asset_id
    assert movie.status is UploadStatus.CREATED
    asset = live_daemon.asset(created.asset_id)
    assert asset["originalFileName"] == "IMG_0001.jpg" and asset["type"] == "IMAGE"
    assert asset["checksum"] == sha1_base64(photo)
    assert asset["fileCreatedAt"] == iso_utc(MTIME)  # sent as local time with an offset and microseconds
    assert live_daemon.asset(movie.asset_id)["type"] == "VIDEO"
    by_id = {item.asset_id: item for item in found}  # search/metadata, parsed as ImmichAsset
    assert set(by_id) == {created.asset_id, movie.asset_id}
    assert by_id[created.asset_id].asset_type is AssetType.IMAGE
    assert by_id[movie.asset_id].asset_type is AssetType.VIDEO
    assert by_id[created.asset_id].original_mime_type == "image/jpeg"  # Home Assistant skips other prefixes
    assert by_id[movie.asset_id].original_mime_type == "video/mp4"
    statistics = run(live_daemon, lambda immich: immich.server.async_get_server_statistics())
    sizes = photo.stat().st_size, clip.stat().st_size
    assert (statistics.photos, statistics.videos, statistics.usage) == (1, 1, sum(sizes))
    assert (statistics.usage_photos, statistics.usage_videos) == sizes
    assert [(u.photos, u.videos, u.usage) for u in statistics.usage_by_user] == [(1, 1, sum(sizes))]


def test_thumbnail_and_preview(live_daemon: LiveDaemon, tmp_path: Path):
    photo = jpeg(tmp_path / "IMG_0002.jpg", (640, 480))
    uploaded = run(live_daemon, lambda immich: immich.assets.async_upload_asset(str(photo)))
    live_daemon.wait_for_thumbnail(uploaded.asset_id)

    async def scenario(immich: Immich):
        return [await immich.assets.async_view_asset(uploaded.asset_id, size) for size in
                ("thumbnail", "preview", "fullsize")]  # fmt: skip

    thumbnail, preview, fullsize = run(live_daemon, scenario)
    assert thumbnail[:4] == b"RIFF" and thumbnail[8:12] == b"WEBP"
    assert preview[:3] == b"\xff\xd8\xff"
    assert fullsize[:3] == b"\xff\xd8\xff"  # api-compat.md §7: fullsize also serves the preview


def test_video_playback(live_daemon: LiveDaemon, tmp_path: Path):
    clip = video(tmp_path / "clip.mp4", seconds=2)

    async def scenario(immich: Immich):
        uploaded = await immich.assets.async_upload_asset(str(clip))
        stream = await immich.assets.async_play_video_stream(uploaded.asset_id)
        return await stream.read()

    played = run(live_daemon, scenario)
    assert played[4:8] == b"ftyp"  # an MP4: the original, or its transcode once there is one


@pytest.mark.no_originals
def test_people_and_tags_are_empty(live_daemon: LiveDaemon):
    async def scenario(immich: Immich):
        return (
            await immich.people.async_get_all_people(with_unnamed=True),
            await immich.tags.async_get_all_tags(),
            await immich.search.async_get_all_by_person_ids([str(uuid.uuid4())]),
        )

    assert run(live_daemon, scenario) == ([], [], [])


# -- albums ---------------------------------------------------------------------------------------------------------


def test_albums_and_their_contents(live_daemon: LiveDaemon, tmp_path: Path):
    photo = jpeg(tmp_path / "IMG_0003.jpg")
    picture = png(tmp_path / "drawing.png")

    async def upload(immich: Immich):
        return [(await immich.assets.async_upload_asset(str(path))).asset_id for path in (photo, picture)]

    photo_id, picture_id = run(live_daemon, upload)
    with live_daemon.client() as client:  # aioimmich cannot create albums
        created = client.post("/api/albums", json={"albumName": "Holidays", "assetIds": [photo_id]})
    assert created.status_code == 201, created.text
    album_id = created.json()["id"]
    stranger = str(uuid.uuid4())

    async def scenario(immich: Immich):
        listed = await immich.albums.async_get_all_albums()
        filtered = await immich.albums.async_filter_albums_by_name("holi")
        added = await immich.albums.async_add_assets_to_album(album_id, [photo_id, picture_id, stranger])
        info = await immich.albums.async_get_album_info(album_id)
        contents = await immich.search.async_get_all_by_album_ids([album_id])
        return listed, filtered, added, info, contents

    listed, filtered, added, info, contents = run(live_daemon, scenario)
    assert [(a.album_id, a.album_name, a.asset_count) for a in listed] == [(album_id, "Holidays", 1)]
    album = listed[0]
    assert album.album_thumbnail_asset_id == photo_id
    assert (album.shared, album.has_shared_link, album.album_users) == (False, False, [])
    assert album.owner_id == live_daemon.admin["id"]
    assert [a.album_id for a in filtered] == [album_id]
    assert [(r.asset_id, r.success, r.error) for r in added] == [
        (photo_id, False, AssetToAlbumError.DUPLICATED),
        (picture_id, True, None),
        (stranger, False, AssetToAlbumError.NO_PERMISSION),
    ]
    assert (info.album_name, info.asset_count, info.album_thumbnail_asset_id) == ("Holidays", 2, photo_id)
    assert info.start_date is not None and info.end_date is not None
    assert {asset.asset_id for asset in contents} == {photo_id, picture_id}


@pytest.mark.no_originals
def test_album_errors_and_an_empty_album(live_daemon: LiveDaemon):
    bad_id = run(
        live_daemon, raises_exactly(ImmichError, lambda immich: immich.albums.async_get_album_info("nope"))
    )
    assert "['id must be a UUID'] (error: 'Bad Request' code: '400'" in str(bad_id)
    unknown = run(
        live_daemon,
        raises_exactly(ImmichError, lambda immich: immich.albums.async_get_album_info(str(uuid.uuid4()))),
    )
    assert "Not found or no album.read access (error: 'Bad Request' code: '400'" in str(unknown)
    assert run(live_daemon, lambda immich: immich.albums.async_get_all_albums()) == []
    with live_daemon.client() as client:
        created = client.post("/api/albums", json={"albumName": "Empty"})
    assert created.status_code == 201, created.text
    (empty,) = run(
        live_daemon, lambda immich: immich.albums.async_get_all_albums()
    )  # every required key present
    assert (empty.album_name, empty.asset_count, empty.album_thumbnail_asset_id) == ("Empty", 0, None)
    assert empty.start_date is None and empty.end_date is None
