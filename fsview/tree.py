"""What the FUSE view shows: folders, their entries, names, inode numbers and readdir cursors. Plain Python over
the index (no pyfuse3), so it is tested without a mount.

The tree (README "The FUSE view"):

    <mount>/<user>/albums/<album name>/<file>
    <mount>/<user>/timeline/<YYYY>/<MM>/<file>
    <mount>/<user>/favorites/<file>
    <mount>/<user>/libraries/<library name>/<folders as on disk>/<file>

`<user>` is the storage label, else the email. What is shown follows the API's rules: trashed, offline, hidden
and locked assets are never shown; archived ones are shown in albums, favorites and libraries but not in the
timeline. An album shows its members, a library the files under its import path (uploads: under the data
directory) in the folders they have on disk.

Identity:
- A folder's inode number is a 63-bit hash of what it is (kind, owner, album/library id, path), so a renamed
  album keeps its inode and a folder moved to another owner (a user transfer) gets a new one.
- A file's inode number is a hash of (asset id, size, mtime): the same asset in several folders is one inode
  (a hard link), and a file whose content changes (new size or mtime) gets a new inode, so the kernel's page
  cache can never mix old and new bytes. Numbers are never reused for something else; a hash collision (odds
  about 1e-8 for a million entries) would show as a missing entry in one folder.
- A readdir cursor is the entry's inode number: entries are listed in inode order and a listing resumes after
  the cursor it was given, so entries added or removed meanwhile never make another one repeat or vanish.

Names are bytes (on-disk names need not be UTF-8), never contain `/` or NUL, are never `.`, `..` or empty, fit
NAME_MAX (255 bytes), and are unique within a folder: when several entries want one name, the one with the
smallest id keeps it and the others get ` (<last 8 hex digits of their id>)` before the extension (the full id
if even that collides). The suffix depends only on the entry's own id, so adding unrelated entries never
renames anything.

Freshness: `Tree` caches the listings it computed, each stamped with the index's last transaction id. `refresh`
(called by `fsview.invalidation` when the index moved) recomputes the cached listings and returns what the
kernel must forget (`Invalidations`); handlers only read the cache, so a listing is at most one refresh old.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import stat
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from daemon import album_index
from daemon import assets as asset_index
from daemon.index import ALBUM_ASSETS, ASSET_BY_PATH, LIBRARIES, TIMELINE, USERS, Index, Table, Txn
from daemon.libraries import libraries_of
from daemon.records import Asset, Library, User
from daemon.timeline import month_start, next_month

log = logging.getLogger(__name__)

ROOT_INODE = 1  # pyfuse3.ROOT_INODE (FUSE_ROOT_ID)
NAME_MAX = 255
IDLE_SECONDS = 30.0
"""A cached listing nobody used for this long is dropped instead of refreshed (the kernel's own entries for it
expire long before: `fsview.operations` gives them a 1 s timeout)."""

FILE_MODE = stat.S_IFREG | 0o444
FOLDER_MODE = stat.S_IFDIR | 0o555
ROOT_MODE = stat.S_IFDIR | 0o551
"""The mount's root: others may pass through to their own folder but not list everyone's names."""
USER_FOLDER_MODE = stat.S_IFDIR | 0o550
"""A user's own folder: owner and group only, so `default_permissions` keeps other local users out."""

# Folder kinds.
ROOT, USER, ALBUMS, ALBUM, TIMELINE_ROOT, YEAR, MONTH, FAVORITES, LIBRARIES_ROOT, LIBRARY, LIBRARY_DIR = (
    "root", "user", "albums", "album", "timeline", "year", "month", "favorites", "libraries", "library", "dir",
)  # fmt: skip
USER_FOLDERS = ((b"albums", ALBUMS), (b"favorites", FAVORITES), (b"libraries", LIBRARIES_ROOT),
                (b"timeline", TIMELINE_ROOT))  # fmt: skip
IN_TIMELINE = ("timeline",)
"""Visibilities shown in the timeline (archived ones are not, as in Immich)."""
SHOWN = ("timeline", "archive")
"""Visibilities shown in albums, favorites and libraries (hidden live-photo parts and locked assets never)."""


_FACT_TYPES: dict[str, Any] = {
    "id": uuid.UUID, "owner_id": uuid.UUID, "original_path": bytes, "file_size": int, "file_mtime_ns": int,
    "is_offline": bool, "trashed_at": datetime | None, "visibility": str, "original_file_name": str,
}  # fmt: skip


def _fact_field(field: msgspec.structs.FieldInfo) -> tuple[Any, ...]:
    wanted = _FACT_TYPES.get(field.name)
    if field.default is msgspec.NODEFAULT:
        return field.name, wanted or msgspec.Raw
    return field.name, wanted or msgspec.Raw, field.default if wanted else msgspec.Raw()


FileFacts = msgspec.defstruct(
    "FileFacts",
    [_fact_field(field) for field in msgspec.structs.fields(Asset)],
    array_like=True,
    kw_only=True,
)
"""An `Asset` record decoded only as far as the view needs it (datetimes and the rest stay raw bytes): a listing
of 100k files decodes 100k records. Built from `Asset`'s own fields, so it follows the record's evolution."""
_ASSET_FACTS: Table[Any] = Table("assets", FileFacts)


_SIZE_MTIME = struct.Struct(">Qq")


def _hash63(key: bytes) -> int:
    number = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1
    return number if number > ROOT_INODE else number + 2


@dataclass(frozen=True, slots=True)
class Folder:
    kind: str
    owner: uuid.UUID | None
    ident: bytes
    """What the folder is within its kind: album or library id, year/month, library id + on-disk path."""
    inode: int
    mtime_ns: int

    @property
    def identity(self) -> tuple[str, uuid.UUID | None, bytes]:
        return self.kind, self.owner, self.ident


@dataclass(frozen=True, slots=True)
class File:
    asset_id: uuid.UUID
    owner: uuid.UUID
    size: int
    mtime_ns: int
    inode: int


Node = Folder | File


def make_folder(kind: str, owner: uuid.UUID | None, ident: bytes = b"", mtime_ns: int = 0) -> Folder:
    key = b"D" + kind.encode() + b"\0" + (owner.bytes if owner else b"") + ident
    return Folder(kind, owner, ident, ROOT_INODE if kind == ROOT else _hash63(key), mtime_ns)


def make_file(asset_id: uuid.UUID, owner: uuid.UUID, size: int, mtime_ns: int) -> File:
    return File(
        asset_id, owner, size, mtime_ns, _hash63(b"F" + asset_id.bytes + _SIZE_MTIME.pack(size, mtime_ns))
    )


def file_of(asset: Asset | Any) -> File:
    """The file node of an `Asset` (or `FileFacts`)."""
    return make_file(asset.id, asset.owner_id, asset.file_size, asset.file_mtime_ns)


def file_name(asset: Asset | Any) -> str | bytes:
    """The name an asset is shown by (`daemon.assets.file_name`, but the on-disk bytes stay bytes)."""
    return asset.original_file_name or os.path.basename(asset.original_path)


# -- names ---------------------------------------------------------------------------------------------------


def _truncate(raw: bytes, limit: int) -> bytes:
    """At most `limit` bytes, cut on a UTF-8 character boundary when the bytes are UTF-8."""
    if len(raw) <= limit:
        return raw
    cut = raw[:limit]
    while cut and (cut[-1] & 0xC0) == 0x80:  # a continuation byte: back up to the character's start
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:  # a lead byte whose continuation was cut off
        cut = cut[:-1]
    return cut or raw[:limit]  # nothing left: not UTF-8 (continuation bytes only), so a plain byte cut


def safe_name(name: str | bytes) -> bytes:
    """A valid file name for `name`: `/` becomes U+2215 DIVISION SLASH, NUL becomes `_`, `.`/`..`/empty get a
    leading `_`, longer than 255 bytes is shortened (keeping the extension when it is short)."""
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    raw = raw.replace(b"/", "\u2215".encode()).replace(b"\0", b"_")
    if raw in (b"", b".", b".."):
        raw = b"_" + raw
    if len(raw) > NAME_MAX:
        stem, extension = _split_extension(raw)
        raw = _truncate(stem, NAME_MAX - len(extension)) + extension
    return raw


def _split_extension(name: bytes) -> tuple[bytes, bytes]:
    stem, extension = os.path.splitext(name)
    if not stem or len(extension) > 16:
        return name, b""
    return stem, extension


def _with_suffix(name: bytes, suffix: bytes) -> bytes:
    stem, extension = _split_extension(name)
    tail = b" (" + suffix + b")" + extension
    return _truncate(stem, NAME_MAX - len(tail)) + tail


def unique_names(wanted: Iterable[tuple[bytes, bytes, Node]]) -> dict[bytes, Node]:
    """Name → node for (wanted safe name, id bytes, node) triples. Collisions: the smallest id keeps the name,
    the others get ` (<last 8 hex digits of the id>)` before the extension, or the full id if that is taken."""
    groups: dict[bytes, list[tuple[bytes, Node]]] = {}
    for name, ident, node in wanted:
        groups.setdefault(name, []).append((ident, node))
    names: dict[bytes, Node] = {}
    losers: list[tuple[bytes, bytes, Node]] = []
    for name, members in groups.items():
        if len(members) > 1:
            members.sort(key=lambda member: member[0])
            losers.extend((name, ident, node) for ident, node in members[1:])
        names[name] = members[0][1]
    for name, ident, node in sorted(losers, key=lambda loser: loser[1]):
        for suffix in (ident.hex()[-8:].encode(), ident.hex().encode()):
            candidate = _with_suffix(name, suffix)
            if candidate not in names:
                names[candidate] = node
                break
        else:  # the full id is taken too: only a name built on purpose could do that
            candidate, number = _with_suffix(name, ident.hex().encode()), 2
            while candidate in names:
                candidate, number = _with_suffix(name, ident.hex().encode() + b"-%d" % number), number + 1
            names[candidate] = node
    return names


# -- listings ------------------------------------------------------------------------------------------------


@dataclass
class Listing:
    """One folder's entries, and the cursor order (by inode number) readdir walks."""

    folder: Folder
    entries: dict[bytes, Node]
    txnid: int
    seconds: float = 0.0
    """What computing it cost."""
    used_at: float = 0.0
    attributes: list[Any] | None = field(default=None, repr=False)
    """For the adapter: what it built for each entry, in cursor order (pyfuse3 `EntryAttributes`), reused by every
    readdir of this listing (a listing is replaced, never changed, so nothing here goes stale)."""
    cursors: list[int] = field(default_factory=list, repr=False)
    """The entries in cursor order: `cursors`, `names`, `nodes` are parallel lists."""
    names: list[bytes] = field(default_factory=list, repr=False)
    nodes: list[Node] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        order = sorted((node.inode, name) for name, node in self.entries.items())
        self.cursors = [cursor for cursor, _ in order]
        self.names = [name for _, name in order]
        self.nodes = [self.entries[name] for name in self.names]

    def position_after(self, cursor: int) -> int:
        """Index (in the parallel lists) of the first entry after `cursor` (0: the first entry)."""
        return bisect.bisect_right(self.cursors, cursor)

    def after(self, cursor: int) -> Iterator[tuple[int, bytes, Node]]:
        """(cursor, name, node) of the entries after `cursor` (0: from the start), in cursor order."""
        for position in range(self.position_after(cursor), len(self.cursors)):
            yield self.cursors[position], self.names[position], self.nodes[position]


@dataclass
class Invalidations:
    """What the kernel must forget after a refresh: entries (parent inode, name) that vanished or now name
    another inode, and inodes whose attributes changed."""

    entries: list[tuple[int, bytes]] = field(default_factory=list)
    attributes: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.entries or self.attributes)


@dataclass(frozen=True)
class Ownership:
    """Which Unix uid/gid owns each user's folder: `by_user` keyed by casefolded email or storage label, else
    the default."""

    uid: int
    gid: int
    by_user: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def of(self, user: User) -> tuple[int, int]:
        for key in (user.email.casefold(), user.storage_label):
            if key is not None and key in self.by_user:
                return self.by_user[key]
        return self.uid, self.gid


def _year_month(local_micros: int) -> tuple[int, int]:
    moment = datetime(1970, 1, 1) + timedelta(microseconds=local_micros)
    return moment.year, moment.month


def _ns(moment: datetime) -> int:
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


class Tree:
    """The view over one index. Not thread-safe: the trio thread owns it (like the index)."""

    def __init__(
        self,
        index: Index,
        data_dir: str,
        ownership: Ownership,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.index = index
        self.data_dir = os.fsencode(os.path.abspath(data_dir)).rstrip(b"/") or b"/"
        self.ownership = ownership
        self.clock = clock
        self.mounted_ns = time.time_ns()
        self.root = make_folder(ROOT, None, mtime_ns=self.mounted_ns)
        self._listings: dict[int, Listing] = {}
        self._known: dict[int, Node] = {ROOT_INODE: self.root}
        self._lookups: dict[int, int] = {}
        self._owner_ids: dict[uuid.UUID, tuple[int, int]] = {}
        self._seen_txnid = -1

    # -- what handlers ask ---------------------------------------------------------------------------------

    def last_txnid(self) -> int:
        return self.index.env.info()["last_txnid"]

    def node(self, inode: int) -> Node | None:
        """A node the kernel knows (looked up and not forgotten), or None."""
        return self._known.get(inode)

    def listing(self, folder: Folder) -> Listing | None:
        """The folder's listing (cached, else computed now); None when the folder no longer exists."""
        cached = self._listings.get(folder.inode)
        if cached is None:
            with self.index.read() as txn:
                cached = self._compute(txn, folder, txn.raw.id())
            if cached is None:
                return None
            self._listings[folder.inode] = cached
            self._adopt(cached)
        cached.used_at = self.clock()
        return cached

    def lookup(self, parent: int, name: bytes) -> Node | None:
        folder = self._known.get(parent)
        if not isinstance(folder, Folder):
            return None
        listing = self.listing(folder)
        return None if listing is None else listing.entries.get(name)

    def remember(self, node: Node) -> None:
        """The kernel got `node` (lookup or readdirplus): one more reference until `forget`."""
        self._known[node.inode] = node
        self._lookups[node.inode] = self._lookups.get(node.inode, 0) + 1

    def remember_many(self, nodes: list[Node]) -> None:
        """`remember` for each node (a readdir's entries), in one tight loop."""
        known, lookups = self._known, self._lookups
        counted = lookups.get
        for node in nodes:
            inode = node.inode
            known[inode] = node
            lookups[inode] = counted(inode, 0) + 1

    def forget(self, inode: int, count: int) -> None:
        left = self._lookups.get(inode, 0) - count
        if left > 0:
            self._lookups[inode] = left
            return
        self._lookups.pop(inode, None)
        if inode != ROOT_INODE:
            self._known.pop(inode, None)
            self._listings.pop(inode, None)

    def known_count(self) -> int:
        return len(self._known)

    def ids_of(self, node: Node) -> tuple[int, int]:
        """(uid, gid) owning the node."""
        if node.owner is None:
            return self.ownership.uid, self.ownership.gid
        ids = self._owner_ids.get(node.owner)
        if ids is None:
            with self.index.read() as txn:
                user = txn.get(USERS, node.owner.bytes)
            ids = self.ownership.of(user) if user is not None else (self.ownership.uid, self.ownership.gid)
            self._owner_ids[node.owner] = ids
        return ids

    @staticmethod
    def mode_of(node: Node) -> int:
        if isinstance(node, File):
            return FILE_MODE
        if node.kind == ROOT:
            return ROOT_MODE
        return USER_FOLDER_MODE if node.kind == USER else FOLDER_MODE

    # -- freshness -----------------------------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> Invalidations:
        """Bring every cached listing up to the index's current state (nothing to do when no transaction
        committed since the last refresh, unless `force`). Returns what the kernel must forget. Listings unused
        for IDLE_SECONDS are dropped instead."""
        changes = Invalidations()
        for _ in self.refresh_steps(changes, force=force):
            pass
        return changes

    def refresh_steps(self, changes: Invalidations, *, force: bool = False) -> Iterator[None]:
        """`refresh` one listing at a time, adding to `changes`: yields after each listing, so the caller can
        let other tasks run between them (a pass over many big albums must not hold the event loop). Each
        listing is read in its own short read transaction: none is held across a yield, so the index can
        always grow."""
        start = self.last_txnid()
        if start == self._seen_txnid and not force:
            return
        self._seen_txnid = start  # commits during the pass make the next pass run
        self._owner_ids.clear()
        now = self.clock()
        for inode, old in list(self._listings.items()):
            if inode != ROOT_INODE and now - old.used_at > IDLE_SECONDS:
                self._listings.pop(inode, None)
                continue
            with self.index.read() as txn:
                txnid = txn.raw.id()
                if old.txnid == txnid and not force:
                    continue
                new = self._compute(txn, old.folder, txnid)
            if new is None:  # the folder is gone: its parent's listing drops its entry
                self._listings.pop(inode, None)
                continue
            new.used_at = old.used_at
            for name, node in old.entries.items():
                now_there = new.entries.get(name)
                if now_there is None or now_there.inode != node.inode:
                    changes.entries.append((inode, name))
            self._listings[inode] = new
            changes.attributes.extend(self._adopt(new))
            if new.folder != old.folder and inode in self._known:  # e.g. an album's mtime
                changes.attributes.append(inode)
            yield

    def _adopt(self, listing: Listing) -> list[int]:
        """Known nodes take the listing's (newer) attributes; returns the inodes whose attributes changed."""
        changed = []
        for node in listing.entries.values():
            known = self._known.get(node.inode)
            if known is not None and known != node:
                self._known[node.inode] = node
                changed.append(node.inode)
        known_folder = self._known.get(listing.folder.inode)
        if known_folder is not None and known_folder != listing.folder:
            self._known[listing.folder.inode] = listing.folder
        return changed

    # -- computing listings --------------------------------------------------------------------------------

    def _compute(self, txn: Txn, folder: Folder, txnid: int) -> Listing | None:
        started = time.perf_counter()
        computed = self._contents(txn, folder)
        if computed is None:
            return None
        this, entries = computed
        return Listing(this, entries, txnid, time.perf_counter() - started)

    def _contents(self, txn: Txn, folder: Folder) -> tuple[Folder, dict[bytes, Node]] | None:
        """(the folder with current attributes, its entries), or None when it no longer exists."""
        kind, owner = folder.kind, folder.owner
        if kind == ROOT:
            return folder, self._users(txn)
        assert owner is not None
        user = txn.get(USERS, owner.bytes)
        if user is None or user.deleted_at is not None:
            return None
        if kind == USER:
            return folder, {
                name: make_folder(sub, owner, mtime_ns=self.mounted_ns) for name, sub in USER_FOLDERS
            }
        if kind == ALBUMS:
            return folder, self._albums(txn, owner)
        if kind == ALBUM:
            album = album_index.get(txn, uuid.UUID(bytes=folder.ident))
            if album is None or album.owner_id != owner:
                return None
            this = make_folder(ALBUM, owner, folder.ident, _ns(album.updated_at))
            members = (txn.get(_ASSET_FACTS, key[16:32]) for key, _ in txn.items(ALBUM_ASSETS, folder.ident))
            return this, self._files(asset for asset in members if asset is not None and _shown(asset))
        if kind == TIMELINE_ROOT:
            return folder, self._years(txn, owner)
        if kind == YEAR:
            return folder, self._months(txn, owner, int.from_bytes(folder.ident, "big"))
        if kind == MONTH:
            year, month = int.from_bytes(folder.ident[:2], "big"), folder.ident[2]
            return folder, self._month(txn, owner, year, month)
        if kind == FAVORITES:
            return folder, self._favorites(txn, owner)
        if kind == LIBRARIES_ROOT:
            return folder, self._libraries(txn, owner)
        if kind in (LIBRARY, LIBRARY_DIR):
            library = txn.get(LIBRARIES, folder.ident[:16])
            if library is None or library.deleted_at is not None or library.owner_id != owner:
                return None
            if kind == LIBRARY:
                bases = self._bases(library)
                if len(bases) == 1:
                    return folder, self._library_folder(txn, library, bases[0])
                wanted = (
                    (safe_name(os.path.basename(base) or base), base, self._dir(library, base))
                    for base in bases
                )
                return folder, unique_names(wanted)
            return folder, self._library_folder(txn, library, folder.ident[16:])
        raise ValueError(f"unknown folder kind {kind!r}")

    def _users(self, txn: Txn) -> dict[bytes, Node]:
        wanted = []
        for user in txn.values(USERS):
            if user.deleted_at is not None or user.status != "active":
                continue
            self._owner_ids[user.id] = self.ownership.of(user)
            name = safe_name(user.storage_label or user.email)
            wanted.append((name, user.id.bytes, make_folder(USER, user.id, mtime_ns=self.mounted_ns)))
        return unique_names(wanted)

    def _albums(self, txn: Txn, owner: uuid.UUID) -> dict[bytes, Node]:
        return unique_names(
            (
                safe_name(album.name),
                album.id.bytes,
                make_folder(ALBUM, owner, album.id.bytes, _ns(album.updated_at)),
            )
            for album in album_index.of_owner(txn, owner)
        )

    @staticmethod
    def _files(assets: Iterable[Any]) -> dict[bytes, Node]:
        """Names for `FileFacts` (or `Asset`s)."""
        return unique_names((safe_name(file_name(asset)), asset.id.bytes, file_of(asset)) for asset in assets)

    def _timeline_walk(
        self, txn: Txn, owner: uuid.UUID, start: int, end: int
    ) -> Iterator[asset_index.TimelineEntry]:
        """Timeline entries of the owner with start <= local time < end."""
        stop = asset_index.timeline_seek_key(owner, end)
        with txn.cursor(TIMELINE) as cursor:
            if not cursor.set_range(asset_index.timeline_seek_key(owner, start)):
                return
            for key, value in cursor:
                if key >= stop:
                    return
                yield asset_index.TimelineEntry.decode(key, value)

    def _first_visible(self, txn: Txn, owner: uuid.UUID, start: int) -> tuple[int, int] | None:
        """(year, month) of the first asset shown in the timeline at or after `start`, if any."""
        for entry in self._timeline_walk(txn, owner, start, 1 << 62):
            if _in_timeline(entry):
                return _year_month(entry.local_micros)
        return None

    def _years(self, txn: Txn, owner: uuid.UUID) -> dict[bytes, Node]:
        entries: dict[bytes, Node] = {}
        start = -(1 << 62)
        while (found := self._first_visible(txn, owner, start)) is not None:
            year = found[0]
            entries[b"%04d" % year] = make_folder(YEAR, owner, year.to_bytes(2, "big"), self.mounted_ns)
            start = month_start(year + 1, 1)
        return entries

    def _months(self, txn: Txn, owner: uuid.UUID, year: int) -> dict[bytes, Node]:
        entries: dict[bytes, Node] = {}
        start, end = month_start(year, 1), month_start(year + 1, 1)
        while start < end and (found := self._first_visible(txn, owner, start)) is not None:
            found_year, month = found
            if found_year != year:
                break
            ident = year.to_bytes(2, "big") + bytes([month])
            entries[b"%02d" % month] = make_folder(MONTH, owner, ident, self.mounted_ns)
            start = month_start(*next_month(year, month))
        return entries

    def _month(self, txn: Txn, owner: uuid.UUID, year: int, month: int) -> dict[bytes, Node]:
        start, end = month_start(year, month), month_start(*next_month(year, month))
        shown = [
            entry.asset_id for entry in self._timeline_walk(txn, owner, start, end) if _in_timeline(entry)
        ]
        return self._files(
            asset for asset_id in shown if (asset := txn.get(_ASSET_FACTS, asset_id.bytes)) is not None
        )

    def _favorites(self, txn: Txn, owner: uuid.UUID) -> dict[bytes, Node]:
        shown = [
            entry.asset_id
            for entry in asset_index.timeline_of(txn, owner)
            if entry.is_favorite
            and not entry.is_trashed
            and not entry.is_offline
            and entry.visibility in SHOWN
        ]
        return self._files(
            asset for asset_id in shown if (asset := txn.get(_ASSET_FACTS, asset_id.bytes)) is not None
        )

    def _libraries(self, txn: Txn, owner: uuid.UUID) -> dict[bytes, Node]:
        return unique_names(
            (safe_name(library.name), library.id.bytes,
             make_folder(LIBRARY, owner, library.id.bytes, _ns(library.updated_at)))
            for library in libraries_of(txn, owner)
        )  # fmt: skip

    def _bases(self, library: Library) -> list[bytes]:
        """The on-disk folders a library's files are shown relative to: its import paths (external), the data
        directory (uploads, which live in `upload/` and `library/` there)."""
        if library.type == "UPLOAD":
            return [self.data_dir]
        return sorted({os.fsencode(path).rstrip(b"/") or b"/" for path in library.import_paths})

    def _dir(self, library: Library, path: bytes) -> Folder:
        return make_folder(LIBRARY_DIR, library.owner_id, library.id.bytes + path, self.mounted_ns)

    def _library_folder(self, txn: Txn, library: Library, path: bytes) -> dict[bytes, Node]:
        """The folder `path` of the library: its files and the subfolders holding at least one shown file, read
        from `asset_by_path` (sorted keys: a subfolder is a contiguous run, skipped once it has shown a file)."""
        prefix = library.id.bytes + (path if path.endswith(b"/") else path + b"/")
        wanted: list[tuple[bytes, bytes, Node]] = []
        with txn.cursor(ASSET_BY_PATH) as cursor:
            found = cursor.set_range(prefix)
            while found:
                key = cursor.key()
                if not key.startswith(prefix):
                    break
                rest = key[len(prefix) :]
                entry = asset_index.PathEntry.decode(cursor.value())
                separator = rest.find(b"/")
                child = rest if separator < 0 else rest[:separator]
                asset = None if entry.offline else txn.get(_ASSET_FACTS, entry.asset_id.bytes)
                if asset is None or not _shown(asset):
                    found = cursor.next()
                    continue
                if separator < 0:
                    wanted.append((child, entry.asset_id.bytes, file_of(asset)))
                    found = cursor.next()
                else:
                    sub_path = prefix[16:] + child
                    ident = hashlib.blake2b(sub_path, digest_size=16).digest()
                    wanted.append((child, ident, self._dir(library, sub_path)))
                    found = cursor.set_range(prefix + child + b"0")  # b"0" sorts right after b"/"
        return unique_names(wanted)


def _shown(asset: Asset | Any) -> bool:
    return not asset.is_offline and asset.trashed_at is None and asset.visibility in SHOWN


def _in_timeline(entry: asset_index.TimelineEntry) -> bool:
    return not entry.is_trashed and not entry.is_offline and entry.visibility in IN_TIMELINE
