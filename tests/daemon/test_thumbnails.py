"""Thumbnails, previews and thumbhashes (`media.md` §2, §3) from real files made here with Pillow, pillow_heif,
PyAV, the ffmpeg CLI and exiftool: sizes, formats, orientation, metadata stripping, alpha, colour modes, videos,
RAW, and bad files that fail with their name and write nothing."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import subprocess
from pathlib import Path

import av
import fast_thumbhash
import msgspec
import numpy
import pillow_heif
import pytest
from PIL import Image, ImageCms, JpegImagePlugin

from daemon.config import ImageOutput, ImageSettings
from daemon.errors import BadMedia
from daemon.originals import NotConfined
from daemon.thumbnails import render_image, render_video

SMALL = ImageSettings(
    thumbnail=ImageOutput(format="webp", size=50), preview=ImageOutput(format="jpeg", size=120)
)
RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def halves(size: tuple[int, int], left=RED, right=BLUE, mode: str = "RGB") -> Image.Image:
    """Left half one colour, right half another: any rotation or flip shows in the pixel layout."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def noise(size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(numpy.random.default_rng(7).integers(0, 256, (size[1], size[0], 3), numpy.uint8))


class Outputs(msgspec.Struct):
    rendered: object
    thumbnail: Image.Image
    preview: Image.Image
    thumbnail_bytes: bytes
    preview_bytes: bytes


def render(source: Path, settings: ImageSettings = SMALL, video: bool = False) -> Outputs:
    out = source.parent / "out"
    thumbnail, preview = out / "thumbs" / "t.webp", out / "previews" / "p.jpg"
    function = render_video if video else render_image
    rendered = function(os.fsencode(source), None, str(thumbnail), str(preview), settings)
    thumbnail_bytes, preview_bytes = thumbnail.read_bytes(), preview.read_bytes()
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["p.jpg", "t.webp"], (
        "temporary files left"
    )
    return Outputs(
        rendered,
        Image.open(io.BytesIO(thumbnail_bytes)),
        Image.open(io.BytesIO(preview_bytes)),
        thumbnail_bytes,
        preview_bytes,
    )


def near(pixel, colour, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


# --- sizes, formats, encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_size", "preview_size", "thumbnail_size"),
    [
        ((300, 200), (180, 120), (75, 50)),  # landscape
        ((200, 300), (120, 180), (50, 75)),  # portrait
        ((480, 960), (120, 240), (50, 100)),  # a 1/4 DCT reduction reaches exactly the preview size
        ((100, 40), (100, 40), (100, 40)),  # small: never enlarged
        ((100, 80), (100, 80), (63, 50)),  # between the two sizes
    ],
)
def test_shorter_side_is_scaled_to_the_target_and_never_enlarged(
    tmp_path, source_size, preview_size, thumbnail_size
):
    source = tmp_path / "a.jpg"
    noise(source_size).save(source, quality=90)
    result = render(source)
    assert result.preview.size == preview_size and result.thumbnail.size == thumbnail_size
    assert (result.rendered.width, result.rendered.height) == source_size


def test_default_settings_give_a_webp_thumbnail_and_a_444_jpeg_preview(tmp_path):
    source = tmp_path / "big.jpg"
    noise((3000, 2000)).save(source, quality=85)
    result = render(source, ImageSettings())
    assert (result.thumbnail.format, result.thumbnail.size) == ("WEBP", (375, 250))
    assert (result.preview.format, result.preview.size) == ("JPEG", (2160, 1440))
    assert JpegImagePlugin.get_sampling(result.preview) == 0  # 4:4:4 at quality 80


def test_formats_and_quality_come_from_the_settings(tmp_path):
    source = tmp_path / "a.png"
    noise((300, 200)).save(source)
    settings = ImageSettings(
        thumbnail=ImageOutput(format="jpeg", size=50, quality=70),
        preview=ImageOutput(format="webp", size=120, quality=90),
    )
    result = render(source, settings)
    assert (result.thumbnail.format, result.preview.format) == ("JPEG", "WEBP")
    assert JpegImagePlugin.get_sampling(result.thumbnail) == 2  # 4:2:0 below quality 80


def test_a_png_named_jpg_renders(tmp_path):
    source = tmp_path / "really-a-png.jpg"
    halves((300, 200)).save(source, format="PNG")
    assert render(source).preview.size == (180, 120)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("a.tiff", {}),
        ("a.bmp", {}),
        (
            "a.webp",
            {"save_all": True, "append_images": [Image.new("RGB", (300, 200), BLUE)], "duration": 100},
        ),
        ("a.png", {"transparency": 1, "palette": True}),  # palette with a transparent index
    ],
)
def test_other_pillow_formats_render_their_first_picture(tmp_path, name, options):
    source = tmp_path / name
    image = Image.new("RGB", (300, 200), RED)
    if options.pop("palette", False):
        image = image.convert("P")
    image.save(source, **options)
    result = render(source)
    assert result.preview.size == (180, 120) and near(result.preview.getpixel((90, 60)), RED)


# --- orientation, metadata, colour ----------------------------------------------------------------------------


def test_exif_orientation_6_is_applied_and_not_carried(tmp_path):
    source = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to view, so the left half ends up on top
    halves((600, 400)).save(source, exif=exif.tobytes(), quality=95)  # decoded at 1/2 through draft()
    result = render(source)
    assert (result.rendered.width, result.rendered.height) == (400, 600)
    assert (result.preview.size, result.thumbnail.size) == ((120, 180), (50, 75))
    for image in (result.preview, result.thumbnail):
        width, height = image.size
        assert near(image.convert("RGB").getpixel((width // 2, 5)), RED)
        assert near(image.convert("RGB").getpixel((width // 2, height - 5)), BLUE)
        assert not image.getexif()


def test_gps_and_other_metadata_never_reach_the_outputs(tmp_path):
    source = tmp_path / "gps.jpg"
    noise((300, 200)).save(source)
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-GPSLatitude=46.9", "-GPSLatitudeRef=N",
         "-GPSLongitude=9.1", "-GPSLongitudeRef=E", "-XMP-dc:Description=secret", "-IPTC:Keywords=secret",
         str(source)],
        check=True,
    )  # fmt: skip
    assert Image.open(source).getexif().get_ifd(0x8825)  # the GPS IFD is there
    result = render(source)
    for image, data in ((result.preview, result.preview_bytes), (result.thumbnail, result.thumbnail_bytes)):
        assert not image.getexif() and "exif" not in image.info and "xmp" not in image.info
        assert b"Exif" not in data and b"secret" not in data
        assert image.info["icc_profile"]  # the one piece of metadata kept


def test_an_embedded_rgb_profile_is_carried_and_untagged_sources_get_srgb(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    custom = srgb[:80] + b"test" + srgb[84:]  # another creator: a distinguishable, still valid RGB profile
    tagged, untagged = tmp_path / "tagged.jpg", tmp_path / "untagged.png"
    noise((300, 200)).save(tagged, icc_profile=custom)
    noise((300, 200)).save(untagged)
    tagged_result = render(tagged)
    assert tagged_result.preview.info["icc_profile"] == custom
    assert tagged_result.thumbnail.info["icc_profile"] == custom
    profile = ImageCms.ImageCmsProfile(io.BytesIO(render(untagged).preview.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile)


def test_alpha_stays_in_webp_and_is_flattened_onto_white_in_jpeg(tmp_path):
    source = tmp_path / "alpha.png"
    halves((300, 200), left=(255, 0, 0, 255), right=(0, 0, 255, 0), mode="RGBA").save(source)
    result = render(source)
    assert result.thumbnail.mode == "RGBA"
    assert result.thumbnail.getpixel((5, 25))[3] == 255 and result.thumbnail.getpixel((70, 25))[3] == 0
    assert result.preview.mode == "RGB"
    assert near(result.preview.getpixel((5, 60)), RED) and near(result.preview.getpixel((175, 60)), WHITE)


def test_an_animated_gif_uses_its_first_frame(tmp_path):
    source = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (300, 200), colour) for colour in (RED, GREEN, BLUE)]
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = render(source)
    assert near(result.preview.getpixel((90, 60)), RED) and near(result.thumbnail.getpixel((30, 20)), RED)


def test_heic_renders_upright(tmp_path):
    source = tmp_path / "phone.heic"
    exif = Image.Exif()
    exif[0x0112] = 6
    heif = pillow_heif.from_pillow(halves((300, 200)))
    heif.save(source, quality=90, exif=exif.tobytes())
    result = render(source)
    assert result.preview.size == (120, 180) and (result.rendered.width, result.rendered.height) == (200, 300)
    assert near(result.preview.getpixel((60, 5)), RED) and near(result.preview.getpixel((60, 175)), BLUE)


def test_cmyk_becomes_rgb(tmp_path):
    source = tmp_path / "print.jpg"
    Image.new("CMYK", (300, 200), (255, 0, 0, 0)).save(source, quality=95)  # pure cyan ink
    result = render(source)
    assert result.preview.mode == "RGB" and result.thumbnail.mode == "RGB"
    assert near(result.preview.getpixel((90, 60)), (0, 255, 255))


def test_16_bit_greyscale_becomes_8_bit_rgb(tmp_path):
    source = tmp_path / "deep.png"
    ramp = numpy.tile(numpy.linspace(0, 65535, 300).astype(numpy.uint16), (200, 1))
    Image.frombytes("I;16", (300, 200), ramp.tobytes()).save(source)
    assert Image.open(source).mode.startswith("I")
    result = render(source)
    assert result.preview.mode == "RGB"
    assert near(result.preview.getpixel((1, 60)), (0, 0, 0), 10)
    assert near(result.preview.getpixel((90, 60)), (128, 128, 128), 10)
    assert near(result.preview.getpixel((178, 60)), WHITE, 10)


def test_the_thumbhash_describes_the_preview(tmp_path):
    source = tmp_path / "red.jpg"
    Image.new("RGB", (300, 100), RED).save(source)
    thumbhash = render(source).rendered.thumbhash
    assert isinstance(thumbhash, bytes)
    assert fast_thumbhash.thumb_hash_to_approximate_aspect_ratio(thumbhash) == pytest.approx(3.0, rel=0.2)
    red, green, blue, _ = fast_thumbhash.thumb_hash_to_average_rgba(thumbhash)
    assert red > 0.8 and green < 0.2 and blue < 0.2


def test_avif_renders_through_pyav(tmp_path):
    source = tmp_path / "still.avif"
    png = tmp_path / "still.png"
    halves((320, 240)).save(png)
    ffmpeg("-i", png, "-c:v", "libaom-av1", "-still-picture", "1", source)
    result = render(source)
    assert result.preview.size == (160, 120) and (result.rendered.width, result.rendered.height) == (320, 240)
    assert near(result.preview.getpixel((5, 60)), RED) and near(result.preview.getpixel((155, 60)), BLUE)


# --- RAW ------------------------------------------------------------------------------------------------------


def write_dng(path: Path, rgb: numpy.ndarray, orientation: int, preview_jpeg: bytes | None = None) -> None:
    """A minimal linear (demosaiced) DNG libraw accepts; with `preview_jpeg`, IFD0 is that preview and the raw
    image moves to a SubIFD, as cameras lay them out."""
    short, long, ascii_, rational, srational, byte = 3, 4, 2, 5, 10, 1
    codes = {short: "H", long: "I", byte: "B", rational: "I", srational: "i"}
    height, width, _ = rgb.shape
    pixels = rgb.astype("<u2").tobytes()

    def ifd(entries: list, offset: int) -> bytes:
        base = offset + 2 + 12 * len(entries) + 4
        head, extra = bytearray(struct.pack("<H", len(entries))), bytearray()
        for tag, kind, values in sorted(entries):
            data = values if kind == ascii_ else struct.pack(f"<{len(values)}{codes[kind]}", *values)
            count = len(values) // 2 if kind in (rational, srational) else len(values)
            if len(data) <= 4:
                head += struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\0")
            else:
                head += struct.pack("<HHII", tag, kind, count, base + len(extra))
                extra += data + b"\0" * (len(data) % 2)
        return bytes(head + struct.pack("<I", 0) + extra)

    def raw_entries(pixel_offset: int) -> list:
        return [
            (254, long, [0]), (256, long, [width]), (257, long, [height]), (258, short, [16, 16, 16]),
            (259, short, [1]), (262, short, [34892]), (273, long, [pixel_offset]), (277, short, [3]),
            (278, long, [height]), (279, long, [len(pixels)]), (284, short, [1]),
            (50721, srational, [1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1]),
            (50728, rational, [1, 1, 1, 1, 1, 1]), (50778, short, [21]),
        ]  # fmt: skip

    common = [
        (271, ascii_, b"Filmroll\0"), (272, ascii_, b"Test\0"), (274, short, [orientation]),
        (50706, byte, [1, 4, 0, 0]), (50708, ascii_, b"Filmroll Test\0"),
    ]  # fmt: skip
    if preview_jpeg is None:
        size = len(ifd(common + raw_entries(0), 8))
        body = ifd(common + raw_entries(8 + size), 8) + pixels
    else:
        preview_width, preview_height = Image.open(io.BytesIO(preview_jpeg)).size

        def preview_entries(jpeg_offset: int, sub_offset: int) -> list:
            return [
                *common,
                (254, long, [1]), (256, long, [preview_width]), (257, long, [preview_height]),
                (258, short, [8, 8, 8]), (259, short, [7]), (262, short, [6]), (273, long, [jpeg_offset]),
                (277, short, [3]), (278, long, [preview_height]), (279, long, [len(preview_jpeg)]),
                (330, long, [sub_offset]),
            ]  # fmt: skip

        sub_offset = 8 + len(ifd(preview_entries(0, 0), 8))
        pixel_offset = sub_offset + len(ifd(raw_entries(0), sub_offset))
        body = (
            ifd(preview_entries(pixel_offset + len(pixels), sub_offset), 8)
            + ifd(raw_entries(pixel_offset), sub_offset)
            + pixels
            + preview_jpeg
        )
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + body)


def raw_halves() -> numpy.ndarray:
    rgb = numpy.zeros((200, 300, 3), numpy.uint16)
    rgb[:, :150, 0] = rgb[:, 150:, 2] = 50000
    return rgb


def test_a_raw_file_is_decoded_by_libraw_with_its_orientation(tmp_path):
    source = tmp_path / "camera.dng"
    write_dng(source, raw_halves(), orientation=6)
    result = render(source)
    assert result.preview.size == (120, 180) and (result.rendered.width, result.rendered.height) == (200, 300)
    assert near(result.preview.getpixel((60, 5)), RED, 60) and near(
        result.preview.getpixel((60, 175)), BLUE, 60
    )


def test_a_large_enough_embedded_raw_preview_is_used_and_rotated(tmp_path):
    source = tmp_path / "camera.dng"
    preview = io.BytesIO()
    halves((600, 400), left=GREEN, right=(255, 255, 0)).save(preview, format="JPEG", quality=95)
    write_dng(source, raw_halves(), orientation=6, preview_jpeg=preview.getvalue())
    result = render(source)
    assert result.preview.size == (120, 180) and (result.rendered.width, result.rendered.height) == (200, 300)
    assert near(result.preview.getpixel((60, 5)), GREEN) and near(
        result.preview.getpixel((60, 175)), (255, 255, 0)
    )


# --- videos ---------------------------------------------------------------------------------------------------


def ffmpeg(*arguments: object) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, arguments)], check=True)


def write_video(
    path: Path, colours: list[tuple[int, int, int]], size=(320, 240), keyframe_every: int = 5
) -> None:
    """An H.264 MP4 at 25 fps with one frame per colour (left half that colour, right half blue)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": str(keyframe_every), "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for colour in colours:
            frame = av.VideoFrame.from_image(halves(size, left=colour))
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_a_video_thumbnail_comes_from_a_keyframe_past_the_black_start(tmp_path):
    source = tmp_path / "clip.mp4"
    write_video(source, [(0, 0, 0)] * 5 + [GREEN] * 45)  # 2 s; 10% in is frame 5, a keyframe
    result = render(source, video=True)
    assert result.preview.size == (160, 120) and result.thumbnail.size == (67, 50)
    assert (result.rendered.width, result.rendered.height) == (320, 240)
    assert near(result.preview.getpixel((20, 60)), GREEN) and near(result.preview.getpixel((140, 60)), BLUE)


def test_video_rotation_metadata_is_applied_like_ffmpeg_does(tmp_path):
    plain, rotated, reference = tmp_path / "plain.mp4", tmp_path / "rotated.mp4", tmp_path / "reference.png"
    write_video(plain, [RED] * 50)
    ffmpeg("-i", plain, "-c", "copy", "-metadata:s:v", "rotate=90", rotated)
    ffmpeg("-i", rotated, "-frames:v", "1", reference)  # the ffmpeg CLI autorotates: the reference layout
    expected = Image.open(reference).convert("RGB")
    result = render(rotated, video=True)
    assert expected.size == (240, 320) and result.preview.size == (120, 160)
    assert (result.rendered.width, result.rendered.height) == (240, 320)
    for y in (5, 155):
        assert near(result.preview.getpixel((60, y)), expected.getpixel((120, y * 2)))


def test_the_sample_aspect_ratio_is_applied(tmp_path):
    square, anamorphic = tmp_path / "square.mp4", tmp_path / "anamorphic.mp4"
    write_video(square, [RED] * 10, size=(160, 240))
    ffmpeg("-i", square, "-vf", "setsar=2", "-c:v", "libx264", anamorphic)
    result = render(anamorphic, video=True)
    assert (result.rendered.width, result.rendered.height) == (320, 240)
    assert result.preview.size == (160, 120)


def test_a_stream_without_duration_or_index_falls_back_to_its_first_frame(tmp_path):
    container, elementary = tmp_path / "clip.mp4", tmp_path / "clip.h264"
    write_video(container, [GREEN] * 10)
    ffmpeg("-i", container, "-c", "copy", "-f", "h264", elementary)  # no duration, no seek index
    result = render(elementary, video=True)
    assert result.preview.size == (160, 120) and near(result.preview.getpixel((20, 60)), GREEN)


def test_a_new_render_replaces_the_previous_outputs(tmp_path):
    source = tmp_path / "a.png"
    Image.new("RGB", (300, 200), RED).save(source)
    first = render(source)
    Image.new("RGB", (300, 200), BLUE).save(source)
    second = render(source)
    assert near(second.preview.getpixel((90, 60)), BLUE) and near(second.thumbnail.getpixel((30, 20)), BLUE)
    assert second.rendered.thumbhash != first.rendered.thumbhash


# --- failures -------------------------------------------------------------------------------------------------


def truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    noise((300, 200)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def big_png(path: Path) -> None:
    noise((300, 200)).save(path)


def audio_only(path: Path) -> None:
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", path)


@pytest.mark.parametrize(
    ("name", "make", "video", "reason"),
    [
        ("cut.jpg", truncated_jpeg, False, "truncated"),
        ("empty.jpg", lambda path: path.write_bytes(b""), False, "empty file"),
        ("text.jpg", lambda path: path.write_text("not a picture"), False, "cannot identify image file"),
        ("drawing.svg", lambda path: path.write_text("<svg/>"), False, "no decoder for SVG"),
        ("fake.dng", lambda path: path.write_text("not raw"), False, "libraw"),
        ("fake.avif", lambda path: path.write_text("not avif"), False, "no decoder for AVIF"),
        ("bomb.png", big_png, False, "pixels"),
        ("empty.mp4", lambda path: path.write_bytes(b""), True, "empty file"),
        ("text.mp4", lambda path: path.write_text("not a video"), True, "not a readable video"),
        ("sound.m4a", audio_only, True, "no video stream"),
    ],
)
def test_bad_media_names_the_file_and_writes_nothing(tmp_path, name, make, video, reason):
    source = tmp_path / name
    make(source)
    out = tmp_path / "out"
    out.mkdir()
    (out / "p.jpg").write_bytes(b"previous preview")
    settings = msgspec.structs.replace(SMALL, max_pixels=10_000) if name.startswith("bomb") else SMALL
    function = render_video if video else render_image
    with pytest.raises(BadMedia) as raised:
        function(os.fsencode(source), None, str(out / "t.webp"), str(out / "p.jpg"), settings)
    assert str(source) in raised.value.message and reason in raised.value.message
    assert sorted(os.listdir(out)) == ["p.jpg"]
    assert (out / "p.jpg").read_bytes() == b"previous preview"


def test_a_vanished_original_raises_a_plain_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        render_image(
            os.fsencode(tmp_path / "gone.jpg"), None, str(tmp_path / "t"), str(tmp_path / "p"), SMALL
        )


def test_results_and_failures_cross_process_boundaries(tmp_path):
    source = tmp_path / "a.jpg"
    noise((300, 200)).save(source)
    rendered = render(source).rendered
    assert pickle.loads(pickle.dumps(rendered)) == rendered
    failure = pickle.loads(pickle.dumps(BadMedia("x.jpg: cannot identify image file")))
    assert isinstance(failure, BadMedia) and failure.message == "x.jpg: cannot identify image file"


def test_originals_are_left_exactly_as_they_were(tmp_path):
    image, video = tmp_path / "a.jpg", tmp_path / "b.mp4"
    noise((300, 200)).save(image)
    write_video(video, [GREEN] * 10)
    before = {p: (hashlib.sha256(p.read_bytes()).digest(), p.stat().st_mtime_ns) for p in (image, video)}
    render(image)
    render(video, video=True)
    assert {
        p: (hashlib.sha256(p.read_bytes()).digest(), p.stat().st_mtime_ns) for p in (image, video)
    } == before


def test_a_file_outside_its_root_is_not_read(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir(), outside.mkdir()
    noise((300, 200)).save(outside / "a.jpg")
    (root / "a.jpg").symlink_to(outside / "a.jpg")
    out = tmp_path / "out"
    with pytest.raises(NotConfined):
        render_image(
            os.fsencode(root / "a.jpg"), os.fsencode(root), str(out / "t.webp"), str(out / "p.jpg"), SMALL
        )
    assert not out.exists()
