"""`filmroll library …`: the administrator's view of libraries, acting as each library's owner.

`scan` runs the scan in this process (beside a running daemon, under the same per-library lock), with a progress
line and a summary: new, modified, offline, restored, moved, unchanged, skipped with reasons. Media work it queues
is done by the daemon.
"""

from __future__ import annotations

import argparse
import uuid

import trio
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .access import Principal
from .errors import InvalidInput
from .library_jobs import LibraryJobQueue
from .locks import library_lock
from .records import Library
from .scan import LibraryScan, ScanMode, ScanSummary
from .services import Services


def add_commands(commands: argparse._SubParsersAction, add_settings) -> None:
    library = commands.add_parser("library", help="manage libraries (administrator's tool)")
    actions = library.add_subparsers(dest="library_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str, *, with_id: bool = True) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        add_settings(parser)
        if with_id:
            parser.add_argument("library_id", metavar="ID")
        return parser

    listing = action("list", "list libraries", with_id=False)
    listing.add_argument("--user", metavar="EMAIL", help="only this user's libraries")
    action("show", "show one library")
    create = action("create", "create a library", with_id=False)
    create.add_argument("--user", metavar="EMAIL", required=True, help="the owner")
    create.add_argument("--type", choices=["EXTERNAL", "UPLOAD"], default="EXTERNAL")
    create.add_argument("--name")
    create.add_argument("--import-path", action="append", metavar="DIR", dest="import_paths")
    create.add_argument("--exclude", action="append", metavar="GLOB", dest="exclusions")
    edit = action("edit", "rename, or replace import paths / exclusion patterns")
    edit.add_argument("--name")
    edit.add_argument("--import-path", action="append", metavar="DIR", dest="import_paths")
    edit.add_argument("--exclude", action="append", metavar="GLOB", dest="exclusions")
    edit.add_argument("--no-excludes", action="store_true", help="clear the exclusion patterns")
    validate = action("validate", "check import paths as the scan would")
    validate.add_argument("paths", nargs="+", metavar="DIR")
    scan = action("scan", "scan now, here, with progress")
    mode = scan.add_mutually_exclusive_group()
    mode.add_argument("--modified", action="store_true", help="also refresh files whose size/mtime changed")
    mode.add_argument("--force", action="store_true", help="refresh every file")
    action("remove-offline", "remove the library's offline assets from the index (files are never touched)")
    action("delete", "delete the library and its assets from the index (external files are never touched)")


def _library(services: Services, text: str) -> tuple[Library, Principal]:
    try:
        library_id = uuid.UUID(text)
    except ValueError:
        raise InvalidInput(f"Not a library id: {text}") from None
    for library in services.libraries.list(_system(services)):
        if library.id == library_id:
            return library, Principal(user=services.libraries.owner_of(library))
    raise InvalidInput(f"No library {text}")


def _system(services: Services) -> Principal:
    """The CLI runs as the machine's administrator: list with an admin's eyes."""
    admins = [user for user in services.users.list() if user.is_admin]
    if not admins:
        raise InvalidInput("There is no admin yet: create one with `filmroll user create --admin`")
    return Principal(user=admins[0])


def _print_library(services: Services, library: Library) -> None:
    owner = services.libraries.owner_of(library)
    print(f"{library.id}  {library.type:8}  {library.name!r}  owner={owner.email}  "
          f"assets={services.libraries.asset_count(library)}  refreshed={library.refreshed_at or 'never'}")  # fmt: skip
    for path in library.import_paths:
        print(f"    import  {path}")
    for pattern in library.exclusion_patterns:
        print(f"    exclude {pattern}")


def _print_summary(summary: ScanSummary) -> None:
    table = Table(title="scan summary", show_header=False)
    for name in ("new", "modified", "offline", "restored", "moved", "unchanged", "crawled"):
        table.add_row(name, str(getattr(summary, name)))
    for reason, count in sorted(summary.report.skipped.items()):
        table.add_row(f"skipped: {reason}", str(count))
    Console().print(table)
    for warning in summary.report.warnings:
        print(f"warning: {warning}")


async def _scan(services: Services, library: Library, mode: ScanMode) -> ScanSummary:
    async with library_lock(services.settings.data_dir, library.id):
        library = services.libraries.get(Principal(user=services.libraries.owner_of(library)), library.id)
        owner = services.libraries.owner_of(library)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True
        ) as bar:
            task = bar.add_task(f"scanning {library.name}")

            def progress(summary: ScanSummary) -> None:
                bar.update(task, description=f"scanning {library.name}: {summary.crawled:,} files, "
                                             f"{summary.new:,} new, {summary.offline:,} offline")  # fmt: skip

            scan = LibraryScan(services.index, library, owner, data_dir=services.settings.data_dir, mode=mode,
                               progress=progress)  # fmt: skip
            return await scan.run()


async def _remove(services: Services, library: Library, delete: bool) -> int:
    queue = LibraryJobQueue(services.index, services.settings.data_dir)
    async with library_lock(services.settings.data_dir, library.id):
        if delete:
            await queue.delete_library(library.id)
            return 0
        return await queue.remove_offline(library.id)


def run(args: argparse.Namespace, services: Services) -> int:
    command = args.library_command
    if command == "list":
        principal = _system(services)
        for library in services.libraries.list(principal):
            owner = services.libraries.owner_of(library)
            if args.user is None or owner.email.casefold() == args.user.casefold():
                _print_library(services, library)
        return 0
    if command == "create":
        owner = services.users.find_by_email(args.user)
        if owner is None:
            raise InvalidInput(f"No user with email {args.user}")
        library = services.libraries.create(
            Principal(user=owner), library_type=args.type, name=args.name, import_paths=args.import_paths,
            exclusion_patterns=args.exclusions,
        )  # fmt: skip
        _print_library(services, library)
        return 0
    library, as_owner = _library(services, args.library_id)
    if command == "show":
        _print_library(services, library)
    elif command == "edit":
        exclusions = [] if args.no_excludes else args.exclusions
        updated = services.libraries.update(as_owner, library.id, name=args.name, import_paths=args.import_paths,
                                            exclusion_patterns=exclusions)  # fmt: skip
        _print_library(services, updated)
    elif command == "validate":
        problems = trio.run(services.libraries.validate, as_owner, library.id, args.paths)
        for path, problem in problems:
            print(
                f"{'ok     ' if problem is None else 'invalid'}  {path}"
                + (f"  ({problem})" if problem else "")
            )
        return 0 if all(problem is None for _, problem in problems) else 1
    elif command == "scan":
        services.libraries.check_scannable(library)
        mode = ScanMode.ALL if args.force else ScanMode.MODIFIED if args.modified else ScanMode.NEW
        _print_summary(trio.run(_scan, services, library, mode))
    elif command == "remove-offline":
        print(f"removed {trio.run(_remove, services, library, False)} offline assets")
    elif command == "delete":
        services.libraries.delete(as_owner, library.id)
        trio.run(_remove, services, library, True)
        print(f"deleted library {library.id}")
    return 0
