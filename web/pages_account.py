"""Sign in, first-run admin sign-up, sign out; Administration > Users and Jobs."""

from __future__ import annotations

from quart import Response, request

from api.routes.auth import clear_session_cookies, set_session_cookies
from daemon.credentials import hash_password_off_loop
from daemon.errors import AuthenticationRequired, InvalidInput

from .common import (
    flash,
    me,
    page,
    parse_id,
    render,
    safe_next,
    see_other,
    services,
)


async def _open_session(email: str, password: str) -> None:
    """Log in through the same service as `POST /api/auth/login`, and set the same cookies."""
    result = await services().auth.login(email, password, device_type=request.headers.get("User-Agent", ""))
    set_session_cookies(result.access_token)


@page("/auth/login", methods=("GET", "POST"), public=True)
async def login() -> Response:
    if not services().users.has_admin():
        return see_other("/auth/register")
    target = safe_next(request.args.get("next"))
    if request.method == "GET":
        return await render("login.html", title="Sign in", next=target, email="")
    form = await request.form
    email = form.get("email", "").strip()
    try:
        await _open_session(email, form.get("password", ""))
    except AuthenticationRequired as error:
        return await render("login.html", 401, title="Sign in", next=target, email=email, error=str(error))
    return see_other(safe_next(form.get("next"), target))


@page("/auth/register", methods=("GET", "POST"), public=True)
async def register() -> Response:
    """The first-run admin sign-up (`POST /api/auth/admin-sign-up`), only while there is no admin."""
    if services().users.has_admin():
        return see_other("/auth/login")
    if request.method == "GET":
        return await render("register.html", title="Create the admin account", email="", name="")
    form = await request.form
    email, name, password = (
        form.get("email", "").strip(),
        form.get("name", "").strip(),
        form.get("password", ""),
    )
    try:
        if len(password) < 1:
            raise InvalidInput("Choose a password")
        if "@" not in email:
            raise InvalidInput("email must be an email")
        password_hash = await hash_password_off_loop(password)
        services().users.admin_sign_up(email=email, password_hash=password_hash, name=name)
        await _open_session(email, password)
    except InvalidInput as error:
        return await render(
            "register.html", 400, title="Create the admin account", email=email, name=name,
            error=str(error),
        )  # fmt: skip
    return see_other("/admin/users")


@page("/auth/logout", methods=("POST",))
async def logout() -> Response:
    services().auth.logout(me())
    response = see_other("/auth/login")
    clear_session_cookies(response)
    return response


# -- Administration > Users ----------------------------------------------------------------------------------


@page("/admin/users", admin=True)
async def admin_users() -> Response:
    users = services().users.list()
    return await render("admin_users.html", title="Users", users=users)


@page("/admin/users", methods=("POST",), admin=True)
async def admin_create_user() -> Response:
    form = await request.form
    email, name, password = (
        form.get("email", "").strip(),
        form.get("name", "").strip(),
        form.get("password", ""),
    )
    try:
        if "@" not in email:
            raise InvalidInput("email must be an email")
        if not password:
            raise InvalidInput("Choose a password")
        password_hash = await hash_password_off_loop(password)
        services().users.create(
            email=email,
            name=name,
            password_hash=password_hash,
            is_admin=form.get("is_admin") == "on",
            external_path=form.get("external_path", "").strip() or None,
        )
    except InvalidInput as error:
        flash(f"Could not create {email}: {error}", "error")
    else:
        flash(f"Created {email}")
    return see_other("/admin/users")


@page("/admin/users/<user_id>/external-path", methods=("POST",), admin=True)
async def admin_set_external_path(user_id: str) -> Response:
    target = services().users.get_for_admin(me(), parse_id(user_id))
    value = (await request.form).get("external_path", "").strip()
    try:
        services().users.update(target.id, {"external_path": value or None}, as_admin=True)
    except InvalidInput as error:
        flash(f"{target.email}: {error}", "error")
    else:
        flash(f"External path of {target.email}: {value or 'none'}")
    return see_other("/admin/users")


# -- Administration > Jobs -----------------------------------------------------------------------------------

QUEUE_TITLES = {
    "library": "Library (scans, remove offline, deletions)",
    "metadataExtraction": "Extract metadata",
    "thumbnailGeneration": "Generate thumbnails",
    "videoConversion": "Transcode videos",
    "storageTemplateMigration": "Storage template migration",
}


def _queues() -> list[dict]:
    library = services().library_jobs
    rows = [
        {
            "name": "library",
            "title": QUEUE_TITLES["library"],
            "counts": library.counts(),
            "active": library.is_active,
            "paused": library.paused,
            "now": library.describe_active(),
        }
    ]
    for name, queue in services().media.by_name().items():
        rows.append(
            {
                "name": name,
                "title": QUEUE_TITLES.get(name, name),
                "counts": queue.counts(),
                "active": queue.is_active,
                "paused": queue.paused,
                "now": None,
            }
        )
    return rows


@page("/admin/jobs", admin=True)
async def admin_jobs() -> Response:
    return await render("admin_jobs.html", title="Jobs", queues=_queues())


@page("/admin/jobs/table", admin=True)
async def admin_jobs_table() -> Response:
    """The queue table alone: the jobs page polls it every 2 s."""
    return await render("admin_jobs_table.html", queues=_queues())


@page("/admin/jobs/<name>", methods=("POST",), admin=True)
async def admin_job_command(name: str) -> Response:
    form = await request.form
    command = form.get("command", "")
    queue = services().library_jobs if name == "library" else services().media.by_name().get(name)
    if queue is None or command not in ("start", "start-all", "pause", "resume", "empty", "clear-failed"):
        raise InvalidInput(f"Not found: {name} {command}")
    try:
        if command in ("start", "start-all"):
            queue.start(force=command == "start-all")
        elif command == "pause":
            queue.pause()
        elif command == "resume":
            queue.resume()
        elif command == "empty":
            queue.empty()
        else:
            queue.clear_failed()
    except InvalidInput as error:
        flash(f"{QUEUE_TITLES.get(name, name)}: {error}", "error")
    else:
        flash(f"{QUEUE_TITLES.get(name, name)}: {command}")
    return see_other("/admin/jobs")
