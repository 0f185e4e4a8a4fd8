"""media.md §1: what is media, its asset type and Immich's MIME type — the one place the crawler, uploads and
`/api/server/media-types` take them from."""

import pytest

from daemon.crawl import MEDIA_EXTENSIONS
from daemon.media_types import asset_type, media_type_lists, mime_type


@pytest.mark.parametrize(
    ("name", "kind", "mime"),
    [
        ("IMG_1.JPG", "IMAGE", "image/jpeg"), ("a.Jpeg", "IMAGE", "image/jpeg"), ("x.insp", "IMAGE", "image/jpeg"),
        ("b.NEF", "IMAGE", "image/nef"), ("c.dng", "IMAGE", "image/dng"), ("d.tif", "IMAGE", "image/tiff"),
        ("e.svg", "IMAGE", "image/svg"), ("f.heic", "IMAGE", "image/heic"), ("g.mp4", "VIDEO", "video/mp4"),
        ("h.MOV", "VIDEO", "video/quicktime"), ("i.mkv", "VIDEO", "video/x-matroska"), ("j.mts", "VIDEO", "video/mp2t"),
        ("k.3gpp", "VIDEO", "video/3gpp"), ("l.wmv", "VIDEO", "video/x-ms-wmv"),
    ],
)  # fmt: skip
def test_types_and_mime(name, kind, mime):
    assert asset_type(name) == kind and asset_type(name.encode()) == kind
    assert mime_type(name) == mime


@pytest.mark.parametrize("name", ["a.xmp", "b.txt", "noextension", "c.jpg.bak", ".jpg"])
def test_not_media(name):
    assert asset_type(name) is None


def test_the_crawler_uses_the_same_lists():
    lists = media_type_lists()
    assert MEDIA_EXTENSIONS == {e.encode() for e in lists["image"] + lists["video"]}
    assert mime_type("a.xmp") == "application/xml"
