"""Where derived files live: thumbnails, previews and transcodes, under `<data>/derived`.

Each asset has one folder, `derived/<id[0:2]>/<id[2:4]>/<id>/`, so removing an asset's derived files is one
`rmtree` and no folder grows past a few thousand entries. Thumbnail and preview names carry the asset's
`thumbnail_version`: a render writes new names (atomically, by its worker) and the index then switches to them,
so a reader never sees a half-written file nor a mix of old and new; the old versions are removed after the
switch. The transcode has one name; it is replaced atomically (`os.replace`) or deleted.

A daemon killed between that switch and the removal would leave the old versions for good (nothing reads them, and
only a later render of that asset would remove them). So a render notes itself before it writes anything:
`note_render` creates `derived/.renders/<id>` (in the worker), and `remove_old_versions` removes it once the old
versions are gone. What a kill leaves is then a short list, not a walk over every asset's folder:
`interrupted_renders` lists it and `finish_interrupted` removes every thumbnail and preview but the version the
index holds (the daemon does this as it starts, before any render runs: `daemon.serve`). A render that fails
removes its note with its temp files (`forget_failed_render`). The note is not fsynced: a kill (the case that
matters) keeps it in the page cache, and a power loss costs at most a few stale thumbnails.

Only the daemon's trio thread decides names; the worker processes write to the names they are given.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from .config import ImageOutput, ImageSettings

log = logging.getLogger(__name__)

EXTENSIONS = {"webp": "webp", "jpeg": "jpg"}
MIME_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg"}
RENDERS_FOLDER = ".renders"
"""`derived/.renders/`: one empty file per asset whose render may have left old versions (module docstring)."""
_IMAGE_NAME = re.compile(r"(?:thumbnail|preview)-([0-9]+)\.[a-z]+", re.ASCII)
"""A finished thumbnail or preview of some version, in any format (`thumbnail-3.webp`); temp files do not match."""


def derived_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / "derived"


class DerivedFiles:
    def __init__(self, data_dir: str | Path, image: ImageSettings):
        self.root = derived_root(data_dir)
        self.image = image

    def folder(self, asset_id: uuid.UUID) -> Path:
        return folder(self.root, asset_id)

    def output(self, size: str) -> ImageOutput:
        """`thumbnail` or `preview` (the two renditions of `media.md` §2)."""
        return self.image.thumbnail if size == "thumbnail" else self.image.preview

    def image_path(self, asset_id: uuid.UUID, size: str, version: int) -> Path:
        return self.folder(asset_id) / f"{size}-{version}.{EXTENSIONS[self.output(size).format]}"

    def encoded_video(self, asset_id: uuid.UUID) -> Path:
        return self.folder(asset_id) / "encoded-video.mp4"

    def remove_transcode_leftovers(self, asset_id: uuid.UUID) -> None:
        """Delete the temp files a killed transcode left (`encoded-video.mp4.tmp-<pid>`), and only those: a
        thumbnail render of the same asset may be writing its own temp files at this moment."""
        prefix = self.encoded_video(asset_id).name + ".tmp-"
        self._remove(asset_id, lambda name: name.startswith(prefix))

    def remove_old_versions(self, asset_id: uuid.UUID, keep: int) -> None:
        """Delete thumbnails and previews of versions other than `keep` (after the index switched to it),
        including temp files of a killed render (`thumbnail-<v>.webp.tmp-<pid>`), then the render's note.
        Version `keep` stays in whatever format it was written (the configured format may have changed since);
        `keep` = 0 (never rendered) keeps none."""

        def doomed(name: str) -> bool:
            if not name.startswith(("thumbnail-", "preview-")):
                return False
            kept = _IMAGE_NAME.fullmatch(name)
            return kept is None or int(kept.group(1)) != keep

        self._remove(asset_id, doomed)
        _unlink(os.path.join(self.root, RENDERS_FOLDER, str(asset_id)))

    def interrupted_renders(self) -> list[uuid.UUID]:
        """The assets whose render noted itself and was not cleaned up after (blocking): a kill (or a failed
        render) came between. Call it only while no render runs, before `finish_interrupted`."""
        notes = self.root / RENDERS_FOLDER
        try:  # the folder itself, never a link planted in its place
            descriptor = os.open(notes, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        except OSError as error:
            log.warning("render notes in %s not read: not a folder (%s)", notes, error.strerror)
            return []
        try:
            names = os.listdir(descriptor)
        finally:
            os.close(descriptor)
        found = []
        for name in names:
            try:
                asset_id = uuid.UUID(name)
            except ValueError:
                continue
            if str(asset_id) == name:
                found.append(asset_id)
        return found

    def finish_interrupted(self, versions: Mapping[uuid.UUID, int | None]) -> None:
        """For each asset of `interrupted_renders`: remove every thumbnail and preview but the version the index
        holds now (`versions`: asset id → its `thumbnail_version`), and the note; an asset no longer in the index
        (None) loses its whole derived folder, as a render that finds its asset deleted does (blocking). Never
        touches anything outside the assets' derived folders."""
        for asset_id, version in versions.items():
            if version is None:
                remove_all(self.root, [asset_id])
            else:
                self.remove_old_versions(asset_id, version)

    def _remove(self, asset_id: uuid.UUID, doomed: Callable[[str], bool]) -> None:
        try:
            entries = list(os.scandir(self.folder(asset_id)))
        except FileNotFoundError:
            return
        for entry in entries:
            if doomed(entry.name):
                _unlink(entry.path)


def folder(root: Path, asset_id: uuid.UUID) -> Path:
    text = asset_id.hex
    return root / text[0:2] / text[2:4] / str(asset_id)


def remove_all(root: Path, asset_ids: list[uuid.UUID]) -> None:
    """Delete every derived file of assets whose index entries are gone (blocking; never an original).
    Call it after the commit that removed them: until then they may still be served."""
    for asset_id in asset_ids:
        shutil.rmtree(folder(root, asset_id), ignore_errors=True)
        _unlink(os.path.join(root, RENDERS_FOLDER, str(asset_id)))


def note_render(image_path: str | os.PathLike[str]) -> None:
    """Note, before a render writes `image_path` (a `DerivedFiles.image_path`), that its asset may soon have old
    versions to remove: `derived/.renders/<id>` (blocking; called by the render in its worker process). A path
    that is not a derived image's (a render into any other folder, as tests do) is noted nowhere."""
    note = _note_of(image_path)
    if note is not None:
        note.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(note, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def forget_failed_render(image_path: str | os.PathLike[str]) -> None:
    """A render that noted itself failed and removed its temp files: its note goes too (blocking; called in the
    worker), unless temp files of an earlier render killed in its worker are still in the folder (a later render,
    or the next start, removes them). Nothing else can be left over: while the daemon lives, every version switch
    is followed by the removal of the old versions, and the version the index holds is not this render's."""
    note = _note_of(image_path)
    if note is None:
        return
    try:
        names = os.listdir(Path(image_path).parent)
    except FileNotFoundError:
        names = []
    except OSError:
        return  # cannot tell: the note stays for the next start
    if not any(".tmp-" in name for name in names):
        _unlink(str(note))


def _note_of(image_path: str | os.PathLike[str]) -> Path | None:
    """`derived/.renders/<id>` for an image path `derived/<aa>/<bb>/<id>/thumbnail-…`, else None."""
    path = Path(image_path)
    asset_folder = path.parent
    try:
        asset_id = uuid.UUID(asset_folder.name)
    except ValueError:
        return None
    text = asset_id.hex
    if (
        str(asset_id) != asset_folder.name
        or (asset_folder.parent.parent.name, asset_folder.parent.name) != (text[0:2], text[2:4])
        or not path.name.startswith(("thumbnail-", "preview-"))
    ):
        return None
    return asset_folder.parents[2] / RENDERS_FOLDER / asset_folder.name


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("could not remove derived file %s: %s", path, error.strerror)
