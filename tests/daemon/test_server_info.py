"""`/api/server/statistics` counts every non-trashed asset per user (external ones too), from the timeline."""

from __future__ import annotations

from daemon import assets as asset_index
from daemon import server_info
from daemon.access import Principal
from tests.library_helpers import NOW, upload_asset, write


async def test_statistics_count_photos_videos_and_bytes_but_not_the_trash(world, services):
    admin = services.users.create(email="root@example.com", password="pw", name="Root", is_admin=True)
    upload_asset(services, world.user, b"12345", "a.jpg")
    trashed = upload_asset(services, world.user, b"1234567", "b.jpg")
    services.index.write(lambda txn: asset_index.update(txn, trashed, trashed_at=NOW))
    write(world.external / "v" / "clip.mp4", b"0123456789")
    await world.scan(world.library(world.external / "v"))

    usage = {u.user_name: u for u in server_info.statistics(services.index, Principal(user=admin))}
    mine = usage["U"]
    assert (mine.photos, mine.videos, mine.usage_photos, mine.usage_videos) == (1, 1, 5, 10)
    assert (usage["Root"].photos, usage["Root"].videos) == (0, 0)
