"""Video probing, the transcode policy (`media.md` §4) and PyAV transcodes, on real files made by the ffmpeg CLI."""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import subprocess
from pathlib import Path

import av
import msgspec
import numpy as np
import pytest

from daemon.config import FfmpegSettings
from daemon.errors import BadMedia
from daemon.transcode import TranscodePlan, VideoProbe, parse_bitrate, plan, probe, transcode

MP4 = "mov,mp4,m4a,3gp,3g2,mj2"


def ffmpeg(*arguments: object) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, arguments)], check=True)


def lavfi_video(size: str, seconds: float, rate: int = 30) -> list[object]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}", "-t", seconds]


SINE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Small real videos, made once for the module."""
    folder = tmp_path_factory.mktemp("media")
    names = ("h264.mp4", "hevc10.mkv", "vp9.webm", "mpeg4.avi", "rotated.mov")
    files = {name: folder / name for name in names}
    x264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    ffmpeg(*lavfi_video("640x360", 2), *SINE, "-t", 2, *x264, "-c:a", "aac", files["h264.mp4"])
    ffmpeg(
        *lavfi_video("320x180", 1),
        "-c:v", "libx265", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le",
        "-color_trc", "smpte2084", "-color_primaries", "bt2020", "-colorspace", "bt2020nc",
        files["hevc10.mkv"],
    )  # fmt: skip
    ffmpeg(
        *lavfi_video("640x360", 2), *SINE, "-t", 2,
        "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", 8, "-c:a", "libopus", files["vp9.webm"],
    )  # fmt: skip
    ffmpeg(
        *lavfi_video("320x240", 1, 25), *SINE, "-t", 1, "-c:v", "mpeg4", "-c:a", "pcm_s16le", files["mpeg4.avi"]
    )  # fmt: skip
    # ffmpeg 5.1 turns the legacy `rotate` tag into a display matrix when copying; PCM audio lets the video be
    # copied on its own under the default policy.
    upright = folder / "upright.mov"
    ffmpeg(*lavfi_video("320x180", 1), *SINE, "-t", 1, *x264, "-c:a", "pcm_s16le", upright)
    ffmpeg("-i", upright, "-c", "copy", "-metadata:s:v", "rotate=90", files["rotated.mov"])
    files["hevc.mkv"] = folder / "hevc.mkv"
    ffmpeg(
        *lavfi_video("320x180", 1), *SINE, "-t", 1,
        "-c:v", "libx265", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p", "-c:a", "aac", files["hevc.mkv"],
    )  # fmt: skip
    files["h264.mkv"] = folder / "h264.mkv"
    ffmpeg("-i", files["h264.mp4"], "-c", "copy", files["h264.mkv"])
    files["audio.m4a"] = folder / "audio.m4a"
    ffmpeg(*SINE, "-t", 0.5, "-c:a", "aac", files["audio.m4a"])
    files["empty.mp4"] = folder / "empty.mp4"
    files["empty.mp4"].write_bytes(b"")
    # The ffmpeg CLI writes `moov` last: cut, the file has no index at all.
    files["no-index.mp4"] = folder / "no-index.mp4"
    files["no-index.mp4"].write_bytes(files["h264.mp4"].read_bytes()[:40_000])
    # With `moov` first, a cut file opens and decodes up to the cut.
    faststart = folder / "faststart.mp4"
    ffmpeg("-i", files["h264.mp4"], "-c", "copy", "-movflags", "+faststart", faststart)
    files["cut.mp4"] = folder / "cut.mp4"
    files["cut.mp4"].write_bytes(faststart.read_bytes()[:60_000])
    return files


def probed(path: Path) -> VideoProbe:
    return probe(os.fsencode(path), None)


# ---------------------------------------------------------------------------------------------------------------
# plan: every policy against every condition (pure)

BASE = VideoProbe(
    format_name=MP4,
    video_codec="h264",
    pixel_format="yuv420p",
    width=1280,
    height=720,
    rotation=0,
    color_transfer="bt709",
    video_bitrate=5_000_000,
    audio_codec="aac",
    duration_ms=10_000,
    fps=30.0,
)
POLICIES = ("all", "optimal", "bitrate", "required", "disabled")


def case(**changes: object) -> VideoProbe:
    return msgspec.structs.replace(BASE, **changes)


ENCODE_ALL = TranscodePlan(video="encode", audio="encode", target_size=None, tonemap=False)
ENCODE_VIDEO = TranscodePlan(video="encode", audio="copy", target_size=None, tonemap=False)
ENCODE_AUDIO = TranscodePlan(video="copy", audio="encode", target_size=None, tonemap=False)
REMUX = TranscodePlan(video="copy", audio="copy", target_size=None, tonemap=False)
PLANS = {
    "-": None,
    "VA": ENCODE_ALL,
    "V": ENCODE_VIDEO,
    "A": ENCODE_AUDIO,
    "remux": REMUX,
    "V-": TranscodePlan(video="encode", audio="none", target_size=None, tonemap=False),
    "HDR": TranscodePlan(video="encode", audio="copy", target_size=None, tonemap=True),
    "HDR+A": TranscodePlan(video="encode", audio="encode", target_size=None, tonemap=True),
    "720": TranscodePlan(video="encode", audio="copy", target_size=(1280, 720), tonemap=False),
    "720+A": TranscodePlan(video="encode", audio="encode", target_size=(1280, 720), tonemap=False),
}

# name: (probe changes, settings, the plans under: all optimal bitrate required disabled)
TABLE = {
    "nothing": ({}, {}, "VA - - - -"),
    "V codec": ({"video_codec": "hevc"}, {}, "VA V V V -"),
    "V 10-bit": ({"pixel_format": "yuv420p10le"}, {}, "VA V V V -"),
    "V 4:2:2": ({"pixel_format": "yuv422p"}, {}, "VA V V V -"),
    "V full range is 4:2:0": ({"pixel_format": "yuvj420p"}, {}, "VA - - - -"),
    "A": ({"audio_codec": "ac3"}, {}, "VA A A A -"),
    "C matroska": ({"format_name": "matroska,webm"}, {}, "VA remux remux remux -"),
    "C avi": ({"format_name": "avi"}, {}, "VA remux remux remux -"),
    "C webm is accepted": ({"format_name": "webm"}, {}, "VA - - - -"),
    "C ogg is accepted": ({"format_name": "ogg"}, {}, "VA - - - -"),
    "H PQ": ({"color_transfer": "smpte2084"}, {}, "HDR+A HDR HDR HDR -"),
    "H HLG": ({"color_transfer": "arib-std-b67"}, {}, "HDR+A HDR HDR HDR -"),
    "H, tone mapping off": ({"color_transfer": "smpte2084"}, {"tonemap": "disabled"}, "VA V V V -"),
    "R": ({"width": 1920, "height": 1080}, {}, "720+A 720 - - -"),
    "R, original": ({"width": 1920, "height": 1080}, {"target_resolution": "original"}, "VA - - - -"),
    "B": ({"video_bitrate": 6_000_000}, {"max_bitrate": "5000k"}, "VA - V - -"),
    "B at the limit": ({}, {"max_bitrate": "5M"}, "VA - - - -"),
    "B bare number is kbit/s": ({}, {"max_bitrate": "4000"}, "VA - V - -"),
    "B 0 is no limit": ({"video_bitrate": 10**9}, {"max_bitrate": "0"}, "VA - - - -"),
    "B unknown bitrate": ({"video_bitrate": None}, {"max_bitrate": "1k"}, "VA - - - -"),
    "V and A": ({"video_codec": "vp9", "audio_codec": "vorbis"}, {}, "VA VA VA VA -"),
    "no audio": ({"audio_codec": None, "video_codec": "hevc"}, {}, "V- V- V- V- -"),
    "no audio, nothing else": ({"audio_codec": None}, {}, "V- - - - -"),
    "libopus accepts opus": ({"audio_codec": "opus"}, {}, "VA - - - -"),
    "accepted PCM is encoded into MP4": (
        {"audio_codec": "pcm_s16le", "format_name": "avi"},
        {"accepted_audio_codecs": ["aac", "pcm_s16le"]},
        "VA A A A -",
    ),
    "accepted mpeg4 is encoded into MP4": (
        {"video_codec": "mpeg4", "format_name": "avi"},
        {"accepted_video_codecs": ["h264", "mpeg4"]},
        "VA V V V -",
    ),
    "accepted hevc is copied into MP4": (
        {"video_codec": "hevc", "format_name": "matroska,webm"},
        {"accepted_video_codecs": ["h264", "hevc"]},
        "VA remux remux remux -",
    ),
}


@pytest.mark.parametrize("name", TABLE)
@pytest.mark.parametrize("policy", POLICIES)
def test_plan_follows_the_policy_table(name, policy):
    changes, settings, expected = TABLE[name]
    decided = plan(case(**changes), FfmpegSettings(transcode=policy, **settings))
    assert decided == PLANS[expected.split()[POLICIES.index(policy)]]


@pytest.mark.parametrize(
    ("width", "height", "rotation", "target", "expected"),
    [
        (1920, 1080, 0, "720", (1280, 720)),
        (1080, 1920, 0, "720", (720, 1280)),
        (1920, 1080, 90, "720", (720, 1280)),  # display size, after rotation
        (1920, 1080, 270, "480", (480, 852)),  # 853.3 rounds to 853, odd: 852
        (3840, 1600, 0, "1080", (2592, 1080)),
        (1280, 720, 0, "1080", None),  # never enlarged
        (1280, 720, 0, "720", None),  # R uses min() > target: equal is not too large
        (641, 361, 0, "original", (638, 360)),  # odd sizes become even
        (640, 361, 0, "720", (638, 360)),
        (1920, 1080, 0, "719", (1276, 718)),
    ],
)
def test_target_size_is_even_aspect_kept_and_never_larger(width, height, rotation, target, expected):
    source = case(width=width, height=height, rotation=rotation, video_codec="hevc")
    result = plan(source, FfmpegSettings(transcode="all", target_resolution=target))
    assert result is not None and result.target_size == expected


def test_copied_video_has_no_target_size_even_when_large():
    result = plan(case(width=3840, height=2160, format_name="avi"), FfmpegSettings(transcode="required"))
    assert result == REMUX


@pytest.mark.parametrize(
    ("text", "bits"),
    [("0", 0), ("4500k", 4_500_000), ("4500K", 4_500_000), ("5M", 5_000_000), ("5m", 5_000_000), ("4500", 4_500_000),
     (" 20m ", 20_000_000), ("", 0), ("fast", 0), ("1.5M", 0)],
)  # fmt: skip
def test_max_bitrate_parsing(text, bits):
    assert parse_bitrate(text) == bits


def test_probe_and_plan_results_pickle_for_worker_processes():
    result = plan(case(video_codec="hevc"), FfmpegSettings())
    assert pickle.loads(pickle.dumps(BASE)) == BASE and pickle.loads(pickle.dumps(result)) == result


# ---------------------------------------------------------------------------------------------------------------
# probe: real files


def test_probe_h264_mp4(media):
    result = probed(media["h264.mp4"])
    assert result.video_bitrate is not None and result.video_bitrate > 10_000
    assert msgspec.structs.replace(result, video_bitrate=None) == VideoProbe(
        format_name=MP4,
        video_codec="h264",
        pixel_format="yuv420p",
        width=640,
        height=360,
        rotation=0,
        color_transfer=None,
        video_bitrate=None,
        audio_codec="aac",
        duration_ms=2000,
        fps=30.0,
    )


def test_probe_hevc_10bit_hdr_mkv(media):
    result = probed(media["hevc10.mkv"])
    assert (result.format_name, result.video_codec) == ("matroska,webm", "hevc")
    assert (result.pixel_format, result.color_transfer, result.audio_codec) == (
        "yuv420p10le",
        "smpte2084",
        None,
    )
    assert (result.width, result.height) == (320, 180)
    # Matroska has no per-stream bitrate: the overall one stands in.
    assert result.video_bitrate and result.video_bitrate > 0
    assert abs(result.duration_ms - 1000) <= 40


def test_probe_vp9_webm_tells_webm_from_matroska(media):
    result = probed(media["vp9.webm"])
    assert (result.format_name, result.video_codec, result.audio_codec) == ("webm", "vp9", "opus")
    assert probed(media["h264.mkv"]).format_name == "matroska,webm"


def test_probe_mpeg4_avi(media):
    result = probed(media["mpeg4.avi"])
    assert (result.format_name, result.video_codec, result.audio_codec) == ("avi", "mpeg4", "pcm_s16le")
    assert (result.width, result.height, result.fps) == (320, 240, 25.0)


def test_probe_rotated_mov_reports_the_display_rotation(media):
    result = probed(media["rotated.mov"])
    assert (result.width, result.height) == (320, 180)
    # exiftool reads this file's matrix as Rotation 270; the ffmpeg CLI turns it counter-clockwise to play it.
    assert result.rotation == 270 and result.display_size == (180, 320)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("audio.m4a", "no video stream"),
        ("empty.mp4", "Invalid data"),
        ("no-index.mp4", "Invalid data"),
    ],
)
def test_probe_of_bad_media_names_the_file(media, name, reason):
    with pytest.raises(BadMedia, match=reason) as caught:
        probed(media[name])
    assert str(media[name]) in str(caught.value)


def test_probe_lets_a_vanished_file_raise_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        probed(tmp_path / "gone.mp4")


# ---------------------------------------------------------------------------------------------------------------
# transcode: real outputs checked with PyAV


def top_level_boxes(path: Path) -> list[str]:
    boxes, data, at = [], path.read_bytes(), 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8 : at + 16])[0]
        boxes.append(kind.decode())
        at += size if size else len(data)
    return boxes


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def run(source: Path, output: Path, settings: FfmpegSettings) -> TranscodePlan:
    before = fingerprint(source)
    decided = plan(probed(source), settings)
    assert decided is not None
    transcode(os.fsencode(source), None, str(output), decided, settings)
    assert fingerprint(source) == before, "the original must stay untouched"
    assert top_level_boxes(output).index("moov") < top_level_boxes(output).index("mdat"), "faststart"
    assert [p.name for p in output.parent.iterdir() if ".tmp-" in p.name] == []
    return decided


def streams(path: Path) -> dict[str, object]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        first = next(container.decode(video))
        result = {
            "video": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.codec_context.width, video.codec_context.height),
            "rotation": first.rotation,
            "audio": audio.codec_context.name if audio else None,
            "duration": container.duration / 1e6,
            "fps": float(video.average_rate),
        }
        container.seek(0)
        spans = [(p.pts, p.pts + (p.duration or 0)) for p in container.demux(video) if p.pts is not None]
        span = max(end for _, end in spans) - min(start for start, _ in spans)
        result["video_duration"] = float(span * video.time_base)
        return result


def summary(path: Path) -> tuple[object, ...]:
    result = streams(path)
    return result["video"], result["pix_fmt"], result["size"], result["audio"]


def assert_same_duration(source: Path, output: Path) -> None:
    original, result = streams(source), streams(output)
    frame = 1 / original["fps"]
    assert abs(result["video_duration"] - original["video_duration"]) <= frame
    assert abs(result["duration"] - original["duration"]) <= frame


def test_h264_is_scaled_to_the_target(media, tmp_path):
    output = tmp_path / "out" / "h264.mp4"
    decided = run(media["h264.mp4"], output, FfmpegSettings(transcode="optimal", target_resolution="240"))
    assert decided == TranscodePlan(video="encode", audio="copy", target_size=(426, 240), tonemap=False)
    assert summary(output) == ("h264", "yuv420p", (426, 240), "aac")
    assert_same_duration(media["h264.mp4"], output)


def test_vp9_with_opus_becomes_h264_with_aac(media, tmp_path):
    output = tmp_path / "vp9.mp4"
    settings = FfmpegSettings(accepted_audio_codecs=["aac"], target_resolution="240")
    assert run(media["vp9.webm"], output, settings) == TranscodePlan("encode", "encode", (426, 240), False)
    assert summary(output) == ("h264", "yuv420p", (426, 240), "aac")
    assert_same_duration(media["vp9.webm"], output)


def test_avi_mpeg4_with_pcm_becomes_h264_with_aac(media, tmp_path):
    output = tmp_path / "avi.mp4"
    assert run(media["mpeg4.avi"], output, FfmpegSettings()) == TranscodePlan("encode", "encode", None, False)
    result = streams(output)
    assert (result["video"], result["size"], result["audio"]) == ("h264", (320, 240), "aac")
    assert_same_duration(media["mpeg4.avi"], output)


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def test_a_container_only_problem_is_a_remux_that_keeps_the_video_packets(media, tmp_path):
    output = tmp_path / "remux.mp4"
    assert run(media["h264.mkv"], output, FfmpegSettings()) == TranscodePlan("copy", "copy", None, False)
    result = streams(output)
    assert (result["video"], result["size"], result["audio"]) == ("h264", (640, 360), "aac")
    assert video_packets(output) == video_packets(media["h264.mkv"])
    assert_same_duration(media["h264.mkv"], output)


def test_an_accepted_hevc_is_remuxed_with_the_tag_apple_players_want(media, tmp_path):
    output = tmp_path / "hevc.mp4"
    settings = FfmpegSettings(accepted_video_codecs=["h264", "hevc"])
    assert run(media["hevc.mkv"], output, settings) == TranscodePlan("copy", "copy", None, False)
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.codec_tag == "hvc1"
    assert video_packets(output) == video_packets(media["hevc.mkv"])
    assert_same_duration(media["hevc.mkv"], output)


def gray_first_frame(path: Path, *ffmpeg_options: str) -> np.ndarray:
    """The first frame as the ffmpeg CLI plays it (it applies the display matrix), in gray."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", *ffmpeg_options, "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
         "-pix_fmt", "gray", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    with av.open(str(path)) as container:
        first = next(container.decode(video=0))
        turned = first.rotation in (90, -90)
        width, height = (first.height, first.width) if turned else (first.width, first.height)
    return np.frombuffer(raw, np.uint8).reshape(height, width).astype(int)


def test_rotation_is_applied_when_encoding(media, tmp_path):
    output = tmp_path / "upright.mp4"
    run(media["rotated.mov"], output, FfmpegSettings(transcode="all", target_resolution="original"))
    result = streams(output)
    assert result["size"] == (180, 320) and result["rotation"] == 0
    upright = gray_first_frame(output)
    as_played = gray_first_frame(media["rotated.mov"])  # the CLI turns the original as a player does
    assert np.abs(upright - as_played).mean() < 8
    assert np.abs(upright - as_played[::-1, ::-1]).mean() > 30  # a wrong turn would not match
    assert_same_duration(media["rotated.mov"], output)


def test_rotation_metadata_is_carried_when_video_is_copied(media, tmp_path):
    output = tmp_path / "copied.mp4"
    decided = run(media["rotated.mov"], output, FfmpegSettings())  # PCM is not accepted: audio only
    assert decided == TranscodePlan(video="copy", audio="encode", target_size=None, tonemap=False)
    result = streams(output)
    assert (result["size"], result["rotation"], result["audio"]) == ((320, 180), 90, "aac")
    assert video_packets(output) == video_packets(media["rotated.mov"])


def test_hdr_10bit_becomes_8bit_yuv420p(media, tmp_path):
    output = tmp_path / "hdr.mp4"
    decided = run(media["hevc10.mkv"], output, FfmpegSettings())
    assert decided == TranscodePlan(video="encode", audio="none", target_size=None, tonemap=True)
    assert summary(output) == ("h264", "yuv420p", (320, 180), None)


def test_a_failed_transcode_leaves_no_file_and_the_previous_output(media, tmp_path):
    output = tmp_path / "kept.mp4"
    output.write_bytes(b"previous transcode")
    decided = plan(probed(media["cut.mp4"]), FfmpegSettings(transcode="all"))  # a cut file still probes
    assert decided is not None
    with pytest.raises(BadMedia, match="truncated") as caught:
        transcode(os.fsencode(media["cut.mp4"]), None, str(output), decided, FfmpegSettings())
    assert str(media["cut.mp4"]) in str(caught.value)
    assert output.read_bytes() == b"previous transcode"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.mp4"]


def test_an_unreadable_original_fails_as_bad_media_without_output(media, tmp_path):
    output = tmp_path / "deep" / "none.mp4"
    with pytest.raises(BadMedia, match="Invalid data"):
        transcode(os.fsencode(media["no-index.mp4"]), None, str(output), ENCODE_ALL, FfmpegSettings())
    assert list(output.parent.iterdir()) == []
