"""Path containment as properties (`daemon/paths.py`, `daemon/originals.py`): whatever path a user hands in, what
is accepted lies inside the external path, by the kernel's own account (device and inode), never in the data
directory, and `/data/user1` never covers `/data/user10`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import strategies as st

from daemon.originals import open_original
from daemon.paths import import_path_problem, is_within, normalize_import_path, resolve

# --- is_within on lexical paths -------------------------------------------------------------------------------

segment = st.sampled_from(
    [b"data", b"user1", b"user10", b"user", b"1", b"0", b"a", b"\xff", b"\xc3\xa9", b"x y"]
)
absolute = st.lists(segment, max_size=5).map(lambda parts: b"/" + b"/".join(parts))


def components(path: bytes) -> list[bytes]:
    return [part for part in path.split(b"/") if part]


def test_sibling_prefixes_are_not_inside():
    assert not is_within(b"/data/user10", b"/data/user1")
    assert not is_within(b"/data/user10/x", b"/data/user1")
    assert not is_within(b"/data/user1x", b"/data/user1")
    assert is_within(b"/data/user1/x", b"/data/user1")
    assert is_within(b"/data/user1", b"/data/user1")
    assert is_within(b"/anything", b"/")


def test_is_within_means_a_prefix_of_whole_components(depth):
    def body(candidate: bytes, root: bytes) -> None:
        expected = components(candidate)[: len(components(root))] == components(root)
        assert is_within(candidate, root) == expected, (candidate, root)

    depth.explore(body, 300, candidate=absolute, root=absolute)


def test_normalised_import_paths_have_no_dot_segments(depth):
    noisy = st.lists(st.sampled_from([b".", b"..", b"", b"a", b"b", b"\xff", b"..."]), max_size=8)

    def body(parts: list[bytes]) -> None:
        normalized = normalize_import_path(b"/" + b"/".join(parts))
        assert normalized.startswith(b"/") and not normalized.startswith(b"//")
        assert all(
            part not in (b".", b"..", b"") for part in normalized.split(b"/")[1:] if normalized != b"/"
        )
        assert normalize_import_path(normalized) == normalized

    depth.explore(body, 300, parts=noisy)


# --- import paths on a real tree with links -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, Path]:
    """base/ext (the external path) with folders and links that lead in, out, up and into the data directory;
    base/ext10 (a sibling with the same prefix); base/ext/inner/data (the data directory, inside ext on purpose)."""
    base = tmp_path_factory.mktemp("containment")
    ext, sibling, outside = base / "ext", base / "ext10", base / "outside"
    data = ext / "inner" / "data"
    for folder in (
        ext / "a" / "b",
        ext / "\xff odd".encode("utf-8", "surrogateescape").decode(),
        sibling / "s",
        outside / "o",
        data / "library",
    ):
        folder.mkdir(parents=True, exist_ok=True)
    links = {
        ext / "a" / "in": "b",  # inside
        ext / "a" / "up": "..",  # ext itself
        ext / "a" / "out": "../../outside",  # outside
        ext / "a" / "sib": os.fspath(sibling),  # the look-alike sibling, absolute
        ext / "a" / "b" / "deep_out": "../../../ext10/s",
        ext / "to_data": "inner/data/library",  # into the data directory
        ext / "dangling": "nowhere/at/all",
        ext / "loop": "loop",
        outside / "back": os.fspath(ext / "a"),  # outside, but pointing back in
    }
    for link, target in links.items():
        link.symlink_to(target)
    (ext / "a" / "b" / "file.jpg").write_bytes(b"in")
    (outside / "o" / "secret.jpg").write_bytes(b"secret")
    (ext / "a" / "b" / "secret_link.jpg").symlink_to(outside / "o" / "secret.jpg")
    return {"base": base, "ext": ext, "data": data, "sibling": sibling, "outside": outside}


def real_directories(top: Path) -> set[tuple[int, int]]:
    """(device, inode) of every real directory below `top`, links not followed: what "inside" means to the kernel."""
    found = set()
    for folder, _, _ in os.walk(top, followlinks=False):
        status = os.stat(folder, follow_symlinks=False)
        found.add((status.st_dev, status.st_ino))
    return found


hostile_segment = st.sampled_from(
    [
        "a",
        "b",
        "in",
        "up",
        "out",
        "sib",
        "deep_out",
        "to_data",
        "dangling",
        "loop",
        "..",
        ".",
        "",
        "ext",
        "ext10",
        "inner",
        "data",
        "library",
        "outside",
        "back",
        "s",
        "o",
        "\udcff odd",
        "nope",
    ]
)


# Most generated paths start inside the external path, so the interesting cases (links in, out, up, into the data
# directory) are reached, not just refusals of paths that never came near it.
START = st.sampled_from([[], ["ext"], ["ext", "a"], ["ext", "a", "b"], ["ext", "inner"]])
hostile_parts = st.tuples(START, st.lists(hostile_segment, max_size=5)).map(lambda pair: pair[0] + pair[1])


def test_an_accepted_import_path_is_inside_the_external_path_by_inode(tree, depth):
    inside = real_directories(tree["ext"])
    data = real_directories(tree["data"])
    base = os.fspath(tree["base"])
    accepted = []

    def body(parts: list[str], relative: bool) -> None:
        path = "/".join(parts) if relative else base + "/" + "/".join(parts)
        problem = import_path_problem(
            path, external_path=os.fspath(tree["ext"]), data_dir=os.fspath(tree["data"])
        )
        if problem is None:
            accepted.append(path)
            status = os.stat(normalize_import_path(path))  # what a scan crawls
            assert (status.st_dev, status.st_ino) in inside, path
            assert (status.st_dev, status.st_ino) not in data, path
        lexical = import_path_problem(
            path, external_path=os.fspath(tree["ext"]), data_dir=os.fspath(tree["data"]), check_disk=False
        )
        if lexical is None:
            assert is_within(resolve(normalize_import_path(path)), resolve(tree["ext"])), path
            assert not is_within(resolve(normalize_import_path(path)), resolve(tree["data"])), path

    depth.explore(body, 300, parts=hostile_parts, relative=st.booleans())
    assert accepted, (
        "the generator must reach accepted paths (about 10 in 300), or the property checks nothing"
    )


def test_known_escapes_are_refused(tree):
    ext, base = os.fspath(tree["ext"]), os.fspath(tree["base"])

    def problem(path: str) -> str | None:
        return import_path_problem(path, external_path=ext, data_dir=os.fspath(tree["data"]))

    assert problem(ext + "/a/b") is None
    assert problem(ext + "/a/in") is None
    assert problem(base + "/ext10") == "Import path must be within the user's external path"
    assert problem(ext + "/../ext10/s") == "Import path must be within the user's external path"
    assert problem(ext + "/a/out") == "Import path must be within the user's external path"
    assert problem(ext + "/a/sib") == "Import path must be within the user's external path"
    assert problem(ext + "/a/up/..") is None  # `..` is applied lexically first: this is ext/a, not ext/..
    assert problem(ext + "/a/b/deep_out") == "Import path must be within the user's external path"
    assert problem(ext + "/to_data") == "Cannot use media upload folder for external libraries"
    assert problem(ext + "/inner/data") == "Cannot use media upload folder for external libraries"
    assert problem(ext + "/a\0/b") == "Import path must not contain NUL bytes"
    assert problem("a/b").startswith("Import path must be absolute")


def test_open_original_only_opens_files_inside_the_root(tree, depth):
    ext = tree["ext"]
    inside_files = set()
    for folder, _, files in os.walk(ext, followlinks=False):
        for name in files:
            status = os.stat(os.path.join(folder, name), follow_symlinks=False)
            inside_files.add((status.st_dev, status.st_ino))
    names = st.sampled_from(["file.jpg", "secret.jpg", "secret_link.jpg", "o", "b", "a"])
    opened = []

    def body(parts: list[str], name: str) -> None:
        path = os.fsencode(os.fspath(tree["base"]) + "/" + "/".join([*parts, name]))
        try:
            descriptor = open_original(path, os.fsencode(ext))
        except OSError:
            return  # refused (NotConfined), missing, a directory, a loop: all fine
        try:
            status = os.fstat(descriptor)
        finally:
            os.close(descriptor)
        assert (status.st_dev, status.st_ino) in inside_files, path
        opened.append(path)

    depth.explore(body, 300, parts=hostile_parts, name=names)
    assert opened, "the generator must reach files that open, or the property checks nothing"
