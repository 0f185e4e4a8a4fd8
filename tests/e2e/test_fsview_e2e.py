"""The FUSE view with real clients: `filmroll serve --mount` in a child process (one pyfuse3 mount per process),
read with coreutils, rsync, Python and Samba. The mount is always lazily unmounted in teardown, even when a test
failed half-way.

One daemon serves the module's read-only tests (uploads once); tests that change things use their own album names.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.live_daemon import LiveDaemon, originals_changed, running_daemon, start_daemon, wait_for
from tests.media_files import jpeg

MTIME = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()
LIVE_BUDGET = 1.0  # "shows up in a listing within a second"

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")


def unmount(mountpoint: Path) -> None:
    subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, check=False)


@dataclass
class Mounted:
    daemon: LiveDaemon
    mount: Path
    sources: dict[str, Path]  # asset id -> the file that was uploaded
    album_id: str

    @property
    def user(self) -> Path:
        return self.mount / "admin"  # the first admin gets the storage label `admin`

    def api(self, method: str, url: str, **kwargs) -> dict | list | None:
        with self.daemon.client() as client:
            reply = client.request(method, url, **kwargs)
        assert reply.status_code < 300, reply.text
        return reply.json() if reply.content else None


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def within(budget: float, check: Callable[[], bool], what: str) -> float:
    """Poll `check` until true; fail unless that happened within `budget` seconds. Returns the time it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > budget:
            raise AssertionError(f"{what}: not seen within {budget} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounted]:
    root = tmp_path_factory.mktemp("fsview")
    mount = root / "mnt"
    mount.mkdir()
    media = root / "media"
    files = [
        jpeg(media / "a" / "IMG_0001.jpg", (640, 480), taken="2021:03:04 05:06:07"),
        jpeg(media / "b" / "IMG_0001.jpg", (480, 640), taken="2021:03:05 05:06:07"),  # the same name again
        jpeg(media / "big.jpg", (2400, 1800), taken="2020:12:31 23:00:00"),
    ]
    (media / "raw.jpg").write_bytes(
        open(files[2], "rb").read() + os.urandom(3 << 20)
    )  # 3 MiB+, not a photo's
    for file in files:
        os.utime(file, (MTIME, MTIME))
    try:
        with running_daemon(root / "daemon", FILMROLL_MOUNT=str(mount)) as daemon:
            wait_for(lambda: os.path.ismount(mount), "the mount")
            sources = {}
            for file in files:
                reply = daemon.upload(file)
                assert reply.status_code == 201, reply.text
                sources[reply.json()["id"]] = file
            with daemon.client() as client:
                album = client.post(
                    "/api/albums", json={"albumName": "Trip / 2021", "assetIds": list(sources)}
                )
            assert album.status_code == 201, album.text
            yield Mounted(daemon, mount, sources, album.json()["id"])
        assert not os.path.ismount(mount), "a clean shutdown unmounts"
    finally:
        unmount(mount)


def album_folder(mounted: Mounted) -> Path:
    return mounted.user / "albums" / "Trip \u2215 2021"


def test_tree_layout_and_names(mounted: Mounted):
    assert sorted(os.listdir(mounted.mount)) == ["admin"]
    assert sorted(os.listdir(mounted.user)) == ["albums", "favorites", "libraries", "timeline"]
    names = sorted(os.listdir(album_folder(mounted)))
    assert len(names) == 3 and "big.jpg" in names and "IMG_0001.jpg" in names
    (suffixed,) = [name for name in names if name.startswith("IMG_0001 (")]
    assert suffixed.endswith(").jpg")
    walked = {
        os.path.relpath(os.path.join(folder, name), mounted.user)
        for folder, _, files in os.walk(mounted.user)
        for name in files
    }
    assert {f"albums/Trip \u2215 2021/{name}" for name in names} <= walked
    assert any(path.startswith("timeline/2021/03/") for path in walked)
    assert any(path.startswith("libraries/Default Library/") for path in walked)


def test_ls_find_stat(mounted: Mounted):
    listing = subprocess.run(["ls", "-lR", str(mounted.mount)], capture_output=True, text=True, check=True)
    assert "big.jpg" in listing.stdout
    found = subprocess.run(
        ["find", str(mounted.mount), "-type", "f"], capture_output=True, text=True, check=True
    )
    assert sum(1 for line in found.stdout.splitlines() if "/albums/" in line) == 3
    for asset_id, source in mounted.sources.items():
        asset = mounted.api("GET", f"/api/assets/{asset_id}")
        (shown,) = [
            album_folder(mounted) / name
            for name in os.listdir(album_folder(mounted))
            if os.getxattr(album_folder(mounted) / name, "user.filmroll.id").decode() == asset_id
        ]
        facts = os.stat(shown)
        assert facts.st_size == source.stat().st_size
        assert facts.st_mtime == datetime.fromisoformat(asset["fileModifiedAt"]).timestamp()
        assert os.getxattr(shown, "user.filmroll.checksum").decode() == asset["checksum"]
        statted = subprocess.run(
            ["stat", "-c", "%s %Y", str(shown)], capture_output=True, text=True, check=True
        )
        assert statted.stdout.split() == [str(facts.st_size), str(int(facts.st_mtime))]


def _same_tree(original: Path, copy: Path, *, mtimes: bool) -> None:
    names = sorted(os.listdir(original))
    assert sorted(os.listdir(copy)) == names
    for name in names:
        assert sha1(copy / name) == sha1(original / name)
        assert (copy / name).stat().st_size == (original / name).stat().st_size
        if mtimes:
            assert (copy / name).stat().st_mtime_ns == (original / name).stat().st_mtime_ns


def test_cp_and_rsync_make_identical_copies(mounted: Mounted, tmp_path: Path):
    album = album_folder(mounted)
    subprocess.run(["cp", "-r", str(album), str(tmp_path / "cp")], check=True)
    _same_tree(album, tmp_path / "cp", mtimes=False)
    subprocess.run(["rsync", "-a", f"{album}/", str(tmp_path / "rsync")], check=True)
    _same_tree(album, tmp_path / "rsync", mtimes=True)
    for asset_id, source in mounted.sources.items():  # and the copies are the uploaded originals
        assert any(sha1(copy) == sha1(source) for copy in (tmp_path / "rsync").iterdir()), asset_id
    # a second rsync finds nothing to do (sizes and mtimes are stable)
    again = subprocess.run(
        ["rsync", "-ai", f"{album}/", str(tmp_path / "rsync")], capture_output=True, text=True
    )
    assert again.returncode == 0 and again.stdout.strip() == ""


def test_big_sequential_read(mounted: Mounted, tmp_path: Path):
    raw = mounted.daemon.data_dir.parent.parent / "media" / "raw.jpg"
    reply = mounted.daemon.upload(raw)
    assert reply.status_code == 201, reply.text
    asset = mounted.api("GET", f"/api/assets/{reply.json()['id']}")
    month = datetime.fromisoformat(asset["localDateTime"])
    folder = mounted.user / "timeline" / f"{month.year:04d}" / f"{month.month:02d}"
    wait_for(lambda: folder.is_dir() and "raw.jpg" in os.listdir(folder), "raw.jpg in the timeline", 5)
    assert sha1(folder / "raw.jpg") == sha1(raw)
    with open(folder / "raw.jpg", "rb") as stream:  # pread at odd offsets
        stream.seek(1_000_001)
        assert stream.read(70_000) == raw.read_bytes()[1_000_001:1_070_001]


def test_writes_answer_erofs(mounted: Mounted):
    album = album_folder(mounted)
    target = album / sorted(os.listdir(album))[0]
    attempts = [
        lambda: open(target, "r+b"),
        lambda: open(album / "new.jpg", "wb"),
        lambda: os.mkdir(album / "new"),
        lambda: os.unlink(target),
        lambda: os.rmdir(album),
        lambda: os.rename(target, album / "renamed.jpg"),
        lambda: os.symlink("x", album / "link"),
        lambda: os.link(target, album / "hard"),
        lambda: os.chmod(target, 0o644),
        lambda: os.utime(target, (0, 0)),
        lambda: os.truncate(target, 0),
        lambda: os.setxattr(target, "user.filmroll.id", b"x"),
        lambda: os.removexattr(target, "user.filmroll.id"),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as raised:
            attempt()
        assert raised.value.errno == errno.EROFS, raised.value
    assert not os.access(target, os.W_OK)


def test_xattrs(mounted: Mounted):
    album = album_folder(mounted)
    assert os.getxattr(album, "user.filmroll.id").decode() == mounted.album_id
    for name in os.listdir(album):
        assert set(os.listxattr(album / name)) == {"user.filmroll.id", "user.filmroll.checksum"}
    with pytest.raises(OSError) as raised:
        os.getxattr(album / name, "user.other")
    assert raised.value.errno == errno.ENODATA
    assert os.listxattr(mounted.user) == []


def test_live_updates_show_within_a_second(mounted: Mounted):
    albums = mounted.user / "albums"
    asset_ids = list(mounted.sources)
    created = mounted.api("POST", "/api/albums", json={"albumName": "Live", "assetIds": asset_ids[:1]})
    took = [within(LIVE_BUDGET, lambda: "Live" in os.listdir(albums), "a created album")]
    assert len(os.listdir(albums / "Live")) == 1
    mounted.api("PUT", f"/api/albums/{created['id']}/assets", json={"ids": asset_ids[1:]})
    took.append(within(LIVE_BUDGET, lambda: len(os.listdir(albums / "Live")) == 3, "added assets"))
    mounted.api("DELETE", f"/api/albums/{created['id']}/assets", json={"ids": asset_ids[1:2]})
    took.append(within(LIVE_BUDGET, lambda: len(os.listdir(albums / "Live")) == 2, "a removed asset"))
    mounted.api("PATCH", f"/api/albums/{created['id']}", json={"albumName": "Live/renamed"})
    took.append(
        within(LIVE_BUDGET, lambda: "Live\u2215renamed" in os.listdir(albums) and not (albums / "Live").exists(),
               "a renamed album")
    )  # fmt: skip
    mounted.api("DELETE", f"/api/albums/{created['id']}")
    took.append(within(LIVE_BUDGET, lambda: not (albums / "Live\u2215renamed").exists(), "a deleted album"))
    # favourites and the trash
    favorite = asset_ids[0]
    mounted.api("PUT", "/api/assets", json={"ids": [favorite], "isFavorite": True})
    took.append(within(LIVE_BUDGET, lambda: len(os.listdir(mounted.user / "favorites")) == 1, "a favourite"))
    mounted.api("PUT", "/api/assets", json={"ids": [favorite], "isFavorite": False})
    took.append(within(LIVE_BUDGET, lambda: os.listdir(mounted.user / "favorites") == [], "an unfavourite"))
    print("live update latencies (s):", [round(t, 3) for t in took])


def test_a_vanished_original_is_an_error_not_a_dead_mount(mounted: Mounted, tmp_path: Path):
    source = tmp_path / "doomed.jpg"
    jpeg(source, (100, 100))
    reply = mounted.daemon.upload(source)
    assert reply.status_code == 201, reply.text
    asset_id = reply.json()["id"]
    mounted.api("POST", "/api/albums", json={"albumName": "Doomed", "assetIds": [asset_id]})
    folder = mounted.user / "albums" / "Doomed"
    wait_for(lambda: folder.is_dir() and os.listdir(folder) == ["doomed.jpg"], "the doomed album", 5)
    stored = wait_for(lambda: _stored_path(mounted, asset_id), "the stored original", 30)
    originals_changed(stored)
    os.remove(stored)
    with pytest.raises(OSError) as raised:
        (folder / "doomed.jpg").read_bytes()
    assert raised.value.errno in (errno.ENOENT, errno.EIO)
    assert os.listdir(album_folder(mounted))  # the mount lives on
    assert any(
        "cannot open the original" in line and asset_id in line
        for line in mounted.daemon.log.read_text().splitlines()
    )


def _stored_path(mounted: Mounted, asset_id: str) -> Path | None:
    asset = mounted.api("GET", f"/api/assets/{asset_id}")
    path = Path(asset["originalPath"])
    if not path.is_absolute():
        path = mounted.daemon.data_dir / path
    return path if path.exists() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SMB_CONF = """[global]
  smb ports = {port}
  bind interfaces only = yes
  interfaces = lo
  pid directory = {state}/run
  lock directory = {state}/lock
  state directory = {state}/state
  cache directory = {state}/cache
  private dir = {state}/private
  ncalrpc dir = {state}/ncalrpc
  log file = {state}/log.%m
  passdb backend = tdbsam:{state}/private/passdb.tdb
  server role = standalone server
  map to guest = Bad User
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes
  server min protocol = SMB2
[photos]
  path = {share}
  read only = yes
  guest ok = yes
  force user = root
"""


@pytest.mark.skipif(shutil.which("smbd") is None or os.getuid() != 0, reason="needs samba and root")
def test_samba_shares_the_mount(mounted: Mounted, tmp_path: Path):
    state = tmp_path / "samba"
    for folder in ("run", "lock", "state", "cache", "private", "ncalrpc"):
        (state / folder).mkdir(parents=True)
    port = _free_port()
    conf = tmp_path / "smb.conf"
    conf.write_text(SMB_CONF.format(port=port, state=state, share=mounted.mount))
    with open(tmp_path / "smbd.log", "w") as log:
        # its own session: on shutdown smbd signals its whole process group, which must not be pytest's
        smbd = subprocess.Popen(
            ["smbd", "-F", "--no-process-group", "--debug-stdout", "-s", str(conf)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:

        def smbclient(command: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["smbclient", "//127.0.0.1/photos", "-p", str(port), "-N", "-s", str(conf), "-c", command],
                capture_output=True, text=True, timeout=60, cwd=tmp_path,
            )  # fmt: skip

        wait_for(lambda: smbclient("ls").returncode == 0, "smbd to answer", 30)
        listing = smbclient("cd admin/albums; ls")
        assert "Trip \u2215 2021" in listing.stdout or "Trip" in listing.stdout, (
            listing.stdout + listing.stderr
        )
        album = album_folder(mounted)
        inside = smbclient(f'cd "admin/albums/{album.name}"; ls')
        assert inside.returncode == 0 and "big.jpg" in inside.stdout, inside.stdout + inside.stderr
        got = smbclient(f'cd "admin/albums/{album.name}"; get big.jpg fetched.jpg')
        assert got.returncode == 0, got.stdout + got.stderr
        assert sha1(tmp_path / "fetched.jpg") == sha1(album / "big.jpg")
    finally:
        smbd.send_signal(signal.SIGTERM)
        try:
            smbd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            smbd.kill()
            smbd.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(smbd.pid, signal.SIGKILL)  # any smbd child left in its group


def test_a_crash_leaves_the_mount_in_place(tmp_path: Path):
    """SIGKILL: nothing unmounts, so the mount point answers ENOTCONN instead of looking like an empty folder."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    process, _ = start_daemon(tmp_path / "data", tmp_path / "daemon.log", FILMROLL_MOUNT=str(mount))
    try:
        wait_for(lambda: os.path.ismount(mount), "the mount")
        process.send_signal(signal.SIGKILL)
        process.wait()
        with pytest.raises(OSError) as raised:
            os.listdir(mount)
        assert raised.value.errno == errno.ENOTCONN
        # a restart (systemd's Restart=on-failure) detaches the dead view and mounts again
        process, _ = start_daemon(tmp_path / "data", tmp_path / "restart.log", FILMROLL_MOUNT=str(mount))
        wait_for(lambda: os.path.ismount(mount) and os.listdir(mount) is not None, "the mount again")
        assert "detaching it" in (tmp_path / "restart.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        unmount(mount)
