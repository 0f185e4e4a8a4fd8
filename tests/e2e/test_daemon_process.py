"""The real `filmroll serve` as a child process: start on an ephemeral port, use it like a client would,
stop it with SIGTERM and check it exits cleanly with a consistent index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

FILMROLL = [sys.executable, "-m", "daemon.cli"]


def start_daemon(data_dir: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "FILMROLL_LOG_FORMAT": "json"}
    process = subprocess.Popen(
        [*FILMROLL, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        entry = json.loads(line)
        if entry["message"].startswith("listening on "):
            return process, entry["url"]
    process.kill()
    raise AssertionError(f"daemon did not start; exit code {process.poll()}")


def test_serve_sign_up_login_key_and_sigterm(tmp_path):
    process, url = start_daemon(tmp_path / "data")
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/api/server/ping").json() == {"res": "pong"}
            admin = {"email": "admin@example.com", "password": "secret", "name": "Admin"}
            assert client.post("/api/auth/admin-sign-up", json=admin).status_code == 201
            login = client.post("/api/auth/login", json={"email": admin["email"], "password": "secret"})
            token = login.json()["accessToken"]
            created = client.post(
                "/api/api-keys", json={"name": "e2e"}, headers={"Authorization": f"Bearer {token}"}
            )
            secret = created.json()["secret"]
            client.cookies.clear()
            me = client.get("/api/users/me", headers={"x-api-key": secret})
            assert me.status_code == 200 and me.json()["email"] == admin["email"]
        live_check = subprocess.run(
            [*FILMROLL, "check", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert live_check.returncode == 0, live_check.stdout + live_check.stderr  # beside the running daemon
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - started < 10, "orderly shutdown within a few seconds"
        remaining = process.stderr.read()
        assert "stopped cleanly" in remaining
        assert '"level": "error"' not in remaining
    finally:
        if process.poll() is None:
            process.kill()
    check = subprocess.run(
        [*FILMROLL, "check", "--data-dir", str(tmp_path / "data")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_second_start_keeps_users(tmp_path):
    process, url = start_daemon(tmp_path / "data")
    try:
        admin = {"email": "admin@example.com", "password": "secret", "name": "Admin"}
        assert httpx.post(url + "/api/auth/admin-sign-up", json=admin).status_code == 201
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    process, url = start_daemon(tmp_path / "data")
    try:
        login = httpx.post(url + "/api/auth/login", json={"email": admin["email"], "password": "secret"})
        assert login.status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_a_second_serve_on_the_same_data_directory_is_refused(tmp_path):
    """Two daemons on one data directory would sweep each other's uploads, moves and renders in progress: the second
    exits at once, naming the first, and the first goes on serving, its data untouched."""
    process, url = start_daemon(tmp_path / "data")
    try:
        second = subprocess.run(
            [*FILMROLL, "serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        assert second.stderr.strip().endswith(
            f"Another filmroll serve (pid {process.pid}) is using the data directory {tmp_path / 'data'}; stop it first"
        ), second.stderr
        assert httpx.get(url + "/api/server/ping").json() == {"res": "pong"}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    process, url = start_daemon(tmp_path / "data")  # the lock went with the first daemon
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0


def test_cli_user_create_with_generated_password(tmp_path):
    data = str(tmp_path / "data")
    result = subprocess.run(
        [*FILMROLL, "user", "create", "--admin", "--email", "root@example.com", "--name", "Root", "--data-dir", data],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    password = result.stdout.split("password (shown once, change it after signing in): ")[1].strip()
    process, url = start_daemon(tmp_path / "data")
    try:
        login = httpx.post(url + "/api/auth/login", json={"email": "root@example.com", "password": password})
        assert login.status_code == 201 and login.json()["shouldChangePassword"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    listed = subprocess.run([*FILMROLL, "user", "list", "--data-dir", data], capture_output=True, text=True)
    assert "root@example.com" in listed.stdout and "admin" in listed.stdout


def test_bad_config_is_refused_with_its_name(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("listen = 5\n")
    result = subprocess.run(
        [*FILMROLL, "serve", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert str(config) in result.stderr
