"""Load, as behaviour: concurrent uploads and reads against the real `filmroll serve` while a library scan runs.

The load generator is bench/load.py's (the benchmark prints its latencies; nothing here looks at a timing). Every
request must succeed, every upload must be a new asset with the checksum of what was sent, each scan must import
the whole tree, and a second identical round must not grow the daemon's memory the way the first did. On the way
out `running_daemon` stops the daemon with SIGTERM, fails on any error it logged and runs `filmroll check`.

The fast variant runs in the normal suite; `-m reliability` runs the issue's numbers (100k files, 50 uploads).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import LoadConfig, LoadResult, run_load
from bench.scan import build_tree
from tests.e2e.live_daemon import LiveDaemon, running_daemon

MIB = 1024  # RssAnon is sampled in KiB
ONE_OFF_GROWTH_MARGIN = 16 * MIB


def check_load(daemon: LiveDaemon, config: LoadConfig, result: LoadResult) -> None:
    phases = [result.quiet, *result.rounds]
    errors = [example for phase in phases for example in phase.errors.examples]
    assert sum(phase.errors.count for phase in phases) == 0, errors
    for phase in phases:  # the readers really read, in every phase
        assert phase.asset.count > 0 and phase.thumbnail.count > 0, phase.name
    uploads = [upload for phase in result.rounds for upload in phase.uploads]
    assert len(uploads) >= config.uploads * config.rounds  # every uploader uploaded at least once per round
    assert {upload.status for upload in uploads} == {201}
    assert len({upload.asset_id for upload in uploads}) == len(uploads)
    for phase in result.rounds:
        assert phase.imported == config.files, f"{phase.name}: the scan imported {phase.imported} files"

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

    # Round 1 includes one-off growth (code paths run for the first time, allocator arenas, connections). The
    # identical round 2 must add little: memory kept per upload or per scanned file would grow it as much again.
    first, second = result.rounds[0].memory, result.rounds[1].memory
    first_growth, second_growth = first.settled - first.start, second.settled - first.settled
    assert second_growth <= first_growth / 2 + ONE_OFF_GROWTH_MARGIN, (
        f"RssAnon grew {first_growth / MIB:.1f} MiB in round 1 and {second_growth / MIB:.1f} MiB more in the "
        "identical round 2"
    )


def run_and_check(root: Path, tree: Path, config: LoadConfig) -> None:
    build_tree(tree, config.files, max(1, config.files // 100))
    with running_daemon(root / "daemon") as daemon:
        check_load(daemon, config, run_load(daemon, config))


def test_uploads_and_reads_during_a_scan(tmp_path: Path) -> None:
    """2k files, 10 concurrent uploaders of ~400 KB JPEGs (so a body kept per upload would show in memory), 4
    readers, rounds of at least 2 s."""
    tree = tmp_path / "tree"
    config = LoadConfig(tree=tree, files=2000, uploads=10, readers=4, seconds=2, rounds=2, seeds=4,
                        upload_pixels=(1280, 960), settle=1)  # fmt: skip
    run_and_check(tmp_path, tree, config)


@pytest.mark.reliability
def test_the_issues_load(tmp_path: Path) -> None:
    """Issue 10's numbers: a 100k-file scan, 50 concurrent uploaders, 8 readers (the tree is bench/scan.py's,
    built once under bench/out/ and shared with the benchmarks)."""
    tree = Path(__file__).resolve().parents[2] / "bench" / "out" / "tree-100000-1000"
    config = LoadConfig(tree=tree, files=100_000, uploads=50, readers=8, seconds=10, rounds=2)
    run_and_check(tmp_path, tree, config)
