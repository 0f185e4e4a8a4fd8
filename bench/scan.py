"""Scan speed and memory against `find`, on the same tree, in the same run.

    .venv/bin/python bench/scan.py [--files 1000000] [--folders 10000] [--tree DIR]

Builds (once, then reuses) a tree of small files, warms the page cache, then times:
  1. find DIR -type f -printf '%T@ %s %p\\n' > /dev/null   (the reference)
  2. filmroll's initial scan of the tree as one external library (new index)
  3. a no-change rescan (default mode) and a --modified rescan (stats every file)
The scans run in a child process that samples its own RssAnon, and its scan worker's, every 20 ms.
Index size is reported per asset, by table (pages in use x page size), and as a compacted copy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_tree(root: Path, files: int, folders: int) -> None:
    marker = root / ".complete"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    per_folder = max(1, files // folders)
    made = 0
    for folder in range(folders):
        directory = root / f"{folder // 100:03d}" / f"album {folder:05d}"
        directory.mkdir(parents=True, exist_ok=True)
        for index in range(per_folder):
            if made >= files:
                break
            extension = ".mp4" if index % 20 == 0 else ".jpg"
            with open(directory / f"IMG_{index:05d}{extension}", "wb") as stream:
                stream.write(b"x" * (index % 7 + 1))
            made += 1
    marker.touch()


def time_find(root: Path) -> float:
    command = ["find", str(root), "-type", "f", "-printf", "%T@ %s %p\n"]
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)  # warm
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


CHILD = r"""
import json, os, sys, time, uuid, trio
from daemon.config import load_settings
from daemon.index import Index, LIBRARIES, TABLES
from daemon.records import Library
from daemon.scan import LibraryScan, ScanMode
from daemon.services import Services
from daemon.timeutil import utc_now

tree, data = sys.argv[1], sys.argv[2]
peak = 0

def rss_anon(pid="self"):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0

def children_rss_anon():
    total = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                total += sum(rss_anon(pid) for pid in f.read().split())
        except OSError:
            pass
    return total

worker_peak = 0

async def sample(task_status=trio.TASK_STATUS_IGNORED):
    global peak, worker_peak
    task_status.started()
    while True:
        peak = max(peak, rss_anon())
        worker_peak = max(worker_peak, children_rss_anon())
        await trio.sleep(0.02)

async def main():
    global peak, worker_peak
    settings = load_settings(None, {"data_dir": data, "log_level": "warning"}, {})
    result = {}
    with Index(settings.index_path) as index:
        services = Services.build(settings, index)
        user = services.users.create(email="b@example.com", password="pw", name="B", external_path=tree)
        now = utc_now()
        library = Library(id=uuid.uuid4(), owner_id=user.id, type="EXTERNAL", name="bench", import_paths=[tree],
                          exclusion_patterns=["**/@eaDir/**", "**/._*", "**/#recycle/**", "**/#snapshot/**"],
                          created_at=now, updated_at=now)
        index.write(lambda txn: txn.put(LIBRARIES, library.id.bytes, library))
        async with trio.open_nursery() as nursery:
            await nursery.start(sample)
            for name, mode in (("initial", ScanMode.NEW), ("rescan", ScanMode.NEW), ("rescan_modified", ScanMode.MODIFIED)):
                peak, worker_peak = rss_anon(), 0
                start = time.perf_counter()
                summary = await LibraryScan(index, library, user, data_dir=data, mode=mode).run()
                result[name] = {"seconds": time.perf_counter() - start, "files": summary.crawled,
                                "new": summary.new, "unchanged": summary.unchanged, "peak_rss_anon": max(peak, rss_anon()),
                                "worker_peak_rss_anon": worker_peak}
            nursery.cancel_scope.cancel()
        tables = {}
        with index.read() as txn:
            for table in TABLES:
                s = txn.raw.stat(txn._dbs[table.name])
                tables[table.name] = {"entries": s["entries"],
                                      "bytes": s["psize"] * (s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"])}
        compact = data + "/compact"
        index.copy_to(__import__("pathlib").Path(compact))
        result["tables"] = tables
        result["compact_bytes"] = os.path.getsize(compact + "/data.mdb")
        result["file_bytes"] = os.path.getsize(settings.index_path / "data.mdb")
    print(json.dumps(result))

trio.run(main)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--folders", type=int, default=None, help="default: files / 100")
    parser.add_argument(
        "--tree", type=Path, default=None, help="where to build the tree (default bench/out/)"
    )
    args = parser.parse_args()
    folders = args.folders or max(1, args.files // 100)
    tree = args.tree or HERE / "out" / f"tree-{args.files}-{folders}"
    started = time.perf_counter()
    build_tree(tree, args.files, folders)
    print(
        f"tree: {tree} ({args.files:,} files in {folders:,} folders; ready in {time.perf_counter() - started:.0f} s)"
    )

    find_seconds = time_find(tree)
    with tempfile.TemporaryDirectory() as data:
        subprocess.run(["find", str(tree), "-type", "f", "-printf", "%T@ %s %p\n"], stdout=subprocess.DEVNULL)
        child = subprocess.run([sys.executable, "-c", CHILD, str(tree), data], capture_output=True, text=True,
                               cwd=HERE.parent, check=False)  # fmt: skip
    if child.returncode != 0:
        sys.exit(child.stderr)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    find_rate = args.files / find_seconds
    print(f"\n{'run':28} {'seconds':>9} {'files/s':>11} {'x find':>8} {'RssAnon daemon':>15} {'+ worker':>9}")
    print(f"{'find -printf (reference)':28} {find_seconds:9.2f} {find_rate:11,.0f} {1.0:8.2f} {'':>13}")
    for name, label in (("initial", "filmroll initial scan"), ("rescan", "filmroll rescan, no change"),
                        ("rescan_modified", "filmroll rescan --modified")):  # fmt: skip
        run = result[name]
        rate = run["files"] / run["seconds"]
        print(f"{label:28} {run['seconds']:9.2f} {rate:11,.0f} {rate / find_rate:8.2f} "
              f"{run['peak_rss_anon'] / 2**20:11.0f} MiB {run['worker_peak_rss_anon'] / 2**20:5.0f} MiB")  # fmt: skip
    assets = result["tables"]["assets"]["entries"] or 1
    print("\nindex bytes per asset, by table (pages in use):")
    for name, table in result["tables"].items():
        if table["bytes"]:
            print(f"  {name:22} {table['bytes'] / assets:8.1f}   ({table['entries']:,} entries)")
    durable = sum(t["bytes"] for n, t in result["tables"].items() if not n.startswith("pending_"))
    print(f"  {'total without pending':22} {durable / assets:8.1f}")
    print(
        f"  {'compacted copy (all)':22} {result['compact_bytes'] / assets:8.1f}   file {result['file_bytes'] / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
