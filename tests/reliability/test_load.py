"""Load, as behaviour: concurrent uploads and reads against the real `filmroll serve` while a library scan runs.

The load generator is bench/load.py's (its report, printed here too, shows the latencies: p50/p99 per phase; nothing
here looks at a timing). Every request must succeed, every upload must be a new asset with the checksum of what was
sent, each scan must import the whole tree, and identical rounds after the first must not grow the daemon's memory.
On the way out `running_daemon` stops the daemon with SIGTERM, fails on any error it logged and runs `filmroll
check`.

Memory: every round is the same fixed work (each uploader makes the same number of uploads, each scan imports the
same tree into a new library), so whatever round 1 grows once (code paths run for the first time, allocator
arenas, connections, caches filling) is not grown again, and a round after it may grow RssAnon by no more than
`PER_UPLOAD` per upload and `PER_FILE` per scanned file, plus `NOISE` for the allocator. Something kept per upload
(say its ~400 KB body) or per scanned file grows every round by far more. The per-file allowance also covers a
known, bounded effect: LMDB keeps the freed dirty pages of its largest write transaction for reuse, so the
daemon's memory tracks its largest scan batch, whose pages grow slightly as the index grows.

The fast variant runs in the normal suite; `-m reliability` runs the issue's numbers (100k files, 50 uploaders).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import LoadConfig, LoadResult, report, round_growth, run_load
from bench.scan import build_tree
from tests.e2e.live_daemon import LiveDaemon, record_originals, running_daemon

KIB, MIB = 1, 1024  # RssAnon is sampled in KiB
PER_UPLOAD = 16 * KIB
PER_FILE = 1 * KIB
NOISE = 8 * MIB


def check_load(daemon: LiveDaemon, config: LoadConfig, result: LoadResult) -> None:
    phases = [result.quiet, *result.rounds]
    errors = [example for phase in phases for example in phase.errors.examples]
    assert sum(phase.errors.count for phase in phases) == 0, errors
    for phase in phases:  # the readers really read, in every phase
        assert phase.asset.count > 0 and phase.thumbnail.count > 0, phase.name
    for phase in result.rounds:  # the same fixed work every round
        assert len(phase.uploads) == config.uploads * config.uploads_each, phase.name
        assert phase.imported == config.files, f"{phase.name}: the scan imported {phase.imported} files"
    uploads = [upload for phase in result.rounds for upload in phase.uploads]
    assert {upload.status for upload in uploads} == {201}
    assert len({upload.asset_id for upload in uploads}) == len(uploads)

    with daemon.client(result.user_key) as client:
        for upload in uploads:
            reply = client.get(f"/api/assets/{upload.asset_id}")
            assert reply.status_code == 200, reply.text
            assert (reply.json()["checksum"], reply.json()["originalFileName"]) == (
                upload.checksum,
                upload.name,
            )
        statistics = client.get("/api/assets/statistics").json()
    assert statistics["total"] == len(result.seeds) + len(uploads) + config.files * config.rounds

    assert config.rounds >= 3, "round 1 grows once; the rounds after it are the ones compared"
    for phase, growth in list(zip(result.rounds, round_growth(result), strict=True))[1:]:
        allowed = NOISE + PER_UPLOAD * len(phase.uploads) + PER_FILE * config.files
        assert growth <= allowed, (
            f"RssAnon grew {growth / MIB:.1f} MiB in {phase.name} ({growth / len(phase.uploads):.0f} KiB per upload; "
            f"allowed: {allowed / MIB:.1f} MiB = {NOISE // MIB} MiB + {PER_UPLOAD} KiB x {len(phase.uploads)} "
            f"uploads + {PER_FILE} KiB x {config.files} files); per round: "
            + ", ".join(f"{value / MIB:+.1f}" for value in round_growth(result))
        )


def run_and_check(root: Path, tree: Path, config: LoadConfig) -> None:
    build_tree(tree, config.files, max(1, config.files // 100))
    record_originals(tree)  # (the reliability tree lies outside the test's folder: the guard would not see it)
    with running_daemon(root / "daemon") as daemon:
        result = run_load(daemon, config)
        report(result, config)  # `pytest -s`, or a failure's captured output, shows the latencies and memory
        check_load(daemon, config, result)


def test_uploads_and_reads_during_a_scan(tmp_path: Path) -> None:
    """2k files, 10 concurrent uploaders x 6 uploads of ~400 KB JPEGs per round (so a body kept per upload would
    show in memory), 4 readers, 3 rounds."""
    tree = tmp_path / "tree"
    config = LoadConfig(tree=tree, files=2000, uploads=10, uploads_each=6, readers=4, seconds=1, rounds=3, seeds=4,
                        upload_pixels=(1280, 960), settle=1)  # fmt: skip
    run_and_check(tmp_path, tree, config)


@pytest.mark.reliability
def test_the_issues_load(tmp_path: Path) -> None:
    """Issue 10's numbers: a 100k-file scan, 50 concurrent uploaders x 40 uploads, 8 readers, 3 rounds (the tree is
    bench/scan.py's, built once under bench/out/ and shared with the benchmarks)."""
    tree = Path(__file__).resolve().parents[2] / "bench" / "out" / "tree-100000-1000"
    config = LoadConfig(
        tree=tree, files=100_000, uploads=50, uploads_each=40, readers=8, seconds=10, rounds=3
    )
    run_and_check(tmp_path, tree, config)
