"""The official Immich CLI (@immich/cli 3.2.2, run with Node 22) against the real daemon (api-compat.md §2).

The CLI is installed outside the repo by scripts/immich-cli.sh (`make setup` runs it) into
`${IMMICH_CLI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/filmroll/immich-cli-3.2.2}`; without it these tests skip.
The CLI exits 0 even when uploads fail, so every test checks the server's state over HTTP, not just `$?`.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.live_daemon import LiveDaemon, iso_utc, record_originals, running_daemon, sha1_base64
from tests.media_files import jpeg, png, video

CLI_DIR = Path(
    os.environ.get("IMMICH_CLI_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "filmroll" / "immich-cli-3.2.2"
)
IMMICH = CLI_DIR / "bin" / "immich"

pytestmark = pytest.mark.skipif(
    not os.access(IMMICH, os.X_OK),
    reason=f"the Immich CLI is not installed in {CLI_DIR}: run `make setup` (or scripts/immich-cli.sh)",
)


@pytest.fixture
def live_daemon(tmp_path: Path) -> Iterator[LiveDaemon]:
    """The real `filmroll serve` on 127.0.0.1:<free port>, fresh data directory, an admin and their API key."""
    with running_daemon(tmp_path / "daemon") as daemon:
        yield daemon


@dataclass
class Cli:
    """Runs `immich …` with its config directory (`IMMICH_CONFIG_DIR`, where auth.yml goes) and HOME in tmp, once
    the files the test made for it to upload are fingerprinted (originals untouched)."""

    config_dir: Path
    home: Path

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        record_originals()
        env = {name: value for name, value in os.environ.items() if not name.startswith("IMMICH_")}
        env.update(IMMICH_CONFIG_DIR=str(self.config_dir), HOME=str(self.home), NO_COLOR="1")
        return subprocess.run(
            [str(IMMICH), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )


def output(result: subprocess.CompletedProcess) -> str:
    return f"exit code {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def succeeded(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, output(result)
    return result.stdout


@pytest.fixture
def immich(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(config_dir=tmp_path / "immich-config", home=home)


@pytest.fixture
def logged_in(immich: Cli, live_daemon: LiveDaemon) -> Iterator[Cli]:
    succeeded(immich("login", live_daemon.url, live_daemon.api_key))
    yield immich


@dataclass
class UploadSummary:
    new: int  # "Found <new> new files and <duplicates> duplicates" (the bulk upload check)
    duplicates: int
    uploaded: int  # "Successfully uploaded <n> new assets"
    skipped: int  # "Skipped <n> duplicate assets" (uploads that the server answered with status 'duplicate')
    failed: list[str]  # "Failed to verify/upload …" and the lines after it


def summary(result: subprocess.CompletedProcess) -> UploadSummary:
    text = succeeded(result)
    found = re.search(r"^Found (\d+) new files and (\d+) duplicates?$", text, re.M)
    assert found, output(result)
    uploaded = re.search(r"^Successfully uploaded (\d+) new assets?", text, re.M)
    skipped = re.search(r"^Skipped (\d+) duplicate assets?", text, re.M)
    failed = [line for line in text.splitlines() if line.startswith(("Failed to ", "- /"))]
    return UploadSummary(
        new=int(found[1]),
        duplicates=int(found[2]),
        uploaded=int(uploaded[1]) if uploaded else 0,
        skipped=int(skipped[1]) if skipped else 0,
        failed=failed,
    )


# Client file times: whole seconds in UTC, so the CLI's `mtime.toISOString()` is exactly what we compare with.
TIMES = {
    "IMG_0001.jpg": datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp(),
    "shot.png": datetime(2022, 7, 8, 9, 10, 11, tzinfo=UTC).timestamp(),
    "clip.mp4": datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp(),
}


def set_time(path: Path) -> Path:
    os.utime(path, (TIMES[path.name], TIMES[path.name]))
    return path


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    """A folder tree of genuine media: two images and a video at three depths, plus a file the CLI ignores."""
    root = tmp_path / "Camera Roll"
    files = {
        "IMG_0001.jpg": set_time(jpeg(root / "IMG_0001.jpg")),
        "shot.png": set_time(png(root / "Screens" / "shot.png")),
        "clip.mp4": set_time(video(root / "Screens" / "Clips" / "clip.mp4")),
    }
    (root / "notes.txt").write_text("not media")
    return files


def media_root(media: dict[str, Path]) -> Path:
    return media["IMG_0001.jpg"].parent


def assets_by_name(daemon: LiveDaemon) -> dict[str, dict]:
    found = daemon.search()
    by_name = {asset["originalFileName"]: asset for asset in found}
    assert len(by_name) == len(found), (
        f"two assets with one name: {sorted(a['originalFileName'] for a in found)}"
    )
    return by_name


def assert_uploaded(daemon: LiveDaemon, media: dict[str, Path]) -> dict[str, dict]:
    """The server holds exactly `media`, byte for byte, as the admin's assets; returns them by file name."""
    with daemon.client() as client:
        statistics = client.get("/api/assets/statistics")
    assert statistics.status_code == 200, statistics.text
    assert statistics.json() == {"images": 2, "videos": 1, "total": 3}
    found = assets_by_name(daemon)
    assert sorted(found) == sorted(media)
    expected_type = {"IMG_0001.jpg": ("IMAGE", "image/jpeg"), "shot.png": ("IMAGE", "image/png"),
                     "clip.mp4": ("VIDEO", "video/mp4")}  # fmt: skip
    for name, path in media.items():
        asset = daemon.asset(found[name]["id"])
        assert (asset["type"], asset["originalMimeType"]) == expected_type[name]
        assert asset["checksum"] == sha1_base64(path)
        assert asset["ownerId"] == daemon.admin["id"]
        assert asset["isTrashed"] is False and asset["visibility"] == "timeline"
        assert asset["exifInfo"]["fileSizeInByte"] == path.stat().st_size
    for name in ("IMG_0001.jpg", "shot.png"):  # no capture date inside: the client's file time stands
        assert daemon.asset(found[name]["id"])["fileCreatedAt"] == iso_utc(TIMES[name])
    return found


# -- login and server-info ------------------------------------------------------------------------------------------


@pytest.mark.no_originals
@pytest.mark.parametrize("suffix", ["", "/", "/api", "/api/"])
def test_login_finds_the_api_and_writes_the_auth_file(immich: Cli, live_daemon: LiveDaemon, suffix: str):
    url = live_daemon.url + suffix
    text = succeeded(immich("login", url, live_daemon.api_key))
    assert f"Logging in to {url}" in text
    assert "Logged in as admin@example.com" in text
    auth_file = immich.config_dir / "auth.yml"
    assert f"Wrote auth info to {auth_file}" in text
    stored = auth_file.read_text()
    assert f"key: {live_daemon.api_key}" in stored and f"url: {url}" in stored
    assert not (immich.home / ".config").exists(), "the CLI must use IMMICH_CONFIG_DIR"


@pytest.mark.no_originals
def test_login_with_a_bad_key_is_refused(immich: Cli, live_daemon: LiveDaemon):
    result = immich("login", live_daemon.url, "not-a-key")
    assert result.returncode == 1, output(result)
    assert f"Failed to connect to server {live_daemon.url}/api: 401" in result.stderr, output(result)
    assert '"message": "Invalid API key"' in result.stderr, output(result)  # the JSON error body, printed
    assert not (immich.config_dir / "auth.yml").exists()


@pytest.mark.no_originals
def test_login_needs_user_read(immich: Cli, live_daemon: LiveDaemon):
    # The CLI's own check for user.read comes after `connect()` has already called GET /api/users/me, so what the
    # user sees is that call's 403, printed with its JSON body.
    key = live_daemon.create_api_key(["asset.read"])
    result = immich("login", live_daemon.url, key)
    assert result.returncode == 1, output(result)
    assert f"Failed to connect to server {live_daemon.url}/api: 403" in result.stderr, output(result)
    assert '"message": "Missing required permission: user.read"' in result.stderr, output(result)
    assert not (immich.config_dir / "auth.yml").exists()


@pytest.mark.no_originals
def test_server_info_names_missing_permissions_of_a_scoped_key(immich: Cli, live_daemon: LiveDaemon):
    key = live_daemon.create_api_key(["user.read"])
    succeeded(immich("login", live_daemon.url, key))
    result = immich("server-info")
    assert result.returncode == 1, output(result)
    missing = 'Missing required permissions: "server.about", "asset.statistics".'
    assert missing in result.stdout, output(result)


@pytest.mark.no_originals
def test_server_info(logged_in: Cli, live_daemon: LiveDaemon):
    text = succeeded(logged_in("server-info"))
    assert "Server Info (via admin@example.com)" in text
    assert f"  Url: {live_daemon.url}/api\n" in text
    assert "  Version: 3.0.3\n" in text
    images = re.search(r"^    Images: (.*)$", text, re.M)
    videos = re.search(r"^    Videos: (.*)$", text, re.M)
    assert images and {"jpg", "jpeg", "png", "heic"} <= set(images[1].split(","))
    assert videos and {"mp4", "mov"} <= set(videos[1].split(","))
    assert "  Statistics:\n    Images: 0\n    Videos: 0\n    Total: 0\n" in text


# -- upload ---------------------------------------------------------------------------------------------------------


def test_recursive_upload(logged_in: Cli, live_daemon: LiveDaemon, media: dict[str, Path]):
    result = logged_in("upload", "--recursive", "--no-progress", str(media_root(media)))
    done = summary(result)
    counts = (done.new, done.duplicates, done.uploaded, done.skipped, done.failed)
    assert counts == (3, 0, 3, 0, []), output(result)
    assert_uploaded(live_daemon, media)
    info = succeeded(logged_in("server-info"))
    assert "  Statistics:\n    Images: 2\n    Videos: 1\n    Total: 3\n" in info


def test_second_upload_reports_duplicates(logged_in: Cli, live_daemon: LiveDaemon, media: dict[str, Path]):
    first = summary(logged_in("upload", "--recursive", "--no-progress", str(media_root(media))))
    assert (first.new, first.uploaded, first.failed) == (3, 3, [])
    before = assert_uploaded(live_daemon, media)
    result = logged_in("upload", "--recursive", "--no-progress", str(media_root(media)))
    again = summary(result)
    assert (again.new, again.duplicates, again.uploaded, again.failed) == (0, 3, 0, []), output(result)
    assert "All assets were already uploaded, nothing to do." in result.stdout
    after = assert_uploaded(live_daemon, media)
    assert {name: asset["id"] for name, asset in after.items()} == {n: a["id"] for n, a in before.items()}
    # --skip-hash skips the bulk check: every upload is then answered with status 'duplicate' and counted as skipped
    result = logged_in("upload", "--recursive", "--no-progress", "--skip-hash", str(media_root(media)))
    text = succeeded(result)
    assert "Successfully uploaded 0 new assets" in text, output(result)
    assert re.search(r"^Skipped 3 duplicate assets \(", text, re.M), output(result)
    assert "Failed to upload" not in text, output(result)
    assert_uploaded(live_daemon, media)


def albums(daemon: LiveDaemon) -> dict[str, dict]:
    """The admin's albums by name (GET /api/albums, then GET /api/albums/{id} with its assets)."""
    with daemon.client() as client:
        listed = client.get("/api/albums")
        assert listed.status_code == 200, listed.text
        names = [album["albumName"] for album in listed.json()]
        assert len(names) == len(set(names)), f"duplicate album names: {names}"
        found = {}
        for album in listed.json():
            full = client.get(f"/api/albums/{album['id']}")
            assert full.status_code == 200, full.text
            found[album["albumName"]] = full.json()
    return found


def member_names(album: dict) -> set[str]:
    return {asset["originalFileName"] for asset in album["assets"]}


def test_upload_into_a_named_album(logged_in: Cli, live_daemon: LiveDaemon, media: dict[str, Path]):
    result = logged_in("upload", "--recursive", "--no-progress", "-A", "Summer 2024", str(media_root(media)))
    done = summary(result)
    assert (done.new, done.uploaded, done.failed) == (3, 3, []), output(result)
    assert "Successfully created 1 new album" in result.stdout, output(result)
    uploaded = assert_uploaded(live_daemon, media)
    found = albums(live_daemon)
    assert list(found) == ["Summer 2024"]
    album = found["Summer 2024"]
    assert album["assetCount"] == 3 and member_names(album) == set(media)
    assert {asset["id"] for asset in album["assets"]} == {asset["id"] for asset in uploaded.values()}
    assert album["albumThumbnailAssetId"] in {asset["id"] for asset in uploaded.values()}
    assert album["ownerId"] == live_daemon.admin["id"] and album["shared"] is False

    # Again into the same album: found by its exact name (no second album), the duplicates re-added harmlessly.
    result = logged_in("upload", "--recursive", "--no-progress", "-A", "Summer 2024", str(media_root(media)))
    again = summary(result)
    assert (again.new, again.duplicates, again.failed) == (0, 3, []), output(result)
    assert "Successfully created 0 new albums" in result.stdout, output(result)
    # Into another album: duplicates are added to albums too.
    result = logged_in(
        "upload", "--recursive", "--no-progress", "--album-name", "Best of", str(media_root(media))
    )
    assert summary(result).duplicates == 3, output(result)
    found = albums(live_daemon)
    assert sorted(found) == ["Best of", "Summer 2024"]
    for album in found.values():
        assert album["assetCount"] == 3 and member_names(album) == set(media)
    assert_uploaded(live_daemon, media)


def test_upload_with_an_album_per_folder(logged_in: Cli, live_daemon: LiveDaemon, tmp_path: Path):
    root = tmp_path / "Trips"
    media = {
        "IMG_0001.jpg": set_time(jpeg(root / "Beach" / "IMG_0001.jpg")),
        "shot.png": set_time(png(root / "Beach" / "shot.png")),
        "clip.mp4": set_time(video(root / "Mountains" / "clip.mp4")),
    }
    result = logged_in("upload", "--recursive", "--no-progress", "--album", str(root))
    done = summary(result)
    assert (done.new, done.uploaded, done.failed) == (3, 3, []), output(result)
    assert "Successfully created 2 new albums" in result.stdout, output(result)
    assert_uploaded(live_daemon, media)
    found = albums(live_daemon)
    assert sorted(found) == ["Beach", "Mountains"]
    assert member_names(found["Beach"]) == {"IMG_0001.jpg", "shot.png"} and found["Beach"]["assetCount"] == 2
    assert member_names(found["Mountains"]) == {"clip.mp4"} and found["Mountains"]["assetCount"] == 1
