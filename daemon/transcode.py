"""Video transcodes with PyAV (`media.md` §4), worker-side: H.264 yuv420p + AAC in a `+faststart` MP4.

`transcode` runs in a trio-parallel worker process: plain blocking code. The decision (`plan`, `TranscodePlan`)
and the probe (`probe`, `VideoProbe`) live in `video_probe.py` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import logging
import os
from fractions import Fraction

import av
import av.filter
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.stream import Stream
from av.video.stream import VideoStream

from .config import FfmpegSettings
from .errors import BadMedia
from .originals import open_original
from .video_probe import (
    TranscodePlan,
    VideoProbe,
    frame_rate,
    main_audio_stream,
    main_video_stream,
    open_input,
    parse_bitrate,
    plan,
    probe,
    raise_translated,
)

__all__ = ["TranscodePlan", "VideoProbe", "parse_bitrate", "plan", "probe", "transcode"]

log = logging.getLogger(__name__)

_AAC_LAYOUTS = frozenset({"mono", "stereo", "3.0", "4.0", "5.0", "5.1", "6.1", "7.1"})
_TONEMAP_FILTERS = frozenset({"zscale", "tonemap"})


def transcode(
    path: bytes, root: bytes | None, output_path: str, plan: TranscodePlan, settings: FfmpegSettings
) -> None:
    """Transcode the original at `path` (confined to `root`) into an MP4 at `output_path`, as `plan` says.

    The output is H.264 yuv420p (CRF and preset from `settings`) and AAC, or stream copies; frames are turned
    upright when video is encoded (rotation metadata is carried when it is copied); timestamps start at zero.
    Written atomically: a temp name next to `output_path`, then `os.replace`; on any failure the temp file is
    removed and an existing output stays untouched. Raises BadMedia naming the file when the original cannot be
    read or decoded; OSError (vanished original, no space, permission) propagates.
    """
    os.makedirs(os.path.dirname(output_path) or ".", exist_ok=True)
    temporary = f"{output_path}.tmp-{os.getpid()}"
    try:
        with (
            open(open_original(path, root), "rb", closefd=True) as source,
            open_input(source, path) as container,
        ):
            try:
                _write(container, temporary, plan, settings, path)
            except av.FFmpegError as error:
                raise_translated(error, path)
        os.replace(temporary, output_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def _write(
    container: InputContainer, temporary: str, plan: TranscodePlan, settings: FfmpegSettings, path: bytes
) -> None:
    output = av.open(temporary, "w", format="mp4", container_options={"movflags": "+faststart"})
    try:
        _Transcoder(container, output, plan, settings, path).run()
    except BaseException:
        with contextlib.suppress(Exception):  # the file is discarded; the first error is the one to report
            output.close()
        raise
    output.close()  # writes the index and moves it first (faststart): its failure must fail the transcode


class _Transcoder:
    """One transcode: demux the main video (and audio) stream, copy or re-encode each, mux into `output`.

    The output streams are added once the first video frame is decoded, because the encoder's size and the
    rotation to undo are only known from a frame (PyAV reports the display matrix on frames); packets of other
    streams read before then wait in `pending`.
    """

    def __init__(
        self,
        container: InputContainer,
        output: OutputContainer,
        plan: TranscodePlan,
        settings: FfmpegSettings,
        path: bytes,
    ):
        self.container, self.output, self.path = container, output, path
        self.plan, self.settings = plan, settings
        video = main_video_stream(container)
        if video is None:
            raise BadMedia(f"{os.fsdecode(path)}: no video stream")
        self.video_in = video
        self.audio_in = main_audio_stream(container) if plan.audio != "none" else None
        # Like the ffmpeg CLI, the output starts at zero whatever the input's first timestamp.
        self.start = container.start_time or 0
        self.video: _StreamCopy | _VideoEncoder | None = None
        self.audio: _StreamCopy | _AudioEncoder | None = None
        self.video_end: int | None = None

    def run(self) -> None:
        inputs = [self.video_in] + ([self.audio_in] if self.audio_in is not None else [])
        for stream in inputs:
            stream.codec_context.thread_type = "AUTO"
            stream.codec_context.thread_count = self.settings.threads
        pending: list[av.Packet] = []
        for packet in self.container.demux(inputs):
            if packet.stream is self.video_in and packet.size:
                self._note_video_end(packet)
            if self.video is not None:
                self._route(packet)
            elif self.plan.video == "copy":
                self._open_outputs(None)
                self._route(packet)
            elif packet.stream is self.video_in:
                frames = packet.decode()
                if frames:
                    self._open_outputs(frames[0])
                    for frame in frames:
                        self.video.feed(frame)  # type: ignore[union-attr]
                    for waiting in pending:
                        self._route(waiting)
                    pending.clear()
            else:
                pending.append(packet)
        if self.video is None:
            raise BadMedia(f"{os.fsdecode(self.path)}: no decodable video frame")
        self._check_complete()
        self.video.flush()
        if self.audio is not None:
            self.audio.flush()

    def _note_video_end(self, packet: av.Packet) -> None:
        timestamp = packet.pts if packet.pts is not None else packet.dts
        if timestamp is not None:
            end = timestamp + (packet.duration or 0)
            self.video_end = end if self.video_end is None else max(self.video_end, end)

    def _check_complete(self) -> None:
        """Refuse a truncated original: its video ends well before the duration its header declares.

        A file cut after its index (MP4 with `moov` first, WebM, MKV) demuxes cleanly up to the cut, so only the
        timestamps tell. The tolerance (1 s or 5 %) leaves room for headers that round or count the audio.
        """
        stream = self.video_in
        if self.video_end is None or not stream.time_base:
            return
        if stream.duration:
            declared = float(stream.duration * stream.time_base)
        elif self.container.duration:
            declared = self.container.duration / 1_000_000
        else:
            return
        played = float((self.video_end - (stream.start_time or 0)) * stream.time_base)
        if played + max(1.0, 0.05 * declared) < declared:
            raise BadMedia(
                f"{os.fsdecode(self.path)}: truncated (video ends at {played:.1f} s of {declared:.1f} s)"
            )

    def _open_outputs(self, first: av.VideoFrame | None) -> None:
        start = self.start
        if first is None:
            self.video = _StreamCopy(self.output, self.video_in, start)
        else:
            self.video = _VideoEncoder(self.output, self.video_in, first, self.plan, self.settings, start)
        if self.audio_in is not None:
            if self.plan.audio == "copy":
                self.audio = _StreamCopy(self.output, self.audio_in, start)
            else:
                self.audio = _AudioEncoder(self.output, self.audio_in, start)

    def _route(self, packet: av.Packet) -> None:
        target = self.video if packet.stream is self.video_in else self.audio
        if isinstance(target, _StreamCopy):
            target.copy(packet)
        elif target is not None:
            for frame in packet.decode():
                target.feed(frame)


def _offset(start_us: int, time_base: Fraction | None) -> int:
    """The container's start time (µs) in `time_base` units."""
    if not start_us or not time_base:
        return 0
    return round(Fraction(start_us, 1_000_000) / time_base)


class _StreamCopy:
    """Copies one stream's packets unchanged (display matrix and codec parameters come with the template).

    MP4 needs a decoding timestamp on every packet; Matroska leaves it out on the first packets of a stream
    with B-frames. Missing ones are predicted as the ffmpeg CLI does: the first is the first presentation time
    less the reorder delay, each next one the previous plus the packet's duration.
    """

    def __init__(self, output: OutputContainer, stream: Stream, start_us: int):
        self.output = output
        self.stream = output.add_stream_from_template(stream)
        if stream.codec_context.codec.canonical_name == "hevc":
            # Apple players want hvc1 in MP4 (Immich adds `-tag:v hvc1` too).
            self.stream.codec_context.codec_tag = "hvc1"
        self.offset = _offset(start_us, stream.time_base)
        rate = frame_rate(stream) if isinstance(stream, VideoStream) else None
        self.step = max(1, round(1 / (rate * stream.time_base))) if rate and stream.time_base else 1
        self.delay = getattr(stream.codec_context, "reorder_depth", 0) or 0
        self.last_dts: int | None = None
        self.next_dts: int | None = None

    def copy(self, packet: av.Packet) -> None:
        if packet.size == 0:  # the demuxer's end-of-stream marker
            return
        step = packet.duration or self.step
        dts = packet.dts
        if dts is None:
            dts = self.next_dts if self.next_dts is not None else (packet.pts or 0) - self.delay * step
        if self.last_dts is not None and dts <= self.last_dts:
            dts = self.last_dts + 1  # the muxer refuses timestamps that do not increase
        pts = packet.pts if packet.pts is not None and packet.pts >= dts else dts
        self.last_dts, self.next_dts = dts, dts + step
        packet.dts, packet.pts = dts - self.offset, pts - self.offset
        packet.stream = self.stream
        self.output.mux(packet)

    def flush(self) -> None:
        pass


class _VideoEncoder:
    """Decoded frames → filter graph (rotation, scale, tone map, yuv420p) → libx264 → `output`."""

    def __init__(
        self,
        output: OutputContainer,
        stream: VideoStream,
        first: av.VideoFrame,
        plan: TranscodePlan,
        settings: FfmpegSettings,
        start_us: int,
    ):
        self.output = output
        self.time_base = stream.time_base
        self.offset = _offset(start_us, stream.time_base)
        self.rotation = round(-first.rotation / 90) * 90 % 360
        turned = self.rotation in (90, 270)
        display = (first.height, first.width) if turned else (first.width, first.height)
        self.size = plan.target_size or display
        self.tonemap = plan.tonemap and _TONEMAP_FILTERS <= av.filter.filters_available
        if plan.tonemap and not self.tonemap:
            log.warning(
                "tone mapping unavailable (PyAV's ffmpeg has no zscale filter): HDR video kept as tagged"
            )
        self.tonemap_curve = settings.tonemap
        self.stream = output.add_stream("libx264", rate=frame_rate(stream) or Fraction(30))
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p"
        context = self.stream.codec_context
        # Frames keep their own timestamps, as with ffmpeg's `-fps_mode passthrough`.
        context.time_base = stream.time_base
        context.thread_type = "AUTO"
        context.thread_count = settings.threads
        # Tagged with the source's colours, as the ffmpeg CLI does: HDR that is not tone-mapped stays tagged
        # PQ/HLG, so players can still map it. The range is limited: the filter graph converts full range.
        bt709, limited = 1, 1
        if self.tonemap:
            context.colorspace = context.color_primaries = context.color_trc = bt709
        else:
            context.colorspace, context.color_primaries = first.colorspace, first.color_primaries
            context.color_trc = first.color_trc
        context.color_range = limited
        options = {"crf": str(settings.crf), "preset": settings.preset}
        limit = parse_bitrate(settings.max_bitrate)
        if limit:
            options |= {"maxrate": str(limit), "bufsize": str(2 * limit)}
        if settings.threads == 1:
            options["x264-params"] = "frame-threads=1:pools=none"
        context.options = options
        self.graph: av.filter.Graph | None = None
        self.graph_input: tuple[int, int, str] | None = None
        self.last_pts: int | None = None

    def feed(self, frame: av.VideoFrame) -> None:
        shape = (frame.width, frame.height, frame.format.name)
        if shape != self.graph_input:  # the first frame, or the stream changed size or format mid-way
            if self.graph is not None:
                self._drain(end=True)
            self.graph, self.graph_input = self._build_graph(frame), shape
        pts = frame.pts - self.offset if frame.pts is not None else None
        # libx264 refuses missing or non-increasing timestamps; broken files have some.
        if self.last_pts is not None and (pts is None or pts <= self.last_pts):
            pts = self.last_pts + 1
        pts = pts or 0
        self.last_pts = pts
        frame.pts, frame.time_base = pts, self.time_base
        self.graph.vpush(frame)
        self._drain(end=False)

    def flush(self) -> None:
        if self.graph is not None:
            self._drain(end=True)
        self._encode(None)

    def _drain(self, *, end: bool) -> None:
        assert self.graph is not None
        if end:
            self.graph.vpush(None)
        while True:
            try:
                frame = self.graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                return
            frame.time_base = self.time_base
            self._encode(frame)

    def _encode(self, frame: av.VideoFrame | None) -> None:
        self.output.mux(self.stream.encode(frame))

    def _build_graph(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        chain = [
            graph.add_buffer(
                width=frame.width, height=frame.height, format=frame.format, time_base=self.time_base
            )
        ]

        def add(name: str, arguments: str | None = None) -> None:
            node = graph.add(name, arguments)
            chain[-1].link_to(node)
            chain.append(node)

        width, height = self.size
        if self.rotation in (90, 270):
            width, height = height, width  # scale first (fewer pixels to turn), in the stored orientation
        if (width, height) != (frame.width, frame.height):
            add("scale", f"{width}:{height}:flags=bicubic")
        if self.tonemap:
            add("zscale", "t=linear:npl=100")
            add("format", "gbrpf32le")
            add("zscale", "p=bt709")
            add("tonemap", f"tonemap={self.tonemap_curve}:desat=0")
            add("zscale", "t=bt709:m=bt709:r=tv")
        if self.rotation == 90:
            add("transpose", "clock")
        elif self.rotation == 270:
            add("transpose", "cclock")
        elif self.rotation == 180:
            add("hflip")
            add("vflip")
        add("format", "pix_fmts=yuv420p:color_ranges=tv")  # limited range: what every player expects
        add("buffersink")
        graph.configure()
        return graph


class _AudioEncoder:
    """Decoded audio → `av.AudioResampler` (fltp, AAC-sized frames) → AAC → `output`."""

    def __init__(self, output: OutputContainer, stream: AudioStream, start_us: int):
        self.output = output
        self.time_base = stream.time_base
        self.offset = _offset(start_us, stream.time_base)
        context = stream.codec_context
        rates = av.codec.Codec("aac", "w").audio_rates or []
        rate = context.sample_rate if context.sample_rate in rates else 48000
        layout = context.layout.name if context.layout.name in _AAC_LAYOUTS else "stereo"
        self.stream = output.add_stream("aac", rate=rate, layout=layout)
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=1024)

    def feed(self, frame: av.AudioFrame) -> None:
        if frame.pts is not None:
            frame.pts -= self.offset
        self._encode(self.resampler.resample(frame))

    def flush(self) -> None:
        self._encode(self.resampler.resample(None))
        self.output.mux(self.stream.encode(None))

    def _encode(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            self.output.mux(self.stream.encode(frame))
