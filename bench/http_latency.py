"""HTTP request overhead of filmroll's app vs a bare ASGI app under the same Hypercorn, same process, same run.

Both servers listen on 127.0.0.1:0. A single sequential client (keep-alive) sends N requests per endpoint after a
warm-up; we report median and p99 latency and the ratio to the bare app.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from daemon.config import load_settings
from daemon.serve import serve


async def bare_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b'{"res":"pong"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json; charset=utf-8")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def timings(client: httpx.AsyncClient, path: str, count: int, headers: dict) -> list[float]:
    for _ in range(50):
        (await client.get(path, headers=headers)).raise_for_status()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        reply = await client.get(path, headers=headers)
        samples.append(time.perf_counter() - start)
        reply.raise_for_status()
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e6, ordered[int(len(ordered) * 0.99) - 1] * 1e6


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        settings = load_settings(
            None, {"data_dir": data, "listen": "127.0.0.1:0", "log_level": "warning"}, {}
        )
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            running = await nursery.start(functools.partial(serve, settings, stop=stop))
            config = Config()
            config.bind = ["127.0.0.1:0"]
            bare_urls = await nursery.start(
                functools.partial(hypercorn_serve, bare_app, config, shutdown_trigger=stop.wait)
            )
            async with httpx.AsyncClient(base_url=running.urls[0]) as client:
                admin = {"email": "bench@example.com", "password": "bench", "name": "Bench"}
                await client.post("/api/auth/admin-sign-up", json=admin)
                token = (await client.post("/api/auth/login", json=admin)).json()["accessToken"]
                key = (
                    await client.post("/api/api-keys", json={}, headers={"Authorization": f"Bearer {token}"})
                ).json()
                client.cookies.clear()
                ping = await timings(client, "/api/server/ping", count, {})
                me = await timings(client, "/api/users/me", count, {"x-api-key": key["secret"]})
            async with httpx.AsyncClient(base_url=bare_urls[0]) as client:
                bare = await timings(client, "/", count, {})
            stop.set()
    reference, _ = summary(bare)
    print(f"{'endpoint':34} {'median µs':>10} {'p99 µs':>10} {'x bare':>8}")
    for name, samples in (("bare ASGI app (reference)", bare), ("GET /api/server/ping", ping),
                          ("GET /api/users/me (x-api-key)", me)):  # fmt: skip
        median, p99 = summary(samples)
        print(f"{name:34} {median:10.0f} {p99:10.0f} {median / reference:8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    trio.run(main, parser.parse_args().requests)
