"""The `filmroll` command: `serve`, `check`, `user …`, `library …`, `jobs`, `backup`, `restore`, `install-service`.

Exit codes: 0 success, 1 a check found problems or an operation was refused, 2 bad usage or settings.
The `user` commands act on the index directly (LMDB lets them run beside a running daemon) and are meant for the
machine's administrator: whoever can run them can already read the data directory.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import logging
import sys
from collections.abc import Sequence

from . import __version__, cli_jobs, cli_library, cli_service
from .check import check_index
from .config import Settings, load_settings
from .credentials import new_secret
from .errors import FilmrollError, IndexUnusable
from .index import Index
from .logs import setup_logging
from .services import Services
from .systemd_notify import Notifier


def _add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: $FILMROLL_CONFIG)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (default: $XDG_DATA_HOME/filmroll)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="filmroll",
        description="Self-hosted photo and video library daemon with an Immich-compatible API.",
    )
    parser.add_argument("--version", action="version", version=f"filmroll {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the daemon (HTTP API, jobs, watchers)")
    _add_settings_arguments(serve)
    serve.add_argument(
        "--listen", metavar="HOST:PORT", help="HTTP address (default 127.0.0.1:2283; port 0 = any)"
    )
    serve.add_argument("--mount", metavar="PATH", help="mount the read-only FUSE view of albums here")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=["auto", "human", "json"])

    check = commands.add_parser("check", help="verify the index's invariants; exit 1 on any violation")
    _add_settings_arguments(check)

    user = commands.add_parser("user", help="manage users (administrator's tool)")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    create = user_commands.add_parser("create", help="create a user (with their upload library)")
    _add_settings_arguments(create)
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--admin", action="store_true", help="make the user an admin")
    create.add_argument(
        "--external-path", metavar="DIR", help="folder this user's external libraries are confined to"
    )
    create.add_argument("--quota", type=int, metavar="BYTES", help="upload quota in bytes")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (else prompt, "
        "or generate one and print it once when there is no terminal)",
    )
    listing = user_commands.add_parser("list", help="list users")
    _add_settings_arguments(listing)
    password = user_commands.add_parser("set-password", help="set a user's password")
    _add_settings_arguments(password)
    password.add_argument("email")
    password.add_argument("--password-stdin", action="store_true")
    external = user_commands.add_parser(
        "set-external-path", help="set (or clear with '') a user's external path"
    )
    _add_settings_arguments(external)
    external.add_argument("email")
    external.add_argument("path")
    transfer = user_commands.add_parser(
        "transfer",
        help="move a user's albums, external libraries and assets to another user "
        "(assets whose content the other user already has are skipped and listed)",
    )
    _add_settings_arguments(transfer)
    transfer.add_argument("--from", dest="source", required=True, metavar="EMAIL")
    transfer.add_argument("--to", dest="target", required=True, metavar="EMAIL")
    cli_library.add_commands(commands, _add_settings_arguments)
    cli_jobs.add_commands(commands, _add_settings_arguments)
    cli_service.add_commands(commands, _add_settings_arguments)
    return parser


def _settings(args: argparse.Namespace, **flags: object) -> Settings:
    return load_settings(args.config, {"data_dir": args.data_dir, **flags})


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated?)"""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise FilmrollError("The passwords do not match")
        return first, False
    return new_secret()[:20], True


def _open_services(settings: Settings) -> tuple[Index, Services]:
    index = Index(settings.index_path)
    return index, Services.build(settings, index)


def _user_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    index, services = _open_services(settings)
    with index:
        if args.user_command == "create":
            password, generated = _read_password(args)
            user = services.users.create(
                email=args.email,
                password=password,
                name=args.name,
                is_admin=args.admin,
                storage_label="admin" if args.admin and not services.users.has_admin() else None,
                quota_size_in_bytes=args.quota,
                external_path=args.external_path,
                should_change_password=generated,
            )
            print(f"created {'admin' if user.is_admin else 'user'} {user.email} ({user.id})")
            if generated:
                print(f"password (shown once, change it after signing in): {password}")
        elif args.user_command == "list":
            for user in services.users.list(with_deleted=True):
                flags = ",".join(
                    f for f, on in (("admin", user.is_admin), ("deleted", user.deleted_at)) if on
                )
                print(
                    f"{user.id}  {user.email}  {user.name!r}  external={user.external_path or '-'}  {flags}"
                )
        elif args.user_command == "transfer":
            return _transfer(services, args.source, args.target)
        else:
            user = services.users.find_by_email(args.email)
            if user is None:
                print(f"filmroll: no user with email {args.email}", file=sys.stderr)
                return 1
            if args.user_command == "set-password":
                password, generated = _read_password(args)
                services.users.update(user.id, {"password": password}, as_admin=True)
                if generated:
                    print(f"password (shown once): {password}")
            else:
                updated = services.users.update(user.id, {"external_path": args.path}, as_admin=True)
                print(f"{updated.email}: external path {updated.external_path or '(none)'}")
    return 0


def _transfer(services: Services, source_email: str, target_email: str) -> int:
    source, target = services.users.find_by_email(source_email), services.users.find_by_email(target_email)
    for email, user in ((source_email, source), (target_email, target)):
        if user is None:
            print(f"filmroll: no user with email {email}", file=sys.stderr)
            return 1
    assert source is not None and target is not None
    report = services.transfers.transfer(None, source.id, target.id)
    print(
        f"moved {report.assets} assets, {report.libraries} external libraries and {report.albums} albums "
        f"from {source.email} to {target.email}"
    )
    for skipped in report.skipped:
        print(
            f"skipped {skipped.file_name!r} ({skipped.asset_id}): {target.email} already has it "
            f"as {skipped.duplicate_of}; its albums now hold that copy"
        )
    for name in report.uncovered_libraries:
        print(
            f"warning: library {name!r} has import paths outside {target.email}'s external path; "
            "its next scan will take those files offline"
        )
    return 0


def _library_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    setup_logging("warning", "human")
    index, services = _open_services(settings)
    with index:
        return cli_library.run(args, services)


def _jobs_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with Index(settings.index_path, readonly=True) as index:
        return cli_jobs.run(args, index)


def _check_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with Index(settings.index_path, readonly=True) as index:
        problems = check_index(index)
    for problem in problems:
        print(problem)
    if problems:
        print(f"filmroll check: {len(problems)} problem(s) in {settings.index_path}", file=sys.stderr)
        return 1
    print(f"filmroll check: index at {settings.index_path} is consistent")
    return 0


def _serve_command(args: argparse.Namespace) -> int:
    import trio

    from .serve import serve

    settings = _settings(
        args, listen=args.listen, mount=args.mount, log_level=args.log_level, log_format=args.log_format
    )
    setup_logging(settings.log_level, settings.log_format)
    if settings.mount:  # refuse a bad mount point before anything starts (FilmrollError names the fix)
        from fsview.mount import check_mountpoint

        settings.mount = check_mountpoint(settings.mount)
    logging.getLogger("filmroll").info(
        "filmroll %s starting: data directory %s",
        __version__,
        settings.data_dir,
        extra={"config_file": settings.config_file or None},
    )
    # systemd's notify socket and watchdog: read (and removed from the environment the workers inherit) now
    notifier = Notifier.from_environment()
    trio.run(functools.partial(serve, settings, notifier=notifier))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve_command(args)
        if args.command == "check":
            return _check_command(args)
        if args.command == "library":
            return _library_command(args)
        if args.command == "jobs":
            return _jobs_command(args)
        if args.command in cli_service.COMMANDS:
            return cli_service.run(args, _settings(args) if args.command != "install-service" else None)
        return _user_command(args)
    except IndexUnusable as error:
        print(f"filmroll: {error.message}", file=sys.stderr)
        return 2
    except FilmrollError as error:
        print(f"filmroll: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
