"""schemathesis against the daemon's own `/api/openapi.json`: every operation, generated valid and invalid inputs,
sent with the admin's API key to the real `filmroll serve` (a child process on 127.0.0.1, tests/e2e/live_daemon.py).

Every answer must pass schemathesis' response checks (`CHECKS`): no 5xx; a status code, content type, headers and
body that the document declares (`api/openapi.py` documents 204s, file bytes and the `4XX` error body); invalid
input refused with a 4xx; nothing answered 2xx once the credentials are taken away. Operations that take an id in
their path get the ids of real resources (an asset, an album, a library, an API key, a user, a queue) for half
of their cases, so the fuzzer reaches the handlers' bodies instead of only their not-found answers. The upload
(`POST /api/assets`, a multipart body as `api/openapi.py` documents it) gets more cases than the others, half of
them with a `fileModifiedAt` the daemon can store (the document's `date-time` spans years it refuses), so some
are stored: every stored upload must be an asset holding the bytes sent, and no temp file may outlive a request.
Every operation must get at least one valid case.

A stateful run then chains operations along the links schemathesis infers from the document (an id a response
returns, used by the next operation), with the same checks on every answer.

The default run sends a few cases per operation (well under a minute for the whole API); the reliability run many
more. On the way out the daemon must stop cleanly, have logged no error, and `filmroll check` must find its index
consistent (`running_daemon`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from daemon.upload_stream import incoming_folder
from tests.e2e.live_daemon import LiveDaemon, running_daemon
from tests.media_files import jpeg

FAST_EXAMPLES = 5
THOROUGH_EXAMPLES = 100
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
EXCLUDED: dict[tuple[str, str], str] = {}
"""(operation label, check name) -> why that check does not apply to that operation."""
UPLOAD = "POST /api/assets"
UPLOAD_FACTOR = 4
"""How many times more cases the upload gets: the riskiest input."""
STORABLE_DATE = "2024-02-29T12:34:56.789+02:00"


def seed(daemon: LiveDaemon, root: Path) -> dict[str, str]:
    """Real resources for the path parameters: parameter name -> id."""
    photo = jpeg(root / "photo.jpg")
    uploaded = daemon.upload(photo)
    assert uploaded.status_code == 201, uploaded.text
    asset = uploaded.json()["id"]
    user, _ = daemon.create_user("fuzzed@example.com", "Fuzzed")
    jpeg(root / "nas" / "photos" / "external.jpg")
    with daemon.client() as client:

        def created(method: str, url: str, body: dict) -> dict:
            reply = client.request(method, url, json=body)
            assert reply.status_code in (200, 201), reply.text
            return reply.json()

        created("PUT", f"/api/admin/users/{daemon.admin['id']}", {"externalPath": str(root / "nas")})
        library = created("POST", "/api/libraries", {"importPaths": [str(root / "nas" / "photos")]})
        album = created("POST", "/api/albums", {"albumName": "fuzzed", "assetIds": [asset]})
        key = created("POST", "/api/api-keys", {"name": "fuzzed", "permissions": ["all"]})
    return {
        "asset_id": asset,
        "album_id": album["id"],
        "library_id": library["id"],
        "key_id": key["apiKey"]["id"],  # not the key the fuzzer authenticates with
        "user_id": user["id"],
        "name": "thumbnailGeneration",
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveDaemon, dict[str, str]]]:
    root = tmp_path_factory.mktemp("fuzz")
    with running_daemon(root / "daemon") as daemon:
        yield daemon, seed(daemon, root)


def with_real_ids(case, ids: dict[str, str]):
    for name in case.path_parameters or {}:
        if name in ids:
            case.path_parameters[name] = ids[name]
    return case


def with_storable_dates(case):
    if isinstance(case.body, dict) and "fileModifiedAt" in case.body:
        case.body["fileModifiedAt"] = STORABLE_DATE
    return case


def check_upload(daemon: LiveDaemon, case, response) -> str | None:
    """What is wrong after an upload: a temp file left behind, or a stored asset without the bytes sent."""
    leftovers = list(incoming_folder(daemon.data_dir).glob("*.part"))
    if leftovers:
        return f"temp files left after the request: {leftovers}"
    if response.status_code != 201:
        return None
    sent = case.body["assetData"]
    sent = sent if isinstance(sent, bytes) else getattr(sent, "data", str(sent).encode())
    with httpx.Client(base_url=daemon.url, headers={"x-api-key": daemon.api_key}, trust_env=False) as client:
        stored = client.get(f"/api/assets/{response.json()['id']}/original")
    if stored.status_code != 200 or hashlib.sha1(stored.content).digest() != hashlib.sha1(sent).digest():
        return f"the stored asset does not hold the bytes sent ({stored.status_code}, {len(stored.content)} bytes)"
    return None


def deletions_last(operation) -> tuple[bool, int]:
    """Deletions after everything else (until then the real resources exist), a resource's parts before it."""
    deletes = operation.method.upper() == "DELETE"
    return deletes, -len(operation.path) if deletes else 0


@dataclass
class Run:
    """What a fuzzing run found: distinct failures, cases sent, valid cases per operation, upload statuses."""

    problems: dict[tuple[str, str, str], str] = field(default_factory=dict)
    sent: int = 0
    valid_cases: dict[str, int] = field(default_factory=dict)
    uploads: dict[int, int] = field(default_factory=dict)  # status -> cases


def fuzz_operation(
    live: tuple[LiveDaemon, dict[str, str]], operation, mode: GenerationMode, examples: int, derandomize: bool,
    run: Run,
) -> None:  # fmt: skip
    """`examples` cases of `mode` for one operation, each answer validated with `CHECKS` (and the upload's own)."""
    daemon, ids = live
    auth = {"x-api-key": daemon.api_key}
    label = operation.label
    checks = [check for check in CHECKS if (label, check.__name__) not in EXCLUDED]
    strategy = operation.as_strategy(generation_mode=mode)
    if set(ids) & {parameter.name for parameter in operation.path_parameters}:
        strategy = st.one_of(strategy, strategy.map(lambda case: with_real_ids(case, ids)))
    if label == UPLOAD and mode == GenerationMode.POSITIVE:
        strategy = st.one_of(strategy, strategy.map(with_storable_dates))

    @settings(
        max_examples=examples * (UPLOAD_FACTOR if label == UPLOAD else 1),
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def send(case) -> None:
        run.sent += 1
        if mode == GenerationMode.POSITIVE:
            run.valid_cases[label] = run.valid_cases.get(label, 0) + 1
        response = case.call(base_url=daemon.url, headers=auth, timeout=30)
        try:
            case.validate_response(response, checks=checks, headers=auth)
        except BaseExceptionGroup as failures:
            for failure in failures.exceptions:
                key = (label, type(failure).__name__, failure.title)
                run.problems.setdefault(key, f"{key}: {failure.message}\n    {case.as_curl_command()}")
        if label == UPLOAD:
            run.uploads[response.status_code] = run.uploads.get(response.status_code, 0) + 1
            if wrong := check_upload(daemon, case, response):
                run.problems.setdefault((label, "upload", wrong), f"{wrong}\n    {case.as_curl_command()}")

    try:
        send()
    except Unsatisfiable:  # some negative schemas cannot be violated (e.g. no parameters at all)
        if mode == GenerationMode.POSITIVE:
            raise


def fuzz(live: tuple[LiveDaemon, dict[str, str]], examples: int, *, derandomize: bool) -> tuple[int, int]:
    """Every operation of the daemon's OpenAPI document, `examples` valid and `examples` invalid cases each,
    each answer validated with `CHECKS`. (schemathesis' own pytest plugin does not run under pytest 9, so its
    strategies are driven here.) Returns (operations, cases sent); fails listing every distinct failure."""
    daemon, _ = live
    schema = schemathesis.openapi.from_url(f"{daemon.url}/api/openapi.json")
    run = Run()
    every = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(every, key=deletions_last):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(live, operation, mode, examples, derandomize, run)
    assert not run.problems, "\n".join(list(run.problems.values())[:30])
    untested = sorted(operation.label for operation in every if not run.valid_cases.get(operation.label))
    assert not untested, f"operations that got no valid case: {untested}"
    assert run.uploads.get(201), f"no fuzzed upload was stored: {run.uploads}"  # the storing code was reached
    with httpx.Client(
        base_url=daemon.url, headers={"x-api-key": daemon.api_key}, trust_env=False
    ) as client:  # still serving, key intact
        assert client.get("/api/users/me").status_code == 200
    return len(every), run.sent


def test_every_operation_answers_as_documented(live):
    operations, sent = fuzz(live, FAST_EXAMPLES, derandomize=True)  # the same cases every CI run: no flakes
    assert operations >= 60, operations
    print(f"schemathesis: {operations} operations, {sent} cases")


@pytest.mark.reliability
def test_every_operation_answers_as_documented_thorough(live):
    operations, sent = fuzz(live, THOROUGH_EXAMPLES, derandomize=False)  # new cases every run
    print(f"schemathesis: {operations} operations, {sent} cases")


def explore_states(
    live: tuple[LiveDaemon, dict[str, str]], examples: int, steps: int, *, derandomize: bool
) -> None:
    """schemathesis' state machine over the inferred links: `examples` sequences of up to `steps` calls, every
    answer validated with `CHECKS`; fails listing every distinct failure."""
    daemon, _ = live
    schema = schemathesis.openapi.from_url(f"{daemon.url}/api/openapi.json")
    auth = {"x-api-key": daemon.api_key}
    problems: dict[tuple[str, str, str], str] = {}

    class Sequences(schema.as_state_machine()):
        def get_call_kwargs(self, case) -> dict:
            return {"base_url": daemon.url, "headers": auth, "timeout": 30}

        def validate_response(self, response, case, **kwargs) -> None:
            try:
                case.validate_response(response, checks=CHECKS, headers=auth)
            except BaseExceptionGroup as failures:
                for failure in failures.exceptions:
                    key = (case.operation.label, type(failure).__name__, failure.title)
                    problems.setdefault(key, f"{key}: {failure.message}\n    {case.as_curl_command()}")

    assert schema.statistic.transitions.total >= 50, schema.statistic  # the links were inferred
    run_state_machine_as_test(
        Sequences,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            derandomize=derandomize,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert not problems, "\n".join(list(problems.values())[:30])


def test_sequences_of_operations_answer_as_documented(live):
    explore_states(live, 12, 8, derandomize=True)


@pytest.mark.reliability
def test_sequences_of_operations_answer_as_documented_thorough(live):
    explore_states(live, 200, 20, derandomize=False)
