"""`filmroll library …` as a real command: create, validate, scan with a summary, remove-offline, delete."""

import subprocess
import sys

import trio

from tests.e2e.live_daemon import originals_changed, record_originals
from tests.library_helpers import write

FILMROLL = [sys.executable, "-m", "daemon.cli"]


def run(*args: str, data: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FILMROLL, *args, "--data-dir", data], capture_output=True, text=True, input=stdin,
                          timeout=120)  # fmt: skip


def test_library_commands(tmp_path):
    data, external = str(tmp_path / "data"), tmp_path / "nas"
    for name in ("a.jpg", "b.jpg", "Raw/c.nef"):
        write(external / "p" / name)
    record_originals(external)
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
    originals_changed(external / "p" / "b.jpg")
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


async def test_jobs_command_shows_progress_waiting_and_failures(tmp_path):
    from daemon.config import load_settings
    from daemon.index import Index
    from daemon.services import Services
    from tests.media_files import jpeg

    data, external = str(tmp_path / "data"), tmp_path / "nas"
    jpeg(external / "p" / "good.jpg")
    write(external / "p" / "broken.jpg", b"not a picture")
    record_originals(external)
    run("user", "create", "--admin", "--email", "a@example.com", "--name", "A", "--password-stdin",
        "--external-path", str(external), data=data, stdin="pw\n")  # fmt: skip
    made = run(
        "library", "create", "--user", "a@example.com", "--import-path", str(external / "p"), data=data
    )
    run("library", "scan", made.stdout.split()[0], data=data)
    waiting = run("jobs", data=data)
    assert waiting.returncode == 0, waiting.stderr
    assert rows(waiting.stdout)["metadataExtraction"] == ["0", "2", "2", "0"]  # done, of, waiting, failed

    settings = load_settings(None, {"data_dir": data}, environ={})
    with Index(settings.index_path) as index:  # the daemon's media queues, in this process
        services = Services.build(settings, index)
        async with trio.open_nursery() as nursery:
            await nursery.start(services.media.run)
            with trio.fail_after(60):
                await services.media.idle()
            nursery.cancel_scope.cancel()
    done = run("jobs", data=data)
    assert rows(done.stdout)["thumbnailGeneration"] == ["1", "2", "0", "1"]
    assert rows(done.stdout)["metadataExtraction"][2] == "0"
    failed = run("jobs", "--failed", data=data)
    assert "thumbnailGeneration" in failed.stdout and "broken.jpg" in failed.stdout


def rows(table: str) -> dict[str, list[str]]:
    """A rich table's body rows: first cell -> the other cells."""
    cells = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in table.splitlines()
        if line.startswith("│")
    ]
    return {row[0]: row[1:] for row in cells}
