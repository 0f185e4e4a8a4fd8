"""Metadata extraction (media.md §6) on real files: JPEGs from Pillow with tags written by the exiftool CLI, an MP4
from the ffmpeg CLI, XMP sidecars; read through the worker's one stay-open exiftool, confined like every read."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from daemon import exiftool
from daemon.errors import BadMedia
from daemon.metadata import ExifInfo, map_tags, read_metadata
from daemon.originals import NotConfined

# Tags written into the generated files: one exiftool run for the whole corpus (an argfile, `-execute` per file).
TAGS = {
    "full.jpg": [
        "-DateTimeOriginal=2021:03:04 05:06:07", "-SubSecTimeOriginal=123", "-OffsetTimeOriginal=+05:30",
        "-ModifyDate=2021:03:05 10:00:00", "-OffsetTime=+05:30",
        "-GPSLatitude=33.5", "-GPSLatitudeRef=S", "-GPSLongitude=70.25", "-GPSLongitudeRef=W",
        "-Make=Canon", "-Model=Canon EOS R5", "-LensModel=RF50mm F1.8 STM", "-ExposureTime=1/4000",
        "-FNumber=2.8", "-FocalLength=50", "-ISO=200", "-Orientation#=6",
    ],
    "no_offset.jpg": ["-DateTimeOriginal=2020:01:02 03:04:05"],
    "invalid_dates.jpg": ["-DateTimeOriginal#=0000:00:00 00:00:00", "-ModifyDate#=garbage", "-m"],
    "create_date_fallback.jpg": [
        "-DateTimeOriginal#=0000:00:00 00:00:00", "-CreateDate=2019:05:06 07:08:09", "-OffsetTimeDigitized=-07:00",
        "-m",
    ],
    "zero_gps.jpg": [
        "-GPSLatitude=0", "-GPSLatitudeRef=N", "-GPSLongitude=0", "-GPSLongitudeRef=E", "-XMP-xmp:Rating=0",
    ],
    "xmp_fields.jpg": [
        "-XMP-dc:Description=  A lake at dawn  ", "-ImageDescription=the EXIF caption", "-XMP-xmp:Rating=4",
        "-XMP-GPano:ProjectionType=equirectangular", "-XMP-aux:Lens=Aux 35mm",
    ],
    "sidecar.jpg": [
        "-DateTimeOriginal=2010:07:20 19:27:12", "-OffsetTimeOriginal=+02:00", "-Make=NIKON", "-ISO=100",
        "-GPSLatitude=10", "-GPSLatitudeRef=N", "-GPSLongitude=10", "-GPSLongitudeRef=E",
        "-ImageDescription=embedded description",
    ],
}  # fmt: skip

SIDECAR = b"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    exif:DateTimeOriginal="2000-09-27T14:35:33+02:00" xmp:Rating="5"
    exif:GPSLatitude="47,3.25N" exif:GPSLongitude="8,30.5W" exif:FNumber="28/10">
   <exif:ISOSpeedRatings><rdf:Seq><rdf:li>400</rdf:li></rdf:Seq></exif:ISOSpeedRatings>
   <dc:description><rdf:Alt>
    <rdf:li xml:lang="de">Gipfel</rdf:li><rdf:li xml:lang="x-default">Summit</rdf:li>
   </rdf:Alt></dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description>&lol3;</dc:description>
</rdf:Description></rdf:RDF></x:xmpmeta>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description>&x;</dc:description>
</rdf:Description></rdf:RDF></x:xmpmeta>
"""

ODD_NAME = b"odd\nname \xff\xfe.JPG"


def fingerprint(folder: Path) -> dict[bytes, tuple[bytes, int]]:
    """Content hash and mtime of every file below `folder`, to prove extraction changes nothing."""
    found = {}
    for directory, _dirs, files in os.walk(os.fsencode(folder)):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as stream:
                found[path] = (hashlib.sha256(stream.read()).digest(), os.stat(path).st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """The generated originals (module-scoped: one exiftool write run, one ffmpeg run for the whole file)."""
    folder = tmp_path_factory.mktemp("library")
    for name in TAGS:
        Image.new("RGB", (300, 200), "teal").save(folder / name, quality=80)
    argfile = tmp_path_factory.mktemp("tags") / "write-tags.args"
    lines = [[*args, "-overwrite_original", str(folder / name), "-execute"] for name, args in TAGS.items()]
    argfile.write_text("".join(f"{line}\n" for args in lines for line in args))
    subprocess.run(["exiftool", "-q", "-q", "-@", str(argfile)], check=True)
    (folder / "sidecar.jpg.xmp").write_bytes(SIDECAR)
    subprocess.run(
        [
            *("ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "1"),
            *("-c:v", "libx264", "-pix_fmt", "yuv420p", "-metadata", "creation_time=2022-06-01T10:20:30Z"),
            str(folder / "clip.mp4"),
        ],
        check=True,
    )
    Image.new("RGB", (64, 48), "red").save(folder / "image.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not a picture\n")
    os.link(folder / "full.jpg", os.path.join(os.fsencode(folder), ODD_NAME))
    return folder


def read_one(library: Path, name: str | bytes, sidecar: str | None = None) -> ExifInfo:
    (result,) = read_metadata([item(library, name, sidecar)])
    assert isinstance(result, ExifInfo), result
    return result


def item(library: Path, name: str | bytes, sidecar: str | None = None) -> tuple[bytes, bytes, bytes | None]:
    root = os.fsencode(library)
    return (
        os.path.join(root, os.fsencode(name)),
        root,
        os.path.join(root, os.fsencode(sidecar)) if sidecar else None,
    )


def test_a_full_exif_set(library):
    info = read_one(library, "full.jpg")
    assert info.date_time_original == datetime(2021, 3, 3, 23, 36, 7, 123000, tzinfo=UTC)
    assert info.time_zone == "UTC+5:30"
    assert info.local_date_time == datetime(2021, 3, 4, 5, 6, 7, 123000)
    assert info.modify_date == datetime(2021, 3, 5, 4, 30, tzinfo=UTC)
    assert (info.latitude, info.longitude) == (-33.5, -70.25)
    assert (info.make, info.model, info.lens_model) == ("Canon", "Canon EOS R5", "RF50mm F1.8 STM")
    assert (info.exposure_time, info.f_number, info.focal_length, info.iso) == ("1/4000", 2.8, 50.0, 200)
    assert info.orientation == "6"
    assert (info.exif_image_width, info.exif_image_height) == (
        300,
        200,
    )  # as stored, not turned by orientation
    assert info.description is None and info.rating is None and info.projection_type is None
    assert info.duration_ms is None and info.fps is None and info.rotation is None


def test_without_an_offset_the_wall_clock_is_taken_as_utc(library):
    info = read_one(library, "no_offset.jpg")
    assert info.date_time_original == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert info.time_zone is None
    assert info.local_date_time == datetime(2020, 1, 2, 3, 4, 5)


def test_invalid_dates_are_unknown_and_the_next_source_is_used(library):
    invalid = read_one(library, "invalid_dates.jpg")
    assert (invalid.date_time_original, invalid.time_zone, invalid.local_date_time, invalid.modify_date) == (
        (None,) * 4
    )
    fallback = read_one(library, "create_date_fallback.jpg")
    assert fallback.date_time_original == datetime(2019, 5, 6, 14, 8, 9, tzinfo=UTC)
    assert (fallback.time_zone, fallback.local_date_time) == ("UTC-7", datetime(2019, 5, 6, 7, 8, 9))


def test_null_island_and_rating_zero_are_null(library):
    info = read_one(library, "zero_gps.jpg")
    assert (info.latitude, info.longitude, info.rating) == (None, None, None)


def test_description_rating_projection_and_lens_from_xmp(library):
    info = read_one(library, "xmp_fields.jpg")
    assert info.description == "A lake at dawn"  # XMP dc:description before EXIF ImageDescription
    assert info.rating == 4
    assert info.projection_type == "EQUIRECTANGULAR"
    assert info.lens_model == "Aux 35mm"  # no LensModel, no LensID: Lens


def test_the_sidecar_overrides_embedded_values_field_by_field(library):
    embedded = read_one(library, "sidecar.jpg")
    assert embedded.date_time_original == datetime(2010, 7, 20, 17, 27, 12, tzinfo=UTC)
    info = read_one(library, "sidecar.jpg", sidecar="sidecar.jpg.xmp")
    assert info.date_time_original == datetime(2000, 9, 27, 12, 35, 33, tzinfo=UTC)
    assert (info.time_zone, info.local_date_time) == ("UTC+2", datetime(2000, 9, 27, 14, 35, 33))
    assert info.latitude == pytest.approx(47 + 3.25 / 60) and info.longitude == pytest.approx(
        -(8 + 30.5 / 60)
    )
    assert (info.description, info.rating, info.iso, info.f_number) == ("Summit", 5, 400, 2.8)
    assert info.make == "NIKON"  # not in the sidecar: the embedded value stays
    assert (info.exif_image_width, info.exif_image_height) == (300, 200)


def test_a_video(library):
    info = read_one(library, "clip.mp4")
    # QuickTime CreateDate is UTC by convention; with no offset known the zone stays unknown.
    assert info.date_time_original == datetime(2022, 6, 1, 10, 20, 30, tzinfo=UTC)
    assert (info.time_zone, info.local_date_time) == (None, datetime(2022, 6, 1, 10, 20, 30))
    assert info.duration_ms == 1000 and info.fps == 25.0 and info.rotation == 0
    assert (info.exif_image_width, info.exif_image_height) == (160, 120)


def test_bad_files_fail_in_their_own_slots(library):
    names = ["full.jpg", "image.png", "empty.jpg", "text.jpg", "missing.jpg", "clip.mp4"]
    full, png, empty, text, missing, clip = read_metadata([item(library, name) for name in names])
    assert isinstance(full, ExifInfo) and full.make == "Canon"
    assert isinstance(png, ExifInfo) and (png.exif_image_width, png.exif_image_height) == (64, 48)
    assert isinstance(empty, BadMedia) and str(empty) == f"{library / 'empty.jpg'}: File is empty"
    assert isinstance(text, BadMedia) and str(text).startswith(
        f"{library / 'text.jpg'}: not an image or video"
    )
    assert isinstance(missing, FileNotFoundError) and os.fsdecode(missing.filename) == str(
        library / "missing.jpg"
    )
    assert isinstance(clip, ExifInfo) and clip.duration_ms == 1000


def test_file_names_with_newlines_and_non_utf8_bytes(library):
    info = read_one(library, ODD_NAME)
    assert info.make == "Canon" and info.orientation == "6"
    assert os.listdir(exiftool._link_directory()) == []  # the batch's links are gone


def test_a_link_leading_outside_the_root_is_not_read(library, tmp_path):
    inside = tmp_path / "root"
    inside.mkdir()
    (inside / "escape.jpg").symlink_to(library / "full.jpg")
    (inside / "fine.jpg").symlink_to(inside / "escape.jpg")  # a chain that ends outside too
    Image.new("RGB", (20, 10)).save(inside / "own.jpg")
    escape, chained, own = read_metadata([item(inside, n) for n in ("escape.jpg", "fine.jpg", "own.jpg")])
    assert isinstance(escape, NotConfined) and isinstance(chained, NotConfined)
    assert isinstance(own, ExifInfo) and own.exif_image_width == 20


@pytest.mark.parametrize(
    "hostile",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, b"<not xml", None],
    ids=["laughs", "entity", "junk", "missing"],
)
def test_a_refused_or_missing_sidecar_keeps_the_embedded_values(library, tmp_path, caplog, hostile):
    sidecar = tmp_path / "hostile.xmp"
    if hostile is not None:
        sidecar.write_bytes(hostile)
    (result,) = read_metadata([(*item(library, "sidecar.jpg")[:2], os.fsencode(sidecar))])
    assert result == read_one(library, "sidecar.jpg")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(sidecar) in warning for warning in warnings)


def test_exiftool_is_restarted_after_it_was_killed(library):
    before = read_one(library, "full.jpg")
    killed = exiftool._process
    assert killed is not None
    os.kill(killed.process.pid, signal.SIGKILL)
    assert read_one(library, "full.jpg") == before
    assert exiftool._process is not None and exiftool._process.process.pid != killed.process.pid


def test_a_batch_that_takes_too_long_fails_and_the_next_one_works(library, monkeypatch):
    read_one(library, "full.jpg")
    monkeypatch.setattr(exiftool, "BATCH_TIMEOUT", 1e-6)
    results = read_metadata([item(library, name) for name in ("full.jpg", "clip.mp4")])
    for name, result in zip(("full.jpg", "clip.mp4"), results, strict=True):
        assert isinstance(result, exiftool.ExiftoolFailed), result
        assert "did not answer" in str(result) and name in str(result)
    assert exiftool._process is None  # the hung one was killed
    monkeypatch.undo()
    assert read_one(library, "full.jpg").make == "Canon"


def test_originals_are_never_changed(library):
    before = fingerprint(library)
    names = [os.path.basename(path) for path in before]
    results = read_metadata(
        [item(library, name, "sidecar.jpg.xmp" if name == b"sidecar.jpg" else None) for name in names]
    )
    assert len(results) == len(names)
    assert fingerprint(library) == before


def test_exiftool_ends_with_its_worker(library):
    """A worker that exits stops its exiftool (atexit), and so does one killed outright (parent-death signal)."""
    script = textwrap.dedent(f"""
        import sys, time
        from daemon import exiftool, metadata
        metadata.read_metadata([({bytes(library / "full.jpg")!r}, None, None)])
        print(exiftool._process.process.pid, exiftool._links, flush=True)
        if sys.argv[1] == "linger":
            time.sleep(60)
    """)
    for how in ("exit", "linger"):
        worker = subprocess.Popen(
            [sys.executable, "-c", script, how],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
            text=True,
        )
        assert worker.stdout is not None
        child, links = worker.stdout.readline().split()
        if how == "linger":
            worker.kill()
            worker.wait(timeout=30)
            # a worker killed outright leaves its (empty) link directory; the next sweep removes it (this one, or
            # that of any daemon starting meanwhile: tests/daemon/test_crash_leftovers.py)
            exiftool.sweep_link_directories(os.path.dirname(links))
        worker.wait(timeout=30)
        deadline = time.monotonic() + 10
        while is_running(int(child)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_running(int(child)), how
        assert not os.path.exists(links)


def is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"DateTimeOriginal": "2021:03:04 05:06:07", "OffsetTimeOriginal": "+00:00"}, {"time_zone": "UTC"}),
        ({"DateTimeOriginal": "2021:03:04 05:06:07", "OffsetTimeOriginal": "-03:30"}, {"time_zone": "UTC-3:30"}),
        ({"DateTimeOriginal": "2021:03:04 05:06:07", "OffsetTimeOriginal": "   :  "}, {"time_zone": None}),
        ({"DateTimeOriginal": "2021:03:04 05:06:07", "OffsetTime": "+01:00"}, {"time_zone": "UTC+1"}),
        ({"DateTimeOriginal": "2021:02:30 05:06:07"}, {"date_time_original": None}),
        ({"DateTimeOriginal": "yesterday", "DateCreated": "2020-05-06T07:08:09.5Z"},
         {"date_time_original": datetime(2020, 5, 6, 7, 8, 9, 500000, tzinfo=UTC), "time_zone": "UTC"}),
        ({"LensID": "EF50mm f/1.8 II", "Lens": "50mm"}, {"lens_model": "EF50mm f/1.8 II"}),
        ({"ExposureTime": "2"}, {"exposure_time": "2"}),
        ({"ExposureTime": "0.5"}, {"exposure_time": "0.5"}),
        ({"ExposureTime": "0"}, {"exposure_time": None}),
        ({"Orientation": "9", "Rating": "-1", "ISO": "100 200"}, {"orientation": None, "rating": None, "iso": 100}),
        ({"GPSLatitude": "91", "GPSLongitude": "10"}, {"latitude": None, "longitude": None}),
        ({"GPSLatitude": "45"}, {"latitude": None, "longitude": None}),
        ({"ImageDescription": " ", "Caption-Abstract": "IPTC caption"}, {"description": "IPTC caption"}),
        ({"Make": ["Canon", "Canon"], "Model": "123"}, {"make": "Canon", "model": "123"}),
    ],
)  # fmt: skip
def test_mapping_rules(tags, expected):
    fields = map_tags(tags, quicktime=False, video=False)
    assert {field: fields[field] for field in expected} == expected


def test_quicktime_creation_date_wins_over_create_date():
    tags = {
        "CreationDate": "2022:06:01 12:20:30+02:00",
        "CreateDate": "2022:06:01 10:20:31",
        "Duration": "1.5",
    }
    fields = map_tags(tags, quicktime=True, video=True)
    assert fields["date_time_original"] == datetime(2022, 6, 1, 10, 20, 30, tzinfo=UTC)
    assert (fields["time_zone"], fields["duration_ms"]) == ("UTC+2", 1500)
