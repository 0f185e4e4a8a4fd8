"""Assets over real HTTP: the asset response with its metadata, thumbnails with validators that change when the
asset is re-rendered, originals and playback with Range/ETag, asset jobs, and the media queues' commands."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest
from PIL import Image

from tests.api.test_libraries_api import assets_of, settle
from tests.library_helpers import write
from tests.media_files import fingerprint, jpeg, video


@pytest.fixture
async def imported(daemon, admin, user, tmp_path):
    """The user's external library with a photo (EXIF date, GPS-free), a video that needs a transcode, and a
    broken file; scanned and processed. Returns (library id, {file name: asset id})."""
    external = tmp_path / "nas"
    jpeg(external / "photos" / "photo.jpg", (640, 480), taken="2021:06:07 08:09:10")
    video(external / "photos" / "clip.avi", codec="mpeg4")
    write(external / "photos" / "broken.jpg", b"\xff\xd8\xff garbage")
    reply = await admin.client.put(
        f"/api/admin/users/{user.user['id']}", json={"externalPath": str(external)}
    )
    assert reply.status_code == 200
    created = await user.client.post("/api/libraries", json={"importPaths": [str(external / "photos")]})
    library_id = created.json()["id"]
    before = fingerprint(external)
    assert (await user.client.post(f"/api/libraries/{library_id}/scan")).status_code == 204
    await settle(admin)
    ids = {
        os.path.basename(path): entry["id"] for path, entry in (await assets_of(daemon, library_id)).items()
    }
    yield library_id, ids
    after = fingerprint(external)
    assert {path: after.get(path) for path in before} == before  # every original, byte for byte and mtime


async def test_asset_response_has_metadata_thumbhash_and_failures(user, imported):
    library_id, ids = imported
    body = (await user.client.get(f"/api/assets/{ids['photo.jpg']}")).json()
    assert (
        body["libraryId"] == library_id
        and body["type"] == "IMAGE"
        and body["originalFileName"] == "photo.jpg"
    )
    assert body["originalMimeType"] == "image/jpeg" and body["isOffline"] is False
    assert body["resized"] is True and body["hasMetadata"] is True
    assert (body["width"], body["height"]) == (640, 480)
    assert base64.b64decode(body["thumbhash"])
    assert body["fileCreatedAt"] == "2021-06-07T08:09:10.000Z"
    exif = body["exifInfo"]
    assert exif["dateTimeOriginal"] == "2021-06-07T08:09:10.000Z" and exif["exifImageWidth"] == 640
    assert exif["latitude"] is None and exif["fileSizeInByte"] > 0 and exif["city"] is None
    assert body["jobFailures"] == []
    broken = (await user.client.get(f"/api/assets/{ids['broken.jpg']}")).json()
    assert broken["resized"] is False and broken["thumbhash"] is None
    queues = {failure["queue"] for failure in broken["jobFailures"]}
    assert "thumbnailGeneration" in queues
    assert all("broken.jpg" in failure["reason"] for failure in broken["jobFailures"])


async def test_thumbnails_are_served_with_validators_that_change_on_re_render(user, admin, imported):
    _, ids = imported
    asset_id = ids["photo.jpg"]
    thumb = await user.client.get(f"/api/assets/{asset_id}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert thumb.headers["cache-control"] == "private, no-cache"
    image = Image.open(io.BytesIO(thumb.content))
    assert min(image.size) == 250 and "exif" not in image.info
    preview = await user.client.get(f"/api/assets/{asset_id}/thumbnail", params={"size": "preview"})
    assert preview.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(preview.content)).size == (640, 480)  # never enlarged
    etag = thumb.headers["etag"]
    again = await user.client.get(f"/api/assets/{asset_id}/thumbnail", headers={"If-None-Match": etag})
    assert again.status_code == 304
    thumbhash = (await user.client.get(f"/api/assets/{asset_id}")).json()["thumbhash"]
    cached = await user.client.get(f"/api/assets/{asset_id}/thumbnail", params={"c": thumbhash})
    assert cached.headers["cache-control"] == "private, max-age=31536000, immutable"

    reply = await user.client.post(
        "/api/assets/jobs", json={"assetIds": [asset_id], "name": "regenerate-thumbnail"}
    )
    assert reply.status_code == 204
    await settle(admin)
    fresh = await user.client.get(f"/api/assets/{asset_id}/thumbnail", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag  # a new render, a new validator


async def test_original_download_with_ranges(user, imported, tmp_path):
    _, ids = imported
    path = tmp_path / "nas" / "photos" / "photo.jpg"
    content = path.read_bytes()
    whole = await user.client.get(f"/api/assets/{ids['photo.jpg']}/original")
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["content-type"] == "image/jpeg" and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"].startswith("attachment;") and "last-modified" in whole.headers
    part = await user.client.get(f"/api/assets/{ids['photo.jpg']}/original", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(content)}"
    beyond = await user.client.get(
        f"/api/assets/{ids['photo.jpg']}/original", headers={"Range": f"bytes={len(content) + 5}-"}
    )
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(content)}"
    unchanged = await user.client.get(
        f"/api/assets/{ids['photo.jpg']}/original", headers={"If-None-Match": whole.headers["etag"]}
    )
    assert unchanged.status_code == 304
    tail = await user.client.get(f"/api/assets/{ids['photo.jpg']}/original", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == content[-100:]
    for ignored in (
        "bytes=0-1,5-6",
        "items=0-5",
        "bytes=9-2",
    ):  # not one satisfiable byte range: the whole file
        reply = await user.client.get(f"/api/assets/{ids['photo.jpg']}/original", headers={"Range": ignored})
        assert reply.status_code == 200 and reply.content == content, ignored
    head = await user.client.head(f"/api/assets/{ids['photo.jpg']}/original")
    assert (
        head.status_code == 200
        and head.headers["content-length"] == str(len(content))
        and head.content == b""
    )


async def test_playback_serves_the_transcode_and_refuses_photos(user, imported, tmp_path):
    _, ids = imported
    played = await user.client.get(f"/api/assets/{ids['clip.avi']}/video/playback")
    assert played.status_code == 200 and played.headers["content-type"] == "video/mp4"
    original = (tmp_path / "nas" / "photos" / "clip.avi").read_bytes()
    assert hashlib.sha1(played.content).digest() != hashlib.sha1(original).digest()
    assert played.content[4:8] == b"ftyp"
    part = await user.client.get(
        f"/api/assets/{ids['clip.avi']}/video/playback", headers={"Range": "bytes=0-99"}
    )
    assert part.status_code == 206 and len(part.content) == 100
    photo = await user.client.get(f"/api/assets/{ids['photo.jpg']}/video/playback")
    assert photo.status_code == 400 and photo.json()["message"] == "Asset is not a video"


async def test_another_user_cannot_see_or_touch_the_assets(admin, imported):
    _, ids = imported
    asset_id = ids["photo.jpg"]
    for path, permission in (
        (f"/api/assets/{asset_id}", "asset.read"),
        (f"/api/assets/{asset_id}/thumbnail", "asset.view"),
        (f"/api/assets/{asset_id}/original", "asset.download"),
    ):
        reply = await admin.client.get(path)
        assert reply.status_code == 400 and reply.json()["message"] == f"Not found or no {permission} access"
    reply = await admin.client.post(
        "/api/assets/jobs", json={"assetIds": [asset_id], "name": "refresh-metadata"}
    )
    assert reply.status_code == 400 and reply.json()["message"] == "Not found or no asset.update access"


async def test_media_queues_in_the_jobs_api(admin, imported):
    jobs = (await admin.client.get("/api/jobs")).json()
    thumbnails = jobs["thumbnailGeneration"]["jobCounts"]
    assert thumbnails["failed"] == 1 and thumbnails["completed"] >= 2 and thumbnails["waiting"] == 0
    assert jobs["videoConversion"]["jobCounts"]["completed"] == 1
    reply = await admin.client.put("/api/jobs/thumbnailGeneration", json={"command": "clear-failed"})
    assert reply.status_code == 200 and reply.json()["jobCounts"]["failed"] == 0
    reply = await admin.client.put("/api/jobs/thumbnailGeneration", json={"command": "pause"})
    assert reply.json()["queueStatus"]["isPaused"] is True
    reply = await admin.client.put("/api/jobs/thumbnailGeneration", json={"command": "start", "force": True})
    assert reply.status_code == 200
    body = reply.json()
    assert body["queueStatus"]["isActive"] is True
    again = await admin.client.put("/api/jobs/thumbnailGeneration", json={"command": "start"})
    assert again.status_code == 400 and again.json()["message"] == "Job is already running"
    await admin.client.put("/api/jobs/thumbnailGeneration", json={"command": "resume"})
    await settle(admin)
    counts = (await admin.client.get("/api/jobs")).json()["thumbnailGeneration"]["jobCounts"]
    assert counts["waiting"] == 0 and counts["failed"] == 1  # the broken file failed again
    reply = await admin.client.put("/api/jobs/faceDetection", json={"command": "start"})
    assert reply.status_code == 400 and reply.json()["message"] == "Invalid job name: faceDetection"


async def test_sidecar_discovery_refreshes_metadata_and_the_sidecar_wins(user, admin, imported, tmp_path):
    _, ids = imported
    sidecar = tmp_path / "nas" / "photos" / "photo.jpg.xmp"
    sidecar.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
        ' xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmp:Rating="4"'
        ' photoshop:DateCreated="2000-09-27T12:35:33+02:00">'
        '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">From the sidecar</rdf:li></rdf:Alt>'
        "</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    reply = await admin.client.put("/api/jobs/sidecar", json={"command": "start"})
    assert reply.status_code == 200
    await settle(admin)
    body = (await user.client.get(f"/api/assets/{ids['photo.jpg']}")).json()
    exif = body["exifInfo"]
    assert exif["description"] == "From the sidecar" and exif["rating"] == 4
    assert exif["dateTimeOriginal"] == "2000-09-27T10:35:33.000Z" and exif["timeZone"] == "UTC+2"
    assert body["fileCreatedAt"] == "2000-09-27T10:35:33.000Z"
    assert body["localDateTime"] == "2000-09-27T12:35:33.000Z"
