"""systemd's service notification protocol (`sd_notify(3)`) and watchdog, in a few lines of socket code.

`Notifier.from_environment()` reads `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace) and the
watchdog settings `WATCHDOG_USEC` / `WATCHDOG_PID`, then removes the three variables from the environment, so the
daemon's child processes (scan workers, media workers, exiftool, ffmpeg) never speak for it (the unit says
`NotifyAccess=main` as well). Without `NOTIFY_SOCKET` every call does nothing, so `serve` calls it unconditionally.

Messages are newline-separated `KEY=value` assignments in one datagram: `READY=1`, `STATUS=…`, `WATCHDOG=1`,
`STOPPING=1`. Sending never blocks and never raises: a notification that cannot be delivered (systemd restarting,
a full socket buffer) is logged at debug level and dropped, as libsystemd does.

`watch(notifier, services)` is the task `serve` runs in its top-level nursery: it pings the watchdog at half of
`WATCHDOG_USEC` from the trio loop itself (so a loop that hangs stops pinging and systemd restarts the service) and
sends a `STATUS=` line whenever what the daemon is doing changes (`status_line`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

import trio

log = logging.getLogger(__name__)

STATUS_INTERVAL = 1.0
"""Seconds between two looks at what the daemon is doing (a STATUS= line is sent only when it changed)."""


def socket_address(value: str) -> str | bytes:
    """`NOTIFY_SOCKET` as an `AF_UNIX` address: `@name` is the abstract socket `\\0name`."""
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    return value


def watchdog_interval(environ: MutableMapping[str, str]) -> float | None:
    """Seconds between two `WATCHDOG=1` pings (half of `WATCHDOG_USEC`), or None when the watchdog is off or meant
    for another process (`WATCHDOG_PID`)."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


@dataclass
class Notifier:
    """Sends notifications to systemd (or to nobody, when `address` is None). Owns its socket: `close()` it."""

    address: str | bytes | None = None
    watchdog_seconds: float | None = None
    _socket: socket.socket | None = field(default=None, repr=False)
    _last_status: str | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        environ = os.environ if environ is None else environ
        value = environ.pop("NOTIFY_SOCKET", "")
        interval = watchdog_interval(environ)
        environ.pop("WATCHDOG_USEC", None)
        environ.pop("WATCHDOG_PID", None)
        if not value:
            return cls()
        return cls(address=socket_address(value), watchdog_seconds=interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram. True if it was delivered to the socket."""
        if self.address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto(message, self.address)
        except OSError as error:
            log.debug("systemd notification %r not sent: %s", message[:80], error)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """`READY=1`: the service is up (systemd starts units ordered after it, `systemctl start` returns)."""
        return self.send("READY=1", *([] if status is None else [_status(status)]))

    def status(self, text: str) -> bool:
        """`STATUS=text` (shown by `systemctl status`), unless it is the text sent last."""
        if text == self._last_status:
            return True
        self._last_status = text
        return self.send(_status(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """`STOPPING=1`: the service is shutting down (systemd shows `deactivating`)."""
        return self.send("STOPPING=1", *([] if status is None else [_status(status)]))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line: a newline would start a new assignment


class StatusRefresh:
    """Call it (on the trio thread) when what the daemon does has changed, e.g. a scan started: `watch` sends the
    new status at once instead of at its next look."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def __call__(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


async def watch(
    notifier: Notifier,
    status_line: Callable[[], str] | None = None,
    *,
    status_interval: float = STATUS_INTERVAL,
    refresh: StatusRefresh | None = None,
) -> None:
    """Ping the watchdog (if systemd asked for one) and keep `STATUS=` current, until cancelled.

    Runs on the trio thread on purpose: the pings prove that the event loop itself still turns. `status_line` is
    called on the trio thread too; it must be cheap (counts, not walks)."""
    if not notifier.enabled:
        return
    refresh = refresh or StatusRefresh()
    next_status = next_ping = trio.current_time()
    while True:
        now = trio.current_time()
        if notifier.watchdog_seconds is not None and now >= next_ping:
            notifier.watchdog()
            next_ping = now + notifier.watchdog_seconds
        if status_line is not None and now >= next_status:
            try:
                notifier.status(status_line())
            except Exception:  # a status line must never take the daemon down
                log.exception("could not compute the service status")
            next_status = now + status_interval
        wake = next_status if status_line is not None else next_ping
        if notifier.watchdog_seconds is not None:
            wake = min(wake, next_ping)
        elif status_line is None:
            return
        with trio.move_on_at(wake):
            await refresh.wait()
            next_status = trio.current_time()
