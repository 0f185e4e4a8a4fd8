import os
import uuid

import msgspec
import pytest

from daemon.errors import IndexUnusable
from daemon.index import META, USER_BY_EMAIL, USERS, Index, Txn
from daemon.records import User
from daemon.timeutil import utc_now


def make_user(email: str = "a@example.com") -> User:
    now = utc_now()
    return User(
        id=uuid.uuid4(), email=email, name="A", password_hash="x",
        created_at=now, updated_at=now, profile_changed_at=now,
    )  # fmt: skip


def test_records_round_trip_with_their_types(tmp_path):
    user = make_user()
    with Index(tmp_path / "index") as index:
        index.write(lambda txn: txn.put(USERS, user.id.bytes, user))
        with index.read() as txn:
            stored = txn.get(USERS, user.id.bytes)
    assert stored == user
    assert stored.created_at.tzinfo is not None


def test_a_failing_write_leaves_nothing_behind(tmp_path):
    user = make_user()

    def work(txn: Txn) -> None:
        txn.put(USERS, user.id.bytes, user)
        raise RuntimeError("boom")

    with Index(tmp_path / "index") as index:
        with pytest.raises(RuntimeError):
            index.write(work)
        with index.read() as txn:
            assert txn.get(USERS, user.id.bytes) is None


def test_write_refuses_async_functions(tmp_path):
    async def work(txn):  # pragma: no cover - never runs
        return None

    with Index(tmp_path / "index") as index, pytest.raises(TypeError, match="must not span an await"):
        index.write(work)


def test_map_grows_instead_of_failing_when_full(tmp_path):
    with Index(tmp_path / "index", map_size=64 * 1024) as index:
        start = index.map_size
        blob = b"x" * 4000
        for batch in range(20):
            index.write(
                lambda txn, b=batch: [txn.put(USER_BY_EMAIL, f"{b}-{i}".encode(), blob) for i in range(50)]
            )
        assert index.map_size > start
        with index.read() as txn:
            assert txn.count(USER_BY_EMAIL) == 1000


def test_prefix_iteration(tmp_path):
    with Index(tmp_path / "index") as index:
        index.write(lambda txn: [txn.put(USER_BY_EMAIL, k, b"v") for k in (b"a1", b"a2", b"b1")])
        with index.read() as txn:
            assert [k for k, _ in txn.items(USER_BY_EMAIL, b"a")] == [b"a1", b"a2"]
            assert [k for k, _ in txn.items(USER_BY_EMAIL, b"c")] == []


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    with Index(tmp_path / "index", schema_version=5):
        pass
    with pytest.raises(IndexUnusable, match="schema version 5, newer than this filmroll understands"):
        Index(tmp_path / "index", schema_version=1)


def test_older_schema_is_migrated_step_by_step(tmp_path):
    with Index(tmp_path / "index", schema_version=1):
        pass
    ran = []

    def to_2(txn: Txn) -> None:
        ran.append(2)
        txn.put(USER_BY_EMAIL, b"migrated", b"yes")

    def to_3(txn: Txn) -> None:
        ran.append(3)

    with pytest.raises(IndexUnusable, match="start the daemon once to migrate"):
        Index(tmp_path / "index", schema_version=3, migrations={1: to_2, 2: to_3})
    assert ran == []
    with Index(tmp_path / "index", schema_version=3, migrations={1: to_2, 2: to_3}, migrate=True) as index:
        assert index.stored_schema_version() == 3
        with index.read() as txn:
            assert txn.get(USER_BY_EMAIL, b"migrated") == b"yes"
    assert ran == [2, 3]


def test_missing_migration_is_refused(tmp_path):
    with Index(tmp_path / "index", schema_version=1):
        pass
    with pytest.raises(IndexUnusable, match="No migration from index schema version 1 to 2"):
        Index(tmp_path / "index", schema_version=2, migrations={}, migrate=True)


def test_readonly_open_of_a_missing_index_names_the_path(tmp_path):
    with pytest.raises(IndexUnusable, match="No index at"):
        Index(tmp_path / "nothing", readonly=True)


def test_schema_version_is_recorded(tmp_path):
    with Index(tmp_path / "index") as index, index.read() as txn:
        assert msgspec.msgpack.decode(txn.get(META, b"schema_version")) == index.schema_version


def test_growth_under_an_open_reader_is_refused_clearly(tmp_path):
    with Index(tmp_path / "index", map_size=64 * 1024) as index:
        blob = b"x" * 4000
        with index.read(), pytest.raises(IndexUnusable, match="cannot grow while a read transaction is open"):
            for batch in range(20):
                index.write(
                    lambda txn, b=batch: [
                        txn.put(USER_BY_EMAIL, f"{b}-{i}".encode(), blob) for i in range(50)
                    ]
                )
        index.write(
            lambda txn: txn.put(USER_BY_EMAIL, b"after", blob)
        )  # usable again once the reader is gone


def test_growth_by_another_process_is_adopted(tmp_path):
    import subprocess
    import sys

    with Index(tmp_path / "index", map_size=64 * 1024) as index:
        code = (
            "from daemon.index import Index, USER_BY_EMAIL\n"
            f"with Index({str(tmp_path / 'index')!r}, map_size=64 * 1024) as other:\n"
            "    for b in range(20):\n"
            "        fill = lambda txn, b=b: [txn.put(USER_BY_EMAIL, f'{b}-{i}'.encode(), b'x' * 4000)\n"
            "                                 for i in range(50)]\n"
            "        other.write(fill)\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        index.write(lambda txn: txn.put(USER_BY_EMAIL, b"mine", b"y" * 4000))
        with index.read() as txn:
            assert txn.count(USER_BY_EMAIL) == 1001


def test_a_failed_open_can_be_retried_in_the_same_process(tmp_path):
    with Index(tmp_path / "index", schema_version=5):
        pass
    for _ in range(2):
        with pytest.raises(IndexUnusable):
            Index(tmp_path / "index", schema_version=1)


def test_schema_1_assets_get_their_media_work_queued(tmp_path):
    import uuid
    from datetime import UTC, datetime

    from daemon.index import ASSETS, MIGRATIONS, PENDING_METADATA, PENDING_THUMBNAILS, PENDING_VIDEO
    from daemon.records import Asset

    now = datetime.now(UTC)
    made = {}
    with Index(tmp_path / "index", schema_version=1, migrations={}) as old:
        for kind in ("IMAGE", "VIDEO"):
            asset = Asset(id=uuid.uuid4(), owner_id=uuid.uuid4(), library_id=uuid.uuid4(), type=kind,
                          original_path=b"/p/x", file_size=1, file_mtime_ns=0, file_created_at=now,
                          local_date_time=now, created_at=now, updated_at=now)  # fmt: skip
            made[kind] = asset.id.bytes
            old.write(lambda txn, a=asset: txn.put(ASSETS, a.id.bytes, a))
    with Index(tmp_path / "index", migrations=MIGRATIONS, migrate=True) as index, index.read() as txn:
        assert {key for key, _ in txn.items(PENDING_METADATA)} == set(made.values())
        assert {key for key, _ in txn.items(PENDING_THUMBNAILS)} == set(made.values())
        assert [key for key, _ in txn.items(PENDING_VIDEO)] == [made["VIDEO"]]


def test_schema_2_assets_get_their_timeline_entries(tmp_path):
    import uuid
    from datetime import UTC, datetime

    from daemon import assets as asset_index
    from daemon.index import ASSETS, MIGRATIONS
    from daemon.records import Asset

    now = datetime(2020, 5, 6, 7, 8, 9, tzinfo=UTC)
    owner = uuid.uuid4()
    with Index(tmp_path / "index", schema_version=2, migrations={}) as old:
        asset = Asset(id=uuid.uuid4(), owner_id=owner, library_id=uuid.uuid4(), type="VIDEO",
                      original_path=b"/p/x", file_size=1, file_mtime_ns=0, file_created_at=now,
                      local_date_time=now, created_at=now, updated_at=now, is_favorite=True)  # fmt: skip
        old.write(lambda txn: txn.put(ASSETS, asset.id.bytes, asset))
    with Index(tmp_path / "index", migrations=MIGRATIONS, migrate=True) as index, index.read() as txn:
        [entry] = asset_index.timeline_of(txn, owner)
        assert entry.asset_id == asset.id and entry.is_video and entry.is_favorite and not entry.is_trashed
        assert entry.local_micros == int(now.timestamp()) * 1_000_000 and entry.visibility == "timeline"


def test_asset_updates_keep_timeline_and_checksum_entries_in_step(tmp_path):
    import uuid
    from datetime import UTC, datetime, timedelta

    from daemon import assets as asset_index
    from daemon.index import ASSET_BY_CHECKSUM, LIBRARIES, TIMELINE
    from daemon.records import Asset, Library

    now = datetime(2020, 5, 6, tzinfo=UTC)
    owner, other = uuid.uuid4(), uuid.uuid4()
    library = Library(
        id=uuid.uuid4(), owner_id=owner, type="UPLOAD", name="Up", created_at=now, updated_at=now
    )
    asset = Asset(id=uuid.uuid4(), owner_id=owner, library_id=library.id, type="IMAGE",
                  original_path=b"/u/x.jpg", file_size=1, file_mtime_ns=0, file_created_at=now,
                  local_date_time=now, created_at=now, updated_at=now, content_sha1=b"s" * 20)  # fmt: skip
    with Index(tmp_path / "index") as index:

        def create(txn):
            txn.put(LIBRARIES, library.id.bytes, library)
            asset_index.insert_many(txn, [asset])
            asset_index.add_checksum(txn, asset)

        index.write(create)
        later = now + timedelta(days=40)
        moved = index.write(lambda txn: asset_index.update(
            txn, asset, local_date_time=later, owner_id=other, visibility="archive", trashed_at=later))  # fmt: skip
        with index.read() as txn:
            assert list(asset_index.timeline_of(txn, owner)) == []
            [entry] = asset_index.timeline_of(txn, other)
            assert entry.visibility == "archive" and entry.is_trashed
            assert asset_index.by_checksum(txn, other, b"s" * 20) == moved
            assert asset_index.by_checksum(txn, owner, b"s" * 20) is None
        index.write(lambda txn: asset_index.remove(txn, moved))
        with index.read() as txn:
            assert txn.count(TIMELINE) == 0 and txn.count(ASSET_BY_CHECKSUM) == 0


def test_library_tallies_follow_every_change(tmp_path):
    import uuid
    from datetime import UTC, datetime

    from daemon import assets as asset_index
    from daemon.check import check_index
    from daemon.index import LIBRARIES, LIBRARY_TALLIES
    from daemon.records import Asset, Library

    now = datetime(2020, 5, 6, tzinfo=UTC)
    owner = uuid.uuid4()
    one, two = (Library(id=uuid.uuid4(), owner_id=owner, type="UPLOAD", name=n, created_at=now, updated_at=now)
                for n in ("one", "two"))  # fmt: skip

    def asset(name: bytes, kind: str, size: int) -> Asset:
        return Asset(id=uuid.uuid4(), owner_id=owner, library_id=one.id, type=kind, original_path=name,
                     file_size=size, file_mtime_ns=0, file_created_at=now, local_date_time=now, created_at=now,
                     updated_at=now)  # fmt: skip

    photo, video, other = asset(b"/a.jpg", "IMAGE", 10), asset(b"/b.mp4", "VIDEO", 200), asset(b"/c.jpg", "IMAGE", 3)
    with Index(tmp_path / "index") as index:

        def tally(library):
            with index.read() as txn:
                t = asset_index.tally_of(txn, library.id)
            assert [p for p in check_index(index) if "library_tallies" in p] == []  # (no users here)
            return (t.photos, t.videos, t.usage)

        index.write(lambda txn: [txn.put(LIBRARIES, lib.id.bytes, lib) for lib in (one, two)])
        index.write(lambda txn: asset_index.insert_many(txn, [photo, video, other]))
        assert tally(one) == (2, 1, 213) and tally(two) == (0, 0, 0)
        photo = index.write(lambda txn: asset_index.update(txn, photo, trashed_at=now))  # trashed: not counted
        assert tally(one) == (1, 1, 203)
        video = index.write(lambda txn: asset_index.update(txn, video, is_offline=True, file_size=250))
        assert tally(one) == (1, 1, 253)  # offline still counts (§2.11)
        other = index.write(lambda txn: asset_index.update(txn, other, library_id=two.id))
        assert tally(one) == (0, 1, 250) and tally(two) == (1, 0, 3)
        index.write(lambda txn: [asset_index.remove(txn, a) for a in (photo, video, other)])
        assert tally(one) == tally(two) == (0, 0, 0)
        with index.read() as txn:
            assert txn.count(LIBRARY_TALLIES) == 0  # an empty tally is no entry



def test_opening_a_version_3_index_fills_tallies_and_moves_inexact_timeline_keys(tmp_path):
    """A real upgrade: an index stored at version 3 (no tallies; timeline keys through a float timestamp) opened
    with `migrate=True`."""
    import uuid
    from datetime import UTC, datetime, timedelta

    import msgspec

    from daemon import assets as asset_index
    from daemon.check import check_index
    from daemon.index import LIBRARIES, LIBRARY_TALLIES, META, TIMELINE
    from daemon.records import Asset, Library

    now = datetime(2020, 5, 6, tzinfo=UTC)
    owner = uuid.uuid4()
    one, two = (Library(id=uuid.uuid4(), owner_id=owner, type="UPLOAD", name=n, created_at=now, updated_at=now)
                for n in ("one", "two"))  # fmt: skip

    def asset(library, kind, size, taken=now, trashed=None) -> Asset:
        return Asset(id=uuid.uuid4(), owner_id=owner, library_id=library.id, type=kind, file_size=size,
                     original_path=os.urandom(8).hex().encode(), file_mtime_ns=0, file_created_at=taken,
                     local_date_time=taken, created_at=now, updated_at=now, trashed_at=trashed)  # fmt: skip

    before_1970 = datetime(1969, 12, 31, 23, 59, 59, 500000)  # naive local time, half a second before 1970
    end_of_time = datetime(9999, 12, 31, 23, 59, 59, 999990)
    kept = [asset(one, "IMAGE", 10), asset(one, "VIDEO", 200), asset(two, "IMAGE", 3, taken=before_1970),
            asset(two, "IMAGE", 5, taken=end_of_time)]  # fmt: skip
    trashed = asset(one, "IMAGE", 1000, trashed=now)
    path = tmp_path / "index"
    with Index(path) as index:

        def as_version_3(txn):
            for library in (one, two):
                txn.put(LIBRARIES, library.id.bytes, library)
            asset_index.insert_many(txn, [*kept, trashed])
            for key, _ in list(txn.raw_items(LIBRARY_TALLIES)):
                txn.delete(LIBRARY_TALLIES, key)
            for moved in kept[2:]:  # the keys version 3 gave them
                key = asset_index.timeline_key(moved)
                seconds = moved.local_date_time.replace(tzinfo=UTC).timestamp()
                old = key[:16] + (int(seconds) * 1_000_000 + moved.local_date_time.microsecond + (1 << 63)).to_bytes(
                    8, "big") + key[24:]  # fmt: skip
                assert old != key
                txn.put(TIMELINE, old, txn.get(TIMELINE, key))
                txn.delete(TIMELINE, key)
            txn.put(META, b"schema_version", msgspec.msgpack.encode(3))

        index.write(as_version_3)
    with Index(path, migrate=True) as index:
        assert index.stored_schema_version() == 4
        problems = check_index(index)
        assert [p for p in problems if "tall" in p or "timeline" in p] == [], problems  # (no users here)
        with index.read() as txn:
            tallies = {library.name: asset_index.tally_of(txn, library.id) for library in (one, two)}
            months = {e.asset_id: datetime(1970, 1, 1) + timedelta(microseconds=e.local_micros)
                      for e in asset_index.timeline_of(txn, owner)}  # fmt: skip
    assert (tallies['one'].photos, tallies['one'].videos, tallies['one'].usage) == (1, 1, 210)  # the trashed one: not
    assert (tallies['two'].photos, tallies['two'].videos, tallies['two'].usage) == (2, 0, 8)
    assert months[kept[2].id] == before_1970 and months[kept[3].id] == end_of_time
