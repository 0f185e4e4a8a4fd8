"""Rendering an asset's thumbnail, preview and thumbhash (`media.md` §2 and §3), in a worker process.

`render_image` and `render_video` are called as `trio_parallel.run_sync(fn, ...)`: plain blocking code, small
picklable arguments. Each opens the original once, read-only and confined (`open_original`), decodes it once,
makes the larger output from the decode and the smaller from the larger, computes the thumbhash from the preview,
and writes both files atomically (temporary name, then rename) only after both encoded. A bad file raises BadMedia
naming it and nothing is written; an `OSError` about the file itself (vanished, permission, outside its root)
passes unchanged.

Speed: a JPEG is decoded with DCT scaling (`draft`) at the smallest 1/2/4/8 reduction whose shorter side still
reaches the larger output size; resizing uses a box `reduce` then Lanczos (`reducing_gap`).

Colour, simplified: the source's RGB ICC profile is attached to the outputs with the pixels unchanged; untagged
sources are tagged sRGB; CMYK is converted to sRGB (through its embedded profile when it has one) and 16-bit or
float samples to 8 bits, both tagged sRGB; palette and grey sources become RGB(A). Wide-gamut sources are NOT
converted to Display P3 as `image.colorspace` asks: they keep and carry their own profile, which shows them
correctly in colour-managed viewers. Video HDR is not tone-mapped (see `daemon.video_frames`).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, BinaryIO

import fast_thumbhash
import msgspec
import numpy
from PIL import ExifTags, Image, ImageCms, JpegImagePlugin, UnidentifiedImageError

from .config import ImageOutput, ImageSettings
from .derived import forget_failed_render, note_render
from .errors import BadMedia
from .media_types import RAW_EXTENSIONS, extension
from .originals import open_original
from .video_frames import Frame, read_still, read_video_frame, scaled_to_shorter_side

if TYPE_CHECKING:
    import rawpy

WEBP_METHOD = 4
"""libwebp's speed/size trade-off (0 fast ... 6 small): 4 is libvips' default effort, and Pillow's default."""
THUMBHASH_BOX = 100
NO_DECODER = {".svg": "SVG", ".jxl": "JPEG XL"}
"""Formats listed as media (`media.md` §1) that this environment cannot decode."""
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_LIBRAW_FLIP_TO_ORIENTATION = {3: 3, 5: 8, 6: 6}


class Rendered(msgspec.Struct, frozen=True):
    thumbhash: bytes
    """Raw ThumbHash bytes (the API base64-encodes them)."""
    width: int
    """The source's dimensions after orientation or rotation: what the asset reports."""
    height: int


@dataclass(frozen=True)
class Picture:
    """Decoded pixels, 8-bit RGB or RGBA, possibly reduced, still in stored orientation."""

    image: Image.Image
    orientation: int
    """EXIF orientation (1-8) that makes `image` upright."""
    icc_profile: bytes
    """An RGB profile describing the pixels; attached to both outputs."""
    width: int
    """The original's dimensions after orientation."""
    height: int


def render_image(
    path: bytes, root: bytes | None, thumbnail_path: str, preview_path: str, settings: ImageSettings
) -> Rendered:
    """Render a still image's thumbnail and preview to the given paths and return its thumbhash and size.

    Raises BadMedia (nothing written) for a file that cannot be decoded, and OSError (NotConfined for a file
    outside `root`) when the original cannot be opened.
    """
    name = os.fsdecode(path)
    with _open(path, root, name) as stream:
        picture = _decode_image(stream, name, extension(path), settings)
    return _write_outputs(picture, thumbnail_path, preview_path, settings)


def render_video(
    path: bytes, root: bytes | None, thumbnail_path: str, preview_path: str, settings: ImageSettings
) -> Rendered:
    """Render a video's thumbnail and preview from a representative frame; same contract as `render_image`."""
    name = os.fsdecode(path)
    with _open(path, root, name) as stream:
        frame = read_video_frame(stream, name, _largest_output(settings), settings.max_pixels)
    return _write_outputs(_from_frame(frame), thumbnail_path, preview_path, settings)


@contextlib.contextmanager
def _open(path: bytes, root: bytes | None, name: str) -> Iterator[BinaryIO]:
    with open(open_original(path, root), "rb", closefd=True) as stream:
        if os.fstat(stream.fileno()).st_size == 0:
            raise BadMedia(f"{name}: empty file (0 bytes)")
        yield stream


def _largest_output(settings: ImageSettings) -> int:
    return max(settings.preview.size, settings.thumbnail.size)


def _from_frame(frame: Frame) -> Picture:
    return Picture(frame.image, frame.orientation, _srgb_profile(), frame.width, frame.height)


# --- decoding -------------------------------------------------------------------------------------------------


def _decode_image(stream: BinaryIO, name: str, ext: str, settings: ImageSettings) -> Picture:
    if ext in NO_DECODER:
        raise BadMedia(f"{name}: no decoder for {NO_DECODER[ext]} images")
    if ext == ".avif":  # Pillow and pillow_heif here have no AVIF decoder; FFmpeg's libdav1d has
        return _from_frame(read_still(stream, name, _largest_output(settings), settings.max_pixels))
    if ext in RAW_EXTENSIONS and ext != ".psd":  # Photoshop files are listed with RAW, but Pillow reads them
        return _decode_raw(stream, name, settings)
    return _decode_with_pillow(stream, name, settings)


def _decode_with_pillow(
    stream: BinaryIO, name: str, settings: ImageSettings, orientation: int | None = None
) -> Picture:
    """Decode through Pillow (pillow_heif for HEIF). `orientation` overrides the file's own EXIF tag."""
    _register_heif_opener()
    with _decoder_errors(name), _pillow_bomb_limit(settings.max_pixels):
        try:
            image = Image.open(stream)
        except UnidentifiedImageError:
            raise BadMedia(f"{name}: cannot identify image file") from None
        _refuse_bomb(image.width, image.height, settings.max_pixels, name)
        if orientation is None:
            orientation = _exif_orientation(image)
        width, height = (image.height, image.width) if orientation >= 5 else image.size
        if isinstance(image, JpegImagePlugin.JpegImageFile):
            _draft(image, _largest_output(settings))
        image.load()
        pixels, icc_profile = _as_8bit_rgb(image)
    return Picture(pixels, orientation, icc_profile, width, height)


def _draft(image: JpegImagePlugin.JpegImageFile, shorter_side: int) -> None:
    """Ask libjpeg for the largest DCT reduction (1/8, 1/4, 1/2) that keeps the shorter side ≥ `shorter_side`.

    The shorter side is the same before and after orientation, so the stored size decides.
    """
    for factor in (8, 4, 2):
        if -(-min(image.size) // factor) >= shorter_side:
            image.draft(image.mode, (image.width // factor, image.height // factor))
            return


def _exif_orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # corrupt EXIF does not make the pixels unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _as_8bit_rgb(image: Image.Image) -> tuple[Image.Image, bytes]:
    """The pixels as 8-bit RGB or RGBA, and the RGB profile that describes them."""
    icc_profile = image.info.get("icc_profile") or b""
    rgb_profile = icc_profile if icc_profile[16:20] == b"RGB " else _srgb_profile()
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image, rgb_profile
    if mode == "CMYK":
        return _cmyk_to_srgb(image, icc_profile), _srgb_profile()
    if mode.startswith("I") or mode == "F":
        values = numpy.asarray(image)
        if mode == "F":
            scale = 255.0 if values.size and float(values.max()) <= 1.0 else 1.0
            grey = numpy.clip(values * scale, 0, 255).round().astype(numpy.uint8)
        else:  # 16-bit samples (I;16*, and I as PNG and TIFF readers produce it)
            grey = (numpy.clip(values, 0, 65535).astype(numpy.uint32) // 257).astype(numpy.uint8)
        return Image.fromarray(grey).convert("RGB"), _srgb_profile()
    has_alpha = mode in ("LA", "La", "PA", "RGBa") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB"), rgb_profile  # palette, grey, bilevel, RGBX, ...


def _cmyk_to_srgb(image: Image.Image, icc_profile: bytes) -> Image.Image:
    if icc_profile[16:20] == b"CMYK":
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            return ImageCms.profileToProfile(image, source, _srgb_cms_profile(), outputMode="RGB")
        except ImageCms.PyCMSError:
            pass  # a broken profile: the naive conversion below still gives a recognisable picture
    return image.convert("RGB")


def _decode_raw(stream: BinaryIO, name: str, settings: ImageSettings) -> Picture:
    """A RAW file: its embedded JPEG preview when large enough, else libraw's (half-size when enough) decode."""
    import rawpy  # only workers that meet a RAW file pay for loading libraw

    target = _largest_output(settings)
    try:
        with rawpy.imread(stream) as raw:
            sizes = raw.sizes
            _refuse_bomb(sizes.width, sizes.height, settings.max_pixels, name)
            orientation = _LIBRAW_FLIP_TO_ORIENTATION.get(sizes.flip, 1)
            width, height = (sizes.height, sizes.width) if orientation >= 5 else (sizes.width, sizes.height)
            embedded = _embedded_jpeg(raw, target)
            if embedded is not None:
                # Embedded previews are stored unrotated: the RAW's own flip applies to them.
                preview = _decode_with_pillow(io.BytesIO(embedded), name, settings, orientation)
                return Picture(preview.image, orientation, preview.icc_profile, width, height)
            half_size = min(sizes.width, sizes.height) // 2 >= target
            rgb = raw.postprocess(use_camera_wb=True, half_size=half_size, output_bps=8)  # applies the flip
    except rawpy.LibRawError as error:
        raise BadMedia(f"{name}: libraw cannot read it ({_libraw_reason(error)})") from error
    return Picture(Image.fromarray(rgb), 1, _srgb_profile(), width, height)


def _embedded_jpeg(raw: rawpy.RawPy, shorter_side: int) -> bytes | None:
    """The RAW's embedded JPEG preview when it is readable and its shorter side reaches `shorter_side`."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    try:
        size = Image.open(io.BytesIO(thumb.data)).size
    except Exception:  # a damaged preview: the RAW data itself may still decode
        return None
    return thumb.data if min(size) >= shorter_side else None


def _libraw_reason(error: Exception) -> str:
    reason = error.args[0] if error.args else type(error).__name__
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)


def _refuse_bomb(width: int, height: int, max_pixels: int, name: str) -> None:
    if width * height > max_pixels:
        raise BadMedia(f"{name}: {width}x{height} pixels is more than the {max_pixels} allowed")


@contextlib.contextmanager
def _pillow_bomb_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's own bomb check (at open) follows the configured limit, and its warning is an error here.

    The module-wide limit is restored afterwards, so code sharing the process keeps Pillow's default.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


@contextlib.contextmanager
def _decoder_errors(name: str) -> Iterator[None]:
    """Decoder exceptions about the file's content become BadMedia naming the file.

    An OSError with an errno is about the file itself (vanished, I/O error) and passes unchanged; Pillow reports
    corrupt data as errno-less OSError ("image file is truncated") and as assorted other exceptions.
    """
    try:
        yield
    except (BadMedia, MemoryError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadMedia(f"{name}: {error}") from error
    except OSError as error:
        if error.errno is not None:
            raise
        raise BadMedia(f"{name}: {error}") from error
    except Exception as error:
        raise BadMedia(f"{name}: cannot decode the image ({type(error).__name__}: {error})") from error


@cache
def _register_heif_opener() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


@cache
def _srgb_cms_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@cache
def _srgb_profile() -> bytes:
    return _srgb_cms_profile().tobytes()


# --- scaling, encoding, writing -------------------------------------------------------------------------------


def _write_outputs(
    picture: Picture, thumbnail_path: str, preview_path: str, settings: ImageSettings
) -> Rendered:
    """Make the larger output from the decode and the smaller from the larger; write both or neither."""
    # Before anything is written: a kill from here until the daemon removed the old versions leaves a note, so
    # the daemon's next start finds what to clean up (`daemon.derived`).
    note_render(thumbnail_path)
    jobs = sorted(
        [(settings.preview, preview_path), (settings.thumbnail, thumbnail_path)],
        key=lambda job: job[0].size,
        reverse=True,
    )
    image = picture.image
    encoded: dict[str, Image.Image] = {}
    written: list[tuple[str, str]] = []
    try:
        for index, (output, destination) in enumerate(jobs):
            image = _scaled(image, output.size)
            if index == 0 and picture.orientation != 1:  # cheaper on the scaled pixels than on the decode
                image = image.transpose(_TRANSPOSE[picture.orientation])
            encoded[destination] = _encodable(image, output.format)
            temporary = f"{destination}.tmp-{os.getpid()}"
            os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
            written.append((temporary, destination))
            try:
                _encode(encoded[destination], output, picture.icc_profile, temporary)
            except OSError as error:
                if error.errno is None or error.filename is not None:
                    raise
                # a write failed (a full disk): name the file we could not write, not the original we read
                raise OSError(error.errno, error.strerror, destination) from error
        thumbhash = _thumbhash(encoded[preview_path])
        for temporary, destination in written:
            os.replace(temporary, destination)
    except BaseException:
        for temporary, _ in written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        forget_failed_render(thumbnail_path)
        raise
    return Rendered(thumbhash=thumbhash, width=picture.width, height=picture.height)


def _scaled(image: Image.Image, shorter_side: int) -> Image.Image:
    size = scaled_to_shorter_side(image.width, image.height, shorter_side)
    if size == image.size:
        return image
    # A box reduce to within 3x of the target, then Lanczos: as sharp as plain Lanczos, much cheaper.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _encodable(image: Image.Image, image_format: str) -> Image.Image:
    """JPEG has no alpha: composite onto white. The result carries no metadata from the source."""
    if image_format == "jpeg" and image.mode == "RGBA":
        flattened = Image.new("RGB", image.size, (255, 255, 255))
        flattened.paste(image, mask=image.getchannel("A"))
        image = flattened
    image.info = {}  # EXIF, XMP, IPTC and comments never reach a derivative
    return image


def _encode(image: Image.Image, output: ImageOutput, icc_profile: bytes, destination: str) -> None:
    if output.format == "jpeg":
        subsampling = 0 if output.quality >= 80 else 2  # 4:4:4 at high quality, else 4:2:0
        options = {"quality": output.quality, "subsampling": subsampling, "optimize": False}
        image.save(destination, "JPEG", icc_profile=icc_profile, **options)
    else:
        image.save(destination, "WEBP", quality=output.quality, method=WEBP_METHOD, icc_profile=icc_profile)


def _thumbhash(preview: Image.Image) -> bytes:
    """ThumbHash of the preview fitted inside 100x100 (never enlarged), as RGBA."""
    scale = min(THUMBHASH_BOX / preview.width, THUMBHASH_BOX / preview.height, 1.0)
    size = (max(1, round(preview.width * scale)), max(1, round(preview.height * scale)))
    small = preview.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0).convert("RGBA")
    return bytes(fast_thumbhash.rgba_to_thumb_hash(small.width, small.height, small.tobytes()))
