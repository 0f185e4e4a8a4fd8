"""The metadataExtraction worker: content hashes for new originals, confined opens, failures that name the file."""

import hashlib
import logging
import os

import trio

from daemon import job_queue
from tests.library_helpers import write


async def drain(world) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(world.services.metadata.run)
        with trio.fail_after(20):
            await world.services.metadata.idle()
        nursery.cancel_scope.cancel()


async def test_new_originals_get_their_content_hash(world):
    write(world.external / "p" / "a.jpg", b"alpha")
    library = world.library(world.external / "p")
    await world.scan(library)
    await drain(world)
    (asset,) = world.assets(library).values()
    assert asset.content_sha1 == hashlib.sha1(b"alpha").digest()
    assert asset.metadata_extracted_at is None  # real metadata is read by the media pipeline, not yet
    with world.services.index.read() as txn:
        assert job_queue.waiting(txn, job_queue.METADATA) == 0


async def test_a_vanished_file_fails_with_its_name_after_retries(world, caplog):
    write(world.external / "p" / "gone.jpg", b"x")
    library = world.library(world.external / "p")
    await world.scan(library)
    os.remove(world.external / "p" / "gone.jpg")
    await drain(world)
    assert world.services.metadata.stats.failed == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("gone.jpg" in w and "No such file" in w for w in warnings)


async def test_a_link_swapped_outside_the_external_path_is_not_read(world, tmp_path):
    write(world.external / "p" / "a.jpg", b"inside")
    write(tmp_path / "secret.jpg", b"secret")
    library = world.library(world.external / "p")
    await world.scan(library)
    os.remove(world.external / "p" / "a.jpg")
    os.symlink(tmp_path / "secret.jpg", world.external / "p" / "a.jpg")  # swapped after the crawl
    await drain(world)
    (asset,) = world.assets(library).values()
    assert asset.content_sha1 is None and world.services.metadata.stats.failed == 1


async def test_an_owner_without_external_path_is_refused(world, services):
    write(world.external / "p" / "a.jpg", b"x")
    library = world.library(world.external / "p")
    await world.scan(library)
    services.users.update(world.user.id, {"external_path": ""}, as_admin=True)
    await drain(world)
    (asset,) = world.assets(library).values()
    assert asset.content_sha1 is None and world.services.metadata.stats.failed == 1
