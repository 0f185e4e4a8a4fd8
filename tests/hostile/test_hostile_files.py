"""Hostile files in a scanned external library, through the real media queues (worker processes): XMP sidecars
with entity expansion, external entities or an unknown encoding, and decompression bombs. Each keeps its asset,
fails only what it must with a reason naming the file, and the queues carry on with the next file."""

from __future__ import annotations

import functools
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from daemon import derived, job_queue
from daemon.errors import BadMedia
from daemon.index import EXIF
from daemon.xmp import parse_sidecar
from tests.library_helpers import World, write
from tests.media_files import jpeg

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10)
        for n in range(1, 10)
    )
    + b']><x:xmpmeta xmlns:x="adobe:ns:meta/">&lol9;</x:xmpmeta>'
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Make="&xxe;"/></rdf:RDF></x:xmpmeta>'
)
EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd"><x>&e;</x>'
PARAMETER_ENTITY = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><x/>'
QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "' + b"A" * 50_000 + b'">]><x>' + b"&a;" * 50_000 + b"</x>"
)
UNKNOWN_ENCODING = b'<?xml version="1.0" encoding="no-such-codec"?><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'

HOSTILE_SIDECARS = {
    "laughs": BILLION_LAUGHS,
    "xxe": EXTERNAL_ENTITY,
    "dtd": EXTERNAL_DTD,
    "parameter": PARAMETER_ENTITY,
    "quadratic": QUADRATIC,
    "encoding": UNKNOWN_ENCODING,
}


def failures(world: World, asset) -> dict[str, job_queue.JobFailure]:
    with world.services.index.read() as txn:
        return {failure.queue: failure for failure in job_queue.failures_of(txn, asset.id)}


@pytest.mark.parametrize("name", sorted(HOSTILE_SIDECARS))
def test_the_parser_refuses_hostile_xml_quickly(name):
    with pytest.raises(BadMedia, match=r"^/lib/a\.jpg\.xmp: "):
        parse_sidecar(HOSTILE_SIDECARS[name], "/lib/a.jpg.xmp")


async def test_hostile_sidecars_keep_their_assets_and_are_named_in_the_log(world: World, capfd):
    root = world.external / "p"
    for name, content in HOSTILE_SIDECARS.items():
        jpeg(root / f"{name}.jpg", taken="2021:06:07 08:09:10")
        write(root / f"{name}.jpg.xmp", content)
    jpeg(root / "after.jpg")  # a plain file the queues must still reach
    # links leading out of the external path: a sidecar and a picture
    outside = world.external.parent / "outside"
    write(
        outside / "secret.xmp",
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Make="Leaked"'
        b"/></rdf:RDF></x:xmpmeta>",
    )
    jpeg(outside / "secret.jpg")
    jpeg(root / "linked.jpg")
    (root / "linked.jpg.xmp").symlink_to(outside / "secret.xmp")
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    library = world.library(root)
    await world.scan(library)
    await world.process_media()
    found = {os.path.basename(path).decode(): asset for path, asset in world.assets(library).items()}
    assert set(found) - {"escape.jpg"} == {f"{name}.jpg" for name in HOSTILE_SIDECARS} | {
        "after.jpg",
        "linked.jpg",
    }
    if "escape.jpg" in found:  # indexed or not, its bytes are never read: no thumbnail, a failure instead
        assert found["escape.jpg"].thumbnail_version == 0 and failures(world, found["escape.jpg"]), found
    with world.services.index.read() as txn:
        linked = txn.get(EXIF, found["linked.jpg"].id.bytes)
        assert linked is not None and "Leaked" not in repr(linked)
    logged = capfd.readouterr().err
    for name in HOSTILE_SIDECARS:
        asset = found[f"{name}.jpg"]
        assert failures(world, asset) == {}, name  # the sidecar is ignored, the file's own metadata used
        assert asset.thumbnail_version == 1 and not asset.is_offline, name
        assert asset.local_date_time.year == 2021, name  # the embedded capture date, nothing from the sidecar
        assert f"{name}.jpg.xmp" in logged, f"no warning names {name}.jpg.xmp"
    assert "root:x:0:0" not in logged  # /etc/passwd never read into anything: the log ...
    with world.services.index.read() as txn:  # ... nor any stored metadata
        for name in HOSTILE_SIDECARS:
            assert "root:" not in repr(txn.get(EXIF, found[f"{name}.jpg"].id.bytes)), name
    assert found["after.jpg"].thumbnail_version == 1 and failures(world, found["after.jpg"]) == {}


# --- decompression bombs ----------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def png_bomb(side: int = 50_000) -> bytes:
    """A valid 1-bit PNG of sidexside pixels (2.5 G pixels at 50k), all zeros: ~300 KB on disk."""
    row = b"\0" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def jpeg_bomb(path: Path) -> None:
    """A small real JPEG whose frame header claims 65000x65000 pixels (the format's limit is 65535)."""
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path, "JPEG")
    data = bytearray(path.read_bytes())
    position = 2
    while data[position] == 0xFF and data[position + 1] not in (0xC0, 0xC1, 0xC2):
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    data[position + 5 : position + 9] = struct.pack(">HH", 65000, 65000)  # height, width
    path.write_bytes(bytes(data))


async def test_decompression_bombs_fail_their_thumbnail_with_a_reason_and_nothing_else_breaks(world: World):
    root = world.external / "bombs"
    root.mkdir()
    (root / "bomb.png").write_bytes(png_bomb())
    jpeg_bomb(root / "bomb.jpg")
    jpeg(root / "fine.jpg")
    library = world.library(root)
    await world.scan(library)
    await world.process_media(timeout=120)
    found = {os.path.basename(path).decode(): asset for path, asset in world.assets(library).items()}
    assert set(found) == {"bomb.png", "bomb.jpg", "fine.jpg"}
    for name, pixels in (("bomb.png", "2500000000"), ("bomb.jpg", "4225000000")):
        recorded = failures(world, found[name])
        assert set(recorded) == {job_queue.THUMBNAILS}, (name, recorded)
        reason = recorded[job_queue.THUMBNAILS].reason
        # Pillow's own guard (twice `[image] maxPixels`) speaks first: "Image size (N pixels) exceeds limit …"
        assert name in reason and pixels in reason and "decompression bomb" in reason, reason
        assert recorded[job_queue.THUMBNAILS].attempts == 1  # bad media: not retried
        assert found[name].thumbnail_version == 0 and not found[name].is_offline
    assert found["fine.jpg"].thumbnail_version == 1 and failures(world, found["fine.jpg"]) == {}
    # no partial or temporary output left by the refused renders: every derived file is fine.jpg's
    root = derived.derived_root(world.services.settings.data_dir)
    files = [path for path in root.rglob("*") if path.is_file()]  # none at all when the folder does not exist
    fine = derived.folder(root, found["fine.jpg"].id)
    assert files and all(path.parent == fine for path in files), files
