"""`filmroll backup DEST` and `filmroll restore SRC`: what must be saved, saved consistently while the daemon runs.

A backup folder holds:
- `index/data.mdb`: a compacted copy of the LMDB index, taken in one read transaction (`Index.copy_to`), so it is a
  consistent snapshot even while the daemon writes (LMDB readers never block writers);
- `upload/` and `library/`: the originals filmroll owns (uploads, before and after the storage template placed
  them) with their sidecars, mirrored like `rsync -a --delete`: a file whose size and mtime are unchanged since the
  previous backup into the same folder is not copied again; files gone from the data directory are removed
  (`upload/.incoming`, uploads still being received, is skipped);
- `config.toml`: the config file in use, if any;
- `manifest.json`, written last (and removed first): its presence marks a complete backup.

Not saved: derived files (thumbnails, previews, transcodes), which the jobs regenerate, and external libraries'
originals, which are the user's own folders (back them up where they live).

Consistency between the snapshot and the originals: the snapshot is taken first, the originals mirrored after it.
An upload that lands in between is copied without being in the snapshot (harmless: nothing refers to it). A file
the snapshot refers to but that moved meanwhile (the storage template placed it) is copied from where the live index
says it is now, to where the snapshot expects it. A file deleted meanwhile cannot be copied: the whole pass is
redone with a fresh snapshot (up to three times), then it is reported as missing in the manifest.

`restore` fills an empty data directory (the daemon stopped) from a backup, rewrites upload paths when the data
directory is not the one backed up, and queues thumbnails and transcodes for every asset that had them, so the
daemon regenerates them on its next start; it then runs `check_index`.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import __version__, job_queue
from . import assets as asset_index
from .check import check_index
from .config import Settings
from .errors import InvalidInput
from .index import ALBUMS, ASSETS, LIBRARIES, USERS, Index, Txn
from .timeutil import utc_now
from .upload_stream import INCOMING_FOLDER

MANIFEST = "manifest.json"
FORMAT = 1
OWNED_TREES = ("upload", "library")
ATTEMPTS = 3
WRITE_BATCH = 5000


@dataclass
class MirrorReport:
    files: int = 0
    bytes: int = 0
    copied: int = 0
    unchanged: int = 0
    removed: int = 0


@dataclass
class BackupReport:
    destination: str
    index: dict[str, int] = field(default_factory=dict)
    originals: MirrorReport = field(default_factory=MirrorReport)
    fetched_moved: int = 0
    missing: list[str] = field(default_factory=list)
    config: str | None = None
    attempts: int = 1


@dataclass
class RestoreReport:
    data_dir: str
    assets: int = 0
    rewritten_paths: int = 0
    queued_thumbnails: int = 0
    queued_transcodes: int = 0
    problems: list[str] = field(default_factory=list)
    config: str | None = None


# -- backup ------------------------------------------------------------------------------------------------


def backup(
    settings: Settings, destination: Path, *, say: Callable[[str], None] = lambda _: None
) -> BackupReport:
    """Back up the data directory of `settings` into `destination` (created if needed; a previous backup there is
    updated in place). Runs beside a running daemon. Raises InvalidInput for a destination that overlaps the data
    directory, IndexUnusable when there is no index."""
    data = settings.data_path.resolve()
    destination = destination.resolve()
    if _overlaps(data, destination):
        raise InvalidInput(f"The backup folder {destination} must be outside the data directory {data}")
    _claim(destination)
    (destination / MANIFEST).unlink(missing_ok=True)  # incomplete until the end
    report = BackupReport(destination=str(destination))
    with Index(settings.index_path, readonly=True) as live:
        for attempt in range(1, ATTEMPTS + 1):
            report.attempts = attempt
            snapshot = destination / "index.new"
            shutil.rmtree(snapshot, ignore_errors=True)
            say("copying the index (compacted)")
            live.copy_to(snapshot, compact=True)
            say("copying originals (unchanged files are skipped)")
            report.originals = MirrorReport()
            for tree in OWNED_TREES:
                _mirror(data / tree, destination / tree, report.originals)
            fetched, missing = _complete(snapshot, live, data, destination, report.originals)
            report.fetched_moved += fetched
            report.missing = missing
            if not missing:
                break
            say(f"{len(missing)} original(s) deleted while copying; taking a fresh snapshot")
        with Index(snapshot, readonly=True) as copied:
            report.index = _index_counts(copied)
    _replace_folder(snapshot, destination / "index")
    (destination / "index" / "lock.mdb").unlink(missing_ok=True)
    if settings.config_file:
        shutil.copy2(settings.config_file, destination / "config.toml")
        report.config = settings.config_file
    else:
        (destination / "config.toml").unlink(missing_ok=True)
    manifest = {
        "format": FORMAT,
        "filmroll": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_dir": str(data),
        "index": report.index,
        "originals": asdict(report.originals),
        "missing": report.missing,
        "config": "config.toml" if report.config else None,
        "config_source": report.config,
    }
    _write_atomically(destination / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
    return report


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _index_counts(index: Index) -> dict[str, int]:
    with index.read() as txn:
        return {
            "schema_version": index.schema_version,
            "users": txn.count(USERS),
            "libraries": txn.count(LIBRARIES),
            "assets": txn.count(ASSETS),
            "albums": txn.count(ALBUMS),
        }


def _walk_files(root: bytes, skip: set[bytes]) -> Iterator[tuple[bytes, os.stat_result]]:
    """(path relative to `root`, lstat) of every regular file below `root`, as bytes (names need not be UTF-8)."""
    stack = [b""]
    while stack:
        relative = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, relative) if relative else root))
        except FileNotFoundError:
            continue
        for entry in entries:
            child = os.path.join(relative, entry.name) if relative else entry.name
            if child in skip:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(child)
            elif stat.S_ISREG(info.st_mode):
                yield child, info


MTIME_TOLERANCE_NS = 2_000_000_000
"""FAT/exFAT keep mtimes to 2 s and some shares round them: a copy within that counts as unchanged (originals are
never modified in place, so size + mtime within 2 s cannot hide a real change)."""


def _same(info: os.stat_result, destination: bytes) -> bool:
    try:
        existing = os.stat(destination)
    except FileNotFoundError:
        return False
    return (
        existing.st_size == info.st_size
        and abs(existing.st_mtime_ns - info.st_mtime_ns) <= MTIME_TOLERANCE_NS
    )


MARKER = ".filmroll-backup"


def _claim(destination: Path) -> None:
    """A backup mirrors into its folder and deletes what the data directory no longer has, so it only ever
    writes into an empty folder, or one an earlier backup marked as its own: never into somebody's photos."""
    destination.mkdir(parents=True, exist_ok=True)
    marker = destination / MARKER
    if not marker.exists():
        if any(destination.iterdir()):
            raise InvalidInput(
                f"The backup folder {destination} is not empty and holds no earlier filmroll backup; "
                "choose an empty folder"
            )
        marker.write_text("This folder holds a filmroll backup; `filmroll backup` updates it in place.\n")


def _copy_file(source: bytes, destination: bytes) -> None:
    """Copy with times and mode, through a temporary name: a destination is never half-written."""
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    temporary = destination + b".filmroll-partial"
    shutil.copy2(source, temporary)
    os.replace(temporary, destination)


def _mirror(source: Path, destination: Path, report: MirrorReport) -> None:
    """Make `destination` hold exactly the regular files of `source` (rsync -a --delete, by size and mtime)."""
    source_root, destination_root = os.fsencode(source), os.fsencode(destination)
    skip = {INCOMING_FOLDER.encode()} if source.name == "upload" else set()
    present: set[bytes] = set()
    for relative, info in _walk_files(source_root, skip):
        present.add(relative)
        target = os.path.join(destination_root, relative)
        report.files += 1
        report.bytes += info.st_size
        if _same(info, target):
            report.unchanged += 1
            continue
        try:
            _copy_file(os.path.join(source_root, relative), target)
        except (
            FileNotFoundError
        ):  # moved or deleted since the walk saw it: `_complete` deals with what matters
            report.files -= 1
            report.bytes -= info.st_size
            present.discard(relative)
            continue
        report.copied += 1
    for relative, _ in list(_walk_files(destination_root, set())):
        if relative not in present:
            os.unlink(os.path.join(destination_root, relative))
            report.removed += 1
    _remove_empty_folders(destination_root)


def _remove_empty_folders(root: bytes) -> None:
    for folder, _, _ in sorted(os.walk(root), key=lambda entry: len(entry[0]), reverse=True):
        if folder != root:
            try:
                os.rmdir(folder)
            except OSError:
                pass


def _upload_assets(txn: Txn) -> Iterator[tuple[bytes, uuid.UUID]]:
    """(original path, asset id) of every upload-library asset (paths from `asset_by_path`, no record decoded)."""
    for library in txn.values(LIBRARIES):
        if library.type == "UPLOAD":
            for path, entry in asset_index.of_library(txn, library.id):
                yield path, entry.asset_id


def _complete(
    snapshot_path: Path, live: Index, data: Path, destination: Path, report: MirrorReport
) -> tuple[int, list[str]]:
    """Make sure every upload original the snapshot refers to is in the backup, fetching moved ones from where the
    live index has them now. Returns (fetched, still missing)."""
    data_prefix = os.fsencode(data) + b"/"
    destination_root = os.fsencode(destination)
    fetched, missing = 0, []
    with Index(snapshot_path, readonly=True) as snapshot, snapshot.read() as txn:
        for path, asset_id in _upload_assets(txn):
            if not path.startswith(data_prefix):
                continue  # not under the data directory: not ours to save
            target = os.path.join(destination_root, path[len(data_prefix) :])
            if os.path.exists(target):
                continue
            with live.read() as live_txn:
                now = asset_index.get(live_txn, asset_id)
            try:
                if now is None:
                    raise FileNotFoundError(path)
                _copy_file(now.original_path, target)
            except FileNotFoundError:
                missing.append(os.fsdecode(path))
                continue
            fetched += 1
            report.files += 1
            report.copied += 1
    return fetched, missing


def _replace_folder(new: Path, current: Path) -> None:
    old = current.with_name(current.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if current.exists():
        current.rename(old)
    new.rename(current)
    shutil.rmtree(old, ignore_errors=True)


def _write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(path.name + ".partial")
    with open(temporary, "wb") as stream:
        stream.write(content)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)


# -- restore -----------------------------------------------------------------------------------------------


def read_manifest(source: Path) -> dict:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError:
        raise InvalidInput(
            f"{source} is not a complete filmroll backup (no {MANIFEST}: the backup did not finish)"
        ) from None
    if manifest.get("format") != FORMAT:
        raise InvalidInput(f"{source}: unknown backup format {manifest.get('format')!r}")
    return manifest


def restore(
    source: Path, settings: Settings, *, say: Callable[[str], None] = lambda _: None
) -> RestoreReport:
    """Restore a backup into the (empty or missing) data directory of `settings`. Raises InvalidInput if the data
    directory holds anything, or `source` is not a complete backup. The daemon must not run on that data directory
    (an empty one guarantees it)."""
    source = source.resolve()
    manifest = read_manifest(source)
    data = settings.data_path.resolve()
    if data.exists() and any(data.iterdir()):
        raise InvalidInput(
            f"The data directory {data} is not empty: stop the daemon and move it away (or restore elsewhere "
            "with --data-dir)"
        )
    report = RestoreReport(data_dir=str(data))
    data.mkdir(parents=True, exist_ok=True)
    say("copying the index")
    staging = data / "index.partial"
    staging.mkdir()
    shutil.copy2(source / "index" / "data.mdb", staging / "data.mdb")
    staging.rename(settings.index_path)
    say("copying originals")
    for tree in OWNED_TREES:
        if (source / tree).exists():
            _mirror(source / tree, data / tree, MirrorReport())
    with Index(settings.index_path, migrate=True) as index:
        old_prefix = os.fsencode(manifest["data_dir"]) + b"/"
        new_prefix = os.fsencode(data) + b"/"
        if old_prefix != new_prefix:
            say(f"moving upload paths from {manifest['data_dir']} to {data}")
            report.rewritten_paths = _rewrite_upload_paths(index, old_prefix, new_prefix)
        say("queueing thumbnails and transcodes (regenerated when the daemon starts)")
        report.assets, report.queued_thumbnails, report.queued_transcodes = _queue_derived(index)
        report.problems = check_index(index)
    if manifest.get("config"):
        report.config = str(source / manifest["config"])
    return report


def _rewrite_upload_paths(index: Index, old_prefix: bytes, new_prefix: bytes) -> int:
    with index.read() as txn:
        ids = [asset_id for path, asset_id in _upload_assets(txn) if path.startswith(old_prefix)]

    def moved(path: bytes | None) -> bytes | None:
        if path is None or not path.startswith(old_prefix):
            return path
        return new_prefix + path[len(old_prefix) :]

    for start in range(0, len(ids), WRITE_BATCH):
        batch = ids[start : start + WRITE_BATCH]

        def work(txn: Txn, batch: list[uuid.UUID] = batch) -> None:
            for asset_id in batch:
                asset = asset_index.get(txn, asset_id)
                if asset is not None:
                    asset_index.update(
                        txn,
                        asset,
                        original_path=moved(asset.original_path),
                        sidecar_path=moved(asset.sidecar_path),
                    )

        index.write(work)
    return len(ids)


def _queue_derived(index: Index) -> tuple[int, int, int]:
    """Queue a thumbnail render for every asset that had one and a transcode decision for every video that had one
    (derived files are not in backups). Returns (assets, thumbnails queued, transcodes queued)."""
    with index.read() as txn:
        assets = [(a.id, a.thumbnail_version > 0, a.video_decided_at is not None) for a in txn.values(ASSETS)]
    thumbnails = sum(1 for _, thumbnail, _ in assets if thumbnail)
    transcodes = sum(1 for _, _, video in assets if video)
    for start in range(0, len(assets), WRITE_BATCH):
        batch = assets[start : start + WRITE_BATCH]

        def work(txn: Txn, batch: list[tuple[uuid.UUID, bool, bool]] = batch) -> None:
            now = utc_now()
            for asset_id, thumbnail, video in batch:
                if thumbnail:
                    job_queue.enqueue(txn, job_queue.THUMBNAILS, asset_id, now, force=True)
                if video:
                    job_queue.enqueue(txn, job_queue.VIDEO, asset_id, now, force=True)

        index.write(work)
    return len(assets), thumbnails, transcodes
