"""Watching: latency from a file's close to the API counting it, and CPU per polling pass.

    .venv/bin/python bench/watch.py [--files 200] [--gap-ms 25] [--poll-files 100000]

1. inotify latency. `filmroll serve` runs as a child process with watching on. 200 small JPEGs are written into a
   watched import path, one every `--gap-ms`; the bench polls `GET /api/libraries/{id}` and, since `assetCount`
   only grows, the k-th file is visible once the count reaches k. Prints the median and p99 of close → visible.
2. Polling cost over the `bench/scan.py` tree (`--poll-files`, built if missing), no changes: the median CPU seconds
   of a polling pass (`daemon.poll.FolderPoller`: one stat per folder), of the full modified-files rescan that every
   30th pass is, and their average per pass, per 100k files, beside `find -printf`'s CPU seconds on the same tree.
Targets: inotify p99 < 1 s; a polling pass < 0.5 s CPU per 100k files.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from scan import build_tree  # noqa: E402  (bench/scan.py)

from tests.e2e import live_daemon  # noqa: E402

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000 + b"\xff\xd9"


def start_daemon(data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`filmroll serve` with watching on, through the tests' helper (JSON log, readiness from its log)."""
    return live_daemon.start_daemon(data, log, FILMROLL_LIBRARY__WATCH__ENABLED="true")


def latency(files: int, gap: float) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix="filmroll-watch-bench-"))
    photos = work / "external" / "photos"
    photos.mkdir(parents=True)
    process, url = start_daemon(work / "data", work / "daemon.log")
    try:
        client = httpx.Client(base_url=url, timeout=30)
        account = {"email": "bench@example.com", "password": "bench-password", "name": "Bench"}
        client.post("/api/auth/admin-sign-up", json=account)
        client.headers["Authorization"] = (
            "Bearer " + client.post("/api/auth/login", json=account).json()["accessToken"]
        )
        me = client.get("/api/users/me").json()
        client.put(f"/api/admin/users/{me['id']}", json={"externalPath": str(work / "external")})
        library = client.post("/api/libraries", json={"importPaths": [str(photos)]}).json()
        path = f"/api/libraries/{library['id']}"
        while client.get(path).json()["watch"]["mode"] != "inotify":
            time.sleep(0.05)
        closed: list[float] = []

        def copy_in() -> None:
            for index in range(files):
                with open(photos / f"IMG_{index:04d}.jpg", "wb") as stream:
                    stream.write(JPEG + index.to_bytes(4, "big"))
                closed.append(time.monotonic())
                time.sleep(gap)

        writer = threading.Thread(target=copy_in)
        writer.start()
        visible: list[float] = []
        deadline = time.monotonic() + 60 + files * gap
        while len(visible) < files and time.monotonic() < deadline:
            count = client.get(path).json()["assetCount"]
            now = time.monotonic()
            while len(visible) < min(count, files):
                visible.append(now)
            time.sleep(0.005)
        writer.join()
        if len(visible) < files:
            raise SystemExit(f"only {len(visible)} of {files} files became visible")
        return [seen - close for seen, close in zip(visible, closed, strict=True)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


POLL_CHILD = r"""
import json, resource, sys, time, uuid, trio
from daemon.config import load_settings
from daemon.index import Index, LIBRARIES
from daemon.records import Library
from daemon.scan import LibraryScan, ScanMode
from daemon.services import Services
from daemon.timeutil import utc_now
from daemon.exclusions import ExclusionMatcher
from daemon.poll import FULL_PASS_EVERY, FolderPoller

tree, data = sys.argv[1], sys.argv[2]

def cpu():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

async def main():
    settings = load_settings(None, {"data_dir": data, "log_level": "warning"}, {})
    with Index(settings.index_path) as index:
        services = Services.build(settings, index)
        user = services.users.create(email="b@example.com", password="pw", name="B", external_path=tree)
        now = utc_now()
        library = Library(id=uuid.uuid4(), owner_id=user.id, type="EXTERNAL", name="bench", import_paths=[tree],
                          created_at=now, updated_at=now)
        index.write(lambda txn: txn.put(LIBRARIES, library.id.bytes, library))
        await LibraryScan(index, library, user, data_dir=data, mode=ScanMode.NEW).run()
        passes = []
        for _ in range(3):
            before, start = cpu(), time.perf_counter()
            summary = await LibraryScan(index, library, user, data_dir=data, mode=ScanMode.MODIFIED).run()
            passes.append({"cpu": cpu() - before, "wall": time.perf_counter() - start, "files": summary.crawled})
    poller = FolderPoller([tree.encode()], ExclusionMatcher([]))
    poller.poll()
    polls = []
    for _ in range(5):
        before = cpu()
        assert poller.poll() == []
        polls.append(cpu() - before)
    print(json.dumps({"full": passes, "polls": polls, "folders": len(poller.folders)}))

trio.run(main)
"""


def find_cpu(tree: Path) -> float:
    samples = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            ["find", str(tree), "-type", "f", "-printf", "%T@ %s %p\n"], stdout=subprocess.DEVNULL, check=True
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(samples)


def polling(files: int) -> tuple[dict, float]:
    tree = HERE / "out" / f"tree-{files}-{max(1, files // 100)}"
    build_tree(tree, files, max(1, files // 100))
    reference = find_cpu(tree)
    with tempfile.TemporaryDirectory(prefix="filmroll-poll-bench-") as data:
        result = subprocess.run([sys.executable, "-c", POLL_CHILD, str(tree), data], cwd=ROOT, capture_output=True,
                                text=True, check=True)  # fmt: skip
    return json.loads(result.stdout.splitlines()[-1]), reference


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=25.0)
    parser.add_argument("--poll-files", type=int, default=100_000)
    args = parser.parse_args()

    delays = sorted(latency(args.files, args.gap_ms / 1000))
    p99 = delays[min(len(delays) - 1, round(0.99 * (len(delays) - 1)))]
    print(f"inotify: {len(delays)} files, one every {args.gap_ms:g} ms: close -> visible in the API")
    print(f"  median {statistics.median(delays) * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms   "
          f"max {delays[-1] * 1000:7.0f} ms   (target p99 < 1000 ms)")  # fmt: skip

    measured, reference = polling(args.poll_files)
    from daemon.poll import FULL_PASS_EVERY

    full = statistics.median(p["cpu"] for p in measured["full"])
    wall = statistics.median(p["wall"] for p in measured["full"])
    poll = statistics.median(measured["polls"])
    files = measured["full"][0]["files"]
    average = (poll * (FULL_PASS_EVERY - 1) + full) / FULL_PASS_EVERY
    scale = 100_000 / max(1, files)
    print(
        f"polling, no change, {files:,} files in {measured['folders']:,} folders (CPU seconds; find -printf {reference:.2f}):"
    )
    print(f"  folder pass     {poll:6.3f}   ({poll * scale:.3f} per 100k)")
    print(
        f"  full pass       {full:6.3f}   ({full * scale:.3f} per 100k; daemon + worker, wall {wall:.2f}); every {FULL_PASS_EVERY}th pass"
    )
    print(f"  average pass    {average:6.3f}   ({average * scale:.3f} per 100k; target < 0.5)")


if __name__ == "__main__":
    main()
