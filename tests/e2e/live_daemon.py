"""The real `filmroll serve` as a child process on 127.0.0.1, with an admin and an API key: what the official Immich
clients talk to in tests/e2e/test_immich_cli.py and tests/e2e/test_aioimmich.py.

`running_daemon(root)` is a context manager; each test module wraps it in a `live_daemon` fixture with a fresh data
directory per test. On the way out the daemon must stop cleanly on SIGTERM, must not have logged an error,
`filmroll check` must find its index consistent, and every upload original must still hold the bytes it was
accepted with (`uploads_untouched`).

Originals untouched (issue 10): `Originals` fingerprints (SHA-1, size, mtime, ctime, inode, mode, owner) every
original — a media file or sidecar outside the daemons' data directories — under the test's temporary folders, and
later compares. tests/conftest.py installs one for every test; it records whenever a daemon is involved: when
`start_daemon` starts one (the folder of its data directory), before the test body if one is running, and when
the test hands files over (`LiveDaemon.upload`, or `record_originals()` in a client helper). A test that ran a
daemon and recorded nothing fails unless it is marked `no_originals`. A test that changes originals on purpose
declares them with `originals_changed(path)` first; tests/conftest.py's `GUARD_EXCEPTIONS` names the tests of other
files that cannot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx

from daemon import media_types
from daemon.index import ASSETS, LIBRARIES, Index

FILMROLL = [sys.executable, "-m", "daemon.cli"]
ADMIN = {"email": "admin@example.com", "password": "admin-password", "name": "Admin"}
T = TypeVar("T")


# -- originals untouched ------------------------------------------------------------------------------------------

ORIGINAL_SUFFIXES = (
    media_types.IMAGE_EXTENSIONS
    | media_types.RAW_EXTENSIONS
    | media_types.VIDEO_EXTENSIONS
    | media_types.SIDECAR_EXTENSIONS
)


@dataclass(frozen=True)
class Fingerprint:
    sha1: str
    size: int
    mtime_ns: int
    ctime_ns: int  # chmod, chown, xattrs and links change it; reading does not
    inode: int  # replaced by a rename, even with the same bytes and mtime
    mode: int
    uid: int
    gid: int


def _under(path: bytes, folders: set[bytes]) -> bool:
    return any(path == folder or path.startswith(folder + b"/") for folder in folders)


class Originals:
    """Fingerprints of the originals under the test's folders (below `basetemp`, pytest's temporary root), taken
    before the daemon sees them and compared afterwards. Data directories are the daemon's own and are left out
    (their uploads are checked by `uploads_untouched`); so are mount points (a FUSE view is not an original)."""

    def __init__(self, basetemp: Path):
        self.basetemp = os.fsencode(basetemp.resolve())
        self.recorded: dict[bytes, Fingerprint] = {}
        self.daemons = 0  # daemons the test started or talked to (a daemon and nothing recorded: a mistake)
        self._hashes: dict[tuple[int, ...], str] = {}  # hard links and rescans are hashed once

    def root_of(self, path: Path) -> Path | None:
        """The test's temporary folder that holds `path` (a direct child of basetemp), or None."""
        resolved = os.fsencode(Path(path).resolve())
        if not resolved.startswith(self.basetemp + b"/"):
            return None
        return Path(
            os.fsdecode(os.path.join(self.basetemp, resolved[len(self.basetemp) + 1 :].split(b"/")[0]))
        )

    def record(self, *paths: Path) -> None:
        """Fingerprint every original under `paths` (files or folders) not recorded yet."""
        for path in paths:
            top = os.fsencode(Path(path).resolve())
            if os.path.isfile(top):
                self._record_file(top)
                continue
            for folder, folders, files in os.walk(top):
                folders[:] = [
                    name for name in folders
                    if not os.path.ismount(os.path.join(folder, name))
                    and not _under(os.path.join(folder, name), _DATA_DIRS)
                ]  # fmt: skip
                for name in files:
                    self._record_file(os.path.join(folder, name))

    def _record_file(self, path: bytes) -> None:
        if path in self.recorded or _under(path, _DATA_DIRS) or _under(path, _CHANGED):
            return
        if media_types.extension(path) not in ORIGINAL_SUFFIXES:
            return
        fingerprint = self._fingerprint(path)
        if fingerprint is not None:
            self.recorded[path] = fingerprint

    def _fingerprint(self, path: bytes) -> Fingerprint | None:
        try:
            facts = os.lstat(path)
            if not stat.S_ISREG(facts.st_mode):
                return None
            key = (facts.st_dev, facts.st_ino, facts.st_size, facts.st_mtime_ns, facts.st_ctime_ns)
            if key not in self._hashes:
                with open(path, "rb") as stream:
                    self._hashes[key] = hashlib.file_digest(stream, "sha1").hexdigest()
        except FileNotFoundError:
            return None
        return Fingerprint(
            self._hashes[key], facts.st_size, facts.st_mtime_ns, facts.st_ctime_ns, facts.st_ino,
            stat.S_IMODE(facts.st_mode), facts.st_uid, facts.st_gid,
        )  # fmt: skip

    def differences(self, allow_gone: bool = False) -> list[str]:
        """Every recorded original that is gone (unless `allow_gone`) or differs now, unless the test declared it
        changed."""
        found = []
        for path, before in self.recorded.items():
            if _under(path, _DATA_DIRS) or _under(path, _CHANGED):
                continue
            now = self._fingerprint(path)
            if now != before and not (now is None and allow_gone):
                found.append(f"{os.fsdecode(path)!r}: {before} -> {now or 'gone'}")
        return found


_active: Originals | None = None
_DATA_DIRS: set[bytes] = set()  # every data directory a daemon was started with (its own files)
_CHANGED: set[bytes] = set()  # files and folders the tests changed on purpose
_running: dict[int, tuple[subprocess.Popen, Path]] = {}  # pid -> a started daemon and its data directory


def install_originals(guard: Originals | None) -> None:
    """Make `guard` the one `start_daemon` and `LiveDaemon.upload` record into (None: none)."""
    global _active
    _active = guard


def record_originals(*paths: Path) -> None:
    """Fingerprint the originals under `paths` now (before a daemon sees them), if a guard is installed; with no
    `paths`, those under the temporary folders of the running daemons (where a test makes the files it hands to
    its daemon): what a helper that hands files to a daemon calls first."""
    if _active is not None:
        _active.record(*(paths or running_roots()))


def running_roots() -> list[Path]:
    """The temporary folders of the daemons still running (module-scoped ones serve many tests)."""
    if _active is None:
        return []
    alive = [data_dir for process, data_dir in _running.values() if process.poll() is None]
    return [root for data_dir in alive if (root := _active.root_of(data_dir)) is not None]


def originals_changed(*paths: Path) -> None:
    """Declare files (or folders) that the test itself changes, moves or deletes: the guards skip them."""
    _CHANGED.update(os.fsencode(Path(path).resolve()) for path in paths)


def uploads_untouched(data_dir: Path) -> list[str]:
    """Every upload original (in an upload library, trashed or not) still holds the bytes it was accepted with:
    its SHA-1 is the checksum recorded at the 201. Run on a stopped daemon's index."""
    found = []
    with Index(data_dir / "index", readonly=True) as index, index.read() as txn:
        uploads = {library.id for library in txn.values(LIBRARIES) if library.type == "UPLOAD"}
        for asset in txn.values(ASSETS):
            if asset.library_id not in uploads:
                continue
            path = os.path.join(os.fsencode(data_dir), asset.original_path)  # absolute paths stay absolute
            if _under(os.fsencode(Path(os.fsdecode(path)).resolve()), _CHANGED):
                continue
            try:
                with open(path, "rb") as stream:
                    digest = hashlib.file_digest(stream, "sha1").digest()
            except FileNotFoundError:
                found.append(f"upload {asset.id}: {os.fsdecode(path)!r} is gone")
                continue
            if digest != asset.content_sha1:
                found.append(f"upload {asset.id}: {os.fsdecode(path)!r} no longer holds the uploaded bytes")
    return found


def start_daemon(data_dir: Path, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """`filmroll serve` on a free port of 127.0.0.1, JSON logs to `log` (a file, so the daemon never blocks on a
    pipe); returns once it logs `listening on <url>`. Watching and the nightly scan are off unless `env` turns
    them on: these tests decide when anything happens. Originals that exist now are fingerprinted (`Originals`)."""
    _DATA_DIRS.add(os.fsencode(Path(data_dir).resolve()))
    if _active is not None:
        _active.daemons += 1
        if (root := _active.root_of(data_dir)) is not None:
            _active.record(root)
    environ = {
        **os.environ,
        "FILMROLL_LOG_FORMAT": "json",
        "FILMROLL_LIBRARY__WATCH__ENABLED": "false",
        "FILMROLL_LIBRARY__SCAN__ENABLED": "false",
        **env,
    }
    with open(log, "w") as stream:
        process = subprocess.Popen(
            [*FILMROLL, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stream, env=environ,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        for entry in log_entries(log):
            if entry.get("message", "").startswith("listening on "):
                _running[process.pid] = (process, data_dir)
                return process, entry["url"]
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise AssertionError(f"daemon did not start (exit code {process.poll()}): {log.read_text()}")


def log_entries(log: Path) -> list[dict]:
    entries = []
    for line in log.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line still being written, or a stray print
            continue
    return entries


def wait_for(check: Callable[[], T], what: str, timeout: float = 60.0, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def sha1_base64(path: Path) -> str:
    return base64.b64encode(hashlib.sha1(path.read_bytes()).digest()).decode()


def iso_utc(seconds: float) -> str:
    """Timestamps as the API writes them: `2024-01-01T00:00:00.000Z`."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class LiveDaemon:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    port: int
    api_key: str  # an API key of the admin with permissions ["all"]
    admin: dict  # GET /api/users/me of the admin
    token: str  # the admin's login token
    data_dir: Path
    log: Path
    process: subprocess.Popen

    def client(self, api_key: str | None = None) -> httpx.Client:
        """An HTTP client authenticated with the admin's API key (or `api_key`), never through a proxy."""
        return httpx.Client(
            base_url=self.url, headers={"x-api-key": api_key or self.api_key}, timeout=60, trust_env=False
        )

    def create_api_key(self, permissions: list[str], name: str = "scoped") -> str:
        with httpx.Client(base_url=self.url, timeout=60, trust_env=False) as client:
            reply = client.post(
                "/api/api-keys",
                json={"name": name, "permissions": permissions},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        assert reply.status_code == 201, reply.text
        return reply.json()["secret"]

    def create_user(self, email: str, name: str, password: str = "user-password") -> tuple[dict, str]:
        """A non-admin user and an API key of theirs (permissions ["all"])."""
        with httpx.Client(base_url=self.url, timeout=60, trust_env=False) as client:
            body = {"email": email, "password": password, "name": name}
            created = client.post(
                "/api/admin/users", json=body, headers={"Authorization": f"Bearer {self.token}"}
            )
            assert created.status_code == 201, created.text
            login = client.post("/api/auth/login", json={"email": email, "password": password})
            assert login.status_code == 201, login.text
            client.cookies.clear()
            key = client.post(
                "/api/api-keys",
                json={"name": "user key"},
                headers={"Authorization": f"Bearer {login.json()['accessToken']}"},
            )
            assert key.status_code == 201, key.text
        return created.json(), key.json()["secret"]

    def upload(self, path: Path, **parts: str) -> httpx.Response:
        """`POST /api/assets` as api-compat.md §7 describes it, with the file's mtime as both client times."""
        record_originals(path)
        mtime = iso_utc(path.stat().st_mtime)
        fields = {"fileCreatedAt": mtime, "fileModifiedAt": mtime, "isFavorite": "false", **parts}
        with self.client() as client, open(path, "rb") as stream:
            return client.post(
                "/api/assets",
                data=fields,
                files={"assetData": (path.name, stream, "application/octet-stream")},
            )

    def asset(self, asset_id: str) -> dict:
        with self.client() as client:
            reply = client.get(f"/api/assets/{asset_id}")
        assert reply.status_code == 200, reply.text
        return reply.json()

    def search(self, **filters: object) -> list[dict]:
        """Every asset that `POST /api/search/metadata` finds, all pages."""
        found: list[dict] = []
        with self.client() as client:
            page: object = 1
            while page is not None:
                reply = client.post("/api/search/metadata", json={**filters, "page": int(page), "size": 1000})
                assert reply.status_code == 200, reply.text
                assets = reply.json()["assets"]
                found.extend(assets["items"])
                page = assets["nextPage"]
        return found

    def wait_for_thumbnail(self, asset_id: str, timeout: float = 120.0) -> dict:
        """The asset once the daemon has rendered its thumbnail (`thumbhash` set)."""
        return wait_for(
            lambda: (asset := self.asset(asset_id))["thumbhash"] and asset,
            f"the thumbnail of {asset_id}",
            timeout,
        )


def sign_up(url: str) -> tuple[dict, str, str]:
    """Admin sign-up, login and an API key with every permission: (users/me, token, key secret)."""
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
        signed_up = client.post("/api/auth/admin-sign-up", json=ADMIN)
        assert signed_up.status_code == 201, signed_up.text
        login = client.post("/api/auth/login", json={"email": ADMIN["email"], "password": ADMIN["password"]})
        assert login.status_code == 201, login.text
        token = login.json()["accessToken"]
        client.cookies.clear()  # from here on only the key (or the explicit token) authenticates
        created = client.post(
            "/api/api-keys", json={"name": "e2e"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        me = client.get("/api/users/me", headers={"x-api-key": secret})
        assert me.status_code == 200, me.text
    return me.json(), token, secret


def stop_daemon(process: subprocess.Popen, data_dir: Path, log: Path) -> None:
    """SIGTERM, a clean exit, no error logged, a consistent index, and every upload original untouched."""
    _running.pop(process.pid, None)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the daemon did not stop within 30 s of SIGTERM") from None
    assert code == 0, f"daemon exit code {code}: {log.read_text()[-4000:]}"
    errors = [entry["message"] for entry in log_entries(log) if entry.get("level") in ("error", "critical")]
    assert not errors, f"the daemon logged errors: {errors}"
    check = subprocess.run(
        [*FILMROLL, "check", "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    changed = uploads_untouched(data_dir)
    assert not changed, "upload originals changed after their 201:\n" + "\n".join(changed)


@contextmanager
def running_daemon(root: Path, **env: str) -> Iterator[LiveDaemon]:
    """A signed-up daemon with its data in `root/data` and its log in `root/daemon.log`."""
    root.mkdir(parents=True, exist_ok=True)
    data_dir, log = root / "data", root / "daemon.log"
    process, url = start_daemon(data_dir, log, **env)
    try:
        admin, token, api_key = sign_up(url)
        port = int(url.rsplit(":", 1)[1])
        yield LiveDaemon(url, port, api_key, admin, token, data_dir, log, process)
    except BaseException:
        _running.pop(process.pid, None)
        if process.poll() is None:
            process.kill()
            process.wait()
        print(f"--- daemon log ({log}), last lines ---\n" + "\n".join(log.read_text().splitlines()[-40:]))
        raise
    stop_daemon(process, data_dir, log)
