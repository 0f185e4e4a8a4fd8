"""systemd's notify protocol over real AF_UNIX datagram sockets (path and abstract namespace), the watchdog task,
and journal priority prefixes on log lines."""

from __future__ import annotations

import functools
import io
import logging
import os
import socket
import uuid

import trio

from daemon.logs import setup_logging, syslog_priority, writes_to_journal
from daemon.systemd_notify import Notifier, socket_address, watch, watchdog_interval


def bound_socket(address: str | bytes) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(5)
    return listener


def received(listener: socket.socket) -> list[str]:
    return listener.recv(4096).decode().split("\n")


def test_path_socket_gets_ready_status_watchdog_stopping(tmp_path):
    path = str(tmp_path / "notify")
    with bound_socket(path) as listener:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
        assert notifier.enabled and notifier.watchdog_seconds is None
        assert notifier.status("scanning library Photos: 1,234 files, 40%")
        assert received(listener) == ["STATUS=scanning library Photos: 1,234 files, 40%"]
        assert notifier.ready("ready: listening on http://127.0.0.1:2283")
        assert received(listener) == ["READY=1", "STATUS=ready: listening on http://127.0.0.1:2283"]
        assert notifier.watchdog()
        assert received(listener) == ["WATCHDOG=1"]
        assert notifier.stopping()
        assert received(listener) == ["STOPPING=1"]
        notifier.close()


def test_abstract_socket_and_environment_cleared():
    name = f"filmroll-test-{uuid.uuid4().hex}"
    with bound_socket(b"\0" + name.encode()) as listener:
        environ = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
        notifier = Notifier.from_environment(environ)
        assert environ == {}, "children must not inherit the socket or the watchdog"
        assert notifier.watchdog_seconds == 1.5
        assert notifier.ready()
        assert received(listener) == ["READY=1"]
        notifier.close()


def test_status_is_one_line_and_sent_only_when_it_changes(tmp_path):
    path = str(tmp_path / "notify")
    with bound_socket(path) as listener:
        notifier = Notifier(address=path)
        notifier.status("two\nlines")
        notifier.status("two\nlines")
        notifier.status("other")
        assert received(listener) == ["STATUS=two lines"]
        assert received(listener) == ["STATUS=other"]
        notifier.close()


def test_without_socket_or_listener_nothing_breaks(tmp_path):
    assert Notifier.from_environment({}).ready() is False
    gone = Notifier(address=str(tmp_path / "nobody-listens"))
    assert gone.ready() is False and gone.watchdog() is False  # logged at debug level, never raised
    gone.close()


def test_watchdog_settings():
    assert socket_address("@x") == b"\0x" and socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None  # another process's


async def test_watch_pings_at_half_the_interval_and_tracks_status(tmp_path):
    path = str(tmp_path / "notify")
    with bound_socket(path) as listener:
        listener.setblocking(False)
        notifier = Notifier(address=path, watchdog_seconds=0.05)
        state = {"text": "idle"}
        with trio.move_on_after(0.5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(watch, notifier, lambda: state["text"], status_interval=0.1)
                )
                await trio.sleep(0.25)
                state["text"] = "scanning library A: 10 files"
        messages = []
        while True:
            try:
                messages.extend(listener.recv(4096).decode().split("\n"))
            except BlockingIOError:
                break
        notifier.close()
    pings = messages.count("WATCHDOG=1")
    assert 7 <= pings <= 12, messages  # every 0.05 s for 0.5 s
    assert [m for m in messages if m.startswith("STATUS=")] == [
        "STATUS=idle",
        "STATUS=scanning library A: 10 files",
    ]


async def test_watch_without_socket_returns_at_once():
    with trio.fail_after(1):
        await watch(Notifier(), lambda: "idle")


# -- the journal ------------------------------------------------------------------------------------------------


def journal_stream(tmp_path):
    stream = open(tmp_path / "journal", "w+")  # closed by the test
    info = os.fstat(stream.fileno())
    return stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}


def test_journal_lines_carry_priorities(tmp_path):
    stream, environ = journal_stream(tmp_path)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert writes_to_journal(stream, environ)
        setup_logging("debug", "auto", stream=stream, environ=environ)
        log = logging.getLogger("filmroll.test")
        log.debug("details")
        log.info("listening on %s", "http://127.0.0.1:2283")
        log.warning("two\nlines")
        log.error("broken")
        log.critical("down")
        stream.flush()
        lines = (tmp_path / "journal").read_text().splitlines()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        stream.close()
    assert lines == [
        "<7>DEBUG filmroll.test: details",
        "<6>INFO filmroll.test: listening on http://127.0.0.1:2283",
        "<4>WARNING filmroll.test: two",
        "<4>lines",
        "<3>ERROR filmroll.test: broken",
        "<2>CRITICAL filmroll.test: down",
    ]


def test_json_in_the_journal_is_prefixed_too(tmp_path):
    stream, environ = journal_stream(tmp_path)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info", "json", stream=stream, environ=environ)
        logging.getLogger("filmroll.test").warning("careful")
        stream.flush()
        (line,) = (tmp_path / "journal").read_text().splitlines()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        stream.close()
    assert line.startswith('<4>{"time": ') and '"message": "careful"' in line


def test_no_prefix_when_the_stream_is_not_the_journal(tmp_path):
    stream, _ = journal_stream(tmp_path)
    other = {"JOURNAL_STREAM": "1:2"}
    assert not writes_to_journal(stream, other)
    assert not writes_to_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})
    assert not writes_to_journal(stream, {})
    stream.close()
    assert syslog_priority(logging.INFO + 5) == 6 and syslog_priority(logging.WARNING + 1) == 4


# -- what STATUS= says ----------------------------------------------------------------------------------------------


def test_service_status_counts_queued_jobs(services):
    from daemon import job_queue
    from daemon.serve import service_status
    from daemon.timeutil import utc_now
    from tests.library_helpers import upload_asset

    assert service_status(services) == "idle"
    admin = services.users.create(email="a@example.com", password="pw-123456", name="A", is_admin=True)
    assets = [upload_asset(services, admin, f"content {n}".encode(), f"{n}.jpg") for n in range(3)]

    def queue(txn):
        for asset in assets:
            job_queue.enqueue(txn, job_queue.METADATA, asset.id, utc_now())
        job_queue.enqueue(txn, job_queue.THUMBNAILS, assets[0].id, utc_now())

    services.index.write(queue)
    assert service_status(services) == "4 jobs queued (metadataExtraction 3, thumbnailGeneration 1)"
