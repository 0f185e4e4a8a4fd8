"""filmroll as a systemd service: the unit passes `systemd-analyze verify`, `install-service` lays out a root,
`filmroll serve` speaks the notify protocol to a socket the test binds (READY=1, STATUS=, WATCHDOG=1, STOPPING=1),
and SIGTERM in the middle of a scan stops it well within `TimeoutStopSec` with a consistent index."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.live_daemon import FILMROLL, log_entries, sign_up, start_daemon, stop_daemon
from tests.media_files import jpeg

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "filmroll.service"
DROP_IN = REPO / "systemd" / "filmroll.service.d" / "fsview.conf"
VENV_FILMROLL = Path(sys.executable).parent / "filmroll"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def timeout_stop_seconds() -> int:
    return int(re.search(r"^TimeoutStopSec=(\d+)$", UNIT.read_text(), re.MULTILINE).group(1))


# -- the unit ---------------------------------------------------------------------------------------------------


def verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )  # fmt: skip


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze missing (Debian's systemd package)")
@pytest.mark.parametrize("with_fsview", [False, True])
def test_unit_passes_systemd_analyze_verify(tmp_path, with_fsview):
    """Verified as installed, except ExecStart points at this virtualenv's filmroll (verify checks that it is an
    executable). Any warning (an unknown or misspelt key, a bad value) fails the test, not only errors."""
    unit = tmp_path / "filmroll.service"
    text, count = re.subn(
        r"^ExecStart=\S+", f"ExecStart={VENV_FILMROLL}", UNIT.read_text(), flags=re.MULTILINE
    )
    assert count == 1
    unit.write_text(text)
    if with_fsview:  # verify reads drop-ins from beside the unit
        (tmp_path / "filmroll.service.d").mkdir()
        shutil.copy(DROP_IN, tmp_path / "filmroll.service.d" / "fsview.conf")
    result = verify(unit)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # the checks are real: a misspelt key is reported
    unit.write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    assert "Unknown key" in verify(unit).stderr


def test_unit_declares_what_the_issue_asks():
    directives = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert directives["Type"] == "notify" and directives["NotifyAccess"] == "main"
    assert int(directives["WatchdogSec"]) > 0 and directives["Restart"] == "on-failure"
    assert directives["StateDirectory"] == directives["ConfigurationDirectory"] == "filmroll"
    assert directives["ProtectSystem"] == "strict" and directives["NoNewPrivileges"] == "yes"
    assert directives["PrivateTmp"] == "yes" and directives["CapabilityBoundingSet"] == "CAP_DAC_READ_SEARCH"
    fsview = DROP_IN.read_text()
    assert (
        "DeviceAllow=/dev/fuse rw" in fsview
        and "CAP_SYS_ADMIN" in fsview
        and "SystemCallFilter=@mount" in fsview
    )


def test_install_service_into_destdir(tmp_path):
    root = tmp_path / "root"
    result = subprocess.run(
        [*FILMROLL, "install-service", "--destdir", str(root), "--prefix", "/usr/local"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    unit = (root / "etc/systemd/system/filmroll.service").read_text()
    assert "ExecStart=/usr/local/bin/filmroll serve" in unit
    config = root / "etc/filmroll/config.toml"
    assert config.read_text() == (REPO / "systemd/config.example.toml").read_text()
    assert not (root / "etc/systemd/system/filmroll.service.d").exists()  # no mount point configured
    wrapper = root / "usr/local/bin/filmroll"
    assert os.access(wrapper, os.X_OK)
    environ = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "CONFIGURATION_DIRECTORY")}
    ran = subprocess.run([str(wrapper), "--version"], capture_output=True, text=True, env=environ, timeout=60)
    assert ran.returncode == 0 and ran.stdout.startswith("filmroll "), ran.stderr
    # the wrapper's defaults are the service's: a command in a root shell acts on /var/lib/filmroll
    shown = subprocess.run(
        ["sh", "-c", f"sed 's#^exec .*#echo $STATE_DIRECTORY $CONFIGURATION_DIRECTORY#' {wrapper} | sh"],
        capture_output=True, text=True, env=environ, timeout=60,
    )  # fmt: skip
    assert shown.stdout.split() == ["/var/lib/filmroll", "/etc/filmroll"]

    # a second install keeps the edited config; a config with a mount point brings the FUSE drop-in
    config.write_text('mount = "/srv/albums"\n')
    again = subprocess.run(
        [*FILMROLL, "install-service", "--destdir", str(root)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert config.read_text() == 'mount = "/srv/albums"\n' and "kept" in again.stdout
    assert (root / "etc/systemd/system/filmroll.service.d/fsview.conf").read_text() == DROP_IN.read_text()


def test_make_install_uses_destdir(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make missing")
    result = subprocess.run(
        ["make", "-s", "install-files", f"DESTDIR={tmp_path}", "PREFIX=/opt/fr"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "ExecStart=/opt/fr/bin/filmroll serve"
        in (tmp_path / "etc/systemd/system/filmroll.service").read_text()
    )
    assert (tmp_path / "opt/fr/bin/filmroll").exists() and (tmp_path / "etc/filmroll/config.toml").exists()


# -- the notify protocol, end to end ---------------------------------------------------------------------------


class NotifySocket:
    """What systemd does: bind a datagram socket, hand its path to the daemon, read what it says."""

    def __init__(self, path: Path):
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def read(self, timeout: float) -> None:
        self.socket.settimeout(timeout)
        try:
            while True:
                for line in self.socket.recv(65536).decode().split("\n"):
                    self.messages.append((time.monotonic(), line))
                self.socket.settimeout(0.01)
        except (TimeoutError, BlockingIOError):
            return

    def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.read(max(0.01, min(0.1, deadline - time.monotonic())))

    def wait_for(self, predicate, what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            self.read(0.2)
            for _, line in self.messages[seen:]:
                if predicate(line):
                    return line
            seen = len(self.messages)
        raise AssertionError(f"no {what} in {[line for _, line in self.messages]}")

    def lines(self, prefix: str) -> list[str]:
        return [line for _, line in self.messages if line.startswith(prefix)]

    def close(self) -> None:
        self.socket.close()


def test_notify_ready_status_watchdog_and_stopping(tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    log, data = tmp_path / "daemon.log", tmp_path / "data"
    # WATCHDOG_PID is what systemd sets; the test cannot know the pid in advance, so leaves it out (allowed)
    process, url = start_daemon(data, log, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")
    try:
        ready = notify.wait_for(lambda line: line == "READY=1", "READY=1")
        assert ready
        # READY=1 only once HTTP answers: the same datagram carried where it listens
        assert f"STATUS=ready: listening on {url}" in notify.lines("STATUS=")
        assert httpx.get(url + "/api/server/ping", trust_env=False).json() == {"res": "pong"}
        statuses = notify.lines("STATUS=")
        assert statuses[0].startswith("STATUS=opening the index in ")
        notify.wait_for(lambda line: line == "STATUS=idle", "the idle status")
        first = len(notify.lines("WATCHDOG=1"))
        notify.collect(2.0)
        pings = [moment for moment, line in notify.messages if line == "WATCHDOG=1"]
        assert len(pings) - first >= 3, "pings every 0.5 s (half of WATCHDOG_USEC)"
        gaps = [later - earlier for earlier, later in itertools.pairwise(pings[first:])]  # read as they come
        assert max(gaps) < 0.9, gaps
        # worker processes do not inherit the socket (NotifyAccess=main would ignore them anyway)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        for child in children:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            assert not any(entry.startswith((b"NOTIFY_SOCKET=", b"WATCHDOG_USEC=")) for entry in environ)
        process.send_signal(signal.SIGTERM)
        notify.wait_for(lambda line: line == "STOPPING=1", "STOPPING=1", timeout=30)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()
    stop_daemon(process, data, log)


# -- SIGTERM in the middle of a scan -----------------------------------------------------------------------------


def test_sigterm_mid_scan_stops_within_timeout_with_a_consistent_index(tmp_path):
    files = 5000
    photos = tmp_path / "external" / "photos"
    original = jpeg(tmp_path / "original.jpg", (64, 48))
    for number in range(files):  # hard links: a real library's shape in no time and no space
        folder = photos / f"{number // 200:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        os.link(original, folder / f"IMG_{number:05d}.jpg")
    notify = NotifySocket(tmp_path / "notify")
    log, data = tmp_path / "daemon.log", tmp_path / "data"
    process, url = start_daemon(data, log, NOTIFY_SOCKET=str(notify.path))
    try:
        admin, token, _ = sign_up(url)
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False
        )
        reply = client.put(
            f"/api/admin/users/{admin['id']}", json={"externalPath": str(tmp_path / "external")}
        )
        assert reply.status_code == 200, reply.text
        library = client.post("/api/libraries", json={"importPaths": [str(photos)]}).json()
        assert client.post(f"/api/libraries/{library['id']}/scan", json={}).status_code == 204
        notify.wait_for(lambda line: line.startswith("STATUS=scanning library"), "a scanning status", 30)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=timeout_stop_seconds())
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()
    assert code == 0, log.read_text()[-3000:]
    assert took < timeout_stop_seconds() / 2, f"stopped in {took:.1f} s"
    messages = [entry["message"] for entry in log_entries(log)]
    signal_at = next(i for i, message in enumerate(messages) if message.startswith("received SIGTERM"))
    assert not any(m.startswith("scanned library") for m in messages[:signal_at]), "the scan had finished"
    print(f"stopped {took:.2f} s after SIGTERM, mid-scan")
    stop_daemon(process, data, log)  # exit 0 again, no error logged, `filmroll check` clean
    # and the next start finishes the job: every file imported once
    process, url = start_daemon(data, log)
    try:
        admin, token = (
            None,
            httpx.post(
                url + "/api/auth/login", json={"email": "admin@example.com", "password": "admin-password"}
            ).json()["accessToken"],
        )
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False
        )
        assert client.post(f"/api/libraries/{library['id']}/scan", json={}).status_code == 204
        deadline = time.monotonic() + 120
        while client.get(f"/api/libraries/{library['id']}").json()["assetCount"] != files:
            assert time.monotonic() < deadline, "the rescan did not import every file"
            time.sleep(0.2)
    finally:
        stop_daemon(process, data, log)
