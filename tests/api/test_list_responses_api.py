"""List responses over real HTTP (an album with its assets, a search page, the album list): every asset's
`checksum` follows its own library's rule, as `GET /api/assets/{id}` shows it, and a list costs the same number of
read transactions whatever its length (it once opened one per asset to find its library's type)."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
from quart import has_request_context

from daemon import assets as asset_index
from daemon.index import LIBRARIES
from tests.api.test_albums_api import photos  # noqa: F401 (a fixture)
from tests.api.test_asset_updates_api import put_upload


def expected_checksum(daemon, asset_id: str) -> str:
    """Immich's rule written out: the content SHA-1 for uploads, SHA-1 of `path:` + path for external files."""
    with daemon.services.index.read() as txn:
        asset = asset_index.get(txn, uuid.UUID(asset_id))
        library = txn.get(LIBRARIES, asset.library_id.bytes)
    if library.type == "UPLOAD":
        digest = asset.content_sha1
    else:
        digest = hashlib.sha1(b"path:" + asset.original_path).digest()
    return base64.b64encode(digest).decode()


async def test_checksums_of_a_list_follow_each_assets_library(daemon, user, photos):  # noqa: F811
    uploads = [put_upload(daemon, user, f"up{number}.jpg") for number in range(2)]
    external = [photos["jan"], photos["feb"], photos["mar"]]
    created = await user.client.post(
        "/api/albums", json={"albumName": "Mixed", "assetIds": uploads + external}
    )
    album = (await user.client.get(f"/api/albums/{created.json()['id']}")).json()
    searched = (await user.client.post("/api/search/metadata", json={"size": 1000})).json()["assets"]["items"]
    with_exif = await user.client.post("/api/search/metadata", json={"size": 1000, "withExif": True})

    expected = {asset_id: expected_checksum(daemon, asset_id) for asset_id in uploads + external}
    assert len(set(expected.values())) == 5
    single = {
        asset_id: (await user.client.get(f"/api/assets/{asset_id}")).json()["checksum"]
        for asset_id in expected
    }
    assert single == expected
    assert {asset["id"]: asset["checksum"] for asset in album["assets"]} == expected
    assert {asset["id"]: asset["checksum"] for asset in searched} == expected
    assert {asset["id"]: asset["checksum"] for asset in with_exif.json()["assets"]["items"]} == expected


@pytest.fixture
def request_reads(daemon, monkeypatch) -> list[None]:
    """Grows by one for each read transaction opened while an HTTP request is handled (background tasks such as
    the watchers' reconciliation read too, outside any request)."""
    index = daemon.services.index
    opened: list[None] = []
    read = index.read

    def counting_read():
        if has_request_context():
            opened.append(None)
        return read()

    monkeypatch.setattr(index, "read", counting_read)
    return opened


async def test_a_list_costs_the_same_transactions_whatever_its_length(daemon, user, request_reads):
    members = [put_upload(daemon, user, f"photo{number}.jpg") for number in range(12)]
    small = (await user.client.post("/api/albums", json={"albumName": "S", "assetIds": members[:1]})).json()[
        "id"
    ]
    large = (await user.client.post("/api/albums", json={"albumName": "L", "assetIds": members})).json()["id"]

    async def reads(method: str, path: str, **body) -> int:
        before = len(request_reads)
        reply = await user.client.request(method, path, json=body or None)
        assert reply.status_code == 200, reply.text
        return len(request_reads) - before

    assert await reads("GET", f"/api/albums/{large}") == await reads("GET", f"/api/albums/{small}")
    assert await reads("POST", "/api/search/metadata", size=12) == await reads(
        "POST", "/api/search/metadata", size=1
    )
    with_exif = await reads("POST", "/api/search/metadata", size=12, withExif=True)
    assert with_exif == await reads("POST", "/api/search/metadata", size=1, withExif=True)
    few = await reads("GET", "/api/albums")
    await user.client.put(f"/api/albums/{small}/assets", json={"ids": members})
    assert await reads("GET", "/api/albums") == few
