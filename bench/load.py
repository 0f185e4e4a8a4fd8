"""Load: concurrent uploads and reads while a large library scan runs, against the same reads on a quiet daemon.

    .venv/bin/python bench/load.py [--files 100000] [--uploads 50] [--uploads-each 40] [--readers 8] [--seconds 10]
                                   [--rounds 3] [--media] [--tree DIR] [--scratch DIR]

A real `filmroll serve` on 127.0.0.1 (tests/e2e/live_daemon.py), an admin and a user whose external path is a
generated tree of `--files` small fake photos (bench/scan.py's `build_tree`, reused from bench/out/). Before the
load, the user uploads a few real JPEGs and the daemon renders their thumbnails; then the media queues are paused
(unless `--media`), so what runs is what the issue names: the scan, the uploads and the reads.

Then, with a bounded load generator (a fixed number of trio tasks on one httpx client each kind, nothing spawned
per request):
  1. quiet (the same-run reference): `--readers` tasks loop `GET /api/assets/{id}` and
     `GET /api/assets/{id}/thumbnail` over the seeded assets for `--seconds`;
  2. each load round: a new external library over the tree, `POST /api/libraries/{id}/scan`, and at the same time
     `--uploads` tasks each uploading `--uploads-each` distinct real JPEGs back to back, and the same readers as
     in 1. The round ends once the scan has finished and every uploader has made its uploads (a fixed amount of
     work, not a time: every round uploads and scans exactly as much). Each later round is round 1 again (another
     library over the same tree), so the daemon's RssAnon across rounds shows whether memory is flat.
The daemon's RssAnon is sampled from /proc/<pid>/status every 100 ms, and the CPU time of the daemon and of this
generator is printed per phase (on a shared 2-core machine a starved daemon shows as low CPU with high latency).
Any non-2xx answer or exception is an error, and so is a scan that fails or imports less than the tree; there must
be none. Latencies are measured in the client, so they include its own scheduling on the same machine.
`--scratch /dev/shm` puts the daemon's data directory on tmpfs, to see what the disk's fsyncs cost.

tests/reliability/test_load.py runs the same generator small (and with the full numbers under `-m reliability`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy
import trio
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scan import build_tree  # noqa: E402
from tests.e2e.live_daemon import LiveDaemon, iso_utc, log_entries, running_daemon, wait_for  # noqa: E402

MEDIA_QUEUES = ("metadataExtraction", "thumbnailGeneration", "videoConversion")
SAMPLE_INTERVAL = 0.1


# --- what the clients send ------------------------------------------------------------------------------------


def base_jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    """A real JPEG of noise over a gradient (so it is photo-sized: ~100 KB at 640x480)."""
    generator = numpy.random.default_rng(seed)
    gradient = numpy.linspace(0, 200, width, dtype=numpy.uint8)[None, :, None]
    pixels = generator.integers(0, 56, (height, width, 3), dtype=numpy.uint8) + gradient
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def unique_jpeg(base: bytes, tag: str) -> bytes:
    """`base` with a COM segment carrying `tag` right after SOI: still a valid JPEG, with its own SHA-1."""
    comment = tag.encode()
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


def checksum(content: bytes) -> str:
    """The asset's `checksum` as the API shows it: base64 SHA-1."""
    return base64.b64encode(hashlib.sha1(content).digest()).decode()


# --- what the clients measure ---------------------------------------------------------------------------------


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.seconds.append(value)

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile in milliseconds (0 when empty)."""
        if not self.seconds:
            return 0.0
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def count(self) -> int:
        return len(self.seconds)


@dataclass
class Errors:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.count += 1
        if len(self.examples) < 10:
            self.examples.append(what)


@dataclass
class Upload:
    name: str
    checksum: str
    status: int
    asset_id: str | None


@dataclass
class Memory:
    """The daemon's RssAnon (KiB) at the start of a phase, its peak, at the end of the load and once settled."""

    start: int = 0
    peak: int = 0
    end: int = 0
    settled: int = 0


@dataclass
class Phase:
    name: str
    started: float = 0.0  # time.perf_counter() at its start
    seconds: float = 0.0
    asset: Latencies = field(default_factory=Latencies)
    thumbnail: Latencies = field(default_factory=Latencies)
    upload: Latencies = field(default_factory=Latencies)
    uploads: list[Upload] = field(default_factory=list)
    errors: Errors = field(default_factory=Errors)
    scan_seconds: float | None = None
    library_id: str | None = None
    imported: int | None = None
    memory: Memory = field(default_factory=Memory)
    daemon_cpu: float = 0.0  # CPU seconds of the daemon process and its threads (not its worker processes)
    client_cpu: float = 0.0  # CPU seconds of this load generator


def rss_anon_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MemorySampler:
    """Samples a process's RssAnon every 100 ms while `run` runs; `peak` since the last `reset`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0

    def reset(self) -> int:
        self.peak = now = rss_anon_kib(self.pid)
        return now

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.peak = max(self.peak, rss_anon_kib(self.pid))
            await trio.sleep(SAMPLE_INTERVAL)


# --- the load generator ---------------------------------------------------------------------------------------


@dataclass
class LoadConfig:
    tree: Path  # the external files the scans import
    files: int  # how many files the tree holds (each scan must import them all)
    uploads: int = 50  # concurrent uploading tasks
    uploads_each: int = 40  # uploads each uploading task makes per round, back to back
    readers: int = 8  # concurrent reading tasks
    seconds: float = 10.0  # quiet phase length
    rounds: int = 3
    seeds: int = 16  # uploaded JPEGs whose thumbnails the readers fetch
    upload_pixels: tuple[int, int] = (640, 480)  # the uploaded JPEGs' size (640x480 noise: ~100 KB)
    media: bool = False  # let the media queues work through the scanned and uploaded files during the load
    settle: float = 2.0  # seconds after a round before its "settled" memory sample
    scan_timeout: float = 3600.0


@dataclass
class LoadResult:
    quiet: Phase
    rounds: list[Phase]
    seeds: list[str]
    user_key: str


@dataclass
class Target:
    url: str
    admin_key: str
    user_key: str
    pid: int


def _client(target: Target, key: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=target.url, headers={"x-api-key": key}, timeout=120, limits=limits, trust_env=False
    )


async def _timed(latencies: Latencies, errors: Errors, what: str, request) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        reply = await request
    except httpx.HTTPError as error:
        errors.add(f"{what}: {error!r}")
        return None
    latencies.add(time.perf_counter() - started)
    if not reply.is_success:
        errors.add(f"{what}: {reply.status_code} {reply.text[:200]}")
        return None
    return reply


async def _reader(
    client: httpx.AsyncClient, seeds: list[str], start: int, phase: Phase, stop: trio.Event
) -> None:
    position = start
    while not stop.is_set():
        asset_id = seeds[position % len(seeds)]
        position += 1
        reply = await _timed(
            phase.asset, phase.errors, f"GET asset {asset_id}", client.get(f"/api/assets/{asset_id}")
        )
        if reply is not None and reply.json().get("id") != asset_id:
            phase.errors.add(f"GET asset {asset_id}: answered {reply.text[:200]}")
        reply = await _timed(phase.thumbnail, phase.errors, f"GET thumbnail {asset_id}",
                             client.get(f"/api/assets/{asset_id}/thumbnail"))  # fmt: skip
        if reply is not None and (
            not reply.content or not reply.headers["content-type"].startswith("image/")
        ):
            phase.errors.add(
                f"GET thumbnail {asset_id}: {reply.headers['content-type']}, {len(reply.content)} bytes"
            )


async def _upload(client: httpx.AsyncClient, content: bytes, name: str, phase: Phase) -> None:
    stamp = iso_utc(time.time())
    fields = {"fileCreatedAt": stamp, "fileModifiedAt": stamp, "isFavorite": "false",
              "deviceAssetId": name, "deviceId": "bench-load"}  # fmt: skip
    request = client.post("/api/assets", data=fields, files={"assetData": (name, content, "image/jpeg")})
    reply = await _timed(phase.upload, phase.errors, f"upload {name}", request)
    asset_id = reply.json()["id"] if reply is not None else None
    status = reply.status_code if reply is not None else 0
    if reply is not None and status != 201:
        phase.errors.add(f"upload {name}: {status} {reply.text[:200]}")
    phase.uploads.append(Upload(name, checksum(content), status, asset_id))


async def _uploader(client: httpx.AsyncClient, make: Callable[[], tuple[str, bytes]], phase: Phase,
                    count: int) -> None:  # fmt: skip
    for _ in range(count):
        name, content = make()
        await _upload(client, content, name, phase)


async def _library_jobs(admin: httpx.AsyncClient) -> tuple[bool, int, int]:
    """The library queue: (idle, jobs completed, jobs failed)."""
    counts = (await admin.get("/api/jobs")).raise_for_status().json()["library"]["jobCounts"]
    return not (counts["active"] or counts["waiting"]), counts["completed"], counts["failed"]


async def _scan(admin: httpx.AsyncClient, target_owner: str, config: LoadConfig, phase: Phase) -> None:
    """A new library over the tree, scanned; returns once the library queue is idle after it. A failed scan, or
    one that did not import the whole tree, is an error."""
    created = await admin.post("/api/libraries", json={"ownerId": target_owner, "importPaths": [str(config.tree)],
                                                       "name": phase.name})  # fmt: skip
    if created.status_code != 201:
        phase.errors.add(f"create library: {created.status_code} {created.text[:200]}")
        return
    phase.library_id = created.json()["id"]
    _, completed, failed = await _library_jobs(admin)
    started = time.perf_counter()
    reply = await admin.post(f"/api/libraries/{phase.library_id}/scan", json={})
    if reply.status_code != 204:
        phase.errors.add(f"scan: {reply.status_code} {reply.text[:200]}")
        return
    with trio.fail_after(config.scan_timeout):
        while True:
            idle, completed_now, failed_now = await _library_jobs(admin)
            if idle and completed_now + failed_now > completed + failed:
                break
            await trio.sleep(0.25)
    phase.scan_seconds = time.perf_counter() - started
    if failed_now > failed:
        phase.errors.add(f"scan of library {phase.library_id} failed (the daemon's log says why)")
    library = (await admin.get(f"/api/libraries/{phase.library_id}")).raise_for_status().json()
    phase.imported = library["assetCount"]
    if phase.imported != config.files:
        phase.errors.add(
            f"scan of library {phase.library_id} imported {phase.imported} of {config.files} files"
        )


class LoadRun:
    """One daemon under load: the quiet reference, then the load rounds, all with the same readers and seeds."""

    def __init__(self, target: Target, config: LoadConfig, owner_id: str, seeds: list[str]) -> None:
        self.target, self.config, self.owner_id, self.seeds = target, config, owner_id, seeds
        self.sampler = MemorySampler(target.pid)
        self.base = base_jpeg(*config.upload_pixels)
        self.made = 0

    def next_upload(self) -> tuple[str, bytes]:
        self.made += 1
        name = f"upload-{self.made:06d}.jpg"
        return name, unique_jpeg(self.base, name)

    @asynccontextmanager
    async def _readers(self, phase: Phase) -> AsyncIterator[tuple[trio.Nursery, trio.Event]]:
        """The reading tasks run while the body runs; the phase's memory is sampled around it."""
        phase.memory.start = self.sampler.reset()
        daemon_cpu, client_cpu = cpu_seconds(self.target.pid), time.process_time()
        phase.started = time.perf_counter()
        stop = trio.Event()
        async with _client(self.target, self.target.user_key, self.config.readers) as client, \
                trio.open_nursery() as nursery:  # fmt: skip
            for number in range(self.config.readers):
                nursery.start_soon(_reader, client, self.seeds, number, phase, stop)
            yield nursery, stop
            stop.set()
        phase.seconds = time.perf_counter() - phase.started
        phase.daemon_cpu = cpu_seconds(self.target.pid) - daemon_cpu
        phase.client_cpu = time.process_time() - client_cpu
        phase.memory.peak = self.sampler.peak
        phase.memory.end = rss_anon_kib(self.target.pid)

    async def quiet(self) -> Phase:
        phase = Phase("quiet")
        async with self._readers(phase):
            await trio.sleep(self.config.seconds)
        phase.memory.settled = phase.memory.end
        return phase

    async def load_round(self, number: int) -> Phase:
        phase = Phase(f"load {number}")
        async with _client(self.target, self.target.admin_key, 2) as admin, \
                _client(self.target, self.target.user_key, self.config.uploads) as uploads:  # fmt: skip
            async with (
                self._readers(phase),
                trio.open_nursery() as work,
            ):  # the readers stop once work is done
                for _ in range(self.config.uploads):
                    work.start_soon(_uploader, uploads, self.next_upload, phase, self.config.uploads_each)
                work.start_soon(_scan, admin, self.owner_id, self.config, phase)
        await trio.sleep(self.config.settle)
        phase.memory.settled = rss_anon_kib(self.target.pid)
        return phase

    async def run(self) -> tuple[Phase, list[Phase]]:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.sampler.run)
            quiet = await self.quiet()
            rounds = [await self.load_round(number + 1) for number in range(self.config.rounds)]
            nursery.cancel_scope.cancel()
        return quiet, rounds


def prepare(daemon: LiveDaemon, config: LoadConfig) -> tuple[str, str, list[str]]:
    """A user whose external path is the tree, their seeded JPEGs with rendered thumbnails, and the media queues
    paused unless `config.media`: (user id, user API key, seeded asset ids)."""
    user, key = daemon.create_user("load@example.com", "Load")
    seeds = []
    with daemon.client() as admin, daemon.client(key) as client:
        reply = admin.put(f"/api/admin/users/{user['id']}", json={"externalPath": str(config.tree)})
        assert reply.status_code == 200, reply.text
        base = base_jpeg(320, 240, seed=1)
        for number in range(config.seeds):
            stamp = iso_utc(time.time())
            name = f"seed-{number:03d}.jpg"
            reply = client.post("/api/assets", data={"fileCreatedAt": stamp, "fileModifiedAt": stamp},
                                files={"assetData": (name, unique_jpeg(base, name), "image/jpeg")})  # fmt: skip
            assert reply.status_code == 201, reply.text
            seeds.append(reply.json()["id"])
        for asset_id in seeds:
            wait_for(lambda asset_id=asset_id: client.get(f"/api/assets/{asset_id}").json()["thumbhash"],
                     f"the thumbnail of {asset_id}", timeout=300, interval=0.2)  # fmt: skip
        if not config.media:
            for queue in MEDIA_QUEUES:
                reply = admin.put(f"/api/jobs/{queue}", json={"command": "pause"})
                assert reply.status_code == 200, reply.text
    return user["id"], key, seeds


def run_load(daemon: LiveDaemon, config: LoadConfig) -> LoadResult:
    """Prepare the user and seeds, then the quiet phase and the load rounds against a running daemon."""
    owner_id, key, seeds = prepare(daemon, config)
    target = Target(daemon.url, daemon.api_key, key, daemon.process.pid)
    quiet, rounds = trio.run(LoadRun(target, config, owner_id, seeds).run)
    return LoadResult(quiet, rounds, seeds, key)


# --- the report -------------------------------------------------------------------------------------------------


def round_growth(result: LoadResult) -> list[int]:
    """How much each load round grew the daemon's settled RssAnon (KiB): round 1 from its start, every later round
    from the round before's settled sample (so nothing between rounds goes uncounted)."""
    growth, before = [], None
    for phase in result.rounds:
        growth.append(phase.memory.settled - (phase.memory.start if before is None else before))
        before = phase.memory.settled
    return growth


def _ratio(loaded: float, quiet: float) -> str:
    return f"{loaded / quiet:7.2f}" if quiet else "      -"


def report(result: LoadResult, config: LoadConfig) -> None:
    quiet = result.quiet
    print(
        f"\nreads: {config.readers} tasks looping GET asset + GET thumbnail over {len(result.seeds)} seeded assets"
        " (ms; ratio = loaded / quiet, same run)"
    )
    print(
        f"{'phase':10} {'request':10} {'count':>7} {'p50':>8} {'p99':>8} {'max':>8} {'p50 x':>7} {'p99 x':>7}"
    )
    for phase in [quiet, *result.rounds]:
        for kind in ("asset", "thumbnail"):
            measured, reference = getattr(phase, kind), getattr(quiet, kind)
            p50, p99 = measured.quantile(0.5), measured.quantile(0.99)
            print(f"{phase.name:10} {kind:10} {measured.count:7} {p50:8.1f} {p99:8.1f} {measured.quantile(1):8.1f} "
                  f"{_ratio(p50, reference.quantile(0.5))} {_ratio(p99, reference.quantile(0.99))}")  # fmt: skip
    print(
        f"\nload rounds: a {config.files:,}-file library scan + {config.uploads} concurrent uploaders x "
        f"{config.uploads_each} uploads (~{len(base_jpeg(*config.upload_pixels)) // 1024} KiB JPEGs) + the readers; "
        f"media queues {'running' if config.media else 'paused'}"
    )
    print(f"{'phase':10} {'seconds':>8} {'scan s':>8} {'files/s':>8} {'imported':>9} {'uploads':>8} "
          f"{'up p50':>8} {'up p99':>8} {'up max':>8} {'errors':>7}")  # fmt: skip
    for phase in result.rounds:
        scan = phase.scan_seconds or 0.0
        print(f"{phase.name:10} {phase.seconds:8.1f} {scan:8.1f} {config.files / scan if scan else 0:8,.0f} "
              f"{phase.imported or 0:9,} {len(phase.uploads):8} {phase.upload.quantile(0.5):8.1f} "
              f"{phase.upload.quantile(0.99):8.1f} {phase.upload.quantile(1):8.1f} {phase.errors.count:7}")  # fmt: skip
    print(
        f"\ndaemon RssAnon (MiB), sampled every {SAMPLE_INTERVAL * 1000:.0f} ms; settled = {config.settle:.0f} s "
        "after the round's scan and clients finished; growth = settled - the round before's settled (round 1: - its "
        "start), and per upload (KiB); CPU % of one core (daemon: its process and threads, not its worker processes)"
    )
    print(f"{'phase':10} {'start':>8} {'peak':>8} {'end':>8} {'settled':>8} {'growth':>8} {'KiB/up':>7} "
          f"{'daemon %':>9} {'client %':>9}")  # fmt: skip
    growths = [quiet.memory.settled - quiet.memory.start, *round_growth(result)]
    for phase, growth in zip([quiet, *result.rounds], growths, strict=True):
        memory, wall = phase.memory, phase.seconds or 1.0
        per_upload = f"{growth / len(phase.uploads):+7.1f}" if phase.uploads else "      -"
        print(f"{phase.name:10} {memory.start / 1024:8.1f} {memory.peak / 1024:8.1f} {memory.end / 1024:8.1f} "
              f"{memory.settled / 1024:8.1f} {growth / 1024:+8.1f} {per_upload} "
              f"{100 * phase.daemon_cpu / wall:9.0f} {100 * phase.client_cpu / wall:9.0f}")  # fmt: skip
    errors = [example for phase in [quiet, *result.rounds] for example in phase.errors.examples]
    total = sum(phase.errors.count for phase in [quiet, *result.rounds])
    print(f"\nerrors: {total}" + "".join(f"\n  {example}" for example in errors))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--files", type=int, default=100_000, help="files in the scanned tree (default 100000)"
    )
    parser.add_argument("--uploads", type=int, default=50, help="concurrent uploading tasks (default 50)")
    parser.add_argument("--uploads-each", type=int, default=40,
                        help="uploads each uploading task makes per round (default 40)")  # fmt: skip
    parser.add_argument("--readers", type=int, default=8, help="concurrent reading tasks (default 8)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="quiet phase length (default 10)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="load rounds (default 3)")
    parser.add_argument("--media", action="store_true", help="keep the media queues running during the load")
    parser.add_argument(
        "--tree", type=Path, default=None, help="the tree to scan (default bench/out/tree-N-N/100)"
    )
    parser.add_argument("--scratch", type=Path, default=ROOT / "bench" / "out",
                        help="where the daemon's data directory goes (default bench/out/; /dev/shm: no disk waits)")  # fmt: skip
    args = parser.parse_args()
    folders = max(1, args.files // 100)
    tree = args.tree or ROOT / "bench" / "out" / f"tree-{args.files}-{folders}"
    build_tree(tree, args.files, folders)
    config = LoadConfig(tree=tree, files=args.files, uploads=args.uploads, uploads_each=args.uploads_each,
                        readers=args.readers, seconds=args.seconds, rounds=args.rounds, media=args.media)  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch, \
            running_daemon(Path(scratch) / "daemon") as daemon:  # fmt: skip
        result = run_load(daemon, config)
        report(result, config)
        if any(phase.errors.count for phase in [result.quiet, *result.rounds]):
            print("\nthe daemon's warnings and errors:")
            for entry in log_entries(daemon.log):
                if entry.get("level") in ("warning", "error", "critical"):
                    print(f"  {entry['time']} {entry['level']} {entry['logger']}: {entry['message']}")
        print("\nstopping the daemon (SIGTERM, then `filmroll check`)...")
    print("stopped cleanly, index consistent")
    if any(phase.errors.count for phase in [result.quiet, *result.rounds]):
        sys.exit(1)


if __name__ == "__main__":
    main()
