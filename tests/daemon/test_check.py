"""`filmroll check` finds every kind of broken invariant, through the real command."""

import subprocess
import sys
import uuid

import pytest

from daemon.access import Principal
from daemon.check import check_index
from daemon.index import API_KEY_BY_SECRET, LIBRARIES, USER_BY_EMAIL, USERS, Index


def run_check(data_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "check", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip


@pytest.fixture
async def populated(settings):
    from daemon.services import Services

    with Index(settings.index_path) as index:
        services = Services.build(settings, index)
        user = services.users.create(email="u@example.com", password="pw", name="U")
        key = services.api_keys.create(Principal(user=user), name="k", permissions=None)
        await services.auth.login("u@example.com", "pw")
    return settings, user, key


async def test_a_consistent_index_passes(populated):
    settings, _, _ = populated
    result = run_check(settings.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is consistent" in result.stdout


def corrupt(settings, work):
    with Index(settings.index_path) as index:
        index.write(work)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (
            lambda user, key: lambda txn: txn.put(USER_BY_EMAIL, b"ghost@example.com", uuid.uuid4().bytes),
            "points to missing user",
        ),
        (
            lambda user, key: lambda txn: txn.delete(USER_BY_EMAIL, b"u@example.com"),
            "is missing from user_by_email",
        ),
        (
            lambda user, key: lambda txn: [txn.delete(LIBRARIES, k) for k, _ in list(txn.items(LIBRARIES))],
            "has no upload library",
        ),
        (
            lambda user, key: lambda txn: txn.delete(API_KEY_BY_SECRET, key.api_key.secret_hash),
            "its secret is missing from api_key_by_secret",
        ),
        (
            lambda user, key: lambda txn: txn.delete(USERS, user.id.bytes),
            "belongs to missing or deleted user",
        ),
        (
            lambda user, key: lambda txn: txn.raw.put(user.id.bytes, b"\xc1garbage", db=txn._dbs["users"]),
            "record does not decode",
        ),
    ],
    ids=[
        "dangling-email",
        "missing-email",
        "no-upload-library",
        "key-secret",
        "orphan-credentials",
        "garbage",
    ],
)
async def test_violations_are_reported_and_exit_non_zero(populated, breakage, expected):
    settings, user, key = populated
    corrupt(settings, breakage(user, key))
    result = run_check(settings.data_dir)
    assert result.returncode == 1
    assert expected in result.stdout
    assert "problem(s)" in result.stderr


def test_check_of_a_missing_index_says_so(tmp_path):
    result = run_check(tmp_path / "none")
    assert result.returncode == 2
    assert "No index at" in result.stderr


def test_check_index_function_is_empty_on_a_fresh_index(index):
    assert check_index(index) == []
