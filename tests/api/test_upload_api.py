"""Uploads over real HTTP (`libraries.md` §14, `api-compat.md` §7): created and duplicate answers, the checksum
header answered before the body, the bulk check, quotas, unsupported types, per-owner duplicates under
concurrency, library access, a client that disconnects mid-body, a full disk, sidecars, odd file names, the media
pipeline on uploads, and memory that stays flat for a large streamed body."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
import trio.testing
from PIL import Image

from daemon import assets as asset_index
from daemon.check import check_index
from daemon.index import ASSETS, USERS
from daemon.storage_template import legacy_upload_path
from tests.api.test_libraries_api import settle
from tests.media_files import jpeg

DATES = {"fileCreatedAt": "2023-11-19T18:11:00.000-07:00", "fileModifiedAt": "2023-11-20T01:12:00.000Z"}
BOUNDARY = "filmroll-test-boundary-7d3f"


def photo_bytes(
    tmp_path: Path, name: str = "photo.jpg", size: tuple[int, int] = (320, 240), **kwargs
) -> bytes:
    return jpeg(tmp_path / "made" / name, size, **kwargs).read_bytes()


async def upload(session, content: bytes, name: str = "photo.jpg", *, headers=None, sidecar=None, **fields):
    files = {"assetData": (name, content, "application/octet-stream")}
    if sidecar is not None:
        files["sidecarData"] = sidecar
    data = {**DATES, **{key: str(value) for key, value in fields.items()}}
    return await session.client.post("/api/assets", data=data, files=files, headers=headers or {})


def incoming_files(daemon) -> list[str]:
    folder = daemon.settings.data_path / "upload" / ".incoming"
    return sorted(os.listdir(folder)) if folder.exists() else []


def all_assets(daemon) -> list:
    with daemon.services.index.read() as txn:
        return list(txn.values(ASSETS))


def stored(daemon, asset_id: str):
    with daemon.services.index.read() as txn:
        return asset_index.get(txn, uuid.UUID(asset_id))


def multipart_head(fields: dict[str, str], file_name: str, part: str = "assetData") -> bytes:
    head = b""
    for key, value in fields.items():
        head += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{part}"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head


MULTIPART_TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def raw_request(daemon, session, body_length: int, headers: dict[str, str] | None = None) -> bytes:
    address = urlsplit(daemon.url)
    lines = [
        "POST /api/assets HTTP/1.1",
        f"Host: {address.netloc}",
        f"Authorization: Bearer {session.token}",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        f"Content-Length: {body_length}",
        *[f"{key}: {value}" for key, value in (headers or {}).items()],
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def open_raw(daemon) -> trio.SocketStream:
    address = urlsplit(daemon.url)
    return await trio.open_tcp_stream(address.hostname, address.port)


async def read_response(stream: trio.SocketStream) -> tuple[int, bytes]:
    received = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in received:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += await stream.receive_some(65536)
    return int(head.split(b" ", 2)[1]), body


# -- created, duplicate, checksum ---------------------------------------------------------------------------------


async def test_upload_is_created_then_a_duplicate_and_downloads_byte_for_byte(daemon, user, tmp_path):
    content = photo_bytes(tmp_path)
    sha1 = hashlib.sha1(content).digest()
    first = await upload(user, content, deviceAssetId="dev-1", deviceId="python", isFavorite="true")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "created" and str(uuid.UUID(body["id"])) == body["id"]
    again = await upload(user, content, "another-name.jpg")
    assert again.status_code == 200 and again.json() == {"id": body["id"], "status": "duplicate"}

    asset = stored(daemon, body["id"])
    user_id = uuid.UUID(user.user["id"])
    landing = legacy_upload_path(daemon.settings.data_dir, user_id, asset.id, "jpg")
    assert asset.original_path == os.fsencode(landing) and landing.read_bytes() == content
    assert asset.content_sha1 == sha1 and asset.file_size == len(content) and asset.is_favorite
    assert (asset.device_asset_id, asset.device_id, asset.original_file_name) == (
        "dev-1",
        "python",
        "photo.jpg",
    )
    assert asset.file_created_at == datetime(2023, 11, 20, 1, 11, tzinfo=UTC)
    assert asset.local_date_time == datetime(2023, 11, 19, 18, 11, tzinfo=UTC)  # the wall time, labelled UTC
    assert asset.file_mtime_ns == int(datetime(2023, 11, 20, 1, 12, tzinfo=UTC).timestamp()) * 10**9
    assert len(all_assets(daemon)) == 1 and incoming_files(daemon) == []

    response = (await user.client.get(f"/api/assets/{body['id']}")).json()
    assert base64.b64decode(response["checksum"]) == sha1 and response["type"] == "IMAGE"
    assert response["isFavorite"] is True and response["originalMimeType"] == "image/jpeg"
    assert response["originalFileName"] == "photo.jpg"
    original = await user.client.get(f"/api/assets/{body['id']}/original")
    assert original.status_code == 200 and hashlib.sha1(original.content).digest() == sha1
    me = (await user.client.get("/api/users/me")).json()
    assert me["quotaUsageInBytes"] == len(content)


async def test_uploads_are_processed_by_the_media_pipeline(daemon, admin, user, tmp_path):
    content = photo_bytes(tmp_path, size=(640, 480), taken="2021:06:07 08:09:10")
    created = (await upload(user, content)).json()
    await settle(admin)
    body = (await user.client.get(f"/api/assets/{created['id']}")).json()
    assert body["hasMetadata"] is True and body["resized"] is True and body["thumbhash"]
    assert (body["width"], body["height"]) == (640, 480) and body[
        "fileCreatedAt"
    ] == "2021-06-07T08:09:10.000Z"
    assert body["jobFailures"] == []
    thumbnail = await user.client.get(f"/api/assets/{created['id']}/thumbnail")
    assert thumbnail.status_code == 200 and min(Image.open(io.BytesIO(thumbnail.content)).size) == 250


@pytest.mark.parametrize("encoding", ["hex", "base64"])
async def test_a_known_checksum_header_is_answered_without_the_body(daemon, user, tmp_path, encoding):
    content = photo_bytes(tmp_path)
    digest = hashlib.sha1(content).digest()
    header = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    created = (await upload(user, content)).json()

    # Garbage instead of a multipart body: never read, so never refused.
    reply = await user.client.post(
        "/api/assets",
        content=b"\x00not multipart at all",
        headers={"x-immich-checksum": header, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert reply.status_code == 200 and reply.json() == {"id": created["id"], "status": "duplicate"}

    # A raw socket announcing 50 MB and sending none of it: the answer comes anyway.
    stream = await open_raw(daemon)
    async with stream:
        await stream.send_all(raw_request(daemon, user, 50_000_000, {"x-immich-checksum": header}))
        status, body = await read_response(stream)
    assert status == 200 and json.loads(body) == {"id": created["id"], "status": "duplicate"}
    assert len(all_assets(daemon)) == 1 and incoming_files(daemon) == []


async def test_an_unknown_or_unparsable_checksum_header_still_uploads(user, tmp_path):
    content = photo_bytes(tmp_path)
    unknown = await upload(user, content, headers={"x-immich-checksum": "0" * 40})
    assert unknown.status_code == 201
    other = photo_bytes(tmp_path, "other.jpg", (100, 80))
    garbled = await upload(user, other, "other.jpg", headers={"x-immich-checksum": "not-a-checksum"})
    assert garbled.status_code == 201


async def test_bulk_upload_check(daemon, user, admin, tmp_path):
    kept, trashed = photo_bytes(tmp_path, "a.jpg"), photo_bytes(tmp_path, "b.jpg", (100, 100))
    kept_id = (await upload(user, kept, "a.jpg")).json()["id"]
    trashed_id = (await upload(user, trashed, "b.jpg")).json()["id"]
    index = daemon.services.index
    with index.read() as txn:
        asset = asset_index.get(txn, uuid.UUID(trashed_id))
    index.write(lambda txn: asset_index.update(txn, asset, trashed_at=datetime.now(UTC)))

    unknown = hashlib.sha1(b"never uploaded").digest()
    items = [
        {"id": "/photos/a.jpg", "checksum": hashlib.sha1(kept).hexdigest()},
        {"id": "/photos/new.jpg", "checksum": unknown.hex()},
        {"id": "/photos/b.jpg", "checksum": base64.b64encode(hashlib.sha1(trashed).digest()).decode()},
        {"id": "garbled", "checksum": "xyz"},
        {"id": "/photos/a again.jpg", "checksum": hashlib.sha1(kept).hexdigest().upper()},
    ]
    reply = await user.client.post("/api/assets/bulk-upload-check", json={"assets": items})
    assert reply.status_code == 200
    assert reply.json()["results"] == [
        {"id": "/photos/a.jpg", "action": "reject", "reason": "duplicate", "assetId": kept_id, "isTrashed": False},
        {"id": "/photos/new.jpg", "action": "accept"},
        {"id": "/photos/b.jpg", "action": "reject", "reason": "duplicate", "assetId": trashed_id, "isTrashed": True},
        {"id": "garbled", "action": "accept"},
        {"id": "/photos/a again.jpg", "action": "reject", "reason": "duplicate", "assetId": kept_id,
         "isTrashed": False},
    ]  # fmt: skip
    # Another user has none of them; 5000 items are answered in one go.
    many = [{"id": f"/x/{n}.jpg", "checksum": hashlib.sha1(kept).hexdigest()} for n in range(5000)]
    results = (await admin.client.post("/api/assets/bulk-upload-check", json={"assets": many})).json()[
        "results"
    ]
    assert [r["id"] for r in results] == [m["id"] for m in many] and {r["action"] for r in results} == {
        "accept"
    }
    # A trashed duplicate is still a duplicate for uploads too.
    assert (await upload(user, trashed, "b.jpg")).json() == {"id": trashed_id, "status": "duplicate"}
    invalid = await user.client.post("/api/assets/bulk-upload-check", json={"assets": [{"id": "x"}]})
    assert invalid.status_code == 400


# -- rules --------------------------------------------------------------------------------------------------------


async def test_quota(daemon, admin, user, tmp_path):
    small, large = photo_bytes(tmp_path, "s.jpg", (64, 64)), photo_bytes(tmp_path, "l.jpg", (800, 600))
    limit = len(small) + 100
    assert len(large) > limit
    reply = await admin.client.put(f"/api/admin/users/{user.user['id']}", json={"quotaSizeInBytes": limit})
    assert reply.status_code == 200
    refused = await upload(user, large, "l.jpg")
    assert refused.status_code == 400 and refused.json()["message"] == "Quota has been exceeded!"
    assert (await upload(user, small, "s.jpg")).status_code == 201
    me = (await user.client.get("/api/users/me")).json()
    assert me["quotaUsageInBytes"] == len(small)
    # The second small upload would pass usage + size > quota: refused too; a duplicate still is not.
    other_small = photo_bytes(tmp_path, "t.jpg", (60, 60))
    assert (await upload(user, other_small, "t.jpg")).json()["message"] == "Quota has been exceeded!"
    assert (await upload(user, small, "s2.jpg")).status_code == 200
    assert len(all_assets(daemon)) == 1 and incoming_files(daemon) == []


async def test_unsupported_type_and_validation(daemon, user, tmp_path):
    refused = await upload(user, b"just some notes\n" * 1000, "notes.txt")
    assert refused.status_code == 400 and refused.json()["message"] == "Unsupported file type notes.txt"
    no_extension = await upload(user, b"x", "README")
    assert no_extension.json()["message"] == "Unsupported file type README"
    bad_sidecar = await upload(user, photo_bytes(tmp_path), sidecar=("photo.txt", b"x", "text/plain"))
    assert (
        bad_sidecar.status_code == 400 and bad_sidecar.json()["message"] == "Unsupported file type photo.txt"
    )

    content = photo_bytes(tmp_path)
    files = {"assetData": ("photo.jpg", content, "image/jpeg")}
    missing = await user.client.post("/api/assets", data={"isFavorite": "maybe"}, files=files)
    assert missing.status_code == 400
    assert missing.json()["message"] == [
        "fileCreatedAt must be a Date instance",
        "fileModifiedAt must be a Date instance",
        "isFavorite must be a boolean value",
    ]
    bad = await user.client.post(
        "/api/assets", data={**DATES, "visibility": "public", "fileCreatedAt": "yesterday"}, files=files
    )
    assert bad.json()["message"] == [
        "fileCreatedAt must be a Date instance",
        "visibility must be one of the following values: archive, timeline, hidden, locked",
    ]
    far = await user.client.post("/api/assets", data={**DATES, "fileModifiedAt": "3000-01-01T00:00:00.000Z"},
                                 files=files)  # fmt: skip
    assert far.status_code == 400  # no 64-bit mtime in ns reaches it
    assert far.json()["message"] == ["fileModifiedAt must be a date between 1677-09-22 and 2262-04-11"]
    before_year_1 = await user.client.post(  # year 1 at +00:02 is year 0 in UTC (was a 500)
        "/api/assets", data={**DATES, "fileCreatedAt": "0001-01-01T00:01:00+00:02"}, files=files)  # fmt: skip
    assert before_year_1.json()["message"] == ["fileCreatedAt must be a Date instance"]
    twice = await user.client.post("/api/assets", files=[  # a text part twice is an array to Immich: refused
        *[(name, (None, value)) for name, value in DATES.items()], ("libraryId", (None, "x")),
        ("livePhotoVideoId", (None, "a")), ("livePhotoVideoId", (None, "b")), ("deviceId", (None, "1")),
        ("deviceId", (None, "2")), ("assetData", ("a.jpg", b"\xff\xd8\xff"))])  # fmt: skip
    assert twice.status_code == 400
    assert twice.json()["message"] == ["deviceId must be a string", "livePhotoVideoId must be a UUID",
                                       "libraryId must be a UUID"]  # fmt: skip
    no_file = await user.client.post("/api/assets", data=DATES, files={"other": ("a.jpg", b"x")})
    assert no_file.json()["message"] == ["assetData should not be empty"]
    not_multipart = await user.client.post("/api/assets", json=DATES)
    assert (
        not_multipart.status_code == 400
        and "assetData should not be empty" in not_multipart.json()["message"]
    )
    broken = await user.client.post(
        "/api/assets",
        content=b"--" + BOUNDARY.encode() + b"\r\nno headers end here",
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert broken.status_code == 400 and broken.json()["message"] == "Malformed multipart/form-data body"
    assert all_assets(daemon) == [] and incoming_files(daemon) == []

    archived = await upload(user, content, isArchived="true", unknownPart="ignored", fileSize="12")
    assert archived.status_code == 201
    assert stored(daemon, archived.json()["id"]).visibility == "archive"


async def test_visibility_part(daemon, user, tmp_path):
    reply = await upload(user, photo_bytes(tmp_path), visibility="hidden", isArchived="true")
    assert stored(daemon, reply.json()["id"]).visibility == "hidden"


async def test_two_users_upload_the_same_file_independently(daemon, admin, user, tmp_path):
    content = photo_bytes(tmp_path)
    mine, theirs = await upload(user, content), await upload(admin, content)
    assert mine.status_code == theirs.status_code == 201 and mine.json()["id"] != theirs.json()["id"]
    assert (await upload(user, content)).json() == {"id": mine.json()["id"], "status": "duplicate"}
    # Neither sees the other's through the header or the bulk check.
    header = {"x-immich-checksum": hashlib.sha1(content).hexdigest()}
    assert (await upload(admin, content, headers=header)).json()["id"] == theirs.json()["id"]
    check = await admin.client.post(
        "/api/assets/bulk-upload-check",
        json={"assets": [{"id": "x", "checksum": header["x-immich-checksum"]}]},
    )
    assert check.json()["results"][0]["assetId"] == theirs.json()["id"]


async def test_concurrent_identical_uploads_create_exactly_one_asset(daemon, user, tmp_path):
    content = photo_bytes(tmp_path, size=(1600, 1200))
    replies = []

    async def one() -> None:
        async with daemon.client(Authorization=f"Bearer {user.token}") as client:
            files = {"assetData": ("photo.jpg", content, "image/jpeg")}
            replies.append(await client.post("/api/assets", data=DATES, files=files))

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(one)
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [200] * 7 + [201]
    assert len({reply.json()["id"] for reply in replies}) == 1
    assert len(all_assets(daemon)) == 1 and incoming_files(daemon) == []
    me = (await user.client.get("/api/users/me")).json()
    assert me["quotaUsageInBytes"] == len(content)


async def test_library_id_must_be_an_upload_library_of_the_caller(daemon, admin, user, tmp_path):
    content = photo_bytes(tmp_path)
    admin_libraries = (await admin.client.get("/api/libraries")).json()
    theirs = next(
        lib["id"] for lib in admin_libraries if lib["type"] == "UPLOAD" and lib["ownerId"] == admin.user["id"]
    )
    external = (await user.client.post("/api/libraries", json={"type": "EXTERNAL", "name": "nas"})).json()[
        "id"
    ]
    for library_id in (theirs, external, str(uuid.uuid4())):
        reply = await upload(user, content, libraryId=library_id)
        assert reply.status_code == 400, library_id
        assert reply.json()["message"] == "Not found or no asset.upload access"
    assert (await upload(user, content, libraryId="nope")).json()["message"] == ["libraryId must be a UUID"]
    assert all_assets(daemon) == [] and incoming_files(daemon) == []

    second = (await user.client.post("/api/libraries", json={"type": "UPLOAD", "name": "Phone"})).json()["id"]
    placed = await upload(user, content, libraryId=second)
    assert placed.status_code == 201 and stored(daemon, placed.json()["id"]).library_id == uuid.UUID(second)
    default = next(
        lib["id"]
        for lib in (await user.client.get("/api/libraries")).json()
        if lib["name"] == "Default Library"
    )
    other = await upload(user, photo_bytes(tmp_path, "b.jpg", (90, 90)), "b.jpg")
    assert stored(daemon, other.json()["id"]).library_id == uuid.UUID(default)  # the oldest upload library
    # Duplicates are per owner, not per library.
    assert (await upload(user, content)).json() == {"id": placed.json()["id"], "status": "duplicate"}


async def test_library_id_is_read_with_immichs_uuid_rule(daemon, user, tmp_path):
    """Immich's `@ValidateUUID({ optional: true }) libraryId` (class-validator `IsUUID('4')`, validator.js
    `/^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/i`): only the hyphenated form, any
    case; what Python's `uuid.UUID` also takes (braces, `urn:uuid:`, no hyphens) is refused, and so is an empty
    value (only an absent one is optional)."""
    content = photo_bytes(tmp_path)
    second = (await user.client.post("/api/libraries", json={"type": "UPLOAD", "name": "Phone"})).json()["id"]
    refused = {"message": ["libraryId must be a UUID"], "error": "Bad Request", "statusCode": 400}
    loose = (f"{{{second}}}", f"urn:uuid:{second}", second.replace("-", ""), "", f" {second}", f"{second}\n")
    for sent in loose:
        reply = await upload(user, content, libraryId=sent)
        assert reply.status_code == 400 and refused.items() <= reply.json().items(), (sent, reply.json())
    assert all_assets(daemon) == [] and incoming_files(daemon) == []
    placed = await upload(user, content, libraryId=second.upper())
    assert placed.status_code == 201 and stored(daemon, placed.json()["id"]).library_id == uuid.UUID(second)


# -- files on disk ------------------------------------------------------------------------------------------------


async def test_a_client_that_disconnects_mid_body_leaves_nothing(daemon, user, tmp_path):
    head = multipart_head(DATES, "big.jpg")
    announced = len(head) + 8_000_000 + len(MULTIPART_TAIL)
    stream = await open_raw(daemon)
    await stream.send_all(raw_request(daemon, user, announced) + head)
    sent = 0
    while sent < 4_000_000:
        await stream.send_all(b"\xab" * 65536)
        sent += 65536
    with trio.fail_after(10):
        while not incoming_files(daemon):  # the server has started receiving into a temp file
            await trio.sleep(0.01)
    await stream.aclose()
    with trio.fail_after(10):
        while incoming_files(daemon):
            await trio.sleep(0.02)
    assert all_assets(daemon) == []
    assert not (daemon.settings.data_path / "upload" / user.user["id"]).exists()
    assert (await user.client.get("/api/server/ping")).status_code == 200


@pytest.fixture
def tiny_upload_disk(settings):
    """`<data>/upload` on a 2 MiB tmpfs (the index stays on the normal disk)."""
    folder = settings.data_path / "upload"
    folder.mkdir(parents=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True,
                       capture_output=True)  # fmt: skip
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        pytest.skip(f"cannot mount a tmpfs here: {error}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


async def test_a_full_disk_answers_507_and_keeps_nothing(tiny_upload_disk, daemon, user, tmp_path):
    noise = os.urandom(3 * 1024 * 1024)  # incompressible, larger than the disk
    reply = await upload(user, noise, "huge.jpg")
    assert reply.status_code == 507, reply.text
    body = reply.json()
    assert body["error"] == "Insufficient Storage" and "free space" in body["message"]
    assert all_assets(daemon) == [] and incoming_files(daemon) == []
    # The daemon carries on: a file that fits is stored, and a duplicate of it is still recognised.
    small = photo_bytes(tmp_path)
    assert (await upload(user, small)).status_code == 201
    assert (await upload(user, small)).status_code == 200
    me = (await user.client.get("/api/users/me")).json()
    assert me["quotaUsageInBytes"] == len(small)


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
    b' xmp:Rating="3"><dc:description><rdf:Alt><rdf:li xml:lang="x-default">From the upload sidecar</rdf:li>'
    b"</rdf:Alt></dc:description></rdf:Description></rdf:RDF></x:xmpmeta>"
)


async def test_a_sidecar_is_stored_beside_the_original_and_used(daemon, admin, user, tmp_path):
    reply = await upload(user, photo_bytes(tmp_path), sidecar=("photo.jpg.xmp", XMP, "application/xml"))
    assert reply.status_code == 201
    asset = stored(daemon, reply.json()["id"])
    assert asset.sidecar_path == asset.original_path + b".xmp"
    assert Path(os.fsdecode(asset.sidecar_path)).read_bytes() == XMP and asset.sidecar_mtime_ns
    await settle(admin)
    exif = (await user.client.get(f"/api/assets/{asset.id}")).json()["exifInfo"]
    assert exif["description"] == "From the upload sidecar" and exif["rating"] == 3
    assert incoming_files(daemon) == []


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("my holiday photo.jpg", "my holiday photo.jpg"),
        ("Ünïcødé 照片.JPG", "Ünïcødé 照片.JPG"),
        ('say "cheese".jpg', 'say "cheese".jpg'),
        ("../../../../etc/evil.jpg", "evil.jpg"),
        ("..\\..\\windows\\evil.png", "evil.png"),
    ],
)
async def test_odd_file_names_are_labels_never_paths(daemon, user, tmp_path, sent, expected):
    reply = await upload(user, photo_bytes(tmp_path), sent)
    assert reply.status_code == 201, reply.text
    asset = stored(daemon, reply.json()["id"])
    assert asset.original_file_name == expected
    shown = (await user.client.get(f"/api/assets/{asset.id}")).json()["originalFileName"]
    assert shown == expected
    landing = Path(os.fsdecode(asset.original_path))
    assert landing.resolve().is_relative_to(
        (daemon.settings.data_path / "upload" / user.user["id"]).resolve()
    )
    assert landing.name == f"{asset.id}{os.path.splitext(expected)[1].lower()}"
    overridden = await upload(user, photo_bytes(tmp_path, "o.jpg", (50, 50)), "blob.jpg", filename=sent)
    assert stored(daemon, overridden.json()["id"]).original_file_name == expected


async def test_video_upload_gets_video_work_and_the_index_stays_consistent(daemon, admin, user, tmp_path):
    from tests.media_files import video

    clip = video(tmp_path / "made" / "clip.mp4").read_bytes()
    reply = await upload(user, clip, "clip.mp4")
    assert reply.status_code == 201
    assert stored(daemon, reply.json()["id"]).type == "VIDEO"
    await settle(admin)
    body = (await user.client.get(f"/api/assets/{reply.json()['id']}")).json()
    assert body["type"] == "VIDEO" and body["duration"] is not None and body["jobFailures"] == []
    assert check_index(daemon.services.index) == []
    with daemon.services.index.read() as txn:
        owner = txn.get(USERS, uuid.UUID(user.user["id"]).bytes)
    assert owner.quota_usage_in_bytes == len(clip)


# -- memory -------------------------------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def test_a_large_streamed_upload_keeps_memory_flat(daemon, user, tmp_path):
    """64 MiB streamed from a generator; the daemon runs in this process, so this process's RSS is its RSS. The
    growth must stay far below the body size (one write batch plus socket and queue buffers)."""
    size = 64 * 1024 * 1024
    chunk = os.urandom(256 * 1024)
    head = multipart_head(DATES, "large.mp4")
    digest = hashlib.sha1()

    async def body():
        yield head
        for _ in range(size // len(chunk)):
            digest.update(chunk)
            yield chunk
        yield MULTIPART_TAIL

    # warm up: first upload of the process (imports, thread pool, allocator arenas)
    await upload(user, photo_bytes(tmp_path))
    baseline, peak = _rss(), 0

    async def sample(cancel: trio.CancelScope) -> None:
        nonlocal peak
        with cancel:
            while True:
                peak = max(peak, _rss())
                await trio.sleep(0.005)

    sampling = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample, sampling)
        reply = await user.client.post(
            "/api/assets",
            content=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        sampling.cancel()
    assert reply.status_code == 201, reply.text
    asset = stored(daemon, reply.json()["id"])
    assert asset.file_size == size and asset.content_sha1 == digest.digest()
    growth = peak - baseline
    assert growth < 24 * 1024 * 1024, f"RSS grew by {growth >> 20} MiB for a {size >> 20} MiB body"


async def test_a_streamed_body_holds_back_its_producer_until_the_handler_reads():
    """The backpressure itself, without a socket: the connection's reader waits once `high_water` bytes are
    unread, and goes on when the handler takes them."""
    from api.streaming import StreamedBody

    body = StreamedBody(None, high_water=100)
    body.append(b"x" * 60)
    await body.wait_for_room()  # below the mark: no wait
    body.append(b"x" * 60)
    waited = trio.Event()

    async def producer() -> None:
        await body.wait_for_room()
        waited.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert not waited.is_set()
        assert await body.receive() == b"x" * 120
        await trio.testing.wait_all_tasks_blocked()
        assert waited.is_set()
    body.append(b"y" * 500)
    body.abandon()  # the response has started: nothing more is kept, and nobody waits
    await body.wait_for_room()
    body.append(b"z" * 500)
    body.set_complete()
    assert await body.receive() == b""


async def test_an_early_answer_closes_its_connection_and_says_so(user):
    """Answered before its body was read (here: a text part over the limit), an upload's connection cannot be
    reused: the answer says `Connection: close`, so a client opens a new one for its next request instead of
    failing on the closed one."""
    from daemon.upload_stream import MAX_FIELD_BYTES

    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"deviceId\"\r\n\r\n" + b"x" * (4 * MAX_FIELD_BYTES)
            + b"\r\n--XyZ--\r\n")  # fmt: skip
    for _ in range(3):
        reply = await user.client.post(
            "/api/assets", content=body, headers={"content-type": "multipart/form-data; boundary=XyZ"}
        )
        assert reply.status_code == 400 and reply.headers.get("connection") == "close"
        assert (await user.client.get("/api/users/me")).status_code == 200  # the next request on this client
