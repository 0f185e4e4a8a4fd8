"""Upload throughput and memory: `POST /api/assets` of a large file into a running `filmroll serve`.

Reference, same machine, same run: `tee DEST < FILE | sha1sum && sync DEST` — one pass that reads, writes,
hashes and fsyncs the same bytes, which is the work an upload must do at the least (filmroll adds HTTP over loopback, multipart parsing and
the fsyncs). Also printed: the growth of the daemon's RssAnon while the body streams (it must stay flat, far below
the file size).

    .venv/bin/python bench/upload.py [--mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.live_daemon import iso_utc, running_daemon


def rss_anon_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def make_file(path: Path, mib: int, seed: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as stream:
        stream.write(seed.to_bytes(8, "big"))  # a different SHA-1 per run: no duplicate answers
        for _ in range(mib):
            stream.write(block)


def drop_cache(path: Path) -> None:
    """Re-warm: read the file once so both sides start from the page cache."""
    with open(path, "rb") as stream:
        while stream.read(1 << 24):
            pass


def reference(source: Path, destination: Path) -> float:
    started = time.perf_counter()
    # `sync FILE` fsyncs that file only, as the upload fsyncs its own before the rename
    subprocess.run(
        f"tee {destination} < {source} | sha1sum >/dev/null && sync {destination}", shell=True, check=True
    )
    elapsed = time.perf_counter() - started
    destination.unlink()
    return elapsed


def upload(url: str, api_key: str, source: Path, pid: int) -> tuple[float, int]:
    baseline = rss_anon_kib(pid)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_anon_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stamp = iso_utc(source.stat().st_mtime)
    started = time.perf_counter()
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"x-api-key: {api_key}",
         "-F", f"assetData=@{source};filename=big.mp4", "-F", f"fileCreatedAt={stamp}",
         "-F", f"fileModifiedAt={stamp}", f"{url}/api/assets"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    if result.stdout != "201":
        raise SystemExit(f"upload answered {result.stdout}")
    return elapsed, peak - baseline


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent / "out") as scratch:
        root = Path(scratch)
        with running_daemon(root / "daemon") as daemon:
            ours, theirs, growth = [], [], []
            for run in range(args.runs):
                source = root / f"big-{run}.mp4"
                make_file(source, args.mib, run)
                drop_cache(source)
                theirs.append(reference(source, root / "copy.bin"))
                drop_cache(source)
                elapsed, grown = upload(daemon.url, daemon.api_key, source, daemon.process.pid)
                ours.append(elapsed)
                growth.append(grown)
                source.unlink()
                print(f"run {run + 1}: filmroll {elapsed:.2f} s, tee|sha1sum {theirs[-1]:.2f} s, "
                      f"daemon RssAnon +{grown / 1024:.1f} MiB")  # fmt: skip
        ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
        print(f"\n{args.mib} MiB upload, median of {args.runs}:")
        print(f"  filmroll POST /api/assets   {args.mib / ours_median:8.1f} MiB/s  ({ours_median:.2f} s)")
        print(f"  tee | sha1sum (reference)   {args.mib / theirs_median:8.1f} MiB/s  ({theirs_median:.2f} s)")
        print(f"  ratio (filmroll / reference throughput): {theirs_median / ours_median:.2f}x")
        print(f"  daemon RssAnon growth while streaming: median {statistics.median(growth) / 1024:.1f} MiB "
              f"(max {max(growth) / 1024:.1f} MiB) for a {args.mib} MiB body")  # fmt: skip


if __name__ == "__main__":
    main()
