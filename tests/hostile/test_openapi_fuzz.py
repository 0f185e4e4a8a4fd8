"""schemathesis against the daemon's own `/api/openapi.json`: every operation, generated valid and invalid inputs,
sent with the admin's API key to the real `filmroll serve` (a child process on 127.0.0.1, tests/e2e/live_daemon.py).
No operation may answer 5xx. The default run sends a few cases per operation (well under a minute for the whole
API); the reliability run many more. On the way out the daemon must stop cleanly, have logged no error, and
`filmroll check` must find its index consistent (`running_daemon`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.e2e.live_daemon import LiveDaemon, running_daemon
from tests.media_files import jpeg

FAST_EXAMPLES = 8
THOROUGH_EXAMPLES = 150


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    root = tmp_path_factory.mktemp("fuzz")
    with running_daemon(root / "daemon") as daemon:
        # Something to find: an uploaded photo, so id-taking operations meet real data as well as made-up ids.
        photo = jpeg(root / "photo.jpg")
        assert daemon.upload(Path(photo)).status_code == 201
        yield daemon


def fuzz(live: LiveDaemon, examples: int, *, derandomize: bool) -> tuple[int, int]:
    """Every operation of the daemon's OpenAPI document, `examples` valid and `examples` invalid cases each.
    (schemathesis' own pytest plugin does not run under pytest 9, so its strategies are driven here.)
    Returns (operations, cases sent); fails listing every 5xx found."""
    schema = schemathesis.openapi.from_url(f"{live.url}/api/openapi.json")
    problems: list[str] = []
    operations = sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=derandomize,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def send(case) -> None:
                nonlocal sent
                sent += 1
                response = case.call(base_url=live.url, headers={"x-api-key": live.api_key}, timeout=30)
                if response.status_code >= 500:
                    problems.append(f"{operation.label}: {response.status_code} for {case.as_curl_command()}")  # noqa: B023 (send runs at once)

            try:
                send()
            except Unsatisfiable:  # some negative schemas cannot be violated (e.g. no parameters at all)
                pass
    assert not problems, "\n".join(problems[:20])
    return operations, sent


def test_no_operation_answers_5xx(live):
    operations, sent = fuzz(live, FAST_EXAMPLES, derandomize=True)  # the same cases every CI run: no flakes
    assert operations >= 60, operations
    print(f"schemathesis: {operations} operations, {sent} cases")


@pytest.mark.reliability
def test_no_operation_answers_5xx_thorough(live):
    operations, sent = fuzz(live, THOROUGH_EXAMPLES, derandomize=False)  # new cases every run
    print(f"schemathesis: {operations} operations, {sent} cases")
