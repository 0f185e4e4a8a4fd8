"""`GET /metrics`: Prometheus text that prometheus_client's own parser reads, aggregates only, public by default,
admin-only or off by configuration; and `/api/server/ping` stays the cheap liveness check."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from daemon import metrics
from tests.conftest import ADMIN, Daemon
from tests.library_helpers import upload_asset


async def scrape(daemon: Daemon, **headers: str) -> dict[str, dict[tuple, float]]:
    """{metric sample name: {sorted label items: value}}"""
    async with daemon.client(**headers) as client:
        reply = await client.get("/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


async def test_scrape_parses_and_counts_assets_by_type_and_state(daemon, admin):
    me = daemon.services.users.find_by_email(ADMIN["email"])
    kept = upload_asset(daemon.services, me, b"\xff\xd8 one", "one.jpg")
    trashed = upload_asset(daemon.services, me, b"\xff\xd8 two", "two.jpg")
    reply = await admin.client.request("DELETE", "/api/assets", json={"ids": [str(trashed.id)]})
    assert reply.status_code == 204, reply.text
    samples = await scrape(daemon)
    assert value(samples, "filmroll_assets", type="image", state="online") == 1
    assert value(samples, "filmroll_assets", type="image", state="trashed") == 1
    assert value(samples, "filmroll_assets", type="video", state="offline") == 0
    assert value(samples, "filmroll_users") == 1
    assert value(samples, "filmroll_libraries", type="upload") == 1
    assert value(samples, "filmroll_libraries", type="external") == 0
    for queue in ("library", "metadataExtraction", "thumbnailGeneration", "videoConversion"):
        assert value(samples, "filmroll_jobs", queue=queue, state="waiting") >= 0
        assert value(samples, "filmroll_jobs_failed", queue=queue) == 0
        assert (("queue", queue),) in samples["filmroll_jobs_completed_total"]
    assert value(samples, "filmroll_index_bytes") > 0
    assert "process_resident_memory_bytes" in samples
    # nothing identifies anyone: no label value is an id, an email, a name or a path
    labels = {v for series in samples.values() for key in series for _, v in key}
    assert not any(str(kept.id) in v or "@" in v or "/upload" in v or "Admin" in v for v in labels)


async def test_http_latency_by_route_template(daemon, admin):
    async with daemon.client() as client:
        assert (await client.get("/api/server/ping")).json() == {"res": "pong"}
        assert (await client.get("/api/assets/00000000-0000-4000-8000-000000000000")).status_code == 401
        assert (await client.get("/no/such/route")).status_code == 404
    samples = await scrape(daemon)
    counts = samples["filmroll_http_request_duration_seconds_count"]
    assert counts[(("method", "GET"), ("route", "/api/server/ping"), ("status", "200"))] >= 1
    routes = {dict(key)["route"] for key in counts}
    assert "/api/assets/<uuid:asset_id>" in routes or any("<" in route for route in routes)
    assert "unmatched" in routes and not any("00000000" in route for route in routes)


async def test_library_job_and_fuse_instruments_are_exported(daemon):
    metrics.FUSE_OPERATIONS.labels("getattr").inc()
    metrics.FUSE_ERRORS.labels("lookup", "ENOENT").inc()
    metrics.LIBRARY_JOB_SECONDS.labels("scan").observe(1.5)
    samples = await scrape(daemon)
    assert value(samples, "filmroll_fuse_operations_total", operation="getattr") >= 1
    assert value(samples, "filmroll_fuse_errors_total", operation="lookup", errno="ENOENT") >= 1
    assert value(samples, "filmroll_library_job_duration_seconds_count", kind="scan") >= 1


async def test_private_metrics_need_an_admin_and_disabled_ones_are_gone(daemon, admin, user):
    daemon.settings.metrics.public = False
    try:
        async with daemon.client() as anonymous:
            assert (await anonymous.get("/metrics")).status_code == 401
        assert (await user.client.get("/metrics")).status_code == 403
        assert (await admin.client.get("/metrics")).status_code == 200
        daemon.settings.metrics.enabled = False
        assert (await admin.client.get("/metrics")).status_code == 404
    finally:
        daemon.settings.metrics.public = True
        daemon.settings.metrics.enabled = True


async def test_ping_stays_cheap_and_public(daemon):
    async with httpx.AsyncClient(base_url=daemon.url, timeout=10) as client:
        reply = await client.get("/api/server/ping")
    assert reply.json() == {"res": "pong"}
