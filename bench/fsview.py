"""The FUSE view (`filmroll serve --mount`) against the same work done directly on disk, in one run.

1. Sequential read of a 1 GiB original through the mount vs directly, warm page cache (the original is read once
   before each timed direct run; through the mount, the first read fills the FUSE inode's cache and the timed
   runs re-read with `keep_cache`). Also the first read through the mount (backing file warm, FUSE cache cold).
   Target: >= 0.6x direct.
2. `find` over an album of 100k entries vs `find` over a real folder of the same 100k files. The first `find`
   through the mount computes the album's listing and is printed apart. Target: <= 3x the real tree's time.
3. `stat` calls per second on the album's files (`os.stat` of each name, from Python) vs the same on disk.

The index is built directly (100k upload-library assets pointing at real 1-byte files, one album holding them all,
plus the 1 GiB asset) before the daemon starts.

    .venv/bin/python bench/fsview.py [--entries 100000] [--gib 1] [--runs 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon import album_index, libraries
from daemon import assets as asset_index
from daemon.config import load_settings
from daemon.index import Index
from daemon.records import Album, Asset
from daemon.services import Services
from tests.e2e.live_daemon import start_daemon, wait_for

NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
BIG_TAKEN = datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
BLOCK = 1 << 20


def build(data_dir: Path, real: Path, big: Path, entries: int) -> None:
    """A user, `entries` assets in one album (`Big`) pointing at files in `real/`, and the big file's asset."""
    settings = load_settings(None, {"data_dir": str(data_dir)}, environ={})
    real.mkdir(parents=True, exist_ok=True)
    with Index(settings.index_path) as index:
        services = Services.build(settings, index)
        user = services.users.create(
            email="bench@example.com", password="pw", name="B", storage_label="bench"
        )
        with index.read() as txn:
            library = next(lib for lib in libraries.libraries_of(txn, user.id) if lib.type == "UPLOAD")
        mtime_ns = int(NOW.timestamp()) * 1_000_000_000

        def asset(path: Path, size: int, name: str, taken: datetime = NOW) -> Asset:
            return Asset(id=uuid.uuid4(), owner_id=user.id, library_id=library.id, type="IMAGE",
                         original_path=os.fsencode(path), file_size=size, file_mtime_ns=mtime_ns,
                         file_created_at=taken, local_date_time=taken, created_at=NOW, updated_at=NOW,
                         original_file_name=name)  # fmt: skip

        album = Album(id=uuid.uuid4(), owner_id=user.id, name="Big", created_at=NOW, updated_at=NOW)
        index.write(lambda txn: album_index.put(txn, album))
        big_asset = asset(big, big.stat().st_size, "big.bin", BIG_TAKEN)  # alone in timeline/2023/01
        index.write(lambda txn: asset_index.insert_many(txn, [big_asset]))
        for start in range(0, entries, 10_000):
            batch = []
            for number in range(start, min(entries, start + 10_000)):
                path = real / f"IMG_{number:06d}.jpg"
                path.write_bytes(b"x")
                os.utime(path, ns=(mtime_ns, mtime_ns))
                batch.append(asset(path, 1, path.name))

            def work(txn, batch=batch):
                asset_index.insert_many(txn, batch)
                for member in batch:
                    album_index.add(txn, album.id, member.id, NOW)

            index.write(work)


def read_all(path: Path) -> float:
    started = time.perf_counter()
    descriptor = os.open(path, os.O_RDONLY)
    try:
        while os.read(descriptor, BLOCK):
            pass
    finally:
        os.close(descriptor)
    return time.perf_counter() - started


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def stats_per_second(folder: Path, names: list[str]) -> float:
    started = time.perf_counter()
    for name in names:
        os.stat(folder / name)
    return len(names) / (time.perf_counter() - started)


def line(label: str, mine: float, reference: float, unit: str, higher_is_better: bool) -> None:
    ratio = mine / reference if reference else float("nan")
    better = "higher" if higher_is_better else "lower"
    print(f"{label:<42} filmroll {mine:10.3f} {unit:<7} direct {reference:10.3f} {unit:<7} ratio {ratio:5.2f}x "
          f"({better} is better)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/filmroll-bench-fsview"))
    args = parser.parse_args()

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data_dir, real, mount, big = work / "data", work / "real" / "Big", work / "mnt", work / "big.bin"
    mount.mkdir()
    print(f"load average before: {os.getloadavg()}")
    started = time.perf_counter()
    with open(big, "wb") as stream:
        block = os.urandom(BLOCK)
        for _ in range(int(args.gib * 1024)):
            stream.write(block)
    build(data_dir, real, big, args.entries)
    print(f"built {args.entries:,} entries + {args.gib} GiB in {time.perf_counter() - started:.1f} s")

    process, _ = start_daemon(data_dir, work / "daemon.log", FILMROLL_MOUNT=str(mount))
    try:
        wait_for(lambda: os.path.ismount(mount), "the mount")
        album = mount / "bench" / "albums" / "Big"
        month = mount / "bench" / "timeline" / "2023" / "01"

        # 1. sequential read
        through = month / "big.bin"
        os.stat(through)  # the lookups (and the month's listing) are not part of the read
        read_all(big)
        first = read_all(through)
        direct_runs, fuse_runs = [], []
        for _ in range(args.runs):
            read_all(big)  # re-warm: this VM's page cache does not stay warm for long
            direct_runs.append(read_all(big))
            fuse_runs.append(read_all(through))
        size_mb = big.stat().st_size / 1e6
        print(f"\nsequential read of {size_mb / 1000:.2f} GB, median of {args.runs} (MB/s):")
        line(
            "first read through the mount",
            size_mb / first,
            size_mb / statistics.median(direct_runs),
            "MB/s",
            True,
        )
        line("warm re-read (keep_cache)", size_mb / statistics.median(fuse_runs),
             size_mb / statistics.median(direct_runs), "MB/s", True)  # fmt: skip

        # 2. find
        first_find = timed(["find", str(album)])
        real_runs, fuse_find = [], []
        for _ in range(args.runs):
            real_runs.append(timed(["find", str(real)]))
            fuse_find.append(timed(["find", str(album)]))
        print(f"\nfind over {args.entries:,} entries, median of {args.runs} (s):")
        line("first find (computes the listing)", first_find, statistics.median(real_runs), "s", False)
        line("find", statistics.median(fuse_find), statistics.median(real_runs), "s", False)
        listing = timed(["ls", "-l", str(album)])
        line("ls -l", listing, timed(["ls", "-l", str(real)]), "s", False)

        # 3. stat
        names = sorted(os.listdir(real))
        fuse_stat, real_stat = [], []
        for _ in range(args.runs):
            fuse_stat.append(stats_per_second(album, names))
            real_stat.append(stats_per_second(real, names))
        print(f"\nos.stat of {len(names):,} files, median of {args.runs} (calls/s):")
        line("stat", statistics.median(fuse_stat), statistics.median(real_stat), "/s", True)
        time.sleep(1.5)  # let the kernel's 1 s attribute cache expire: every stat asks the daemon
        cold = stats_per_second(album, names[:20_000])
        line("stat, kernel cache expired (20k)", cold, statistics.median(real_stat), "/s", True)
    finally:
        print(f"\nload average after: {os.getloadavg()}")
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], capture_output=True, check=False)
        rss = [
            entry for entry in (work / "daemon.log").read_text().splitlines() if '"level": "error"' in entry
        ]
        if rss:
            print("daemon errors:", *rss, sep="\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
