"""Libraries: every user's upload library, and external libraries (folders on disk, tracked by path).

This module holds the library records' rules. Functions taking a `Txn` run inside the caller's write transaction,
so a user and their first library are created atomically.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio

from . import assets as asset_index
from .access import Principal
from .errors import InvalidInput, NotFoundOrNoAccess
from .exclusions import ExclusionMatcher
from .ids import new_id
from .index import LIBRARIES, USERS, Index, Txn
from .paths import NO_EXTERNAL_PATH_MESSAGE, NUL_MESSAGE, import_path_problem, not_absolute_message
from .records import Library, User
from .scan import NO_EXTERNAL_PATH, ScanMode
from .timeutil import utc_now

if TYPE_CHECKING:
    from .library_jobs import LibraryJobQueue

DEFAULT_UPLOAD_LIBRARY_NAME = "Default Library"
PATH_CHECK_THREADS = 4  # one owner's import-path checks (create, edit, validate) at once; more wait their turn
T = TypeVar("T")


def create_default_upload_library(txn: Txn, owner_id: uuid.UUID, now: datetime) -> Library:
    library = Library(
        id=new_id(),
        owner_id=owner_id,
        type="UPLOAD",
        name=DEFAULT_UPLOAD_LIBRARY_NAME,
        created_at=now,
        updated_at=now,
    )
    txn.put(LIBRARIES, library.id.bytes, library)
    return library


def libraries_of(txn: Txn, owner_id: uuid.UUID, *, include_deleted: bool = False) -> list[Library]:
    """The owner's libraries, oldest first."""
    found = [
        library
        for library in txn.values(LIBRARIES)
        if library.owner_id == owner_id and (include_deleted or library.deleted_at is None)
    ]
    return sorted(found, key=lambda library: library.created_at)


def oldest_upload_library(txn: Txn, owner_id: uuid.UUID) -> Library | None:
    """The owner's oldest upload library: where uploads without `libraryId` land and transferred uploads go. None
    only for an owner without one (`check_index` requires one for every live user)."""
    return next((library for library in libraries_of(txn, owner_id) if library.type == "UPLOAD"), None)


def mark_all_deleted(txn: Txn, owner_id: uuid.UUID, now: datetime) -> None:
    """Flag every library of a deleted user; the deletion job removes their assets and then the records."""
    for library in libraries_of(txn, owner_id):
        txn.put(LIBRARIES, library.id.bytes, msgspec.structs.replace(library, deleted_at=now, updated_at=now))


# -- validation of library fields (§2.5, §2.6, §3.6) ------------------------------------------------------------

MAX_LIST = 128
DEFAULT_EXTERNAL_NAME = "New External Library"
DEFAULT_UPLOAD_NAME = "New Upload Library"
DEFAULT_EXCLUSIONS = ["**/@eaDir/**", "**/._*", "**/#recycle/**", "**/#snapshot/**"]


def _check_list(values: list[str], field: str) -> None:
    problems = []
    if any(not value for value in values):
        problems.append(f"each value in {field} should not be empty")
    if len(set(values)) != len(values):
        problems.append(f"All {field}'s elements must be unique")
    if len(values) > MAX_LIST:
        problems.append(f"{field} must contain no more than {MAX_LIST} elements")
    if problems:
        raise InvalidInput(problems)


def check_fields(
    library_type: str,
    *,
    name: str | None,
    import_paths: list[str] | None,
    exclusion_patterns: list[str] | None,
    is_watched: bool | None,
    owner_external_path: str | None,
    data_dir: str,
) -> None:
    """Raise InvalidInput for anything §2.5/§2.6/§3.6 refuse; nothing is saved then."""
    if name is not None and not name:
        raise InvalidInput(["name should not be empty"])
    for values, field in ((import_paths, "importPaths"), (exclusion_patterns, "exclusionPatterns")):
        if values is not None:
            _check_list(values, field)
    if library_type == "UPLOAD":
        if import_paths:
            raise InvalidInput("Upload libraries cannot have import paths")
        if exclusion_patterns:
            raise InvalidInput("Upload libraries cannot have exclusion patterns")
        if is_watched:
            raise InvalidInput("Upload libraries cannot be watched")
        return
    if exclusion_patterns:
        try:
            ExclusionMatcher(exclusion_patterns)
        except Exception as error:  # wcmatch: PatternLimitException, re.error, …
            raise InvalidInput(f"Invalid exclusion pattern: {error}") from None
    for path in import_paths or []:
        if "\0" in path:
            raise InvalidInput(f"Invalid import path: {NUL_MESSAGE}")
        if not os.path.isabs(path):
            raise InvalidInput("Invalid import path: " + not_absolute_message(path))
        problem = import_path_problem(
            path, external_path=owner_external_path, data_dir=data_dir, check_disk=False
        )
        # §3.6: without an external path, paths are stored (a user may prepare libraries); nothing is imported.
        if problem is not None and problem != NO_EXTERNAL_PATH_MESSAGE:
            raise InvalidInput(f"Invalid import path: {problem}")


# -- the service ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LibraryStatistics:
    photos: int
    videos: int
    usage: int

    @property
    def total(self) -> int:
        return self.photos + self.videos


class LibraryService:
    """Library rules for callers (API, CLI): access, validation, and requests to the `library` job queue."""

    def __init__(self, index: Index, data_dir: str, jobs: LibraryJobQueue | None = None):
        self.index = index
        self.data_dir = data_dir
        self.jobs = jobs
        self.on_change: Callable[[], None] = lambda: None  # the watchers re-read the libraries (§8.3, §9.4)
        self._path_check_threads: dict[uuid.UUID, trio.CapacityLimiter] = {}

    async def _check_paths_in_thread(self, owner_id: uuid.UUID, check: Callable[[], T]) -> T:
        """Run a check that touches an owner's import paths in a worker thread, at most `PATH_CHECK_THREADS` at once
        per owner: checks stuck on one user's hung share hold only that user's threads — never trio's shared pool
        (uploads, reads), nor other users' checks."""
        limiter = self._path_check_threads.get(owner_id)
        if limiter is None:
            limiter = self._path_check_threads[owner_id] = trio.CapacityLimiter(PATH_CHECK_THREADS)
        return await trio.to_thread.run_sync(check, limiter=limiter)

    # -- reading ------------------------------------------------------------------------------------------

    def get(self, principal: Principal, library_id: uuid.UUID, permission: str = "library.read") -> Library:
        with self.index.read() as txn:
            library = txn.get(LIBRARIES, library_id.bytes)
        if library is None or library.deleted_at is not None:
            raise NotFoundOrNoAccess(permission)
        principal.require_owner_or_admin(library.owner_id, permission)
        return library

    def list(self, principal: Principal, library_type: str | None = None) -> list[Library]:
        """The caller's libraries, oldest first; every user's for an admin (§2.10)."""
        with self.index.read() as txn:
            found = [
                library
                for library in txn.values(LIBRARIES)
                if library.deleted_at is None
                and (principal.is_admin or library.owner_id == principal.user.id)
                and (library_type is None or library.type == library_type)
            ]
        return sorted(found, key=lambda library: library.created_at)

    def asset_count(self, library: Library) -> int:
        """Assets not trashed, offline ones included (§2.11): the library's tally, no walk."""
        with self.index.read() as txn:
            return asset_index.tally_of(txn, library.id).assets

    def statistics(self, principal: Principal, library_id: uuid.UUID) -> LibraryStatistics:
        library = self.get(principal, library_id, "library.read")
        with self.index.read() as txn:
            tally = asset_index.tally_of(txn, library.id)
        return LibraryStatistics(photos=tally.photos, videos=tally.videos, usage=tally.usage)

    def owner_of(self, library: Library) -> User:
        with self.index.read() as txn:
            owner = txn.get(USERS, library.owner_id.bytes)
        if owner is None:
            raise NotFoundOrNoAccess("library.read")
        return owner

    # -- writing ------------------------------------------------------------------------------------------

    def create(
        self,
        principal: Principal,
        *,
        library_type: str = "EXTERNAL",
        name: str | None = None,
        import_paths: list[str] | None = None,
        exclusion_patterns: list[str] | None = None,
        is_watched: bool | None = None,
        owner_id: uuid.UUID | None = None,
        checked: User | None = None,
    ) -> Library:
        """`checked`: the owner as `check_fields` saw them when these fields passed (`create_async`); checked again
        here only if the owner's external path changed meanwhile."""
        owner = self._new_library_owner(principal, owner_id)
        if checked is None or checked.external_path != owner.external_path:
            check_fields(
                library_type, name=name, import_paths=import_paths, exclusion_patterns=exclusion_patterns,
                is_watched=is_watched, owner_external_path=owner.external_path, data_dir=self.data_dir,
            )  # fmt: skip
        external = library_type == "EXTERNAL"
        now = utc_now()
        library = Library(
            id=new_id(),
            owner_id=owner.id,
            type="EXTERNAL" if external else "UPLOAD",
            name=name or (DEFAULT_EXTERNAL_NAME if external else DEFAULT_UPLOAD_NAME),
            import_paths=list(import_paths or []),
            exclusion_patterns=list(exclusion_patterns if exclusion_patterns is not None else
                                    (DEFAULT_EXCLUSIONS if external else [])),
            created_at=now,
            updated_at=now,
        )  # fmt: skip
        self.index.write(lambda txn: txn.put(LIBRARIES, library.id.bytes, library))
        self.on_change()
        return library

    def _new_library_owner(self, principal: Principal, owner_id: uuid.UUID | None) -> User:
        """Whom a new library belongs to: the principal, or (admins only) the user named."""
        if owner_id is not None and owner_id != principal.user.id:
            principal.require_admin()
        with self.index.read() as txn:
            owner = txn.get(USERS, (owner_id or principal.user.id).bytes)
        if owner is None or owner.deleted_at is not None:
            raise InvalidInput("User not found")
        return owner

    async def create_async(self, principal: Principal, **fields: Any) -> Library:
        """`create` for the event loop: import paths are checked in a worker thread first, since resolving them may
        touch a hung network mount, which must not freeze the daemon (as `validate`)."""
        if not fields.get("import_paths"):  # nothing on disk to look at
            return self.create(principal, **fields)
        owner = self._new_library_owner(principal, fields.get("owner_id"))
        await self._check_paths_in_thread(owner.id, functools.partial(
            check_fields, fields.get("library_type", "EXTERNAL"), name=fields.get("name"),
            import_paths=fields.get("import_paths"), exclusion_patterns=fields.get("exclusion_patterns"),
            is_watched=fields.get("is_watched"), owner_external_path=owner.external_path, data_dir=self.data_dir,
        ))  # fmt: skip
        return self.create(principal, **fields, checked=owner)

    async def update_async(self, principal: Principal, library_id: uuid.UUID, **fields: Any) -> Library:
        """`update` for the event loop, its import paths checked in a worker thread (`create_async`)."""
        if not fields.get("import_paths"):
            return self.update(principal, library_id, **fields)
        library = self.get(principal, library_id, "library.update")
        owner = self.owner_of(library)
        await self._check_paths_in_thread(owner.id, functools.partial(
            check_fields, library.type, name=fields.get("name"), import_paths=fields.get("import_paths"),
            exclusion_patterns=fields.get("exclusion_patterns"), is_watched=None,
            owner_external_path=owner.external_path, data_dir=self.data_dir,
        ))  # fmt: skip
        return self.update(principal, library_id, **fields, checked=owner)

    def update(
        self,
        principal: Principal,
        library_id: uuid.UUID,
        *,
        name: str | None = None,
        import_paths: list[str] | None = None,
        exclusion_patterns: list[str] | None = None,
        checked: User | None = None,
    ) -> Library:
        """§8.1: omitted fields stay; given lists replace. Editing never starts a scan. `checked`: as for `create`
        (the library's owner may have changed too, by a transfer)."""
        library = self.get(principal, library_id, "library.update")
        owner = self.owner_of(library)
        if checked is None or (checked.id, checked.external_path) != (owner.id, owner.external_path):
            check_fields(
                library.type, name=name, import_paths=import_paths, exclusion_patterns=exclusion_patterns,
                is_watched=None, owner_external_path=owner.external_path, data_dir=self.data_dir,
            )  # fmt: skip
        changes: dict[str, object] = {"updated_at": utc_now()}
        if name is not None:
            changes["name"] = name
        if import_paths is not None:
            changes["import_paths"] = list(import_paths)
        if exclusion_patterns is not None:
            changes["exclusion_patterns"] = list(exclusion_patterns)

        def work(txn: Txn) -> Library:
            current = txn.get(LIBRARIES, library_id.bytes)
            if current is None or current.deleted_at is not None:
                raise NotFoundOrNoAccess("library.update")
            updated = msgspec.structs.replace(current, **changes)
            txn.put(LIBRARIES, library_id.bytes, updated)
            return updated

        updated = self.index.write(work)
        self.on_change()
        return updated

    def delete(self, principal: Principal, library_id: uuid.UUID) -> None:
        """§9: the library disappears at once; the `library` queue then removes its assets."""
        library = self.get(principal, library_id, "library.delete")

        def work(txn: Txn) -> None:
            current = txn.get(LIBRARIES, library_id.bytes)
            if current is None or current.deleted_at is not None:
                raise NotFoundOrNoAccess("library.delete")
            if current.type == "UPLOAD":
                uploads = [lib for lib in libraries_of(txn, current.owner_id) if lib.type == "UPLOAD"]
                if len(uploads) <= 1:
                    raise InvalidInput("Cannot delete the last upload library")
            now = utc_now()
            txn.put(
                LIBRARIES, library_id.bytes, msgspec.structs.replace(current, deleted_at=now, updated_at=now)
            )

        self.index.write(work)
        self.on_change()
        if self.jobs is not None:
            self.jobs.request_delete(library.id)

    async def validate(
        self, principal: Principal, library_id: uuid.UUID, import_paths: list[str]
    ) -> list[tuple[str, str | None]]:
        """§3.7: (path, problem or None) for each given path, in order, against the owner's external path.

        The disk checks run in a worker thread: a hung network mount must not freeze the daemon."""
        library = self.get(principal, library_id, "library.update")
        owner = self.owner_of(library)

        def check_all() -> list[tuple[str, str | None]]:
            return [
                (path, import_path_problem(path, external_path=owner.external_path, data_dir=self.data_dir))
                for path in import_paths
            ]

        return await self._check_paths_in_thread(owner.id, check_all)

    def request_scan(self, principal: Principal, library_id: uuid.UUID, mode: ScanMode) -> None:
        """§5.1-5.2: refused for upload libraries and owners without an external path; otherwise queued."""
        library = self.get(principal, library_id, "library.update")
        self.check_scannable(library)
        if self.jobs is None:
            raise InvalidInput("Scans run in the daemon")
        self.jobs.request_scan(library.id, mode)

    def check_scannable(self, library: Library) -> None:
        if library.type != "EXTERNAL":
            raise InvalidInput("Can only refresh external libraries")
        if self.owner_of(library).external_path is None:
            raise InvalidInput(NO_EXTERNAL_PATH)

    def request_remove_offline(self, principal: Principal, library_id: uuid.UUID) -> None:
        library = self.get(principal, library_id, "library.update")
        if library.type == "EXTERNAL" and self.jobs is not None:
            self.jobs.request_remove_offline(library.id)
