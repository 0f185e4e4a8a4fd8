"""Account settings > Libraries: the caller's libraries, their settings, scans and scan progress.

Scan progress: the page holds a fragment (`/user-settings/libraries/status`) that htmx fetches every second. It
shows what the `library` queue is doing (`LibraryJobQueue.describe_active`: library, files crawled, percentage)
and how many requests wait. While something runs the fragment asks with `?was=active`; the first answer after
the queue goes idle carries `HX-Refresh`, so the page reloads once with the new counts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from quart import Response, request

from daemon.errors import InvalidInput
from daemon.records import Library
from daemon.scan import ScanMode

from .common import flash, me, page, parse_id, render, see_other, services

PAGE = "/user-settings/libraries"

SCAN_MODES = {
    "new": (ScanMode.from_flags(False, False), "Scan new library files"),
    "modified": (ScanMode.from_flags(True, False), "Re-scan modified files"),
    "all": (ScanMode.from_flags(False, True), "Force re-scan of all files"),
}


@dataclass
class LibraryRow:
    library: Library
    asset_count: int
    photos: int
    videos: int
    usage: int
    paths: list[tuple[str, str | None]]
    """Each import path with the reason it cannot be imported (None: accessible)."""
    watch: str
    last_scan: dict | None


async def _rows() -> list[LibraryRow]:
    caller = me()
    libraries = [lib for lib in services().libraries.list(caller) if lib.owner_id == caller.user.id]
    rows = []
    for library in libraries:
        stats = services().libraries.statistics(caller, library.id)
        paths = await services().libraries.validate(caller, library.id, list(library.import_paths))
        watch = services().watchers.status(library.id)
        summary = services().library_jobs.last_summaries.get(library.id)
        rows.append(
            LibraryRow(
                library=library,
                asset_count=stats.total,  # the same set as `assetCount` (§13.1): not trashed, offline included
                photos=stats.photos,
                videos=stats.videos,
                usage=stats.usage,
                paths=paths,
                watch=watch.mode + (f" ({watch.reason})" if watch.reason else ""),
                last_scan=summary.as_dict() if summary is not None else None,
            )
        )
    return rows


@page(PAGE)
async def libraries_page() -> Response:
    return await render(
        "libraries.html",
        title="Libraries",
        rows=await _rows(),
        scan_modes={key: title for key, (_, title) in SCAN_MODES.items()},
        status=(status := _status()),
        active=bool(status["now"] or status["waiting"]),
        external_path=me().user.external_path,
    )


def _status() -> dict:
    """The caller's own scans only: other users' library names and activity are theirs."""
    jobs = services().library_jobs
    mine = {library.id for library in services().libraries.list(me())}
    return {"now": jobs.describe_active(mine), "waiting": jobs.waiting_for(mine), "paused": jobs.paused}


@page(f"{PAGE}/status")
async def library_status() -> Response:
    status = _status()
    active = bool(status["now"] or status["waiting"])
    response = await render("library_status.html", status=status, active=active)
    if request.args.get("was") == "active" and not active:
        response.headers["HX-Refresh"] = "true"
    return response


def _back(library_id: uuid.UUID | None = None) -> Response:
    return see_other(PAGE + (f"#library-{library_id}" if library_id else ""))


def _own(library_id: str) -> Library:
    return services().libraries.get(me(), parse_id(library_id), "library.update")


@page(PAGE, methods=("POST",))
async def create_library() -> Response:
    form = await request.form
    name = form.get("name", "").strip() or None
    try:
        library = await services().libraries.create_async(me(), library_type="EXTERNAL", name=name)
    except InvalidInput as error:
        flash(str(error), "error")
        return _back()
    flash(f"Created {library.name}")
    return _back(library.id)


async def _update(library: Library, done: str, failed: str | None = None, **changes: object) -> Response:
    try:
        await services().libraries.update_async(me(), library.id, **changes)
    except InvalidInput as error:
        flash(f"{failed or library.name}: {error}", "error")
    else:
        flash(done)
    return _back(library.id)


@page(f"{PAGE}/<library_id>/rename", methods=("POST",))
async def rename_library(library_id: str) -> Response:
    library = _own(library_id)
    name = (await request.form).get("name", "").strip()
    return await _update(library, f"Renamed to {name}", name=name)


async def _list_form(library: Library, field: str, *, label: str, prompt: str, already: str) -> Response | str:
    """The form of a list field (`import_paths`, `exclusion_patterns`): `remove` one entry, or `add` one. Returns the
    response for a removal or a refused addition, else the entry to add (the caller adds it)."""
    form = await request.form
    current: list[str] = list(getattr(library, field))
    if form.get("remove") is not None:
        removed = form["remove"]
        return await _update(library, f"Removed {label} {removed}", **{field: [v for v in current if v != removed]})
    added = form.get("add", "").strip()
    if not added:
        flash(f"Enter a {prompt} to add", "error")
        return _back(library.id)
    if added in current:
        flash(f"{added} {already}", "error")
        return _back(library.id)
    return added


@page(f"{PAGE}/<library_id>/import-paths", methods=("POST",))
async def edit_import_paths(library_id: str) -> Response:
    """`add` a path (checked first: the message says why it is not accessible) or `remove` one."""
    library = _own(library_id)
    added = await _list_form(library, "import_paths", label="import path", prompt="path",
                             already="is already an import path")  # fmt: skip
    if isinstance(added, Response):
        return added
    [(_, problem)] = await services().libraries.validate(me(), library.id, [added])
    response = await _update(
        library,
        f"Added import path {added}",
        f"{library.name}: could not add {added}",
        import_paths=[*library.import_paths, added],
    )
    if problem is not None and added in services().libraries.get(me(), library.id).import_paths:
        flash(f"Added import path {added}, but it is not accessible: {problem}", "error")
    return response


@page(f"{PAGE}/<library_id>/validate", methods=("POST",))
async def validate_paths(library_id: str) -> Response:
    """Check paths without saving them (one a line): which are not accessible, and why."""
    library = _own(library_id)
    candidates = [line.strip() for line in (await request.form).get("paths", "").splitlines() if line.strip()]
    checked = await services().libraries.validate(me(), library.id, candidates)
    problems = [f"{path}: {problem}" for path, problem in checked if problem is not None]
    if problems:
        flash("Not accessible: " + " | ".join(problems), "error")
    else:
        flash(f"All {len(checked)} paths are accessible")
    return _back(library.id)


@page(f"{PAGE}/<library_id>/exclusions", methods=("POST",))
async def edit_exclusions(library_id: str) -> Response:
    library = _own(library_id)
    added = await _list_form(library, "exclusion_patterns", label="exclusion", prompt="pattern",
                             already="is already excluded")  # fmt: skip
    if isinstance(added, Response):
        return added
    return await _update(
        library, f"Added exclusion {added}", f"{library.name}: could not add {added}",
        exclusion_patterns=[*library.exclusion_patterns, added],
    )  # fmt: skip


@page(f"{PAGE}/<library_id>/scan", methods=("POST",))
async def scan_library(library_id: str) -> Response:
    library = _own(library_id)
    mode, title = SCAN_MODES.get((await request.form).get("mode", "new"), SCAN_MODES["new"])
    try:
        services().libraries.request_scan(me(), library.id, mode)
    except InvalidInput as error:
        flash(f"{library.name}: {error}", "error")
    else:
        flash(f"{library.name}: {title.lower()} queued")
    return _back(library.id)


@page(f"{PAGE}/<library_id>/remove-offline", methods=("POST",))
async def remove_offline(library_id: str) -> Response:
    library = _own(library_id)
    services().libraries.request_remove_offline(me(), library.id)
    flash(f"{library.name}: removing offline files")
    return _back(library.id)


@page(f"{PAGE}/<library_id>/delete", methods=("POST",))
async def delete_library(library_id: str) -> Response:
    library = _own(library_id)
    try:
        services().libraries.delete(me(), library.id)
    except InvalidInput as error:
        flash(f"{library.name}: {error}", "error")
        return _back(library.id)
    flash(f"Deleted {library.name}; its assets are being removed")
    return _back()
