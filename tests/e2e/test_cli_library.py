"""`filmroll library …` as a real command: create, validate, scan with a summary, remove-offline, delete."""

import subprocess
import sys

from tests.library_helpers import write

FILMROLL = [sys.executable, "-m", "daemon.cli"]


def run(*args: str, data: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FILMROLL, *args, "--data-dir", data], capture_output=True, text=True, input=stdin,
                          timeout=120)  # fmt: skip


def test_library_commands(tmp_path):
    data, external = str(tmp_path / "data"), tmp_path / "nas"
    for name in ("a.jpg", "b.jpg", "Raw/c.nef"):
        write(external / "p" / name)
    created = run("user", "create", "--admin", "--email", "a@example.com", "--name", "A", "--password-stdin",
                  "--external-path", str(external), data=data, stdin="pw\n")  # fmt: skip
    assert created.returncode == 0, created.stderr
    made = run("library", "create", "--user", "a@example.com", "--name", "Trip", "--import-path",
               str(external / "p"), "--exclude", "**/Raw/**", data=data)  # fmt: skip
    assert made.returncode == 0, made.stderr
    library_id = made.stdout.split()[0]
    ok = run("library", "validate", library_id, str(external / "p"), data=data)
    assert ok.returncode == 0 and ok.stdout.startswith("ok")
    bad = run("library", "validate", library_id, "/etc", data=data)
    assert bad.returncode == 1 and "Import path must be within the user's external path" in bad.stdout
    scanned = run("library", "scan", library_id, data=data)
    assert scanned.returncode == 0, scanned.stderr
    assert "│ new" in scanned.stdout and "│ 2 │" in scanned.stdout and "excluded folder" in scanned.stdout
    (external / "p" / "b.jpg").unlink()
    again = run("library", "scan", library_id, "--modified", data=data)
    assert "│ offline" in again.stdout
    removed = run("library", "remove-offline", library_id, data=data)
    assert removed.stdout.strip() == "removed 1 offline assets"
    shown = run("library", "show", library_id, data=data)
    assert "assets=1" in shown.stdout and "exclude **/Raw/**" in shown.stdout
    assert run("check", data=data).returncode == 0
    deleted = run("library", "delete", library_id, data=data)
    assert deleted.returncode == 0 and (external / "p" / "a.jpg").exists()
    assert library_id not in run("library", "list", data=data).stdout
    assert run("check", data=data).returncode == 0
