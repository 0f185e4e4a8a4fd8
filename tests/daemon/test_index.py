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

    with Index(tmp_path / "index", schema_version=3, migrations={1: to_2, 2: to_3}) as index:
        assert index.stored_schema_version() == 3
        with index.read() as txn:
            assert txn.get(USER_BY_EMAIL, b"migrated") == b"yes"
    assert ran == [2, 3]


def test_missing_migration_is_refused(tmp_path):
    with Index(tmp_path / "index", schema_version=1):
        pass
    with pytest.raises(IndexUnusable, match="No migration from index schema version 1 to 2"):
        Index(tmp_path / "index", schema_version=2, migrations={})


def test_readonly_open_of_a_missing_index_names_the_path(tmp_path):
    with pytest.raises(IndexUnusable, match="No index at"):
        Index(tmp_path / "nothing", readonly=True)


def test_schema_version_is_recorded(tmp_path):
    with Index(tmp_path / "index") as index, index.read() as txn:
        assert msgspec.msgpack.decode(txn.get(META, b"schema_version")) == index.schema_version
