"""What `/api/server/*` reports: versions, features, disk usage of the data directory, usage statistics."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from . import __version__
from .access import Principal
from .index import USERS, Index
from .timeline import VISIBILITIES, EntryFilter, tally_types

# The Immich API version filmroll speaks (aioimmich picks its modern code paths for major >= 3).
IMMICH_API_VERSION = (3, 0, 3)


def immich_version_string() -> str:
    return "v{}.{}.{}".format(*IMMICH_API_VERSION)


def about() -> dict[str, object]:
    return {
        "version": immich_version_string(),
        "versionUrl": f"https://github.com/immich-app/immich/releases/tag/{immich_version_string()}",
        "licensed": False,
        "build": f"filmroll {__version__}",
        "ffmpeg": "libav " + ".".join(str(part) for part in av.library_versions.get("libavformat", ())),
        "repository": "filmroll",
    }


def features(*, config_file_in_use: bool) -> dict[str, bool]:
    enabled = {"trash", "sidecar", "search", "passwordLogin"}
    names = (
        "configFile duplicateDetection email facialRecognition importFaces map oauth oauthAutoLaunch ocr "
        "passwordLogin realtimeTranscoding reverseGeocoding search sidecar smartSearch trash"
    ).split()
    flags = {name: name in enabled for name in names}
    flags["configFile"] = config_file_in_use
    return flags


def human_bytes(size: int) -> str:
    """Binary units with one decimal, as Immich prints them: `'90.0 GiB'`."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    value = float(size)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def storage(data_dir: Path) -> dict[str, object]:
    stats = os.statvfs(data_dir)
    size = stats.f_blocks * stats.f_frsize
    available = stats.f_bavail * stats.f_frsize
    used = size - stats.f_bfree * stats.f_frsize
    return {
        "diskSize": human_bytes(size),
        "diskUse": human_bytes(used),
        "diskAvailable": human_bytes(available),
        "diskSizeRaw": size,
        "diskUseRaw": used,
        "diskAvailableRaw": available,
        "diskUsagePercentage": round(used / size * 100, 2) if size else 0.0,
    }


@dataclass
class UserUsage:
    user_id: str
    user_name: str
    photos: int
    videos: int
    usage_photos: int
    usage_videos: int
    quota_size_in_bytes: int | None


def statistics(index: Index, principal: Principal) -> list[UserUsage]:
    """Per-user counts and bytes of non-trashed assets, external ones included (admin only; api-compat §3). One
    walk over the raw `timeline` values (flags and size): neither asset records nor entries are decoded, so Home
    Assistant's poll every minute stays cheap."""
    principal.require_admin()
    usages = []
    counted = EntryFilter(trashed=False, visibilities=frozenset(VISIBILITIES))
    with index.read() as txn:
        users = sorted((u for u in txn.values(USERS) if u.deleted_at is None), key=lambda u: u.created_at)
        for user in users:
            tally = tally_types(txn, user.id, counted)
            usage = UserUsage(user_id=str(user.id), user_name=user.name, photos=tally.images, videos=tally.videos,
                              usage_photos=tally.image_bytes, usage_videos=tally.video_bytes,
                              quota_size_in_bytes=user.quota_size_in_bytes)  # fmt: skip
            usages.append(usage)
    return usages
