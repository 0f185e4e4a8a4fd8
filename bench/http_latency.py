"""HTTP request overhead of filmroll's app vs a bare ASGI app under the same Hypercorn, same process, same run.

Both servers listen on 127.0.0.1:0. A single sequential client (keep-alive) sends N requests per endpoint after a
warm-up; we report median and p99 latency and the ratio to the bare app.

`--lists`: the list responses Home Assistant's Immich integration polls, whose cost grows with the data. The
user gets `--albums` albums of `--members` assets each (written straight into the index: no files, no media
jobs; every 50th member trashed), then `--runs` sequential requests of `GET /api/albums` and of
`POST /api/search/metadata` (`--size` items) are timed after two warm-ups, beside `GET /api/server/ping` as the
same-run reference.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from daemon import album_index, libraries
from daemon import assets as asset_index
from daemon.config import load_settings
from daemon.index import Index, Txn
from daemon.records import Album, Asset
from daemon.serve import Running, serve


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


async def sign_up_with_key(client: httpx.AsyncClient) -> tuple[dict, dict[str, str]]:
    """The first user (an admin) and headers with an API key of theirs; the client keeps no session cookie."""
    admin = {"email": "bench@example.com", "password": "bench", "name": "Bench"}
    user = (await client.post("/api/auth/admin-sign-up", json=admin)).json()
    token = (await client.post("/api/auth/login", json=admin)).json()["accessToken"]
    key = (await client.post("/api/api-keys", json={}, headers={"Authorization": f"Bearer {token}"})).json()
    client.cookies.clear()
    return user, {"x-api-key": key["secret"]}


@asynccontextmanager
async def daemon() -> AsyncIterator[tuple[Running, trio.Nursery, trio.Event]]:
    """A real `filmroll serve` on 127.0.0.1 over a fresh data directory, stopped when the block ends."""
    with tempfile.TemporaryDirectory() as data:
        settings = load_settings(
            None, {"data_dir": data, "listen": "127.0.0.1:0", "log_level": "warning"}, {}
        )
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            running = await nursery.start(functools.partial(serve, settings, stop=stop))
            yield running, nursery, stop
            stop.set()


async def main(count: int) -> None:
    async with daemon() as (running, nursery, stop):
        config = Config()
        config.bind = ["127.0.0.1:0"]
        bare_urls = await nursery.start(
            functools.partial(hypercorn_serve, bare_app, config, shutdown_trigger=stop.wait)
        )
        async with httpx.AsyncClient(base_url=running.urls[0]) as client:
            _, headers = await sign_up_with_key(client)
            ping = await timings(client, "/api/server/ping", count, {})
            me = await timings(client, "/api/users/me", count, headers)
        async with httpx.AsyncClient(base_url=bare_urls[0]) as client:
            bare = await timings(client, "/", count, {})
    reference, _ = summary(bare)
    print(f"{'endpoint':34} {'median µs':>10} {'p99 µs':>10} {'x bare':>8}")
    for name, samples in (("bare ASGI app (reference)", bare), ("GET /api/server/ping", ping),
                          ("GET /api/users/me (x-api-key)", me)):  # fmt: skip
        median, p99 = summary(samples)
        print(f"{name:34} {median:10.0f} {p99:10.0f} {median / reference:8.2f}")


def populate(index: Index, owner_id: uuid.UUID, albums: int, members: int) -> None:
    """`albums` albums of `members` distinct assets each in the owner's upload library, every 50th trashed;
    capture times one hour apart, so they spread over a year or two of the timeline."""
    with index.read() as txn:
        library = next(lib for lib in libraries.libraries_of(txn, owner_id) if lib.type == "UPLOAD")
    start = datetime(2022, 1, 1, tzinfo=UTC)
    for number in range(albums):
        now = datetime.now(UTC)
        album = Album(
            id=uuid.uuid4(), owner_id=owner_id, name=f"Album {number}", created_at=now, updated_at=now
        )
        batch = []
        for member in range(members):
            serial = number * members + member
            taken = start + timedelta(hours=serial)
            content = hashlib.sha1(serial.to_bytes(8, "big"), usedforsecurity=False).digest()
            batch.append(Asset(
                id=uuid.uuid4(), owner_id=owner_id, library_id=library.id, type="IMAGE",
                original_path=f"/upload/{owner_id}/{serial:08d}.jpg".encode(), file_size=1000 + serial,
                file_mtime_ns=int(taken.timestamp()) * 1_000_000_000, file_created_at=taken,
                local_date_time=taken.replace(tzinfo=None), created_at=now, updated_at=now,
                trashed_at=now if member % 50 == 49 else None, content_sha1=content,
                original_file_name=f"IMG_{serial:08d}.jpg",
            ))  # fmt: skip

        def work(txn: Txn, album: Album = album, batch: list[Asset] = batch) -> None:
            album_index.put(txn, album)
            asset_index.insert_many(txn, batch)
            for asset in batch:
                if asset.trashed_at is None:
                    asset_index.add_checksum(txn, asset)
                album_index.add(txn, album.id, asset.id, album.created_at)

        index.write(work)


async def request_timings(client: httpx.AsyncClient, method: str, path: str, runs: int, headers: dict,
                          body: object = None) -> list[float]:  # fmt: skip
    for _ in range(2):
        (await client.request(method, path, headers=headers, json=body)).raise_for_status()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        reply = await client.request(method, path, headers=headers, json=body)
        samples.append(time.perf_counter() - start)
        reply.raise_for_status()
    return samples


async def lists(runs: int, albums: int, members: int, size: int) -> None:
    async with daemon() as (running, _, _):
        async with httpx.AsyncClient(base_url=running.urls[0], timeout=120) as client:
            user, headers = await sign_up_with_key(client)
            populate(running.services.index, uuid.UUID(user["id"]), albums, members)
            listed = (await client.get("/api/albums", headers=headers)).json()
            assert len(listed) == albums and listed[0]["assetCount"] == members - members // 50, listed[0]
            search = {"size": size, "order": "desc"}
            found = (await client.post("/api/search/metadata", headers=headers, json=search)).json()
            assert found["assets"]["count"] == min(size, albums * (members - members // 50))
            results = [
                ("GET /api/server/ping (reference)",
                 await request_timings(client, "GET", "/api/server/ping", runs * 10, {})),
                (f"GET /api/albums ({albums} x {members})",
                 await request_timings(client, "GET", "/api/albums", runs, headers)),
                (f"POST /api/search/metadata (size {size})",
                 await request_timings(client, "POST", "/api/search/metadata", runs, headers, search)),
                (f"GET /api/albums/{{id}} ({members})",
                 await request_timings(client, "GET", f"/api/albums/{listed[0]['id']}", runs, headers)),
            ]  # fmt: skip
    reference = statistics.median(results[0][1])
    print(f"{'request':40} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'x ping':>8}")
    for name, samples in results:
        median = statistics.median(samples)
        print(f"{name:40} {median * 1e3:10.1f} {min(samples) * 1e3:8.1f} {max(samples) * 1e3:8.1f} "
              f"{median / reference:8.0f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--lists", action="store_true", help="time the list responses instead (see above)")
    parser.add_argument("--runs", type=int, default=15, help="--lists: timed requests per endpoint")
    parser.add_argument("--albums", type=int, default=20)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--size", type=int, default=1000, help="--lists: the search page size")
    arguments = parser.parse_args()
    if arguments.lists:
        trio.run(lists, arguments.runs, arguments.albums, arguments.members, arguments.size)
    else:
        trio.run(main, arguments.requests)
