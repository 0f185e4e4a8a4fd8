"""XMP sidecars (media.md §6.2): the properties §6.1 maps, in their XMP forms, and hostile XML refused."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from daemon.errors import BadMedia
from daemon.metadata import map_tags
from daemon.originals import NotConfined
from daemon.xmp import MAX_SIDECAR_BYTES, parse_sidecar, read_sidecar

NAMESPACES = (
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    'xmlns:exifEX="http://cipa.jp/exif/1.0/" xmlns:aux="http://ns.adobe.com/exif/1.0/aux/" '
    'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:GPano="http://ns.google.com/photos/1.0/panorama/"'
)


def sidecar(attributes: str = "", elements: str = "") -> bytes:
    return (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF {NAMESPACES}>'
        f'<rdf:Description rdf:about="" {attributes}>{elements}</rdf:Description></rdf:RDF></x:xmpmeta>'
    ).encode()


def test_values_as_attributes():
    tags = parse_sidecar(
        sidecar(
            'exif:DateTimeOriginal="2000-09-27T14:35:33.25+02:00" xmp:ModifyDate="2001-01-01T00:00:00Z" '
            'tiff:Make="Canon" tiff:Model="EOS 5D" exifEX:LensModel="EF24-70mm" exif:ExposureTime="1/250" '
            'exif:FNumber="28/10" exif:FocalLength="500/10" tiff:Orientation="8" xmp:Rating="3" '
            'GPano:ProjectionType="equirectangular" exif:GPSLatitude="47,3.25N" exif:GPSLongitude="8,30,30W"'
        ),
        "a.xmp",
    )
    fields = map_tags(tags, quicktime=False, video=False)
    assert fields["date_time_original"] == datetime(2000, 9, 27, 12, 35, 33, 250000, tzinfo=UTC)
    assert (fields["time_zone"], fields["local_date_time"]) == (
        "UTC+2",
        datetime(2000, 9, 27, 14, 35, 33, 250000),
    )
    assert fields["modify_date"] == datetime(2001, 1, 1, tzinfo=UTC)
    assert (fields["make"], fields["model"], fields["lens_model"]) == ("Canon", "EOS 5D", "EF24-70mm")
    assert (fields["exposure_time"], fields["f_number"], fields["focal_length"]) == ("1/250", 2.8, 50.0)
    assert (fields["orientation"], fields["rating"], fields["projection_type"]) == ("8", 3, "EQUIRECTANGULAR")
    assert fields["latitude"] == pytest.approx(47.0541667) and fields["longitude"] == pytest.approx(
        -8.5083333
    )


def test_values_as_elements_and_containers():
    tags = parse_sidecar(
        sidecar(
            elements="<photoshop:DateCreated>2003-04-05T06:07</photoshop:DateCreated>"
            "<exif:ISOSpeedRatings><rdf:Seq><rdf:li>800</rdf:li><rdf:li>1600</rdf:li></rdf:Seq></exif:ISOSpeedRatings>"
            "<dc:description><rdf:Alt><rdf:li xml:lang='fr'>Lac</rdf:li>"
            "<rdf:li xml:lang='x-default'>Lake</rdf:li></rdf:Alt></dc:description>"
            "<aux:Lens>50mm f/1.4</aux:Lens><exif:GPSLatitude>-33.865</exif:GPSLatitude>"
            "<exif:GPSLongitude>151.2094</exif:GPSLongitude>"
            "<exif:Flash rdf:parseType='Resource'><exif:Fired>False</exif:Fired></exif:Flash>"
        ),
        "b.xmp",
    )
    fields = map_tags(tags, quicktime=False, video=False)
    assert fields["date_time_original"] == datetime(2003, 4, 5, 6, 7, tzinfo=UTC)  # no offset: taken as UTC
    assert fields["time_zone"] is None
    assert (fields["iso"], fields["description"], fields["lens_model"]) == (800, "Lake", "50mm f/1.4")
    assert (fields["latitude"], fields["longitude"]) == (-33.865, 151.2094)


def test_unusable_values_are_left_out():
    tags = parse_sidecar(
        sidecar('exif:FNumber="28/0" exif:GPSLatitude="47,3.25E" exif:GPSLongitude="8W" tiff:Make="  "'),
        "c.xmp",
    )
    assert tags == {"GPSLongitude": "-8.0"}


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<r>&b;</r>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://example.invalid/x.dtd"> %p;]><r/>',
    ],
    ids=["entity-expansion", "external-entity", "external-dtd"],
)
def test_entities_are_refused(document):
    with pytest.raises(BadMedia, match=r"^/lib/a\.jpg\.xmp: XMP sidecar refused"):
        parse_sidecar(document, "/lib/a.jpg.xmp")


def test_junk_is_bad_media_naming_the_sidecar():
    with pytest.raises(BadMedia, match=r"^/lib/b\.xmp: not a readable XMP sidecar"):
        parse_sidecar(b"\x00\x01 not xml", "/lib/b.xmp")


def test_reading_is_confined_and_size_limited(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.xmp").write_bytes(sidecar('tiff:Make="Outside"'))
    (root / "link.xmp").symlink_to(tmp_path / "outside.xmp")
    with pytest.raises(NotConfined):
        read_sidecar(os.fsencode(root / "link.xmp"), os.fsencode(root))
    (root / "own.xmp").write_bytes(sidecar('tiff:Make="Inside"'))
    assert read_sidecar(os.fsencode(root / "own.xmp"), os.fsencode(root)) == {"Make": "Inside"}
    (root / "huge.xmp").write_bytes(b" " * (MAX_SIDECAR_BYTES + 1))
    with pytest.raises(BadMedia, match=r"huge\.xmp: XMP sidecar larger than"):
        read_sidecar(os.fsencode(root / "huge.xmp"), os.fsencode(root))
