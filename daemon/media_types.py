"""Which files are media: Immich's extension lists (spec `media.md` §1), asset types and MIME types.

The crawler, the watcher, uploads and `/api/server/media-types` all use these lists.
"""

import os

IMAGE_EXTENSIONS = frozenset(
    ".avif .bmp .gif .heic .heif .hif .insp .jpe .jpeg .jpg .jxl .png .svg .tif .tiff .webp".split()
)
RAW_EXTENSIONS = frozenset(
    (
        ".3fr .ari .arw .cap .cin .cr2 .cr3 .crw .dcr .dng .erf .fff .iiq .k25 .kdc .mrw .nef .nrw .orf .ori "
        ".pef .psd .raf .raw .rw2 .rwl .sr2 .srf .srw .x3f"
    ).split()
)
VIDEO_EXTENSIONS = frozenset(
    ".3gp .3gpp .avi .flv .insv .m2ts .m4v .mkv .mov .mp4 .mpe .mpeg .mpg .mts .webm .wmv".split()
)
SIDECAR_EXTENSIONS = frozenset({".xmp"})

_MIME_OVERRIDES = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".jpe": "image/jpeg", ".insp": "image/jpeg",
    ".tif": "image/tiff", ".tiff": "image/tiff", ".svg": "image/svg",
    ".mp4": "video/mp4", ".insv": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
    ".mkv": "video/x-matroska", ".avi": "video/avi", ".m4v": "video/x-m4v", ".3gp": "video/3gpp",
    ".3gpp": "video/3gpp", ".flv": "video/x-flv", ".m2ts": "video/mp2t", ".mts": "video/mp2t",
    ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".mpe": "video/mpeg", ".wmv": "video/x-ms-wmv",
    ".xmp": "application/xml",
}  # fmt: skip


def extension(name: str | bytes) -> str:
    """The last extension of a file name, lower-case with its dot (`''` if none)."""
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    return os.path.splitext(name)[1].lower()


def asset_type(name: str | bytes) -> str | None:
    """`IMAGE`, `VIDEO`, or None when the file is not media (sidecars included)."""
    ext = extension(name)
    if ext in IMAGE_EXTENSIONS or ext in RAW_EXTENSIONS:
        return "IMAGE"
    if ext in VIDEO_EXTENSIONS:
        return "VIDEO"
    return None


def mime_type(name: str | bytes) -> str:
    """Immich's first MIME type for the extension (`image/<ext>` for the rest of the images and RAW)."""
    ext = extension(name)
    if ext in _MIME_OVERRIDES:
        return _MIME_OVERRIDES[ext]
    if ext in IMAGE_EXTENSIONS or ext in RAW_EXTENSIONS:
        return "image/" + ext[1:]
    return "application/octet-stream"


def media_type_lists() -> dict[str, list[str]]:
    """The `/api/server/media-types` answer: sorted, lower-case, with dots; RAW under `image`."""
    return {
        "image": sorted(IMAGE_EXTENSIONS | RAW_EXTENSIONS),
        "video": sorted(VIDEO_EXTENSIONS),
        "sidecar": sorted(SIDECAR_EXTENSIONS),
    }
