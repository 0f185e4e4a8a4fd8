"""`filmroll backup DEST`, `filmroll restore SRC`, `filmroll install-service`: running filmroll as a NAS service."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .backup import backup, restore
from .config import Settings
from .install import install_service

COMMANDS = ("backup", "restore", "install-service")


def add_commands(
    commands: argparse._SubParsersAction, add_settings: Callable[[argparse.ArgumentParser], None]
) -> None:
    saving = commands.add_parser(
        "backup",
        help="copy the index (hot, consistent, compacted), upload originals and the config into DEST "
        "(beside a running daemon; unchanged originals are not copied again)",
    )
    add_settings(saving)
    saving.add_argument("destination", metavar="DEST")
    restoring = commands.add_parser(
        "restore",
        help="fill an empty data directory from a backup (daemon stopped); thumbnails and transcodes are "
        "regenerated when the daemon starts",
    )
    add_settings(restoring)
    restoring.add_argument("source", metavar="SRC")
    install = commands.add_parser(
        "install-service",
        help="install the systemd unit, /etc/filmroll/config.toml (if absent) and PREFIX/bin/filmroll",
    )
    install.add_argument(
        "--destdir", default=os.environ.get("DESTDIR") or "/", help="install root (default /)"
    )
    install.add_argument(
        "--prefix", default="/usr/local", help="where bin/filmroll goes (default /usr/local)"
    )
    install.add_argument(
        "--fsview",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="install the drop-in the FUSE view needs (default: if the config has a mount point)",
    )


def _say(message: str) -> None:
    print(f"filmroll: {message}", file=sys.stderr)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    if args.command == "install-service":
        return _install(args)
    assert settings is not None
    if args.command == "backup":
        report = backup(settings, Path(args.destination), say=_say)
        originals = report.originals
        print(
            f"backed up {report.index.get('assets', 0):,} assets, {report.index.get('albums', 0):,} albums and "
            f"{report.index.get('users', 0):,} users to {report.destination}: originals {originals.files:,} files "
            f"({originals.bytes:,} bytes; {originals.copied:,} copied, {originals.unchanged:,} unchanged, "
            f"{originals.removed:,} removed)" + (f", config {report.config}" if report.config else "")
        )
        for path in report.missing:
            print(f"missing (deleted while the backup ran): {path}", file=sys.stderr)
        return 1 if report.missing else 0
    restored = restore(Path(args.source), settings, say=_say)
    print(
        f"restored {restored.assets:,} assets into {restored.data_dir}; {restored.queued_thumbnails:,} thumbnails "
        f"and {restored.queued_transcodes:,} transcode decisions are queued and run when the daemon starts"
    )
    if restored.rewritten_paths:
        print(f"{restored.rewritten_paths:,} upload paths now point into {restored.data_dir}")
    if restored.config:
        print(f"the config file in use at backup time is {restored.config}: copy it into place if needed")
    for problem in restored.problems:
        print(problem, file=sys.stderr)
    return 1 if restored.problems else 0


def _install(args: argparse.Namespace) -> int:
    done = install_service(destdir=Path(args.destdir), prefix=args.prefix, fsview=args.fsview)
    for path in done.written:
        print(f"installed {path}")
    for path in done.kept:
        print(f"kept {path} (already there)")
    if done.fsview:
        print("installed the FUSE view's drop-in (filmroll.service.d/fsview.conf): see the comments in it")
    if Path(args.destdir) == Path("/"):
        if not done.reloaded:
            print("then: systemctl daemon-reload")
        print("next: edit /etc/filmroll/config.toml, then  systemctl enable --now filmroll")
        print("logs: journalctl -u filmroll   status: systemctl status filmroll")
    return 0
