"""The exclusion matcher's fast paths mean exactly what wcmatch's globmatch means on the full path."""

import itertools

import pytest
from wcmatch import glob

from daemon.exclusions import GLOB_FLAGS, ExclusionMatcher

PATTERNS = [
    "**/*.tif", "**/hidden.jpg", "**/Raw/**", "**/*.{tif,jpg}", "**/@eaDir/**", "**/._*", "**/#recycle/**",
    "**/#snapshot/**", "**/directoryA", "**/dir1/**", "/photos/2020/*.jpg", "**/[abc]?.png", "**/raw/**",
    "**/trip {2020}/**", "**/*.TIF",
]  # fmt: skip
PATHS = [
    b"/photos/raw/a.jpg", b"/photos/folder/raw/a.jpg", b"/photos/raw2/a.jpg", b"/x/DIR1/photo.jpg",
    b"/photos/image.tif", b"/photos/image.TIF", b"/a/hidden.jpg", b"/a/not-hidden.jpg", b"/nas/@eaDir/t.jpg",
    b"/nas/._IMG.jpg", b"/nas/#recycle/x/y.jpg", b"/photos/2020/a.jpg", b"/photos/2020/sub/a.jpg",
    b"/p/ab.png", b"/p/abc.png", b"/x/directoryA/in.jpg", b"/x/directoryA", b"/x/Raw", b"/x/trip {2020}/a.jpg",
    b"/x/\xff\xfe name/a.jpg", b"/x/caf\xc3\xa9/Raw/b.nef", b"/photos/raw",
]  # fmt: skip


def reference(pattern: str, path: bytes) -> bool:
    """What plain wcmatch says, with the folder rule: a file is excluded when a folder above it matches."""
    parts = path.split(b"/")
    candidates = [b"/".join(parts[:depth]) for depth in range(2, len(parts))] + [path]
    compiled = glob.compile([pattern.encode()], flags=GLOB_FLAGS)
    return any(compiled.match(c) or compiled.match(c + b"/") for c in candidates[:-1]) or compiled.match(path)


@pytest.mark.parametrize(("pattern", "path"), list(itertools.product(PATTERNS, PATHS)))
def test_fast_paths_agree_with_wcmatch(pattern, path):
    assert ExclusionMatcher([pattern]).excludes_path(path) == reference(pattern, path)


def test_spec_examples():
    matcher = ExclusionMatcher(["**/raw/**"])
    assert matcher.excludes_path(b"/photos/raw/a.jpg")
    assert matcher.excludes_path(b"/photos/folder/raw/a.jpg")
    assert not matcher.excludes_path(b"/photos/raw2/a.jpg")
    assert ExclusionMatcher(["**/*.TIF"]).excludes_path(b"/x/image.tif")
    assert ExclusionMatcher(["**/dir1/**"]).excludes_path(b"/x/DIR1/photo.jpg")
    assert ExclusionMatcher(["**/directoryA"]).excludes_directory(b"/x/directoryA", b"directoryA")
    assert not ExclusionMatcher([]).excludes_path(b"/x/a.jpg")
