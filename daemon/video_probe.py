"""Video originals: probing them with PyAV, and the transcode policy of `media.md` §4 (worker-side).

`probe` runs in a trio-parallel worker process: plain blocking code, small picklable results. The original is
opened only through `open_original`; PyAV reads it through the Python file object, never by its path. `plan` is
pure: from a `VideoProbe` and the `ffmpeg` settings it decides whether a transcode is needed and which streams are
re-encoded or copied. `daemon.transcode` runs the transcode and re-exports all of this.

Where the policy departs from Immich, on purpose:
- `maxBitrate` without a unit means kbit/s, as Immich's encoder arguments read it; Immich's own transcode decision
  reads a bare number as bit/s, which would make the `bitrate` policy re-encode almost everything.
- `libopus` in `acceptedAudioCodecs` accepts Opus streams (the probe says `opus`), as Immich does since it split
  codec and encoder names (immich-app/immich#26736).
- An accepted stream is copied into the MP4 only if players take it from MP4; otherwise (PCM from a .mov or .avi,
  Vorbis, MPEG-4 Part 2) it is re-encoded whenever a transcode is made. ffmpeg 7+ would mux PCM, players won't.
- `twoPass` is ignored: one pass with CRF, capped by `maxrate`/`bufsize` when `maxBitrate` is set, as Immich does
  without two-pass.
"""

from __future__ import annotations

import errno
import os
import re
from fractions import Fraction
from typing import IO, Literal, NoReturn

import av
import msgspec
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Disposition
from av.video.stream import VideoStream

from .config import FfmpegSettings
from .errors import BadMedia
from .originals import open_original

MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
"""The probe name of the QuickTime/MP4 demuxer: always an accepted container (condition C)."""

# av_color_transfer_name() for AVColorTransferCharacteristic; 2 (unspecified) and unknown values are None.
_TRANSFER_NAMES = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}


_ACCEPTED_PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p"})
_HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
# What may be copied into the MP4 and still play in browsers and phones.
_MP4_VIDEO_CODECS = frozenset({"h264", "hevc", "vp9", "av1"})
_MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"})
# Codec names in settings that differ from the probe's names for the same codec.
_CODEC_ALIASES = {"libopus": "opus", "h265": "hevc"}


class VideoProbe(msgspec.Struct, frozen=True):
    """What a transcode decision needs to know about a video original (`media.md` §4, §6.1)."""

    format_name: str
    """The demuxer's probe name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, `avi`, `ogg`. A Matroska file
    whose EBML DocType is `webm` is reported as `webm` (the demuxer alone cannot tell them apart), so that
    `acceptedContainers: ['webm']` accepts WebM files but not MKV files."""
    video_codec: str
    """Codec name as ffprobe reports it (`h264`, `hevc`, `vp9`, `av1`, `mpeg4`), not the decoder's name."""
    pixel_format: str | None
    width: int
    """Stored width and height, before rotation."""
    height: int
    rotation: int
    """Degrees clockwise to turn the stored frames to display them upright: 0, 90, 180 or 270."""
    color_transfer: str | None
    """ffmpeg's transfer name (`bt709`, `smpte2084` for PQ, `arib-std-b67` for HLG); None when unspecified."""
    video_bitrate: int | None
    """Bits per second of the video stream; when the container does not say (Matroska, WebM), the overall
    bitrate minus the audio stream's. None when unknown."""
    audio_codec: str | None
    """None when there is no audio stream."""
    duration_ms: int | None
    fps: float | None

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as the video plays, after rotation."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height


def probe(path: bytes, root: bytes | None) -> VideoProbe:
    """Probe the original at `path` (confined to `root`, see `open_original`) and decode its first video frame.

    The first frame is decoded because PyAV reports the display matrix (rotation) only on frames, and because a
    video whose frames cannot be decoded should fail here rather than in a transcode.
    Raises BadMedia (naming the file) when the file is not a readable video: zero bytes, truncated, corrupt, no
    video stream, no decodable frame. OSError (vanished file, permission, NotConfined) propagates unchanged.
    """
    with open(open_original(path, root), "rb", closefd=True) as source:
        doctype = _matroska_doctype(source)
        with open_input(source, path) as container:
            return _probe(container, path, doctype)


def open_input(source: IO[bytes], path: bytes) -> InputContainer:
    """Open `source` (the original, already open) with PyAV; failures become BadMedia naming `path`."""
    try:
        return av.open(source, "r", metadata_errors="replace", buffer_size=1 << 18)
    except av.FFmpegError as error:
        raise_translated(error, path)


def raise_translated(error: av.FFmpegError, path: bytes) -> NoReturn:
    """Raise what a PyAV error means here: an environment failure (no space, I/O error, permission) as a plain
    OSError; anything else (invalid data, no decoder, bad timestamps) as BadMedia naming the file."""
    if isinstance(error, OSError) and error.errno not in (None, errno.EAGAIN):
        raise OSError(error.errno, error.strerror, error.filename) from error
    reason = error.strerror or str(error)
    raise BadMedia(f"{os.fsdecode(path)}: {reason}") from error


def main_video_stream(container: InputContainer) -> VideoStream | None:
    """The video stream Immich would pick: not cover art, the most frames, the first on a tie."""
    streams = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    return max(streams, key=lambda stream: stream.frames, default=None)


def main_audio_stream(container: InputContainer) -> AudioStream | None:
    return max(container.streams.audio, key=lambda stream: stream.frames, default=None)


def _probe(container: InputContainer, path: bytes, doctype: str | None) -> VideoProbe:
    name = os.fsdecode(path)
    video = main_video_stream(container)
    if video is None:
        raise BadMedia(f"{name}: no video stream")
    audio = main_audio_stream(container)
    first = _first_frame(container, video, path)
    context = video.codec_context
    transfer = context.color_trc if context.color_trc != 2 else first.color_trc
    duration_ms = None
    if container.duration:
        duration_ms = round(container.duration / 1000)
    elif video.duration and video.time_base:
        duration_ms = round(video.duration * video.time_base * 1000)
    rate = frame_rate(video)
    format_name = container.format.name
    if format_name == "matroska,webm" and doctype == "webm":
        format_name = "webm"
    return VideoProbe(
        format_name=format_name,
        video_codec=context.codec.canonical_name,
        pixel_format=context.pix_fmt or first.format.name,
        width=context.width or first.width,
        height=context.height or first.height,
        # PyAV gives the display matrix's counter-clockwise angle in [-180, 180]; flips are not kept.
        rotation=round(-first.rotation / 90) * 90 % 360,
        color_transfer=_TRANSFER_NAMES.get(transfer),
        video_bitrate=_video_bitrate(container, video, audio),
        audio_codec=audio.codec_context.codec.canonical_name if audio is not None else None,
        duration_ms=duration_ms,
        fps=float(rate) if rate else None,
    )


def _first_frame(container: InputContainer, video: VideoStream, path: bytes) -> av.VideoFrame:
    try:
        for packet in container.demux(video):
            for frame in packet.decode():
                return frame
    except av.FFmpegError as error:
        raise_translated(error, path)
    raise BadMedia(f"{os.fsdecode(path)}: no decodable video frame")


def _video_bitrate(container: InputContainer, video: VideoStream, audio: AudioStream | None) -> int | None:
    if video.bit_rate:
        return video.bit_rate
    if not container.bit_rate:
        return None
    audio_rate = (audio.bit_rate or 0) if audio is not None else 0
    return container.bit_rate - audio_rate if container.bit_rate > audio_rate else None


def _matroska_doctype(source: IO[bytes]) -> str | None:
    """The EBML DocType (`matroska` or `webm`) when the file starts with an EBML header, else None.

    The DocType element (id 0x4282) sits in the first few dozen bytes; its size is a one-byte EBML varint.
    """
    head = os.pread(source.fileno(), 64, 0)
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return None
    at = head.find(b"\x42\x82")
    if at < 0 or at + 3 > len(head) or not head[at + 2] & 0x80:
        return None
    size = head[at + 2] & 0x7F
    return head[at + 3 : at + 3 + size].decode("ascii", "replace")


def frame_rate(video: VideoStream) -> Fraction | None:
    """The stream's average frame rate, else ffmpeg's guess; None when neither is known."""
    return video.average_rate or video.guessed_rate or None


class TranscodePlan(msgspec.Struct, frozen=True):
    """What one transcode does. `target_size` is the output's display size (after rotation) when the video is
    encoded at another size than its own, None to keep it; `tonemap` asks for HDR to be mapped to SDR."""

    video: Literal["encode", "copy"]
    audio: Literal["encode", "copy", "none"]
    target_size: tuple[int, int] | None
    tonemap: bool


def parse_bitrate(text: str) -> int:
    """`maxBitrate` in bit/s: `k` = 1000, `m` = 10**6, no unit = kbit/s (Immich's encoder reading); 0 = no limit.
    Anything unparseable is no limit, as Immich's `parseInt` giving NaN is."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", text)
    if match is None:
        return 0
    value, unit = int(match[1]), match[2].lower()
    return value * 1_000_000 if unit == "m" else value * 1000


def target_resolution(settings: FfmpegSettings) -> int | None:
    """The shorter side to scale down to; None for `original` (or a value that is not a positive number)."""
    text = settings.target_resolution.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def plan(probe: VideoProbe, settings: FfmpegSettings) -> TranscodePlan | None:
    """Decide the transcode for `probe` under `settings` (`media.md` §4); None when none is needed.

    Conditions: V video codec not accepted or not 8-bit 4:2:0, A audio codec not accepted, C container not
    accepted, H HDR transfer, R shorter side above `targetResolution`, B video bitrate above `maxBitrate`.
    Video is re-encoded when the policy's column applies (all: always; optimal: V/H/R; bitrate: V/H/B;
    required: V/H), audio when A applies (all: always), and C alone remuxes. Whatever needs nothing is copied,
    unless it cannot be copied into an MP4 that plays (see the module notes). `disabled` never transcodes.
    """
    policy = settings.transcode
    if policy == "disabled":
        return None
    accepted_video = {_CODEC_ALIASES.get(name, name) for name in settings.accepted_video_codecs}
    accepted_audio = {_CODEC_ALIASES.get(name, name) for name in settings.accepted_audio_codecs}
    # A stream whose pixel format is unknown is taken as yuv420p, as Immich does.
    video_unaccepted = probe.video_codec not in accepted_video or (
        (probe.pixel_format or "yuv420p") not in _ACCEPTED_PIXEL_FORMATS
    )
    audio_unaccepted = probe.audio_codec is not None and probe.audio_codec not in accepted_audio
    container_unaccepted = (
        probe.format_name != MP4_FAMILY and probe.format_name not in settings.accepted_containers
    )
    hdr = probe.color_transfer in _HDR_TRANSFERS
    target = target_resolution(settings)
    too_large = target is not None and min(probe.width, probe.height) > target
    limit = parse_bitrate(settings.max_bitrate)
    bitrate_too_high = limit > 0 and probe.video_bitrate is not None and probe.video_bitrate > limit
    encode_video = {
        "all": True,
        "optimal": video_unaccepted or hdr or too_large,
        "bitrate": video_unaccepted or hdr or bitrate_too_high,
        "required": video_unaccepted or hdr,
    }[policy]
    encode_audio = probe.audio_codec is not None and (policy == "all" or audio_unaccepted)
    if not (encode_video or encode_audio or container_unaccepted):
        return None
    encode_video = encode_video or probe.video_codec not in _MP4_VIDEO_CODECS
    if probe.audio_codec is None:
        audio: Literal["encode", "copy", "none"] = "none"
    elif encode_audio or probe.audio_codec not in _MP4_AUDIO_CODECS:
        audio = "encode"
    else:
        audio = "copy"
    return TranscodePlan(
        video="encode" if encode_video else "copy",
        audio=audio,
        target_size=_output_size(probe, target) if encode_video else None,
        tonemap=encode_video and hdr and settings.tonemap != "disabled",
    )


def _output_size(probe: VideoProbe, target: int | None) -> tuple[int, int] | None:
    """Display size after scaling the shorter side down to `target` (never up), aspect kept, both even."""
    width, height = probe.display_size
    shorter, longer = min(width, height), max(width, height)
    goal = shorter if target is None else min(target, shorter)
    goal = max(2, goal - goal % 2)
    if goal == shorter and width % 2 == 0 and height % 2 == 0:
        return None
    scaled = round(goal * longer / shorter) if shorter else goal
    scaled = max(2, scaled - scaled % 2)
    return (scaled, goal) if width >= height else (goal, scaled)
