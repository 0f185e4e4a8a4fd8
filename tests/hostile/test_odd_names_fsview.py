"""File names with every odd byte through the FUSE view (issue 10): the real `filmroll serve --mount` (a child
process, tests/e2e/live_daemon.py) scans an external library whose names hold every byte but `/` and NUL (packed,
as in test_odd_names.py, plus the special cases), and takes uploads whose names need `fsview.tree.safe_name`.

- `libraries/<name>/…` mirrors the import path: the same relative paths, byte for byte (non-UTF-8 included);
- an album holding all of them lists each under `safe_name` of its name, every name a valid one (no `/`, no NUL,
  at most 255 bytes, never `.`/`..`), no two alike;
- every file reads back byte for byte the original it names (`user.filmroll.id` says which), and the originals
  themselves are untouched."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from fsview.tree import NAME_MAX, safe_name
from tests.e2e.live_daemon import Originals, running_daemon, wait_for
from tests.hostile.test_odd_names import SPECIAL_NAMES, packed_names
from tests.media_files import jpeg

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")

UPLOAD_NAMES = [
    "a/b: slash.jpg",
    "é" * 200 + ".jpg",
    "  spaced  .jpg",
    "IMG_0001.jpg",
    "IMG_0001.jpg",
    "x.JPG",
]
"""Names uploads claim (`originalFileName`): a slash, too long (400 bytes), twins."""
ALBUM_NAMES = {"..": b"_..", ".": b"_.", "nul\0byte": b"nul_byte", "": b"_", "a/b": "a\u2215b".encode()}
"""Album names the view must rename: what each becomes."""


def read(path: bytes) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


def tree_of(top: bytes) -> dict[bytes, tuple[str, bytes]]:
    """Relative path -> (asset id, content) of every file below `top`."""
    found = {}
    for folder, _, files in os.walk(top):
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, top)] = (os.getxattr(path, "user.filmroll.id").decode(), read(path))
    return found


def test_odd_names_through_a_real_mount(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    mount = tmp_path / "mnt"
    mount.mkdir()
    photos = os.fsencode(tmp_path / "nas" / "photos")
    odd_folder = os.path.join(photos, b"folder \xff\n\x01 " + bytes(range(0x80, 0x90)))
    on_disk: dict[bytes, bytes] = {}  # relative path -> content, of the files the scan imports
    for number, name in enumerate(packed_names() + SPECIAL_NAMES):
        folder = odd_folder if number % 2 else photos
        path = os.path.join(folder, name)
        jpeg(Path(os.fsdecode(path)), (40 + number, 30))
        if not name.startswith(b"."):  # hidden files are skipped by design
            on_disk[os.path.relpath(path, photos)] = read(path)
    guard = Originals(tmp_path_factory.getbasetemp())
    try:
        with running_daemon(tmp_path / "daemon", FILMROLL_MOUNT=str(mount)) as daemon:
            wait_for(lambda: os.path.ismount(mount), "the mount")
            uploads = [jpeg(tmp_path / "uploads" / f"{number}.jpg", (20 + number, 20)) for number in range(6)]
            guard.record(tmp_path / "nas", tmp_path / "uploads")
            with daemon.client() as client:
                reply = client.put(
                    f"/api/admin/users/{daemon.admin['id']}", json={"externalPath": str(tmp_path / "nas")}
                )
                assert reply.status_code == 200, reply.text
                library = client.post(
                    "/api/libraries", json={"name": "odd", "importPaths": [os.fsdecode(photos)]}
                ).json()
                assert client.post(f"/api/libraries/{library['id']}/scan").status_code == 204
                wait_for(
                    lambda: (
                        client.get(f"/api/libraries/{library['id']}").json()["assetCount"] == len(on_disk)
                    ),
                    "the scan",
                )
                uploaded = []
                for source, name in zip(uploads, UPLOAD_NAMES, strict=True):
                    with open(source, "rb") as stream:
                        reply = client.post(
                            "/api/assets",
                            data={
                                "fileCreatedAt": "2022-01-01T00:00:00Z",
                                "fileModifiedAt": "2022-01-01T00:00:00Z",
                            },
                            files={"assetData": (name, stream, "image/jpeg")},
                        )
                    assert reply.status_code == 201, reply.text
                    uploaded.append(reply.json()["id"])
                assets = {asset["id"]: asset for asset in daemon.search()}
                assert len(assets) == len(on_disk) + len(uploads)
                album = client.post("/api/albums", json={"albumName": "odd/names", "assetIds": list(assets)})
                assert album.status_code == 201, album.text
                for name in ALBUM_NAMES:
                    made = client.post("/api/albums", json={"albumName": name, "assetIds": uploaded[:1]})
                    assert made.status_code == 201, made.text
            user = os.fsencode(mount / "admin")

            # the library folder mirrors the import path byte for byte
            library_folder = os.path.join(user, b"libraries", b"odd")
            wait_for(lambda: os.path.isdir(library_folder), "the library folder", 5)
            shown = tree_of(library_folder)
            assert set(shown) == set(on_disk), [repr(p) for p in sorted(set(shown) ^ set(on_disk))]
            assert {path: content for path, (_, content) in shown.items()} == on_disk
            path_of = {asset_id: path for path, (asset_id, _) in shown.items()}  # the API's paths are lossy

            # the album: every asset under its safe name, each read back as the original it names
            album_folder = os.path.join(user, b"albums", "odd\u2215names".encode())
            wait_for(lambda: os.path.isdir(album_folder), "the album folder", 5)
            names = os.listdir(album_folder)
            assert len(names) == len(assets) == len(set(names))
            by_id = {}
            for name in names:
                assert b"/" not in name and b"\0" not in name and name not in (b".", b"..", b"")
                assert len(name) <= NAME_MAX, name
                by_id[os.getxattr(os.path.join(album_folder, name), "user.filmroll.id").decode()] = name
            assert set(by_id) == set(assets)
            for asset_id, asset in assets.items():
                name = by_id[asset_id]
                if asset["libraryId"] == library["id"]:
                    assert name == safe_name(os.path.basename(path_of[asset_id])), (name, path_of[asset_id])
                    expected = on_disk[path_of[asset_id]]
                else:
                    wanted = safe_name(asset["originalFileName"])
                    stem, extension = os.path.splitext(wanted)
                    # a twin's name: its stem (shortened only to fit), then the end of its id
                    suffix = uuid.UUID(asset_id).hex[-8:].encode()
                    suffixed = re.fullmatch(rb"(.+) \(" + suffix + rb"\)" + re.escape(extension), name, re.S)
                    assert name == wanted or (suffixed and stem.startswith(suffixed[1])), name
                    expected = uploads[uploaded.index(asset_id)].read_bytes()
                assert read(os.path.join(album_folder, name)) == expected, name
            assert any(name.startswith("é".encode() * 10) and name.endswith(b".jpg") for name in names)
            albums = os.listdir(os.path.join(user, b"albums"))
            assert set(ALBUM_NAMES.values()) <= set(albums), albums
            for name in ALBUM_NAMES.values():
                assert len(os.listdir(os.path.join(user, b"albums", name))) == 1, name
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], capture_output=True, check=False)
    changed = guard.differences()
    assert not changed, "originals changed:\n" + "\n".join(changed)
