"""File names with every odd byte, end to end: on disk in an external library → scan → index → metadata and
thumbnail workers → `GET /api/assets/{id}` (`originalFileName`, U+FFFD for bytes that are not UTF-8) → the original
downloaded byte for byte. The default run packs all 254 byte values (0x01-0xff but `/`) into a few names; the
reliability run gives each byte its own file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.api.test_libraries_api import assets_of, settle
from tests.media_files import jpeg

ODD_BYTES = [b for b in range(1, 256) if b != ord("/")]

SPECIAL_NAMES = [
    b"\n.jpg",
    b"line\nbreak\r.jpg",
    b"-rf.jpg",
    b" lead and trail .jpg",
    b"tab\there.jpg",
    b"\xff\xfe invalid.jpg",
    b"\xc0\xaf overlong slash.jpg",
    b"\xed\xa0\x80 encoded surrogate.jpg",
    b"\x80 lone continuation.jpg",
    b"\xe2\x80\xae rtl override.jpg",
    b"%2e%2e%2f.jpg",
    b"a..jpg",
    b"...jpg",
    b"quote\"apos'back\\semi;.jpg",
    b"$(touch pwned).jpg",
    b"*?[].jpg",
    b"a" * 251 + b".jpg",  # 255 bytes, the limit
    "é".encode() * 125 + b".jpg",  # 254 bytes of two-byte characters
    b"\xff" * 251 + b".jpg",  # 255 bytes, none of them UTF-8
]


def packed_names() -> list[bytes]:
    """Every odd byte, 32 to a name."""
    return [
        b"p%02d " % (start // 32) + bytes(ODD_BYTES[start : start + 32]) + b".jpg"
        for start in range(0, 254, 32)
    ]


def one_per_byte() -> list[bytes]:
    return [b"b%03d %c.jpg" % (value, value) for value in ODD_BYTES]


def shown_name(name: bytes) -> str:
    return name.decode("utf-8", "replace")


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(packed_names() + SPECIAL_NAMES, id="packed"),
        pytest.param(one_per_byte(), id="one-per-byte", marks=pytest.mark.reliability),
    ],
)
async def test_odd_names_from_disk_to_download(daemon, admin, user, tmp_path: Path, names: list[bytes]):
    external = tmp_path / "nas"
    photos = os.fsencode(external / "photos")
    odd_folder = os.path.join(photos, b"folder \xff\n\x01 " + bytes(range(0x80, 0x90)))
    expected: dict[bytes, bytes] = {}
    for number, name in enumerate(names):
        folder = odd_folder if number % 2 else photos
        path = os.path.join(folder, name)
        os.makedirs(folder, exist_ok=True)
        jpeg(Path(os.fsdecode(path)), (40 + number % 17, 30))
        if not name.startswith(b"."):  # hidden files are skipped by design (libraries.md)
            expected[path] = open(path, "rb").read()
    reply = await admin.client.put(
        f"/api/admin/users/{user.user['id']}", json={"externalPath": str(external)}
    )
    assert reply.status_code == 200, reply.text
    created = await user.client.post("/api/libraries", json={"importPaths": [os.fsdecode(photos)]})
    assert created.status_code == 201, created.text
    library_id = created.json()["id"]
    assert (await user.client.post(f"/api/libraries/{library_id}/scan")).status_code == 204
    await settle(admin)
    indexed = {os.fsencode(path): entry for path, entry in (await assets_of(daemon, library_id)).items()}
    assert set(indexed) == set(expected), [repr(p) for p in sorted(set(expected) ^ set(indexed))]
    for path, content in expected.items():
        asset_id = indexed[path]["id"]
        reply = await user.client.get(f"/api/assets/{asset_id}")
        assert reply.status_code == 200, (path, reply.text)
        body = reply.json()
        assert body["originalFileName"] == shown_name(os.path.basename(path)), path
        assert body["jobFailures"] == [], (path, body["jobFailures"])
        assert body["thumbhash"], path  # the workers read it too
        original = await user.client.get(f"/api/assets/{asset_id}/original")
        assert original.status_code == 200, (path, original.text)
        assert hashlib.sha256(original.content).digest() == hashlib.sha256(content).digest(), path
        disposition = original.headers["content-disposition"]
        assert unquote(disposition.split("filename*=UTF-8''")[1]) == shown_name(os.path.basename(path))
        thumbnail = await user.client.get(f"/api/assets/{asset_id}/thumbnail")
        assert thumbnail.status_code == 200, path
    for path, content in expected.items():  # the originals themselves are untouched
        assert open(path, "rb").read() == content
