"""Hostile text over real HTTP: JSON strings no UTF-8 can hold (lone surrogates), control characters and
traversal in every string a user sends; upload file names and the `filename` part. Never a 5xx, nothing written
outside where it belongs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

HOSTILE_STRINGS = {
    "lone-high-surrogate": '"a\\ud800b"',
    "lone-low-surrogate": '"\\udc80"',
    "reversed-pair": '"\\udc00\\ud800"',
    "nul": '"a\\u0000b"',
    "controls": '"\\u0001\\u001f\\u007f\\n\\r"',
    "traversal": '"../../../../etc/passwd"',
    "long": '"' + "é" * 5000 + '"',
}


def bodies(text: str, album_id: str, asset_id: str, path: str) -> list[tuple[str, str, str]]:
    """(method, path, JSON body) for every route that takes user text, with `text` (raw JSON) in one field."""
    return [
        ("POST", "/api/albums", f'{{"albumName": {text}, "description": {text}}}'),
        ("PATCH", f"/api/albums/{album_id}", f'{{"albumName": {text}}}'),
        ("PATCH", f"/api/albums/{album_id}", f'{{"description": {text}}}'),
        ("PUT", f"/api/assets/{asset_id}", f'{{"description": {text}}}'),
        ("PUT", f"/api/assets/{asset_id}", f'{{"dateTimeOriginal": {text}}}'),
        ("PUT", "/api/users/me", f'{{"name": {text}}}'),
        ("POST", "/api/api-keys", f'{{"name": {text}, "permissions": ["all"]}}'),
        ("POST", "/api/libraries", f'{{"name": {text}, "importPaths": [], "exclusionPatterns": []}}'),
        ("POST", "/api/libraries", f'{{"importPaths": [{text}]}}'),
        ("POST", "/api/libraries", f'{{"exclusionPatterns": [{text}]}}'),
        (
            "POST",
            "/api/libraries",
            f'{{"importPaths": ["{path}/{{{{x}}}}"], "exclusionPatterns": ["**/{{a"]}}',
        ),
        ("POST", "/api/search/metadata", f'{{"originalFileName": {text}}}'),
        ("POST", "/api/search/metadata", f'{{"description": {text}, "make": {text}}}'),
        ("POST", "/api/auth/login", f'{{"email": {text}, "password": {text}}}'),
        ("POST", "/api/assets/bulk-upload-check", f'{{"assets": [{{"id": {text}, "checksum": {text}}}]}}'),
    ]


@pytest.mark.parametrize("kind", sorted(HOSTILE_STRINGS))
async def test_no_string_a_client_can_send_gives_a_5xx(daemon, admin, user, tmp_path, kind):
    album = (await user.client.post("/api/albums", json={"albumName": "mine"})).json()
    upload = await user.client.post(
        "/api/assets",
        data={"fileCreatedAt": "2024-01-01T00:00:00Z", "fileModifiedAt": "2024-01-01T00:00:00Z"},
        files={"assetData": ("a.jpg", io.BytesIO(b"\xff\xd8\xff\xe0 jpeg-ish"), "image/jpeg")},
    )
    assert upload.status_code == 201, upload.text
    for method, path, body in bodies(HOSTILE_STRINGS[kind], album["id"], upload.json()["id"], str(tmp_path)):
        reply = await user.client.request(
            method, path, content=body.encode(), headers={"Content-Type": "application/json"}
        )
        assert reply.status_code < 500, f"{method} {path} {body[:80]} gave {reply.status_code}: {reply.text}"
        reply = await admin.client.put(
            f"/api/admin/users/{user.user['id']}",
            content=f'{{"storageLabel": {HOSTILE_STRINGS[kind]}}}'.encode(),
            headers={"Content-Type": "application/json"},
        )
        assert reply.status_code < 500, reply.text
    assert (await user.client.get("/api/albums")).status_code == 200  # still serving
    assert (await user.client.get("/api/users/me")).status_code == 200


UPLOAD_NAMES = [
    "../../../../etc/passwd.jpg",
    "/etc/passwd.jpg",
    "..\\..\\windows.jpg",
    "a\0b.jpg",
    "new\nline.jpg",
    "\u202eexe.jpg",
    "..",
    ".",
    "",
    "x" * 300 + ".jpg",
    "é" * 200 + ".jpg",
    "%2e%2e%2f%2e%2e%2fescape.jpg",
]


def everything_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


@pytest.mark.parametrize("field", ["assetData", "filename"])
async def test_upload_names_cannot_place_files_outside_the_upload_folder(daemon, user, tmp_path, field):
    data_dir = Path(daemon.settings.data_dir)
    outside_before = {p for p in tmp_path.rglob("*") if data_dir not in p.parents and p != data_dir}
    for number, name in enumerate(UPLOAD_NAMES):
        fields = {"fileCreatedAt": "2024-01-01T00:00:00Z", "fileModifiedAt": "2024-01-01T00:00:00Z"}
        sent_name = name if field == "assetData" else "plain.jpg"
        if field == "filename":
            fields["filename"] = name
        content = b"\xff\xd8\xff\xe0 jpeg-ish %d %s" % (number, field.encode())
        reply = await user.client.post(
            "/api/assets", data=fields, files={"assetData": (sent_name, io.BytesIO(content), "image/jpeg")}
        )
        assert reply.status_code < 500, f"{name!r}: {reply.status_code} {reply.text}"
        if reply.status_code != 201:
            continue
        asset = (await user.client.get(f"/api/assets/{reply.json()['id']}")).json()
        shown = asset["originalFileName"]
        assert "/" not in shown and "\0" not in shown, shown
        original = await user.client.get(f"/api/assets/{asset['id']}/original")
        assert original.status_code == 200 and original.content == content
        disposition = original.headers.get("content-disposition", "")
        assert "\n" not in disposition and "\r" not in disposition
    outside_after = {p for p in tmp_path.rglob("*") if data_dir not in p.parents and p != data_dir}
    assert outside_after == outside_before, outside_after - outside_before
    for path in everything_under(data_dir):
        assert os.path.realpath(path).startswith(os.path.realpath(data_dir) + "/")


async def test_bodies_that_are_not_utf8_and_unstorable_logins_are_client_errors(daemon, user):
    """Found by schemathesis: a JSON body that is not UTF-8 gave 500 on every JSON route, and a login with an
    empty (or longer than 511 bytes) email asked LMDB for an impossible key and gave 500."""
    for path in ("/api/albums", "/api/api-keys", "/api/search/metadata", "/api/auth/login"):
        reply = await user.client.post(
            path, content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
        )
        assert reply.status_code == 400, (path, reply.status_code, reply.text)
    async with daemon.client() as anonymous:
        for email in ("", "a" * 600 + "@example.com", "\u00e9" * 300):
            reply = await anonymous.post("/api/auth/login", json={"email": email, "password": "x"})
            assert reply.status_code in (400, 401), (email[:20], reply.status_code, reply.text)
