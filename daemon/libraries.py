"""Libraries: every user's upload library, and external libraries (folders on disk, tracked by path).

This module holds the library records' rules. Functions taking a `Txn` run inside the caller's write transaction,
so a user and their first library are created atomically.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from .index import LIBRARIES, Txn
from .records import Library

DEFAULT_UPLOAD_LIBRARY_NAME = "Default Library"


def create_default_upload_library(txn: Txn, owner_id: uuid.UUID, now: datetime) -> Library:
    library = Library(
        id=uuid.uuid4(),
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


def mark_all_deleted(txn: Txn, owner_id: uuid.UUID, now: datetime) -> None:
    """Flag every library of a deleted user; the deletion job removes their assets and then the records."""
    for library in libraries_of(txn, owner_id):
        txn.put(LIBRARIES, library.id.bytes, msgspec.structs.replace(library, deleted_at=now, updated_at=now))
