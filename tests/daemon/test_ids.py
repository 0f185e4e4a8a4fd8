import time
import uuid

from daemon.ids import new_id, new_ids, new_raw_ids


def is_v4_format(value: uuid.UUID) -> bool:
    return value.version == 4 and value.variant == uuid.RFC_4122


def test_ids_are_version_4_and_start_with_the_millisecond():
    before = time.time_ns() // 1_000_000
    one = new_id()
    many = new_ids(1000)
    after = time.time_ns() // 1_000_000
    for value in [one, *many]:
        assert is_v4_format(value)
        assert before <= value.int >> 80 <= after


def test_bulk_ids_are_unique_and_ascending():
    many = new_ids(5000)
    assert len(set(many)) == 5000
    assert [value.bytes for value in many] == sorted(value.bytes for value in many)
    assert new_ids(0) == []


def test_later_ids_sort_after_earlier_ones():
    first = new_ids(10)
    time.sleep(0.002)
    assert new_id().bytes > max(value.bytes for value in first)


def test_raw_ids_are_the_bytes_of_version_4_ids():
    raw = new_raw_ids(2000)
    assert all(len(value) == 16 for value in raw) and raw == sorted(raw) and len(set(raw)) == 2000
    assert all(is_v4_format(uuid.UUID(bytes=value)) for value in raw)
