"""One picture out of a video or an AVIF still, through PyAV (`media.md` §3), for `daemon.thumbnails`.

Runs in a worker process: plain blocking code. The caller owns the stream it passes and closes it. Every decoder
failure becomes `BadMedia` naming the file; `OSError` carrying an errno (the file itself failed) passes unchanged.

The frame is converted to RGB by swscale already scaled to the size the caller asked for, with the sample aspect
ratio applied, in one pass. Rotation and flips from the display matrix are returned as an EXIF orientation (1-8)
for the caller to apply, so images and videos share one upright-making step.

Not done: HDR tone mapping. swscale (FFmpeg 8) can tone-map PQ/HLG correctly when asked for BT.709 transfer and
primaries, but building its colour pipeline costs 1.5-4 s of CPU per frame size, and PyAV's filters lack `zscale`
(which `tonemap` needs for linear light). HDR frames are converted as if they were SDR: washed out, not wrong-shaped.
AVIF alpha (a separate auxiliary image) is not applied.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
import av.error
from PIL import Image

from .errors import BadMedia

SEEK_FRACTION = 0.1
"""Where the representative frame is taken: a tenth into the video, past black intros and fades."""
MAX_PACKETS = 600
"""Packets read while looking for one frame before giving up (a corrupt stream must not decode forever)."""


@dataclass(frozen=True)
class Frame:
    """An RGB picture in coded orientation (sample aspect ratio applied) and the display geometry."""

    image: Image.Image
    orientation: int
    """EXIF orientation (1-8) that makes `image` upright, from the display matrix."""
    width: int
    """Display width after sample aspect ratio and rotation: what the asset reports."""
    height: int


def scaled_to_shorter_side(width: int, height: int, size: int) -> tuple[int, int]:
    """The size whose shorter side is `size` with the aspect ratio kept, or the same size when that would enlarge."""
    shorter = min(width, height)
    if shorter <= size:
        return width, height
    return max(1, int(width * size / shorter + 0.5)), max(1, int(height * size / shorter + 0.5))


def read_video_frame(stream: BinaryIO, name: str, shorter_side: int, max_pixels: int) -> Frame:
    """A representative frame: the keyframe at or before 10% of the duration, else the first decodable frame.

    `shorter_side` is the largest shorter side the caller needs (the picture is never enlarged). Raises BadMedia
    for a file that is not a video, has no video stream, is too large, or has no decodable frame.
    """
    with _opened(stream, name) as container:
        video = _video_stream(container, name, max_pixels)
        frame = _frame_after_seek(container, video)
        sample_aspect_ratio = video.codec_context.sample_aspect_ratio
    if frame is None:
        stream.seek(0)  # a stream that cannot seek or decode from the middle: start again from the top
        with _opened(stream, name) as container:
            video = _video_stream(container, name, max_pixels)
            frame = _first_frame(container, video)
            sample_aspect_ratio = video.codec_context.sample_aspect_ratio
    if frame is None:
        raise BadMedia(f"{name}: no decodable video frame")
    return _to_rgb(frame, sample_aspect_ratio, shorter_side, name)


def read_still(stream: BinaryIO, name: str, shorter_side: int, max_pixels: int) -> Frame:
    """The first frame of a single-picture container FFmpeg can read (AVIF, through libdav1d).

    Raises BadMedia when it cannot be decoded.
    """
    try:
        with _opened(stream, name) as container:
            video = _video_stream(container, name, max_pixels)
            frame = _first_frame(container, video)
            sample_aspect_ratio = video.codec_context.sample_aspect_ratio
    except BadMedia as error:
        raise BadMedia(f"{name}: no decoder for AVIF could read it ({error.message})") from error
    if frame is None:
        raise BadMedia(f"{name}: no decoder for AVIF could read it (no decodable picture)")
    return _to_rgb(frame, sample_aspect_ratio, shorter_side, name)


class _opened:
    """`av.open` on a stream, with FFmpeg's errors as BadMedia; the container is closed on exit."""

    def __init__(self, stream: BinaryIO, name: str):
        self.stream, self.name = stream, name

    def __enter__(self) -> av.container.InputContainer:
        try:
            self.container = av.open(self.stream, "r", metadata_errors="ignore")
        except av.error.FFmpegError as error:
            raise BadMedia(f"{self.name}: not a readable video ({_reason(error)})") from error
        return self.container

    def __exit__(self, *exc_info: object) -> None:
        self.container.close()


def _video_stream(container: av.container.InputContainer, name: str, max_pixels: int) -> av.VideoStream:
    # Cover art rides along as a one-picture "video" stream: the real video comes first when there is one.
    streams = sorted(
        container.streams.video, key=lambda s: bool(s.disposition & av.stream.Disposition.attached_pic)
    )
    if not streams:
        raise BadMedia(f"{name}: no video stream")
    video = streams[0]
    if video.width * video.height > max_pixels:
        raise BadMedia(f"{name}: {video.width}x{video.height} pixels is more than the {max_pixels} allowed")
    video.codec_context.thread_type = "AUTO"
    return video


def _frame_after_seek(container: av.container.InputContainer, video: av.VideoStream) -> av.VideoFrame | None:
    """The keyframe at or before SEEK_FRACTION of the duration, or None when seeking or decoding fails."""
    if video.duration and video.time_base:
        start, length = video.start_time or 0, video.duration
        target = start + int(length * SEEK_FRACTION)
    elif container.duration:  # microseconds, in the stream's time base
        target = int(
            container.duration * SEEK_FRACTION / 1_000_000 / (video.time_base or Fraction(1, 1_000_000))
        )
        target += video.start_time or 0
    else:
        return None
    # Only keyframes are wanted: skipping the others keeps the decoder from reconstructing frames we throw away.
    video.codec_context.skip_frame = "NONKEY"
    try:
        container.seek(target, stream=video, backward=True)
    except av.error.FFmpegError:
        return None
    return _first_frame(container, video)


def _first_frame(container: av.container.InputContainer, video: av.VideoStream) -> av.VideoFrame | None:
    """The next frame the decoder gives, skipping corrupt packets; None when there is none."""
    for count, packet in enumerate(container.demux(video)):
        if count >= MAX_PACKETS:
            return None
        try:
            frames = video.codec_context.decode(packet)
        except av.error.FFmpegError:
            continue  # a damaged packet: the next keyframe may still decode
        if frames:
            return frames[0]
    return None


def _to_rgb(
    frame: av.VideoFrame, sample_aspect_ratio: Fraction | None, shorter_side: int, name: str
) -> Frame:
    stored_width = frame.width
    if sample_aspect_ratio and sample_aspect_ratio > 0 and sample_aspect_ratio != 1:
        stored_width = max(1, round(frame.width * sample_aspect_ratio))
    width, height = scaled_to_shorter_side(stored_width, frame.height, shorter_side)
    try:
        rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC", threads=1)
        image = rgb.to_image()
    except av.error.FFmpegError as error:
        raise BadMedia(f"{name}: cannot convert the video frame ({_reason(error)})") from error
    orientation = _orientation(frame)
    display = (frame.height, stored_width) if orientation >= 5 else (stored_width, frame.height)
    return Frame(image=image, orientation=orientation, width=display[0], height=display[1])


def _orientation(frame: av.VideoFrame) -> int:
    """The display matrix as an EXIF orientation, following the ffmpeg CLI's autorotate choices.

    Angles that are not multiples of 90° are ignored (ffmpeg would rotate with borders).
    """
    side_data = frame.side_data.get("DISPLAYMATRIX")
    if side_data is None:
        return 1
    matrix = struct.unpack("=9i", bytes(side_data)[:36])
    if math.hypot(matrix[0], matrix[3]) == 0 or math.hypot(matrix[1], matrix[4]) == 0:
        return 1
    clockwise = round(math.degrees(math.atan2(matrix[1], matrix[0]))) % 360
    if clockwise == 90:
        return 5 if matrix[3] > 0 else 6  # transpose=cclock_flip / transpose=clock
    if clockwise == 270:
        return 7 if matrix[3] < 0 else 8  # transpose=clock_flip / transpose=cclock
    if clockwise == 180:
        return {(True, True): 3, (True, False): 2, (False, True): 4}.get((matrix[0] < 0, matrix[4] < 0), 1)
    if clockwise == 0 and matrix[4] < 0:
        return 4
    return 1


def _reason(error: av.error.FFmpegError) -> str:
    return error.strerror or str(error)
