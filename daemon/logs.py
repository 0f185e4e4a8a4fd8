"""Logging: human-readable lines on a terminal or in systemd's journal, one JSON object a line otherwise (files,
pipes).

Under systemd (`JOURNAL_STREAM` names the stream we write to) every line starts with its sd-daemon priority
(`<3>` error, `<4>` warning, `<6>` info, `<7>` debug): journald strips it and files the line at that priority
(`SyslogLevelPrefix=`, on by default), so `journalctl -u filmroll -p warning` shows warnings and errors only.
In `auto` format the journal gets the human format without a timestamp (journald adds its own); `json` still
works there, one JSON object per journal entry.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


SYSLOG_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def syslog_priority(levelno: int) -> int:
    """The sd-daemon/syslog priority of a logging level (levels in between round to the more severe)."""
    for level, priority in sorted(SYSLOG_PRIORITIES.items(), reverse=True):
        if levelno >= level:
            return priority
    return 7


class JournalFormatter(logging.Formatter):
    """Another formatter's output with `<priority>` before every line (a traceback's lines included: journald
    stores each line as its own entry)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def writes_to_journal(stream, environ: Mapping[str, str] | None = None) -> bool:
    """Is `stream` the journal stream systemd connected us to (`JOURNAL_STREAM=<device>:<inode>`)?"""
    device, _, inode = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (a StringIO), or closed
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def setup_logging(
    level: str = "info", log_format: str = "auto", stream=None, environ: Mapping[str, str] | None = None
) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    journal = writes_to_journal(stream, environ)
    human = log_format == "human" or (log_format == "auto" and (journal or stream.isatty()))
    formatter: logging.Formatter
    if human and journal:
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    elif human:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    else:
        formatter = JsonFormatter()
    handler.setFormatter(JournalFormatter(formatter) if journal else formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Hypercorn's access log is one line per request: keep it at debug level.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
