"""What the media queues run inside worker processes: one function per kind of job.

Each takes plain values (paths, settings) and returns plain values or raises; the daemon's handlers
(`daemon/media_jobs.py`) turn the results into index writes. Exceptions travel back pickled: BadMedia (the file is
bad: fail at once), OSError (vanished, unreadable: retried), anything else is a bug.
"""

from __future__ import annotations

import os

from .config import FfmpegSettings, ImageSettings
from .errors import BadMedia
from .metadata import read_metadata
from .originals import content_sha1
from .records import ExifInfo
from .thumbnails import Rendered, render_image, render_video
from .transcode import VideoProbe, plan, probe, transcode

MetadataItem = tuple[bytes, bytes | None, bytes | None, bool]
"""(original path, confinement root, sidecar path, whether to hash the content)."""
MetadataResult = tuple[ExifInfo | BadMedia, bytes | None] | OSError
"""(what was read, or why the file's metadata is unreadable; the content SHA-1 when asked), or why the file
could not be read at all."""


def extract_metadata(items: list[MetadataItem]) -> list[MetadataResult]:
    """Metadata for a batch of files (one exiftool round trip), plus the content SHA-1 where asked
    (`media.md` §6.5: external files, for move detection: computed even when the metadata is unreadable).
    One result per item, in order."""
    read = read_metadata([(path, root, sidecar) for path, root, sidecar, _ in items])
    results: list[MetadataResult] = []
    for (path, root, _, needs_hash), info in zip(items, read, strict=True):
        if isinstance(info, OSError):
            results.append(info)
            continue
        try:
            results.append((info, content_sha1(path, root) if needs_hash else None))
        except OSError as error:
            results.append(error)
    return results


def render(
    path: bytes, root: bytes | None, is_video: bool, thumbnail: str, preview: str, settings: ImageSettings
) -> Rendered:
    renderer = render_video if is_video else render_image
    return renderer(path, root, thumbnail, preview, settings)


def convert_video(
    path: bytes, root: bytes | None, output: str, settings: FfmpegSettings
) -> tuple[VideoProbe, bool]:
    """Probe, decide by the transcode policy (`media.md` §4), and transcode into `output` when the policy wants
    it. Returns (probe, whether `output` now holds a transcode). When it does not, the caller deletes any old
    transcode once the index says so."""
    found = probe(path, root)
    decided = plan(found, settings)
    if decided is None:
        return found, False
    os.makedirs(os.path.dirname(output), exist_ok=True)
    transcode(path, root, output, decided, settings)
    return found, True
