"""Where derived files live: thumbnails, previews and transcodes, under `<data>/derived`.

Each asset has one folder, `derived/<id[0:2]>/<id[2:4]>/<id>/`, so removing an asset's derived files is one
`rmtree` and no folder grows past a few thousand entries. Thumbnail and preview names carry the asset's
`thumbnail_version`: a render writes new names (atomically, by its worker) and the index then switches to them,
so a reader never sees a half-written file nor a mix of old and new; the old versions are removed after the
switch. The transcode has one name; it is replaced atomically (`os.replace`) or deleted.

Only the daemon's trio thread decides names; the worker processes write to the names they are given.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from .config import ImageOutput, ImageSettings

log = logging.getLogger(__name__)

EXTENSIONS = {"webp": "webp", "jpeg": "jpg"}
MIME_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg"}


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
        including temp files of a killed render (`thumbnail-<v>.webp.tmp-<pid>`)."""
        keep_names = {self.image_path(asset_id, size, keep).name for size in ("thumbnail", "preview")}
        self._remove(
            asset_id, lambda name: name.startswith(("thumbnail-", "preview-")) and name not in keep_names
        )

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


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("could not remove derived file %s: %s", path, error.strerror)
