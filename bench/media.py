"""Media work against the reference tools, on a generated corpus, in the same run.

    .venv/bin/python bench/media.py [--quick] [--corpus DIR] [--repeats 3]

Builds (once, then reuses) a corpus: 24 MP JPEGs (gradient + noise, quality 90, EXIF), 12 MP HEICs (pillow_heif),
1080p 30 s H.264 + AAC clips (ffmpeg testsrc2) and 640x480 JPEGs with EXIF. Then, medians of `--repeats` runs,
ours and the reference interleaved, the page cache re-warmed before each timed run:
  1. thumbnails: `worker_tasks.render` (WebP 250 px + JPEG 1440 px on the shorter side, q80, + thumbhash) in
     2 trio-parallel workers at once, as the thumbnailGeneration queue runs it; reference: `vipsthumbnail`
     making the same two files (preview from the original, thumbnail from the preview, as ours does; vips has
     no shorter-side mode, so the box is computed per image), 2 processes at a time. Images/s.
  2. transcode: `worker_tasks.convert_video` (policy "optimal": 1080p -> 720p H.264 crf 23 ultrafast, AAC
     copied) in a worker; reference: the `ffmpeg` CLI with the same settings on the same clip. Wall seconds.
  3. metadata: `worker_tasks.extract_metadata` in 2 workers at once, batches of 32 (the metadataExtraction
     queue), exiftool already started in each worker; over the photo corpus (listed repeatedly so that there
     are at least 4 batches) with and without the content SHA-1, and over the small JPEGs. Reference:
     `exiftool -json -fast` over the same files in one process (Perl start-up included). Files/s.
Targets: thumbnails >= 1.0x vipsthumbnail; transcode <= 1.1x ffmpeg; metadata >= 300 files/s.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PARALLEL = 2  # the VM's cores: both sides use both
BATCH = 32  # daemon.media_jobs.MetadataJobs.group_size


@dataclass(frozen=True)
class Size:
    jpegs: int
    heics: int
    clips: int
    clip_seconds: int
    small: int


SIZES = {"full": Size(12, 8, 2, 30, 1000), "quick": Size(4, 2, 1, 10, 300)}


# -- the corpus --------------------------------------------------------------------------------------------


def _picture(width: int, height: int, noise: float, seed: int):
    import numpy
    from PIL import Image

    rng = numpy.random.default_rng(seed)
    y = numpy.linspace(0, 1, height, dtype=numpy.float32)[:, None]
    x = numpy.linspace(0, 1, width, dtype=numpy.float32)[None, :]
    phase = seed * 0.7
    base = numpy.stack(
        [200 * x + 30 * y, 180 * y + 40 * (1 - x), 120 * numpy.sin(3 * x + 2 * y + phase) ** 2 + 60], axis=-1
    )
    pixels = base + rng.standard_normal((height, width, 3), dtype=numpy.float32) * noise
    return Image.fromarray(numpy.clip(pixels, 0, 255).astype(numpy.uint8))


def _exif(index: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "BenchCam"  # Make
    exif[0x0110] = "Model 1"  # Model
    exif[0x0112] = 1  # Orientation
    details = exif.get_ifd(0x8769)
    details[0x9003] = (
        f"2023:{index % 12 + 1:02d}:{index % 28 + 1:02d} 12:{index % 60:02d}:00"  # DateTimeOriginal
    )
    details[0x9011] = "+02:00"  # OffsetTimeOriginal
    details[0x829A] = (1, 250)  # ExposureTime
    details[0x8827] = 200  # ISO
    return exif.tobytes()


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    write(temporary)
    os.replace(temporary, path)


def _make_jpeg(path: Path, index: int) -> None:
    image = _picture(6000, 4000, 11.0, index)  # ~8 MB at quality 90
    _write_atomically(path, lambda name: image.save(name, "JPEG", quality=90, exif=_exif(index)))


def _make_heic(path: Path, index: int) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    image = _picture(4032, 3024, 2.5, 100 + index)  # ~2.5 MB at quality 60, like a phone's
    _write_atomically(path, lambda name: image.save(name, "HEIF", quality=60, exif=_exif(index)))


def _make_clip(path: Path, seconds: int) -> None:
    _write_atomically(path, lambda name: subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mp4", name], check=True,
    ))  # fmt: skip


def _make_small(directory: Path, count: int) -> None:
    image = _picture(640, 480, 8.0, 7)
    for index in range(count):
        path = directory / f"IMG_{index:05d}.jpg"
        if not path.exists():
            _write_atomically(path, lambda name: image.save(name, "JPEG", quality=85, exif=_exif(index)))  # noqa: B023


@dataclass(frozen=True)
class Corpus:
    jpegs: list[Path]
    heics: list[Path]
    clips: list[Path]
    small: list[Path]


def build_corpus(root: Path, size: Size) -> Corpus:
    """Make what is missing (each file appears complete or not at all, so an interrupted build resumes)."""
    corpus = Corpus(
        jpegs=[root / "jpeg" / f"IMG_{i:04d}.jpg" for i in range(size.jpegs)],
        heics=[root / "heic" / f"IMG_{i:04d}.heic" for i in range(size.heics)],
        clips=[root / "video" / f"CLIP_{i:02d}_{size.clip_seconds}s.mp4" for i in range(size.clips)],
        small=[root / "small" / f"IMG_{i:05d}.jpg" for i in range(size.small)],
    )
    for directory in ("jpeg", "heic", "video", "small"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(PARALLEL) as pool:
        jobs = [pool.submit(_make_jpeg, p, i) for i, p in enumerate(corpus.jpegs) if not p.exists()]
        jobs += [pool.submit(_make_heic, p, i) for i, p in enumerate(corpus.heics) if not p.exists()]
        jobs.append(pool.submit(_make_small, root / "small", size.small))
        for job in jobs:
            job.result()
    for clip in corpus.clips:
        if not clip.exists():
            _make_clip(clip, size.clip_seconds)
    return corpus


def warm(paths: list[Path]) -> None:
    """Read the files into the page cache (and keep them there: the VM has plenty of memory)."""
    for path in paths:
        with open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass


def dimensions(path: Path) -> tuple[int, int]:
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    with Image.open(path) as image:
        return image.size


def box(width: int, height: int, shorter_side: int) -> tuple[int, int]:
    """vipsthumbnail's -s WxH box that scales (width, height) to `shorter_side` on the shorter side."""
    scale = shorter_side / min(width, height)
    return round(width * scale), round(height * scale)


# -- timing ------------------------------------------------------------------------------------------------


async def each_parallel(function: Callable[[int], Awaitable[object]], count: int) -> None:
    """Run function(0..count-1), PARALLEL at a time."""
    import trio

    limiter = trio.CapacityLimiter(PARALLEL)

    async def one(index: int) -> None:
        async with limiter:
            await function(index)

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)


async def timed(function: Callable[[], Awaitable[object]], files: list[Path]) -> float:
    import trio

    await trio.to_thread.run_sync(warm, files)
    start = time.perf_counter()
    await function()
    return time.perf_counter() - start


@dataclass
class Row:
    measure: str
    unit: str
    ours: float
    reference: float | None
    reference_name: str
    higher_is_better: bool
    target: str
    met: bool

    @property
    def ratio(self) -> float | None:
        return None if self.reference is None else self.ours / self.reference


def spread(samples: list[float]) -> str:
    return f"median {statistics.median(samples):.2f} s (runs: {', '.join(f'{s:.2f}' for s in samples)})"


async def thumbnails(kind: str, images: list[Path], repeats: int, out: Path, vips_reads: bool) -> Row:
    import trio
    import trio_parallel

    from daemon.config import ImageSettings
    from daemon.worker_tasks import render

    settings = ImageSettings()
    ours_out, vips_out = out / "ours", out / "vips"
    ours_out.mkdir(parents=True, exist_ok=True)
    vips_out.mkdir(parents=True, exist_ok=True)
    sizes = [dimensions(path) for path in images]

    async with trio_parallel.open_worker_context() as context:
        limiter = trio.CapacityLimiter(math.inf)  # each_parallel gates, as the queue's semaphore does

        async def ours_one(index: int) -> None:
            rendered = await context.run_sync(
                render, os.fsencode(images[index]), None, False,
                str(ours_out / f"{index}.webp"), str(ours_out / f"{index}.jpg"), settings, limiter=limiter,
            )  # fmt: skip
            assert rendered.thumbhash and rendered.width == sizes[index][0], rendered

        async def vips_one(index: int) -> None:
            preview_box = box(*sizes[index], settings.preview.size)
            thumbnail_box = box(*preview_box, settings.thumbnail.size)
            preview = vips_out / f"{index}.jpg"
            quality = f"[Q={settings.preview.quality},strip]"
            await trio.run_process(["vipsthumbnail", str(images[index]), "-s", "{}x{}".format(*preview_box),
                                    "-o", f"{preview}{quality}"], stderr=subprocess.DEVNULL)  # fmt: skip
            quality = f"[Q={settings.thumbnail.quality},strip]"
            await trio.run_process(["vipsthumbnail", str(preview), "-s", "{}x{}".format(*thumbnail_box),
                                    "-o", f"{vips_out / f'{index}.webp'}{quality}"], stderr=subprocess.DEVNULL)  # fmt: skip

        await each_parallel(ours_one, PARALLEL)  # start both workers (imports, first decode) before timing
        ours, vips = [], []
        for _ in range(repeats):
            ours.append(await timed(functools.partial(each_parallel, ours_one, len(images)), images))
            if vips_reads:
                vips.append(await timed(functools.partial(each_parallel, vips_one, len(images)), images))
    check_outputs(ours_out, vips_out if vips_reads else None, len(images))
    print(f"thumbnails {kind}: ours {spread(ours)}")
    if vips_reads:
        print(f"thumbnails {kind}: vipsthumbnail {spread(vips)}")
    rate = len(images) / statistics.median(ours)
    reference = len(images) / statistics.median(vips) if vips_reads else None
    return Row(f"thumbnails, {kind}", "images/s", rate, reference, "vipsthumbnail", True, ">= 1.0x ref",
               reference is not None and rate >= reference)  # fmt: skip


def check_outputs(ours: Path, vips: Path | None, count: int) -> None:
    """Both sides made the same files: same dimensions (vips may round the long side differently)."""
    for index in range(count):
        for extension in ("webp", "jpg"):
            mine = dimensions(ours / f"{index}.{extension}")
            if vips is not None:
                theirs = dimensions(vips / f"{index}.{extension}")
                assert min(mine) == min(theirs) and abs(max(mine) - max(theirs)) <= 1, (mine, theirs)


def ffmpeg_command(clip: Path, out: Path) -> list[str]:
    return ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-vf", "scale=-2:720", "-c:v", "libx264",
            "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p", "-c:a", "copy",
            "-movflags", "+faststart", str(out)]  # fmt: skip


def video_shape(path: Path) -> str:
    return subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height,duration", "-of", "csv=p=0",
         str(path)], capture_output=True, text=True, check=True,
    ).stdout.replace("\n", " ").strip()  # fmt: skip


async def transcode(clip: Path, repeats: int, out: Path) -> Row:
    import trio
    import trio_parallel

    from daemon.config import FfmpegSettings
    from daemon.transcode import probe
    from daemon.worker_tasks import convert_video

    settings = FfmpegSettings(transcode="optimal")
    ours_out, cli_out = out / "ours.mp4", out / "ffmpeg.mp4"
    async with trio_parallel.open_worker_context() as context:
        await context.run_sync(probe, os.fsencode(clip), None)  # start the worker, import PyAV

        async def ours_one() -> None:
            _, transcoded = await context.run_sync(
                convert_video, os.fsencode(clip), None, str(ours_out), settings
            )
            assert transcoded

        async def cli_one() -> None:
            await trio.run_process(ffmpeg_command(clip, cli_out))

        ours, cli = [], []
        for _ in range(repeats):
            ours.append(await timed(ours_one, [clip]))
            cli.append(await timed(cli_one, [clip]))
    print(
        f"transcode: ours {spread(ours)} -> {video_shape(ours_out)}, {ours_out.stat().st_size / 1e6:.1f} MB"
    )
    print(
        f"transcode: ffmpeg CLI {spread(cli)} -> {video_shape(cli_out)}, {cli_out.stat().st_size / 1e6:.1f} MB"
    )
    seconds, reference = statistics.median(ours), statistics.median(cli)
    return Row("transcode 1080p -> 720p", "s", seconds, reference, "ffmpeg CLI", False, "<= 1.1x ref",
               seconds <= 1.1 * reference)  # fmt: skip


async def metadata(files: list[Path], label: str, hashes: list[bool], repeats: int) -> list[Row]:
    import trio
    import trio_parallel

    from daemon.records import ExifInfo
    from daemon.worker_tasks import extract_metadata

    listed = files * math.ceil(4 * BATCH / len(files)) if len(files) < 4 * BATCH else files
    distinct = sorted(set(files))
    rows = []
    async with trio_parallel.open_worker_context() as context:
        limiter = trio.CapacityLimiter(math.inf)
        warm_up = [(os.fsencode(files[0]), None, None, True)]
        await each_parallel(lambda _: context.run_sync(extract_metadata, warm_up, limiter=limiter), PARALLEL)

        async def ours_run(needs_hash: bool) -> None:
            items = [(os.fsencode(path), None, None, needs_hash) for path in listed]
            batches = [items[start : start + BATCH] for start in range(0, len(items), BATCH)]

            async def one(index: int) -> None:
                results = await context.run_sync(extract_metadata, batches[index], limiter=limiter)
                failed = [r for r in results if not isinstance(r, tuple) or not isinstance(r[0], ExifInfo)]
                assert not failed, failed[:2]
                assert all((digest is not None) == needs_hash for _, digest in results)

            await each_parallel(one, len(batches))

        async def exiftool_run() -> None:
            await trio.run_process(
                ["exiftool", "-json", "-fast", *map(str, listed)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        samples: dict[object, list[float]] = {key: [] for key in [*hashes, "exiftool"]}
        for _ in range(repeats):
            for needs_hash in hashes:
                samples[needs_hash].append(await timed(functools.partial(ours_run, needs_hash), distinct))
            samples["exiftool"].append(await timed(exiftool_run, distinct))
    reference = len(listed) / statistics.median(samples["exiftool"])
    print(f"metadata {label}: exiftool -json -fast {spread(samples['exiftool'])}")
    for needs_hash in hashes:
        rate = len(listed) / statistics.median(samples[needs_hash])
        hashed = ", +SHA-1" if needs_hash else ""
        megabytes = sum(path.stat().st_size for path in listed) / 1e6 / statistics.median(samples[needs_hash])
        hashing = f" ({megabytes:.0f} MB/s hashed)" if needs_hash else ""
        print(f"metadata {label}{hashed}: ours {spread(samples[needs_hash])}{hashing}")
        rows.append(Row(f"metadata, {label}{hashed}", "files/s", rate, reference, "exiftool -json -fast", True,
                        ">= 300 files/s", rate >= 300))  # fmt: skip
    return rows


# -- main --------------------------------------------------------------------------------------------------


def vips_reads_heic(path: Path) -> bool:
    with tempfile.TemporaryDirectory() as scratch:
        run = subprocess.run(["vipsthumbnail", str(path), "-s", "64x64", "-o", f"{scratch}/t.jpg"],
                             capture_output=True, check=False)  # fmt: skip
        return run.returncode == 0 and os.path.exists(f"{scratch}/t.jpg")


def print_table(rows: list[Row]) -> None:
    print(
        f"\n{'measure':42} {'unit':>8} {'ours':>9} {'reference':>10}  {'(ref)':22} {'ratio':>6} {'target':>15} met?"
    )
    for row in rows:
        reference = "n/a" if row.reference is None else f"{row.reference:10.2f}"
        ratio = "n/a" if row.ratio is None else f"{row.ratio:.2f}x"
        print(f"{row.measure:42} {row.unit:>8} {row.ours:9.2f} {reference:>10}  {row.reference_name:22} "
              f"{ratio:>6} {row.target:>15} {'yes' if row.met else 'NO'}")  # fmt: skip


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


async def run_all(corpus: Corpus, repeats: int, out: Path, heic_ok: bool) -> list[Row]:
    rows = [await thumbnails("24 MP JPEG", corpus.jpegs, repeats, out / "jpeg", True)]
    rows.append(await thumbnails("12 MP HEIC", corpus.heics, repeats, out / "heic", heic_ok))
    rows.append(await transcode(corpus.clips[0], repeats, out))
    photos = corpus.jpegs + corpus.heics + corpus.clips
    rows += await metadata(photos, f"photo corpus ({len(photos)} files)", [True, False], repeats)
    rows += await metadata(corpus.small, f"{len(corpus.small)} x 640x480 JPEG", [False], repeats)
    return rows


def main() -> None:
    import trio

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smaller corpus: 4 JPEG, 2 HEIC, 1 x 10 s clip, 300 small"
    )
    parser.add_argument(
        "--corpus", type=Path, default=None, help="where to build/reuse the corpus (default bench/out/)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    name = "quick" if args.quick else "full"
    root = args.corpus or HERE / "out" / f"media-corpus-{name}"
    print(f"load average at start: {load()} ({os.cpu_count()} cores)")
    started = time.perf_counter()
    corpus = build_corpus(root, SIZES[name])
    megabytes = sum(p.stat().st_size for p in corpus.jpegs) / len(corpus.jpegs) / 1e6
    print(f"corpus: {root} ({len(corpus.jpegs)} x 24 MP JPEG, {megabytes:.1f} MB each; {len(corpus.heics)} x 12 MP "
          f"HEIC; {len(corpus.clips)} x 1080p {SIZES[name].clip_seconds} s clip; {len(corpus.small)} x 640x480 "
          f"JPEG; ready in {time.perf_counter() - started:.0f} s)")  # fmt: skip
    heic_ok = vips_reads_heic(corpus.heics[0])
    if not heic_ok:
        print("vipsthumbnail cannot read HEIC here: HEIC is measured for filmroll only")
    out = Path(tempfile.mkdtemp(prefix="filmroll-media-bench-"))
    try:
        rows = trio.run(run_all, corpus, args.repeats, out, heic_ok)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print_table(rows)
    print(f"\nload average at end: {load()}")


if __name__ == "__main__":
    main()
