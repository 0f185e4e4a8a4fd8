"""Real media files for tests, made with Pillow and PyAV: small, but genuine enough for every decoder."""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy
from PIL import Image


def jpeg(
    path: Path, size: tuple[int, int] = (320, 240), *, taken: str | None = None, orientation: int = 1
) -> Path:
    """A JPEG with a gradient (so it compresses like a photo), optional EXIF capture date and orientation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    x = numpy.linspace(0, 255, width, dtype=numpy.uint8)
    y = numpy.linspace(0, 255, height, dtype=numpy.uint8)
    pixels = numpy.dstack([numpy.tile(x, (height, 1)), numpy.tile(y[:, None], (1, width)),
                           numpy.full((height, width), 128, numpy.uint8)])  # fmt: skip
    image = Image.fromarray(pixels, "RGB")
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    if taken is not None:
        exif.get_ifd(0x8769)[0x9003] = taken  # DateTimeOriginal, "YYYY:MM:DD HH:MM:SS"
    image.save(path, "JPEG", quality=85, exif=exif.tobytes())
    return path


def png(path: Path, size: tuple[int, int] = (200, 300)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, (10, 200, 30, 128)).save(path, "PNG")
    return path


def video(
    path: Path,
    *,
    codec: str = "libx264",
    size: tuple[int, int] = (160, 120),
    seconds: float = 1.0,
    rate: int = 10,
    audio: bool = False,
) -> Path:
    """A short video with moving content (and an AAC tone with `audio`), in the container `path`'s
    extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=44100) if audio else None
        frames = round(seconds * rate)
        for index in range(frames):
            pixels = numpy.full((height, width, 3), (index * 20) % 255, numpy.uint8)
            pixels[:, : (index * 7) % width] = 255
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if sound is not None:
            samples = int(seconds * 44100)
            tone = (numpy.sin(numpy.arange(samples) * 440 * 2 * numpy.pi / 44100) * 0.3).astype(numpy.float32)
            for start in range(0, samples, 1024):
                chunk = tone[start : start + 1024].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = 44100
                frame.pts = start
                frame.time_base = Fraction(1, 44100)
                container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path


def fingerprint(*folders: Path) -> dict[str, tuple[str, int]]:
    """SHA-1 and mtime of every file below `folders`: originals must come out of any job exactly as they went in."""
    found = {}
    for folder in folders:
        for root, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(root, name)
                with open(path, "rb") as stream:
                    found[path] = (hashlib.sha1(stream.read()).hexdigest(), os.stat(path).st_mtime_ns)
    return found
