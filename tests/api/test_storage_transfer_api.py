"""Over real HTTP: an upload ends up where the storage template puts it (and still downloads byte for byte), the
storage migration job is startable, and an admin can transfer one user's data to another."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.api.test_libraries_api import settle
from tests.api.test_upload_api import photo_bytes, upload
from tests.conftest import sign_in


async def test_an_upload_is_placed_by_the_storage_template(daemon, admin, user, tmp_path):
    content = photo_bytes(tmp_path, taken="2021:06:07 08:09:10")
    created = (await upload(user, content, "Holiday.JPG")).json()
    await settle(admin)
    body = (await user.client.get(f"/api/assets/{created['id']}")).json()
    expected = (
        Path(daemon.settings.data_dir) / "library" / user.user["id"] / "2021" / "2021-06-07" / "Holiday.jpg"
    )
    assert body["originalPath"] == str(expected) and expected.is_file()
    assert body["originalFileName"] == "Holiday.JPG"
    original = await user.client.get(f"/api/assets/{created['id']}/original")
    assert hashlib.sha1(original.content).digest() == hashlib.sha1(content).digest()
    landing_root = Path(daemon.settings.data_dir) / "upload" / user.user["id"]
    assert not any(path.is_file() for path in landing_root.rglob("*"))

    started = await admin.client.put("/api/jobs/storageTemplateMigration", json={"command": "start"})
    assert started.status_code == 200, started.text
    await settle(admin)
    again = (await user.client.get(f"/api/assets/{created['id']}")).json()
    assert again["originalPath"] == str(expected)  # already in place: nothing moves


async def test_admin_transfers_albums_and_assets_and_reports_duplicates(daemon, admin, user, tmp_path):
    shared = photo_bytes(tmp_path, "shared.jpg")
    own = photo_bytes(tmp_path, "own.jpg", size=(64, 64))
    mine = [
        (await upload(user, data, name)).json()["id"] for data, name in ((shared, "s.jpg"), (own, "o.jpg"))
    ]
    album = (await user.client.post("/api/albums", json={"albumName": "Trip", "assetIds": mine})).json()
    admins_copy = (await upload(admin, shared, "admin-copy.jpg")).json()["id"]
    await settle(admin)

    refused = await user.client.post(
        f"/api/admin/users/{user.user['id']}/transfer", json={"targetUserId": admin.user["id"]}
    )
    assert refused.status_code == 403
    reply = await admin.client.post(
        f"/api/admin/users/{user.user['id']}/transfer", json={"targetUserId": admin.user["id"]}
    )
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert (report["albums"], report["assets"], report["libraries"]) == (1, 1, 0)
    assert report["skipped"] == [
        {"assetId": mine[0], "originalFileName": "s.jpg", "duplicateOf": admins_copy}
    ]

    moved = (await admin.client.get(f"/api/albums/{album['id']}")).json()
    assert {asset["id"] for asset in moved["assets"]} == {mine[1], admins_copy}
    assert (await user.client.get(f"/api/albums/{album['id']}")).status_code == 400
    assert (await admin.client.get(f"/api/assets/{mine[1]}")).json()["ownerId"] == admin.user["id"]
    await settle(admin)  # the moved upload is re-placed under the admin's folder
    path = (await admin.client.get(f"/api/assets/{mine[1]}")).json()["originalPath"]
    assert path.startswith(str(Path(daemon.settings.data_dir) / "library" / "admin") + os.sep)
    me = (await user.client.get("/api/users/me")).json()
    assert me["quotaUsageInBytes"] == len(shared)  # the skipped duplicate stays with its owner

    bad = await admin.client.post(f"/api/admin/users/{user.user['id']}/transfer", json={"targetUserId": "x"})
    assert bad.status_code == 400 and bad.json()["message"] == ["targetUserId must be a UUID"]
    again = await sign_in(daemon, "user@example.com", "user-password")  # the source account stays usable
    assert (await again.client.get(f"/api/assets/{mine[0]}")).status_code == 200
    await again.client.aclose()


async def test_a_download_racing_a_storage_move_follows_the_file(daemon, user, tmp_path, monkeypatch):
    """A storage move commits the new path and unlinks the old one between a download's index lookup and its
    open: the download looks the asset up again and serves the file from its new place (it answered 404)."""
    from daemon import asset_service
    from daemon import assets as asset_index

    content = photo_bytes(tmp_path)
    reply = await upload(user, content)
    assert reply.status_code == 201, reply.text
    asset_id = reply.json()["id"]
    index = daemon.services.index
    real_open = asset_service._open_confined
    moved = []

    def open_after_a_move(path: bytes, root: bytes | None):
        if not moved:  # the move a storage job makes: link, commit the new path, unlink the old name
            new = os.fsencode(daemon.settings.data_path / "library" / "moved.jpg")
            os.makedirs(os.path.dirname(new), exist_ok=True)
            os.link(path, new)
            index.write(lambda txn: asset_index.update(txn, asset_index.get_by_key(txn, bytes.fromhex(
                asset_id.replace("-", ""))), original_path=new))  # fmt: skip
            os.unlink(path)
            moved.append(new)
        return real_open(path, root)

    monkeypatch.setattr(asset_service, "_open_confined", open_after_a_move)
    original = await user.client.get(f"/api/assets/{asset_id}/original")
    assert original.status_code == 200, original.text
    assert original.content == content and moved
