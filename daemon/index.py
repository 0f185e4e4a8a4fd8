"""The index: one LMDB environment with named sub-databases ("tables") of typed records.

Contract:
- All access is synchronous and belongs to one thread (the trio thread in the daemon). Other processes (the CLI,
  `filmroll check`, a backup) may open the same environment at the same time; LMDB's locking makes that safe.
- A write is a plain function run inside one write transaction: `index.write(lambda txn: ...)`. Because it is a
  function, not an `async` block, a write transaction can never span an `await`. If the map is full, the map is
  grown and the function runs again from the start, so it must not have side effects outside the transaction.
- Keys are bytes. Ids are the 16 raw bytes of a UUID; file paths are `os.fsencode` bytes.
- The stored schema version is checked on open: an older index is migrated (`MIGRATIONS`), a newer one is
  refused with a clear message.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import lmdb
import msgspec

from .errors import IndexUnusable, StorageFull
from .records import (
    Album,
    ApiKey,
    Asset,
    AssetEdits,
    ExifInfo,
    JobFailure,
    Library,
    PendingJob,
    Session,
    User,
)

log = logging.getLogger(__name__)

V = TypeVar("V")
T = TypeVar("T")

SCHEMA_VERSION = 4
INITIAL_MAP_SIZE = 256 * 1024 * 1024
_ENCODER = msgspec.msgpack.Encoder(uuid_format="bytes")


class Table(Generic[V]):
    """A named sub-database. With a `record_type`, values are msgpack-encoded records; without, raw bytes."""

    def __init__(self, name: str, record_type: type[V] | None = None):
        self.name = name
        self.record_type = record_type
        self._decoder = msgspec.msgpack.Decoder(record_type) if record_type is not None else None

    def encode(self, value: V) -> bytes:
        return _ENCODER.encode(value) if self._decoder is not None else value  # type: ignore[return-value]

    def decode(self, raw: bytes) -> V:
        return self._decoder.decode(raw) if self._decoder is not None else raw  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Table({self.name!r})"


# The tables. Each has one meaning; secondary tables ("x_by_y") map a lookup key to a primary id.
META: Table[bytes] = Table("meta")  # b"schema_version" -> msgpack int
USERS = Table("users", User)  # user id -> User
USER_BY_EMAIL: Table[bytes] = Table("user_by_email")  # casefolded email (utf-8) -> user id
SESSIONS = Table("sessions", Session)  # sha256(token) -> Session
API_KEYS = Table("api_keys", ApiKey)  # key id -> ApiKey
API_KEY_BY_SECRET: Table[bytes] = Table("api_key_by_secret")  # sha256(secret) -> key id
LIBRARIES = Table("libraries", Library)  # library id -> Library
ASSETS = Table("assets", Asset)  # asset id -> Asset
ASSET_BY_PATH: Table[bytes] = Table("asset_by_path")  # library id + original path bytes -> asset id
OFFLINE_BY_SIGNATURE: Table[bytes] = Table(
    "offline_by_signature"
)  # library id + size + mtime + asset id -> b""
# One table per media queue (asset id -> PendingJob): LMDB keeps each table's entry count, so "how many are
# waiting" is a constant-time stat, not a walk over a million entries.
PENDING_METADATA = Table("pending_metadataExtraction", PendingJob)
PENDING_THUMBNAILS = Table("pending_thumbnailGeneration", PendingJob)
PENDING_VIDEO = Table("pending_videoConversion", PendingJob)
PENDING_STORAGE_TEMPLATE = Table("pending_storageTemplateMigration", PendingJob)
JOB_FAILURES = Table("job_failures", JobFailure)  # asset id + queue name -> JobFailure
EXIF = Table(
    "exif", ExifInfo
)  # asset id -> ExifInfo (kept apart from Asset: only GET /api/assets/{id} reads it)

ASSET_EDITS = Table("asset_edits", AssetEdits)  # asset id -> the owner's edits (override metadata)
ASSET_BY_CHECKSUM: Table[bytes] = Table(
    "asset_by_checksum"
)  # owner id + content SHA-1 -> asset id, upload-library assets only (duplicates, §14)
TIMELINE: Table[bytes] = Table(
    "timeline"
)  # owner id + local capture time + asset id -> flags (`daemon.assets.TimelineEntry`): every asset by owner
LIBRARY_TALLIES: Table[bytes] = Table(
    "library_tallies"
)  # library id -> photos, videos, bytes of its assets not trashed (`daemon.assets.LibraryTally`)
ALBUMS = Table("albums", Album)  # album id -> Album
ALBUM_BY_OWNER: Table[bytes] = Table("album_by_owner")  # owner id + album id -> b""
ALBUM_ASSETS: Table[bytes] = Table("album_assets")  # album id + asset id -> added-at (8 bytes, µs)
ASSET_ALBUMS: Table[bytes] = Table("asset_albums")  # asset id + album id -> b"" (the reverse of album_assets)

TABLES: tuple[Table[Any], ...] = (
    META,
    USERS,
    USER_BY_EMAIL,
    SESSIONS,
    API_KEYS,
    API_KEY_BY_SECRET,
    LIBRARIES,
    ASSETS,
    ASSET_BY_PATH,
    OFFLINE_BY_SIGNATURE,
    PENDING_METADATA,
    PENDING_THUMBNAILS,
    PENDING_VIDEO,
    JOB_FAILURES,
    EXIF,
    PENDING_STORAGE_TEMPLATE,
    ASSET_EDITS,
    ASSET_BY_CHECKSUM,
    TIMELINE,
    LIBRARY_TALLIES,
    ALBUMS,
    ALBUM_BY_OWNER,
    ALBUM_ASSETS,
    ASSET_ALBUMS,
)

# Schema migrations: MIGRATIONS[n] upgrades an index at version n to n + 1, inside one write transaction.
Migration = Callable[["Txn"], None]


def _media_pipeline(txn: Txn) -> None:
    """1 -> 2: assets gained media fields (appended, with defaults) and the media tables appeared (created on
    open). A version-1 index never had metadata, thumbnails or transcode decisions, so every asset gets that
    work queued (its content hash, if any, is kept). The bump keeps an older filmroll off the longer records."""
    from datetime import UTC, datetime

    job = PendingJob(queued_at=datetime.now(UTC))
    for key, asset in list(txn.items(ASSETS)):
        txn.put(PENDING_METADATA, key, job)
        txn.put(PENDING_THUMBNAILS, key, job)
        if asset.type == "VIDEO":
            txn.put(PENDING_VIDEO, key, job)


def _albums_and_uploads(txn: Txn) -> None:
    """2 -> 3: the per-owner timeline and the upload checksum tables appeared (albums start empty). Fill them from
    the assets; uploads did not exist before version 3, so only the timeline has entries to build."""
    from .assets import timeline_entry, timeline_key

    for _, asset in txn.items(ASSETS):  # writes go to another table: the cursor stays valid
        txn.put(TIMELINE, timeline_key(asset), timeline_entry(asset))


def _tallies_and_exact_times(txn: Txn) -> None:
    """3 -> 4: per-library tallies appeared, so asset counts and statistics no longer walk a library's assets:
    fill them from the assets. And timeline keys became exact integers: version 3 took them through a float
    timestamp, which truncated toward zero before 1970 and stepped by a second near year 9999; the few entries
    whose key differs move. One pass over the assets, decoded one at a time."""
    from datetime import UTC, datetime

    from .assets import add_to_tallies, timeline_key

    def schema_3_micros(moment: datetime) -> int:
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return int(moment.timestamp()) * 1_000_000 + moment.microsecond

    moves: list[tuple[bytes, bytes]] = []

    def each_asset() -> Iterator[Asset]:
        for _, asset in txn.items(ASSETS):
            key = timeline_key(asset)
            old = key[:16] + (schema_3_micros(asset.local_date_time) + (1 << 63)).to_bytes(8, "big") + key[24:]
            if old != key:
                moves.append((old, key))
            yield asset

    add_to_tallies(txn, each_asset())  # writes go to another table: the cursor on `assets` stays valid
    for old, key in moves:
        value = txn.get(TIMELINE, old)
        if value is not None:
            txn.delete(TIMELINE, old)
            txn.put(TIMELINE, key, value)


MIGRATIONS: Mapping[int, Migration] = {1: _media_pipeline, 2: _albums_and_uploads, 3: _tallies_and_exact_times}


class Txn:
    """One LMDB transaction with typed access to the tables. Valid only inside `Index.read`/`Index.write`."""

    def __init__(self, raw: lmdb.Transaction, dbs: Mapping[str, Any]):
        self.raw = raw
        self._dbs = dbs

    def get(self, table: Table[V], key: bytes) -> V | None:
        raw = self.raw.get(key, db=self._dbs[table.name])
        return None if raw is None else table.decode(raw)

    def put(self, table: Table[V], key: bytes, value: V, *, overwrite: bool = True) -> bool:
        """Store `value`; with `overwrite=False`, keep an existing value and return False."""
        return self.raw.put(key, table.encode(value), db=self._dbs[table.name], overwrite=overwrite)

    def put_many(self, table: Table[V], items: list[tuple[bytes, V]] | list[tuple[bytes, bytes]], *,
                 encoded: bool = False) -> None:  # fmt: skip
        """Store many entries in one C-level loop (LMDB `putmulti`): for bulk imports. `encoded`: the values are
        already `table.encode`d (by a scan worker)."""
        with self.raw.cursor(db=self._dbs[table.name]) as cursor:
            if encoded or table.record_type is None:
                cursor.putmulti(items)
            else:
                cursor.putmulti([(key, _ENCODER.encode(value)) for key, value in items])

    def put_same(self, table: Table[V], keys: list[bytes], value: V) -> None:
        """Store one value under many keys (encoded once), in one C-level loop: for bulk imports."""
        encoded = table.encode(value)
        with self.raw.cursor(db=self._dbs[table.name]) as cursor:
            cursor.putmulti([(key, encoded) for key in keys])

    def delete(self, table: Table[Any], key: bytes) -> bool:
        return self.raw.delete(key, db=self._dbs[table.name])

    def items(
        self, table: Table[V], prefix: bytes = b"", *, after: bytes | None = None
    ) -> Iterator[tuple[bytes, V]]:
        """Entries in key order whose key starts with `prefix` (and, with `after`, sorts strictly after it)."""
        with self.raw.cursor(db=self._dbs[table.name]) as cursor:
            start = prefix if after is None or after < prefix else after
            if not cursor.set_range(start):
                return
            for key, raw in cursor:
                if not key.startswith(prefix):
                    return
                if after is not None and key <= after:
                    continue
                yield key, table.decode(raw)

    def raw_items(self, table: Table[Any]) -> Iterator[tuple[bytes, bytes]]:
        """Undecoded entries in key order (for `check`, which must survive records that do not decode)."""
        with self.raw.cursor(db=self._dbs[table.name]) as cursor:
            for key, raw in cursor:
                yield bytes(key), bytes(raw)

    def values(self, table: Table[V], prefix: bytes = b"") -> Iterator[V]:
        for _, value in self.items(table, prefix):
            yield value

    @contextmanager
    def cursor(self, table: Table[Any]) -> Iterator[lmdb.Cursor]:
        """A raw cursor over `table` (values undecoded), for merge-joins that walk a table in step with a stream."""
        with self.raw.cursor(db=self._dbs[table.name]) as cursor:
            yield cursor

    def clear(self, table: Table[Any]) -> None:
        """Delete every entry of `table` (the table itself stays)."""
        self.raw.drop(self._dbs[table.name], delete=False)

    def count(self, table: Table[Any]) -> int:
        return self.raw.stat(self._dbs[table.name])["entries"]


class Index:
    """Owns the LMDB environment at `path` (a directory). Close it with `close()` (or use it as a context manager).

    Raises `IndexUnusable` if the environment cannot be opened or its schema version is newer than this code's.
    `readonly=True` opens an existing index without creating or migrating anything (for `filmroll check`).
    Only an open with `migrate=True` (the daemon's) upgrades an older schema; other processes refuse it, so a CLI
    command never migrates an index under a running daemon.
    """

    def __init__(
        self,
        path: Path,
        *,
        readonly: bool = False,
        map_size: int = INITIAL_MAP_SIZE,
        schema_version: int = SCHEMA_VERSION,
        migrations: Mapping[int, Migration] = MIGRATIONS,
        migrate: bool = False,
    ):
        self.path = Path(path)
        self._open_readers = 0
        self._closed = False
        self.readonly = readonly
        self.schema_version = schema_version
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not (self.path / "data.mdb").exists():
            raise IndexUnusable(f"No index at {self.path} (expected {self.path / 'data.mdb'})")
        try:
            self.env = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=len(TABLES) + 8,
                readonly=readonly,
                create=not readonly,
                max_readers=256,
            )
        except lmdb.Error as error:
            raise IndexUnusable(f"Cannot open the index at {self.path}: {error}") from error
        try:
            self.env.reader_check()  # free the slots of readers that died (a killed CLI must not pin pages)
            self._open_tables()
            self._prepare_schema(migrations, migrate=migrate)
        except BaseException:
            self.env.close()  # LMDB forbids a second open of the same environment in this process
            raise

    def _open_tables(self) -> None:
        self._dbs: dict[str, Any] = {}
        if self.readonly:
            for table in TABLES:
                try:
                    self._dbs[table.name] = self.env.open_db(table.name.encode(), create=False)
                except lmdb.NotFoundError as error:
                    raise IndexUnusable(f"The index at {self.path} has no table {table.name!r}") from error
        else:
            with self.env.begin(write=True) as raw:
                for table in TABLES:
                    self._dbs[table.name] = self.env.open_db(table.name.encode(), txn=raw)

    # -- transactions -------------------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Txn]:
        """A read-only snapshot. Cheap; keep it short in the daemon so old pages can be reused."""
        raw = self._begin(write=False)
        self._open_readers += 1
        try:
            yield Txn(raw, self._dbs)
        finally:
            self._open_readers -= 1
            raw.abort()

    def write(self, work: Callable[[Txn], T]) -> T:
        """Run `work(txn)` in one write transaction and commit; return its result.

        If the map fills up, the map is grown and `work` runs again from the start. An exception from `work`
        aborts the transaction and propagates. Raises StorageFull when the filesystem has no room for the commit.
        """
        if self.readonly:
            raise IndexUnusable("The index was opened read-only")
        if inspect.iscoroutinefunction(work):
            raise TypeError("Index.write takes a plain function: a write transaction must not span an await")
        while True:
            raw = self._begin(write=True)
            try:
                result = work(Txn(raw, self._dbs))
                if inspect.isawaitable(result):
                    raise TypeError("Index.write work returned an awaitable")
                raw.commit()
                return result
            except lmdb.MapFullError:
                raw.abort()
                self._grow()
            except lmdb.DiskError as error:  # ENOSPC: the filesystem is full, nothing was committed
                raw.abort()
                raise StorageFull(
                    f"Not enough free space to write the index at {self.path} (No space left on device)"
                ) from error
            except lmdb.Error as error:
                raw.abort()
                if self._filesystem_full():  # a short write on a full filesystem reaches LMDB as EIO
                    raise StorageFull(
                        f"Not enough free space to write the index at {self.path} (No space left on device)"
                    ) from error
                raise
            except BaseException:
                raw.abort()
                raise

    def _filesystem_full(self) -> bool:
        try:
            status = os.statvfs(self.path)
        except OSError:
            return False
        return status.f_bavail * status.f_frsize < 1 << 20  # under 1 MiB: not even one more commit fits

    def _begin(self, *, write: bool) -> lmdb.Transaction:
        try:
            return self.env.begin(write=write)
        except lmdb.MapResizedError:
            # Another process grew the map: adopt its size and try again.
            self.env.set_mapsize(0)
            return self.env.begin(write=write)

    def _grow(self) -> None:
        if self._open_readers:
            # py-lmdb cannot resize under an open transaction of this process (it would invalidate it).
            raise IndexUnusable("The index map is full and cannot grow while a read transaction is open")
        self.env.reader_check()
        old = self.env.info()["map_size"]
        new = old * 2
        log.info("index map is full at %d MiB; growing it to %d MiB", old >> 20, new >> 20)
        self.env.set_mapsize(new)

    # -- schema -------------------------------------------------------------------------------------------

    def stored_schema_version(self) -> int | None:
        with self.read() as txn:
            raw = txn.get(META, b"schema_version")
        return None if raw is None else msgspec.msgpack.decode(raw, type=int)

    def _prepare_schema(self, migrations: Mapping[int, Migration], *, migrate: bool) -> None:
        stored = self.stored_schema_version()
        if stored is None:
            if self.readonly:
                raise IndexUnusable(f"The index at {self.path} has no schema version")
            self.write(
                lambda txn: txn.put(META, b"schema_version", msgspec.msgpack.encode(self.schema_version))
            )
            return
        if stored > self.schema_version:
            raise IndexUnusable(
                f"The index at {self.path} has schema version {stored}, newer than this filmroll understands "
                f"({self.schema_version}). Upgrade filmroll, or restore a backup made by this version."
            )
        if stored < self.schema_version:
            if self.readonly or not migrate:
                raise IndexUnusable(
                    f"The index at {self.path} has schema version {stored}; start the daemon once to migrate it "
                    f"to {self.schema_version}"
                )
            for version in range(stored, self.schema_version):
                migrate = migrations.get(version)
                if migrate is None:
                    raise IndexUnusable(f"No migration from index schema version {version} to {version + 1}")
                log.info("migrating the index from schema version %d to %d", version, version + 1)

                def step(txn: Txn, migrate: Migration = migrate, version: int = version) -> None:
                    migrate(txn)
                    txn.put(META, b"schema_version", msgspec.msgpack.encode(version + 1))

                self.write(step)

    # -- lifecycle ----------------------------------------------------------------------------------------

    @property
    def map_size(self) -> int:
        return self.env.info()["map_size"]

    def sync(self) -> None:
        if not self.readonly:
            self.env.sync(True)

    def copy_to(self, destination: Path, *, compact: bool = True) -> None:
        """A consistent copy of the whole environment into an empty directory (hot: writers go on)."""
        destination.mkdir(parents=True, exist_ok=True)
        self.env.copy(os.fspath(destination), compact=compact)

    def close(self) -> None:
        """Sync and close (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self.sync()
        self.env.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
