"""Random multipart uploads (`POST /api/assets`) to the real `filmroll serve` (a child process on 127.0.0.1,
tests/e2e/live_daemon.py): a valid upload's parts, then dropped, duplicated, reordered or replaced, with odd
bytes in names, values and file names, and files from empty to larger than a write batch.

Every answer is 201 (stored), 200 (a duplicate), 400 (refused) or 507 (no room): never another code. A 201 or
200 names an asset that holds exactly the bytes of the first `assetData` file part, and after every request the
incoming folder (`<data>/upload/.incoming`) is empty: no temp file, no landing marker. On the way out the daemon
must stop cleanly, have logged no error, and `filmroll check` must find its index consistent (`running_daemon`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from hypothesis import strategies as st

from daemon.upload_stream import WRITE_BATCH, incoming_folder
from tests.e2e.live_daemon import LiveDaemon, running_daemon

BOUNDARY = b"filmroll-property-boundary"
Part = tuple[bytes, bytes | None, bytes]
"""(part name, file name or None for a text part, content)"""

NAMES = [b"assetData", b"sidecarData", b"fileCreatedAt", b"fileModifiedAt", b"isFavorite", b"isArchived",
         b"visibility", b"filename", b"libraryId", b"deviceAssetId", b"deviceId", b"duration", b"metadata"]  # fmt: skip
FILE_NAMES = [b"a.jpg", b"B.JPG", b"c.heic", b"d.mp4", b"e.jpg.xmp", b"f.txt", b"", b".", b"..", b"../../g.jpg",
              b"h\\..\\i.jpg", b"\xff\xfe.jpg", "é.jpg".encode(), b"j\x00k.jpg", b"l\x7f.png",
              b"x" * 300 + b".jpg"]  # fmt: skip
VALUES = [b"", b"true", b"FALSE", b"2024-02-29T12:34:56Z", b"1600-01-01T00:00:00Z", b"9999-12-31T23:59:59+14:00",
          b"2262-04-12T00:00:00Z", b"not a date", b"archive", b"locked", b"\xff\xfe", b"\x00", b"a" * 70_000,
          b"00000000-0000-0000-0000-000000000000"]  # fmt: skip

contents = st.one_of(
    st.binary(max_size=64), st.binary(max_size=8).map(lambda head: head + b"\0" * (WRITE_BATCH + 7))
)
"""Files: short and random, or longer than one write batch (`daemon.upload_stream`)."""
names = st.one_of(st.sampled_from(NAMES), st.binary(max_size=12).filter(lambda name: b'"' not in name))
file_names = st.one_of(
    st.sampled_from(FILE_NAMES), st.binary(max_size=40).filter(lambda name: b'"' not in name)
)
parts = st.tuples(names, st.one_of(st.none(), file_names), st.one_of(st.sampled_from(VALUES), contents))


def valid_parts(content: bytes) -> list[Part]:
    return [
        (b"deviceAssetId", None, b"property"),
        (b"fileCreatedAt", None, b"2024-02-29T12:34:56.789+02:00"),
        (b"fileModifiedAt", None, b"2024-02-29T12:34:56.789Z"),
        (b"assetData", b"photo.jpg", content),
    ]


@st.composite
def forms(draw: st.DrawFn) -> list[Part]:
    """A valid upload, then changed: parts dropped, duplicated, added, reordered."""
    form = valid_parts(draw(contents))
    for _ in range(draw(st.integers(0, 4))):
        change = draw(st.sampled_from(["drop", "duplicate", "add", "shuffle"]))
        if change == "drop" and form:
            form.pop(draw(st.integers(0, len(form) - 1)))
        elif change == "duplicate" and form:
            form.insert(draw(st.integers(0, len(form))), form[draw(st.integers(0, len(form) - 1))])
        elif change == "add":
            form.insert(draw(st.integers(0, len(form))), draw(parts))
        elif change == "shuffle":
            form = draw(st.permutations(form))
    return form


def encode(form: list[Part]) -> bytes:
    body = b""
    for name, file_name, content in form:
        disposition = b'form-data; name="' + name + b'"'
        if file_name is not None:
            disposition += b'; filename="' + file_name + b'"'
        body += (
            b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + content + b"\r\n"
        )
    return body + b"--" + BOUNDARY + b"--\r\n"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    with running_daemon(tmp_path_factory.mktemp("uploads") / "daemon") as daemon:
        yield daemon


@pytest.mark.no_originals  # the files are bytes made here, no file on disk is handed over
def test_random_multipart_uploads_store_exactly_what_was_sent_or_nothing(live: LiveDaemon, depth):
    incoming = incoming_folder(live.data_dir)
    statuses: dict[int, int] = {}
    with live.client() as client:

        def upload(form: list[Part]) -> None:
            reply = client.post(
                "/api/assets",
                content=encode(form),
                headers={"content-type": f"multipart/form-data; boundary={BOUNDARY.decode()}"},
            )
            statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
            assert reply.status_code in (200, 201, 400, 507), (reply.status_code, reply.text)
            left = sorted(incoming.iterdir()) if incoming.exists() else []
            assert not left, f"left in {incoming}: {left}"
            if reply.status_code in (200, 201):
                sent = next(content for name, file_name, content in form
                            if name == b"assetData" and file_name is not None)  # fmt: skip
                original = client.get(f"/api/assets/{reply.json()['id']}/original")
                assert original.status_code == 200, original.text
                assert hashlib.sha1(original.content).digest() == hashlib.sha1(sent).digest()

        depth.explore(upload, 40, form=forms())
    assert statuses.get(201) and statuses.get(400), statuses  # both paths were taken
