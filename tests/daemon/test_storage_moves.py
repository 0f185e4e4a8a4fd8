"""Moving originals to their storage-template destination (`media.md` §5.5-5.7), on real files."""

import errno
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import storage_moves
from daemon.storage_moves import (
    DestinationTaken,
    MoveFailed,
    choose_destination,
    move_file,
    move_sidecar,
    remove_source,
    sidecar_of,
)


def sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def write(path: Path, data: bytes = b"original bytes") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith(".filmroll-move-"))


@pytest.fixture
def root(tmp_path) -> Path:
    path = tmp_path / "library" / "alice"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def other_filesystem(tmp_path):
    """A folder on another filesystem than tmp_path (tmpfs /dev/shm), for real EXDEV moves."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a different filesystem from tmp_path to cross filesystems")
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="filmroll-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def simulated_exdev(monkeypatch):
    """Make hard links of the original fail with EXDEV, as between filesystems, so the copy path runs on any
    machine. Renames of the copy's temporary file still work."""

    def link(source, destination, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), os.fsdecode(source))

    monkeypatch.setattr(storage_moves.os, "link", link)


# --- choose_destination -------------------------------------------------------------------------------------


def test_free_destination_is_the_rendered_path(root):
    assert choose_destination(root, "2023/2023-03-05/IMG.jpg", None) == root / "2023/2023-03-05/IMG.jpg"


def test_taken_destination_gets_plus_n_before_the_extension(root):
    write(root / "2023/IMG.jpg")
    assert choose_destination(root, "2023/IMG.jpg", None) == root / "2023/IMG+1.jpg"
    write(root / "2023/IMG+1.jpg")
    write(root / "2023/IMG+2.jpg")
    assert choose_destination(root, "2023/IMG.jpg", None) == root / "2023/IMG+3.jpg"


def test_a_folder_or_dangling_link_also_takes_the_name(root):
    (root / "IMG.jpg").mkdir()
    os.symlink("/nonexistent", root / "IMG+1.jpg")
    assert choose_destination(root, "IMG.jpg", None) == root / "IMG+2.jpg"


def test_a_stale_sidecar_takes_the_name(root):
    write(root / "IMG.jpg.xmp", b"<x/>")
    assert choose_destination(root, "IMG.jpg", None) == root / "IMG+1.jpg"


def test_already_at_the_destination_counts_as_in_place(root):
    current = write(root / "2023/IMG.jpg")
    assert choose_destination(root, "2023/IMG.jpg", current) is current


@pytest.mark.parametrize("name", ["IMG+1.jpg", "IMG+7.jpg", "IMG+123.jpg"])
def test_already_at_a_plus_n_destination_counts_as_in_place(root, name):
    write(root / "2023/IMG.jpg", b"someone else")
    current = write(root / "2023" / name)
    assert choose_destination(root, "2023/IMG.jpg", current) is current


@pytest.mark.parametrize(
    "name", ["IMG+.jpg", "IMG+x.jpg", "IMG+1.jpeg", "IMG-1.jpg", "IMG+1+2.jpg", "IMG+\u0661.jpg"]
)
def test_other_names_are_not_in_place(root, name):
    current = write(root / "2023" / name)
    assert choose_destination(root, "2023/IMG.jpg", current) == root / "2023/IMG.jpg"


def test_same_name_in_another_folder_is_not_in_place(root):
    current = write(root / "2022/IMG.jpg")
    assert choose_destination(root, "2023/IMG.jpg", current) == root / "2023/IMG.jpg"


def test_in_place_through_a_symlinked_root(tmp_path, root):
    current = write(root / "2023/IMG+2.jpg")
    link = tmp_path / "link-to-root"
    link.symlink_to(root)
    assert choose_destination(link, "2023/IMG.jpg", current) is current


def test_a_symlink_out_of_the_root_is_refused_with_a_warning(tmp_path, root, caplog):
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "2023").symlink_to(outside)
    current = write(tmp_path / "upload/ab/cd/id.jpg")
    with caplog.at_level(logging.WARNING):
        assert choose_destination(root, "2023/IMG.jpg", current, asset_id="asset-42") is None
    assert "asset-42" in caplog.text
    assert str(current) in caplog.text
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("relative", ["../bob/IMG.jpg", "/etc/IMG.jpg", "a/../../x.jpg", "..", "."])
def test_relative_paths_that_escape_are_refused(root, relative, caplog):
    assert choose_destination(root, relative, None, asset_id="asset-1") is None
    assert "asset-1" in caplog.text


def test_symlinks_that_stay_inside_are_followed(root):
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real")
    assert choose_destination(root, "alias/IMG.jpg", None) == root / "real/IMG.jpg"


# --- move_file, same filesystem -----------------------------------------------------------------------------


def test_same_filesystem_move_links_and_leaves_the_old_name_for_after_the_commit(tmp_path, root):
    source = write(tmp_path / "upload/d5/87/id.jpg")
    inode = source.stat().st_ino
    destination = root / "2023/2023-03-05/IMG.jpg"
    assert move_file(source, destination, verify_sha1=None) is True  # the old name stays until the index says
    assert source.exists() and destination.read_bytes() == b"original bytes"
    assert destination.stat().st_ino == inode
    remove_source(source)
    assert not source.exists()


def test_a_move_interrupted_before_its_commit_adopts_its_own_link(tmp_path, root):
    source = write(tmp_path / "upload/id.jpg")
    destination = root / "2023/IMG.jpg"
    move_file(source, destination, verify_sha1=None)  # ... and the daemon died before the index write
    assert choose_destination(root, "2023/IMG.jpg", source) == destination  # not IMG+1.jpg
    assert move_file(source, destination, verify_sha1=None) is True
    assert leftovers(destination.parent) == []


def test_never_overwrites_an_existing_file(tmp_path, root):
    source = write(tmp_path / "upload/id.jpg", b"mine")
    destination = write(root / "IMG.jpg", b"someone else's")
    with pytest.raises(DestinationTaken) as raised:
        move_file(source, destination, verify_sha1=None)
    assert str(destination) in str(raised.value)
    assert "File exists" in str(raised.value)
    assert source.read_bytes() == b"mine"
    assert destination.read_bytes() == b"someone else's"


@pytest.mark.parametrize("fallback", ["renameat2", "check-then-rename"])
def test_without_hard_links_renames_never_overwrite_either(tmp_path, root, monkeypatch, fallback):
    """A filesystem without hard links: the file is renamed (NOREPLACE, else checked first)."""

    def no_hard_links(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(storage_moves.os, "link", no_hard_links)
    if fallback == "check-then-rename":
        monkeypatch.setattr(storage_moves, "_renameat2", None)
    source = write(tmp_path / "upload/id.jpg", b"mine")
    taken = write(root / "IMG.jpg", b"someone else's")
    with pytest.raises(DestinationTaken):
        move_file(source, taken, verify_sha1=None)
    assert taken.read_bytes() == b"someone else's"
    assert move_file(source, root / "IMG+1.jpg", verify_sha1=None) is False
    assert not source.exists()
    assert (root / "IMG+1.jpg").read_bytes() == b"mine"


def test_missing_source_names_the_file_and_the_reason(tmp_path, root):
    source = tmp_path / "upload/gone.jpg"
    with pytest.raises(MoveFailed) as raised:
        move_file(source, root / "IMG.jpg", verify_sha1=None)
    assert str(source) in str(raised.value)
    assert "No such file or directory" in str(raised.value)
    assert raised.value.errno == errno.ENOENT


def test_unwritable_destination_names_the_folder(tmp_path, root):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    source = write(tmp_path / "upload/id.jpg")
    locked = root / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(MoveFailed) as raised:
            move_file(source, locked / "sub/IMG.jpg", verify_sha1=None)
    finally:
        locked.chmod(0o700)
    assert "Permission denied" in str(raised.value)
    assert str(locked / "sub") in str(raised.value)
    assert source.exists()


# --- move_file, across filesystems --------------------------------------------------------------------------


def test_cross_filesystem_move_copies_verifies_and_leaves_the_source(other_filesystem, root):
    data = os.urandom(3 * (1 << 20) + 17)
    source = write(other_filesystem / "id.jpg", data)
    os.utime(source, ns=(1_600_000_000_000_000_000, 1_500_000_000_123_456_789))
    source.chmod(0o640)
    destination = root / "2023/IMG.jpg"
    assert move_file(source, destination, verify_sha1=sha1(data)) is True
    assert destination.read_bytes() == data
    assert destination.stat().st_mtime_ns == 1_500_000_000_123_456_789
    assert destination.stat().st_mode & 0o777 == 0o640
    assert source.read_bytes() == data  # removed only after the caller's index write
    assert leftovers(destination.parent) == []
    remove_source(source)
    assert not source.exists()
    remove_source(source)  # already gone: fine


def test_cross_filesystem_wrong_hash_leaves_nothing_behind(other_filesystem, root):
    source = write(other_filesystem / "id.jpg", b"real content")
    destination = root / "IMG.jpg"
    with pytest.raises(MoveFailed) as raised:
        move_file(source, destination, verify_sha1=sha1(b"something else"))
    assert "SHA-1" in str(raised.value)
    assert str(source) in str(raised.value)
    assert not destination.exists()
    assert leftovers(root) == []
    assert source.read_bytes() == b"real content"


def test_cross_filesystem_never_overwrites(other_filesystem, root):
    source = write(other_filesystem / "id.jpg", b"mine")
    taken = write(root / "IMG.jpg", b"someone else's")
    with pytest.raises(DestinationTaken):
        move_file(source, taken, verify_sha1=None)
    assert taken.read_bytes() == b"someone else's"
    assert leftovers(root) == []


def test_copy_path_without_verification(simulated_exdev, tmp_path, root):
    source = write(tmp_path / "upload/id.jpg", b"content")
    destination = root / "a/b/IMG.jpg"
    assert move_file(source, destination, verify_sha1=None) is True
    assert destination.read_bytes() == b"content"
    assert source.exists()
    assert leftovers(destination.parent) == []


def test_copy_path_verifies(simulated_exdev, tmp_path, root):
    source = write(tmp_path / "upload/id.jpg", b"content")
    with pytest.raises(MoveFailed, match="SHA-1"):
        move_file(source, root / "IMG.jpg", verify_sha1=b"\0" * 20)
    assert not (root / "IMG.jpg").exists()
    assert leftovers(root) == []
    assert move_file(source, root / "IMG.jpg", verify_sha1=sha1(b"content")) is True


def test_copy_path_loses_a_race_for_the_name_without_overwriting(
    simulated_exdev, tmp_path, root, monkeypatch
):
    source = write(tmp_path / "upload/id.jpg", b"mine")
    destination = root / "IMG.jpg"
    real_sha1 = storage_moves._sha1_of

    def sha1_then_someone_takes_the_name(path):
        write(destination, b"raced in")
        return real_sha1(path)

    monkeypatch.setattr(storage_moves, "_sha1_of", sha1_then_someone_takes_the_name)
    with pytest.raises(DestinationTaken):
        move_file(source, destination, verify_sha1=sha1(b"mine"))
    assert destination.read_bytes() == b"raced in"
    assert leftovers(root) == []
    assert source.read_bytes() == b"mine"


def test_remove_source_names_the_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    locked = tmp_path / "locked"
    source = write(locked / "id.jpg")
    locked.chmod(0o500)
    try:
        with pytest.raises(MoveFailed) as raised:
            remove_source(source)
    finally:
        locked.chmod(0o700)
    assert str(source) in str(raised.value)
    assert "Permission denied" in str(raised.value)


# --- sidecars -----------------------------------------------------------------------------------------------


def test_sidecar_follows_its_original(tmp_path, root):
    source = write(tmp_path / "upload/id.jpg")
    sidecar = write(sidecar_of(source), b"<xmp/>")
    destination = root / "2023/IMG.jpg"
    assert move_file(source, destination, verify_sha1=None) is True
    assert move_sidecar(sidecar, destination) is True
    assert (root / "2023/IMG.jpg.xmp").read_bytes() == b"<xmp/>"
    remove_source(sidecar)
    assert not sidecar.exists()


def test_sidecar_across_filesystems_is_verified_and_left_for_removal(other_filesystem, root):
    sidecar = write(other_filesystem / "id.jpg.xmp", b"<xmp/>")
    assert move_sidecar(sidecar, root / "IMG.jpg") is True
    assert (root / "IMG.jpg.xmp").read_bytes() == b"<xmp/>"
    assert sidecar.exists()


def test_no_sidecar_is_nothing_to_do(tmp_path, root):
    assert move_sidecar(tmp_path / "none.jpg.xmp", root / "IMG.jpg") is None
    assert move_sidecar(tmp_path / "none.jpg.xmp", root / "IMG.jpg", verify=False) is None
    assert not (root / "IMG.jpg.xmp").exists()


def test_sidecar_of():
    assert sidecar_of(Path("/a/b/IMG.jpg")) == Path("/a/b/IMG.jpg.xmp")


# --- many moves to one name ---------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contents=st.lists(st.binary(max_size=64), min_size=1, max_size=8), cross=st.booleans())
def test_many_assets_wanting_one_name_all_keep_their_bytes(tmp_path_factory, monkeypatch, contents, cross):
    base = tmp_path_factory.mktemp("many")
    root = base / "library"
    root.mkdir()
    if cross:
        real = storage_moves._rename_without_replacing

        def rename(source, destination):
            if "upload" in str(source):
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source))
            real(source, destination)

        monkeypatch.setattr(storage_moves, "_rename_without_replacing", rename)
    placed = []
    for number, data in enumerate(contents):
        source = write(base / "upload" / f"{number}.jpg", data)
        destination = choose_destination(root, "2023/IMG.jpg", source)
        assert destination is not None
        if move_file(source, destination, verify_sha1=sha1(data)):
            remove_source(source)
        placed.append((destination, data))
        # Asked again, the asset is in place: not moved a second time.
        assert choose_destination(root, "2023/IMG.jpg", destination) == destination
    monkeypatch.undo()
    assert [path.name for path, _ in placed] == ["IMG.jpg"] + [
        f"IMG+{n}.jpg" for n in range(1, len(contents))
    ]
    assert all(path.read_bytes() == data for path, data in placed)
    assert sorted(os.listdir(root / "2023")) == sorted(path.name for path, _ in placed)
    assert os.listdir(base / "upload") == []


def test_a_file_where_a_folder_should_be_is_named(tmp_path, root):
    source = write(tmp_path / "upload/id.jpg")
    write(root / "2023", b"a file, not a folder")
    with pytest.raises(MoveFailed) as raised:
        move_file(source, root / "2023/05/IMG.jpg", verify_sha1=None)
    assert str(source) in str(raised.value)
    assert "Not a directory" in str(raised.value)
    assert str(root / "2023/05") in str(raised.value)
    assert source.exists()


def test_remove_source_refuses_a_folder_and_names_it(tmp_path):
    folder = tmp_path / "not-a-file"
    folder.mkdir()
    with pytest.raises(MoveFailed) as raised:
        remove_source(folder)
    assert str(folder) in str(raised.value)
    assert "Is a directory" in str(raised.value)
