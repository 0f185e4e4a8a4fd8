"""The upload service against a real index (`libraries.md` §14): checksums, names and form rules, the streaming
multipart decoder at every chunk boundary, full disks (a tiny tmpfs), cancellation mid-body, quotas enforced while
streaming, concurrency, and the sweep of temp files a crash left behind."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
import trio.testing

from api.validation import parse_uuid
from daemon import assets as asset_index
from daemon.access import Principal
from daemon.errors import InvalidInput, NotFoundOrNoAccess, QuotaExceeded, StorageFull
from daemon.index import ASSETS, PENDING_METADATA, PENDING_THUMBNAILS, PENDING_VIDEO, USERS
from daemon.serve import serve
from daemon.storage_template import legacy_upload_path
from daemon.upload_stream import IncomingFile, incoming_folder, receive_form, sweep_incoming
from daemon.uploads import UploadService, parse_checksum, parse_form, safe_file_name

BOUNDARY = b"----filmroll-boundary-42"
DATES = {"fileCreatedAt": "2024-02-03T04:05:06.789+02:00", "fileModifiedAt": "2024-02-03T02:05:07Z"}


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> bytes:
    body = b""
    for name, value in fields.items():
        body += (
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        )
        body += value.encode() + b"\r\n"
    for name, (file_name, content) in files.items():
        body += b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name.encode()
        body += b'"; filename="' + file_name.encode() + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        body += content + b"\r\n"
    return body + b"--" + BOUNDARY + b"--\r\n"


def receiver(chunks: Iterable[bytes]):
    pending = iter(chunks)

    async def receive() -> bytes:
        await trio.lowlevel.checkpoint()
        return next(pending, b"")

    return receive


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture
def owner(services) -> Principal:
    user = services.users.create(email="owner@example.com", password="pw", name="Owner")
    return Principal(user=user)


def upload_service(services, data_dir: Path | None = None) -> UploadService:
    return UploadService(services.index, data_dir or services.settings.data_dir)


def leftovers(data_dir: Path | str) -> list[str]:
    folder = incoming_folder(data_dir)
    return sorted(os.listdir(folder)) if folder.exists() else []


# -- pure rules ---------------------------------------------------------------------------------------------------


def test_checksums_in_hex_and_base64():
    digest = hashlib.sha1(b"content").digest()
    assert parse_checksum(digest.hex()) == digest
    assert parse_checksum(digest.hex().upper()) == digest
    assert parse_checksum(base64.b64encode(digest).decode()) == digest
    assert parse_checksum(" " + digest.hex() + " ") == digest
    for bad in ("", "xyz", "g" * 40, digest.hex()[:39], "!" * 28, base64.b64encode(b"x" * 21).decode()[:28]):
        assert parse_checksum(bad) is None, bad


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("IMG_0001.JPG", "IMG_0001.JPG"),
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\photo.png", "photo.png"),
        ("..", ""),
        ("a/b/.", ""),
        ("tab\there\x00.jpg", "tabhere.jpg"),
        ("  spaced name.jpg  ", "spaced name.jpg"),
        ("\udcff.jpg", ".jpg"),
        ("日本語 'quoted' \"double\".heic", "日本語 'quoted' \"double\".heic"),
    ],
)
def test_file_names_are_reduced_to_a_label(sent, expected):
    assert safe_file_name(sent) == expected


def test_form_values_and_messages():
    form = parse_form(
        {**DATES, "isFavorite": "TRUE", "deviceAssetId": "abc", "deviceId": "python", "filename": "../x.jpg"},
        has_asset_data=True,
        parse_id=parse_uuid,
    )
    assert form.file_created_at == datetime(2024, 2, 3, 2, 5, 6, 789000, tzinfo=UTC)
    assert form.local_date_time == datetime(
        2024, 2, 3, 4, 5, 6, 789000, tzinfo=UTC
    )  # wall time, labelled UTC
    assert form.file_mtime_ns == int(datetime(2024, 2, 3, 2, 5, 7, tzinfo=UTC).timestamp()) * 10**9
    assert form.is_favorite and form.visibility == "timeline" and form.file_name == "x.jpg"
    assert (form.device_asset_id, form.device_id, form.library_id) == ("abc", "python", None)
    naive = parse_form(
        {"fileCreatedAt": "2024-02-03T04:05:06", "fileModifiedAt": "2024-02-03"},
        has_asset_data=True,
        parse_id=parse_uuid,
    )
    assert naive.file_created_at == datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert (
        parse_form({**DATES, "isArchived": "true"}, has_asset_data=True, parse_id=parse_uuid).visibility
        == "archive"
    )
    assert parse_form(
        {**DATES, "isArchived": "true", "visibility": "locked"}, has_asset_data=True, parse_id=parse_uuid
    ).visibility == ("locked")
    with pytest.raises(InvalidInput) as refused:
        parse_form(
            {"isArchived": "yes", "libraryId": "x", "visibility": "Timeline"},
            has_asset_data=False,
            parse_id=parse_uuid,
        )
    assert refused.value.message == [
        "assetData should not be empty",
        "fileCreatedAt must be a Date instance",
        "fileModifiedAt must be a Date instance",
        "isArchived must be a boolean value",
        "visibility must be one of the following values: archive, timeline, hidden, locked",
        "libraryId must be a UUID",
    ]


# -- the decoder --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 1000, 1 << 20])
async def test_the_decoder_gives_the_same_form_at_every_chunk_size(tmp_path, chunk_size):
    content = bytes(range(256)) * 40 + b"\r\n--" + BOUNDARY[:-1] + b"\r\n\r--"  # boundary look-alikes inside
    body = multipart({"a": "1", "é": "ünïcode", "empty": ""}, {"assetData": ("x.jpg", content)})
    opened: list[IncomingFile] = []

    async def open_file(name: str, file_name: str) -> IncomingFile:
        incoming = await IncomingFile.create(tmp_path / "in", file_name)
        opened.append(incoming)
        return incoming

    form = await receive_form(receiver(split(body, chunk_size)), BOUNDARY, open_file)
    assert form.fields == {"a": "1", "é": "ünïcode", "empty": ""}
    assert form.file_names == {"assetData": "x.jpg"}
    [incoming] = opened
    assert incoming.size == len(content) and incoming.sha1 == hashlib.sha1(content).digest()
    assert incoming.path.read_bytes() == content
    await incoming.discard()
    assert os.listdir(tmp_path / "in") == []


class _Collected(IncomingFile):
    """An IncomingFile that keeps the data in memory (no disk) for decoder tests."""

    def __init__(self, label: str):
        super().__init__(Path("/nonexistent"), label)
        self.chunks: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.chunks.append(data)


async def _collect(name: str, file_name: str) -> IncomingFile:
    return _Collected(file_name)


async def test_the_decoder_survives_any_split_of_delimiter_look_alikes():
    """Random contents made of CR, LF, dashes and pieces of the boundary, cut at random points: every file and
    field comes out exactly (werkzeug's decoder alone adds a stray CR when a chunk ends inside `--boundary--`)."""
    pieces = [b"\r", b"\n", b"-", b"a", BOUNDARY[:5], b"--" + BOUNDARY[:-1], b"\r\n--" + BOUNDARY[:3]]
    chooser = random.Random(7)
    for _ in range(400):
        content = b"".join(chooser.choice(pieces) for _ in range(chooser.randint(0, 25)))
        body = multipart({"g": "v\r"}, {"assetData": ("x.jpg", content)})
        cuts = sorted(chooser.sample(range(1, len(body)), chooser.randint(1, min(60, len(body) - 1))))
        chunks = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        form = await receive_form(receiver(chunks), BOUNDARY, _collect)
        received = form.files["assetData"]
        assert isinstance(received, _Collected) and form.fields == {"g": "v\r"}
        assert b"".join(received.chunks) == content, (content, cuts)


async def test_the_decoder_refuses_what_it_cannot_bound(tmp_path):
    async def drop(name: str, file_name: str) -> None:
        return None

    huge_field = multipart({"fileCreatedAt": "x" * 70_000}, {})
    with pytest.raises(InvalidInput) as refused:
        await receive_form(receiver(split(huge_field, 4096)), BOUNDARY, drop)
    assert refused.value.message == ["fileCreatedAt must be shorter than 65536 bytes"]

    many = multipart({f"f{n}": "v" for n in range(300)}, {})
    with pytest.raises(InvalidInput, match="Too many parts"):
        await receive_form(receiver([many]), BOUNDARY, drop)

    endless_headers = b"--" + BOUNDARY + b"\r\nX-Filler: " + b"a" * 2_000_000
    with pytest.raises(InvalidInput, match="Malformed"):
        await receive_form(receiver(split(endless_headers, 65536)), BOUNDARY, drop)

    truncated = multipart({"a": "1"}, {"assetData": ("x.jpg", b"abc")})[:-20]
    with pytest.raises(InvalidInput, match="Malformed"):
        await receive_form(receiver([truncated]), BOUNDARY, drop)

    # File parts nobody wants are read and dropped, however large.
    dropped = multipart({"a": "1"}, {"livePhotoData": ("x.mov", b"z" * 3_000_000)})
    form = await receive_form(receiver(split(dropped, 65536)), BOUNDARY, drop)
    assert form.fields == {"a": "1"} and form.files == {}


# -- the service --------------------------------------------------------------------------------------------------


async def test_upload_stores_the_asset_with_its_work_and_quota(services, owner):
    uploads = upload_service(services)
    content = b"\xff\xd8\xff" + os.urandom(3_000_000)
    body = multipart({**DATES, "deviceId": "cam"}, {"assetData": ("clip.MOV", content)})
    result = await uploads.upload(owner, receiver(split(body, 65536)), BOUNDARY, parse_id=parse_uuid)
    assert result.created
    with services.index.read() as txn:
        asset = asset_index.get(txn, result.asset_id)
        user = txn.get(USERS, owner.user.id.bytes)
        queued = [table.name for table in (PENDING_METADATA, PENDING_THUMBNAILS, PENDING_VIDEO)
                  if txn.get(table, asset.id.bytes) is not None]  # fmt: skip
    assert asset.type == "VIDEO" and asset.original_path.endswith(f"{asset.id}.mov".encode())
    assert asset.content_sha1 == hashlib.sha1(content).digest() and asset.device_id == "cam"
    assert (
        asset.original_file_name == "clip.MOV"
        and Path(os.fsdecode(asset.original_path)).read_bytes() == content
    )
    assert user.quota_usage_in_bytes == len(content)
    assert queued == ["pending_metadataExtraction", "pending_thumbnailGeneration", "pending_videoConversion"]
    assert uploads.duplicate_of_header(owner, hashlib.sha1(content).hexdigest()) == asset.id
    assert uploads.duplicate_of_header(owner, "nonsense") is None
    assert leftovers(services.settings.data_dir) == []


async def test_concurrent_identical_uploads_store_once(services, owner):
    uploads = upload_service(services)
    body = multipart(DATES, {"assetData": ("x.jpg", os.urandom(2_500_000))})
    results = []

    async def one() -> None:
        results.append(
            await uploads.upload(owner, receiver(split(body, 100_000)), BOUNDARY, parse_id=parse_uuid)
        )

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(one)
    assert sorted(result.status for result in results) == ["created"] + ["duplicate"] * 5
    assert len({result.asset_id for result in results}) == 1
    with services.index.read() as txn:
        assert txn.count(ASSETS) == 1
    assert leftovers(services.settings.data_dir) == []


async def test_cancelling_mid_body_leaves_nothing(services, owner):
    uploads = upload_service(services)
    head = multipart(DATES, {"assetData": ("x.jpg", b"")})[: -len(b"\r\n--" + BOUNDARY + b"--\r\n")]
    started = trio.Event()
    sent = 0

    async def receive() -> bytes:
        nonlocal sent
        if sent == 0:
            sent += 1
            return head
        if sent < 40:
            sent += 1
            return b"\x00" * 65536
        started.set()
        await trio.sleep_forever()  # the client stops sending: the handler is cancelled (disconnect)
        return b""

    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(uploads.upload, parse_id=parse_uuid), owner, receive, BOUNDARY)
        await started.wait()
        assert len(leftovers(services.settings.data_dir)) == 1  # receiving into a temp file
        nursery.cancel_scope.cancel()
    assert leftovers(services.settings.data_dir) == []
    with services.index.read() as txn:
        assert txn.count(ASSETS) == 0


async def test_the_quota_is_enforced_while_streaming(services, owner):
    services.users.update(owner.user.id, {"quota_size_in_bytes": 1_000_000}, as_admin=True)
    uploads = upload_service(services)
    content = os.urandom(5_000_000)
    body = multipart(DATES, {"assetData": ("x.jpg", content)})
    folder = incoming_folder(services.settings.data_dir)
    seen_on_disk = []
    chunks = iter(split(body, 65536))

    async def receive_watching() -> bytes:
        await trio.lowlevel.checkpoint()
        names = os.listdir(folder) if folder.exists() else []
        seen_on_disk.append(sum(os.path.getsize(folder / name) for name in names))
        return next(chunks, b"")

    with pytest.raises(QuotaExceeded):
        await uploads.upload(owner, receive_watching, BOUNDARY, parse_id=parse_uuid)
    assert max(seen_on_disk) <= 2_100_000  # dropped once over the limit, not kept to the end
    assert leftovers(services.settings.data_dir) == []
    with services.index.read() as txn:
        assert txn.get(USERS, owner.user.id.bytes).quota_usage_in_bytes == 0


async def test_library_rules(services, owner):
    uploads = upload_service(services)
    other = services.users.create(email="other@example.com", password="pw", name="Other")
    [theirs] = services.libraries.list(Principal(user=other), "UPLOAD")
    body = multipart({**DATES, "libraryId": str(theirs.id)}, {"assetData": ("x.jpg", b"abc")})
    with pytest.raises(NotFoundOrNoAccess, match=r"Not found or no asset\.upload access"):
        await uploads.upload(owner, receiver([body]), BOUNDARY, parse_id=parse_uuid)
    body = multipart({**DATES, "libraryId": str(uuid.uuid4())}, {"assetData": ("x.jpg", b"abc")})
    with pytest.raises(NotFoundOrNoAccess):
        await uploads.upload(owner, receiver([body]), BOUNDARY, parse_id=parse_uuid)
    assert leftovers(services.settings.data_dir) == []


async def test_not_multipart_is_read_and_refused(services, owner):
    uploads = upload_service(services)
    with pytest.raises(InvalidInput) as refused:
        await uploads.upload(owner, receiver([b"{}", b"more"]), None, parse_id=parse_uuid)
    assert "assetData should not be empty" in refused.value.message


@pytest.fixture
def tiny_disk(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True,
                       capture_output=True)  # fmt: skip
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        pytest.skip(f"cannot mount a tmpfs here: {error}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


async def test_a_full_disk_is_storage_full_and_a_duplicate_still_a_duplicate(services, owner, tiny_disk):
    uploads = upload_service(services, tiny_disk)
    small = os.urandom(100_000)
    stored = await uploads.upload(
        owner, receiver([multipart(DATES, {"assetData": ("s.jpg", small)})]), BOUNDARY, parse_id=parse_uuid
    )
    assert stored.created
    big = os.urandom(2_000_000)
    with pytest.raises(StorageFull, match="Not enough free space"):
        body = multipart(DATES, {"assetData": ("big.jpg", big)})
        await uploads.upload(owner, receiver(split(body, 65536)), BOUNDARY, parse_id=parse_uuid)
    assert leftovers(tiny_disk) == []
    # Fill the disk to the brim: a duplicate of what is stored is still answered as one, with nothing written.
    descriptor = os.open(tiny_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(descriptor, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(descriptor)
    again = await uploads.upload(
        owner, receiver([multipart(DATES, {"assetData": ("s.jpg", small)})]), BOUNDARY, parse_id=parse_uuid
    )
    assert again.status == "duplicate" and again.asset_id == stored.asset_id
    with pytest.raises(StorageFull):
        fresh = multipart(DATES, {"assetData": ("t.jpg", os.urandom(50_000))})
        await uploads.upload(owner, receiver(split(fresh, 65536)), BOUNDARY, parse_id=parse_uuid)
    assert leftovers(tiny_disk) == []
    with services.index.read() as txn:
        assert txn.count(ASSETS) == 1


async def test_sidecar_lands_beside_the_original(services, owner):
    uploads = upload_service(services)
    body = multipart(DATES, {"assetData": ("p.jpg", b"jpeg"), "sidecarData": ("p.jpg.xmp", b"<xmp/>")})
    result = await uploads.upload(owner, receiver([body]), BOUNDARY, parse_id=parse_uuid)
    with services.index.read() as txn:
        asset = asset_index.get(txn, result.asset_id)
    assert asset.sidecar_path == asset.original_path + b".xmp"
    assert Path(os.fsdecode(asset.sidecar_path)).read_bytes() == b"<xmp/>"
    assert asset.sidecar_mtime_ns == os.stat(asset.sidecar_path).st_mtime_ns
    assert leftovers(services.settings.data_dir) == []


KILLED_MID_UPLOAD = """
import os, sys, time
from pathlib import Path
from daemon.upload_stream import _create_temp
descriptor, path = _create_temp(Path(sys.argv[1]))
os.write(descriptor, b"half an upload")
print(path.name, flush=True)
time.sleep(60)
"""


async def test_sweep_removes_the_temp_files_of_dead_processes_only(tmp_path):
    folder = tmp_path / "incoming"
    running = await IncomingFile.create(folder, "running.jpg")  # an upload of this process, still receiving
    await running.write(b"half")
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_UPLOAD, str(folder)], stdout=subprocess.PIPE,
                             text=True)  # fmt: skip
    killed = child.stdout.readline().strip()
    assert killed in os.listdir(folder)
    assert sweep_incoming(folder) == 0  # the child still holds its file
    child.kill()  # SIGKILL: no cleanup runs, the kernel drops its lock
    child.wait()
    child.stdout.close()
    (folder / "unlocked.part").write_bytes(b"x")  # a temp file of an older filmroll
    assert sweep_incoming(folder) == 2
    assert os.listdir(folder) == [running.path.name]
    await running.discard()
    assert sweep_incoming(tmp_path / "missing") == 0


async def test_the_daemon_cleans_up_after_killed_uploads_as_it_starts(settings):
    """What a kill leaves: a temp file, and a landing cut between its rename and its index write (the marker and
    the renamed original, no asset). A stored upload whose marker outlived the commit stays."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(functools.partial(serve, settings, stop=stop))
        user = running.services.users.create(email="owner@example.com", password="pw", name="Owner")
        body = multipart(DATES, {"assetData": ("kept.jpg", b"stored before the kill")})
        stored = await running.services.uploads.upload(
            Principal(user=user), receiver([body]), BOUNDARY, parse_id=parse_uuid
        )
        stop.set()
    folder = incoming_folder(settings.data_dir)
    (folder / "interrupted.part").write_bytes(b"half an upload")
    kept_landing = legacy_upload_path(settings.data_dir, user.id, stored.asset_id, ".jpg")
    (folder / f"{stored.asset_id}.landing").write_bytes(os.fsencode(kept_landing))
    cut_id = uuid.uuid4()
    cut = legacy_upload_path(settings.data_dir, user.id, cut_id, ".jpg")
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_bytes(b"renamed into place, never indexed")
    Path(f"{cut}.xmp").write_bytes(b"<xmp/>")
    (folder / f"{cut_id}.landing").write_bytes(os.fsencode(cut))
    forged_id = uuid.uuid4()  # a marker whose path only seems to lie in upload/: `..` leads out of it
    outside = Path(settings.data_dir).parent / "outside" / f"{forged_id}.jpg"
    outside.parent.mkdir()
    outside.write_bytes(b"somebody's file")
    forged = Path(settings.data_dir) / "upload" / ".." / ".." / "outside" / outside.name
    (folder / f"{forged_id}.landing").write_bytes(os.fsencode(forged))

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(functools.partial(serve, settings, stop=stop))
        assert os.listdir(folder) == []  # before any upload
        assert not cut.exists() and not Path(f"{cut}.xmp").exists()
        assert outside.read_bytes() == b"somebody's file"
        with running.services.index.read() as txn:
            kept = asset_index.get(txn, stored.asset_id)
        assert Path(os.fsdecode(kept.original_path)).read_bytes() == b"stored before the kill"
        stop.set()
