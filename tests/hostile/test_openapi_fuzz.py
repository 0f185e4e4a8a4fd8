"""schemathesis against the daemon's own `/api/openapi.json`: every operation, generated valid and invalid inputs,
sent with the admin's API key to the real `filmroll serve` (a child process on 127.0.0.1, tests/e2e/live_daemon.py).

Every answer must pass schemathesis' response checks (`CHECKS`): no 5xx; a status code, content type, headers and
body that the document declares (`api/openapi.py` documents 204s, file bytes and the `4XX` error body); invalid
input refused with a 4xx, judged on the request as the daemon reads it (`negative_data_rejection_as_read`: an
ignored non-bearer `Authorization` header and an empty array that sends no form part are not invalid input);
nothing answered 2xx once the credentials are taken away. Operations that take an id in
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

import dataclasses
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
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.mutations import Mutation, MutationChannel, OperatorKind
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import (
    CaseMetadata,
    ComponentInfo,
    FuzzingPhaseData,
    GenerationInfo,
    PhaseInfo,
    TestPhase,
)
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.access import bearer_token
from daemon.upload_stream import incoming_folder
from tests.e2e.live_daemon import LiveDaemon, running_daemon
from tests.media_files import jpeg

FAST_EXAMPLES = 5
THOROUGH_EXAMPLES = 100
FORM = "multipart/form-data"


def unseen_by_the_daemon(case, mutation: Mutation) -> bool:
    """Whether a negative case's `mutation` never reaches the daemon, so accepting the request is right. Exactly
    two kinds, each a false positive of `negative_data_rejection`:

    - an `Authorization` header that is not `Bearer <token>` (e.g. the fuzzer's value breaking the bearer
      format): the daemon, like Immich (`auth.service.ts` `getBearerToken`), reads only a bearer token from it and
      ignores any other value (`api.access.bearer_token`), so the request is judged by the credentials it also
      carries (the fuzzer's API key, a browser's session cookie). A `Bearer` value stays checked;
    - an empty array in a multipart field the body does not require: the form encoder sends one part per item,
      so no part at all, which the daemon cannot tell from a field left out. (schemathesis has this rule itself,
      in its check of a form "as sent", but that check gives up on every upload: it cannot validate the file
      part's bytes.) An empty array in a required field, or in a JSON body, stays checked."""
    where = mutation.parameter_location
    if where == ParameterLocation.HEADER and (mutation.parameter or "").lower() == "authorization":
        value = case.headers.get("Authorization") if case.headers else None
        return value is not None and bearer_token(str(value).strip(" \t")) is None
    if where == ParameterLocation.BODY and case.media_type == FORM and len(mutation.path) == 1:
        name = mutation.path[0]
        body = case.operation.get_body_for_media_type(FORM)
        required = (body.resolved_schema or {}).get("required", []) if body is not None else [name]
        return isinstance(case.body, dict) and case.body.get(name) == [] and name not in required
    return False


def as_the_daemon_reads_it(case, unseen: list[Mutation]):
    """`case` without what the `unseen` mutations changed (the ignored `Authorization` header, the fields that
    sent no part), its metadata naming only the other mutations: the request the daemon actually judged."""
    meta = case.meta
    headers = case.headers.copy() if case.headers else {}
    body = dict(case.body) if isinstance(case.body, dict) else case.body
    for mutation in unseen:
        if mutation.parameter_location == ParameterLocation.HEADER:
            headers.pop("Authorization", None)
        else:
            body.pop(mutation.path[0], None)
    remaining = tuple(mutation for mutation in meta.phase.data.mutations if mutation not in unseen)
    still_negative = {mutation.parameter_location for mutation in remaining}
    components = {
        location: info if location in still_negative else ComponentInfo(mode=GenerationMode.POSITIVE)
        for location, info in meta.components.items()
    }
    parameter = meta.phase.data.parameter
    named = parameter is not None and any(mutation.parameter == parameter for mutation in unseen)
    data = dataclasses.replace(
        meta.phase.data, mutations=remaining,
        **({"parameter": None, "parameter_location": None} if named else {}),
    )  # fmt: skip
    read = CaseMetadata(
        generation=meta.generation, components=components, phase=PhaseInfo(name=meta.phase.name, data=data)
    )
    return case.operation.Case(
        method=case.method, path_parameters=dict(case.path_parameters or {}), headers=headers,
        cookies=dict(case.cookies or {}), query=dict(case.query or {}), body=body, media_type=case.media_type,
        multipart_content_types=case.multipart_content_types, _meta=read,
    )  # fmt: skip


def negative_data_rejection_as_read(ctx: CheckContext, response, case) -> bool | None:
    """schemathesis' `negative_data_rejection`, judged on the request as the daemon reads it: mutations it never
    sees (`unseen_by_the_daemon`) are taken out; if none is left, nothing invalid was sent and acceptance is
    right; otherwise the check runs on what is left, with all of schemathesis' own rules."""
    meta = case.meta
    mutations = meta.phase.data.mutations if meta is not None and meta.generation.mode.is_negative else ()
    unseen = [mutation for mutation in mutations if unseen_by_the_daemon(case, mutation)]
    if not unseen:
        return negative_data_rejection(ctx, response, case)
    if len(unseen) == len(mutations):
        return None
    return negative_data_rejection(ctx, response, as_the_daemon_reads_it(case, unseen))


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection_as_read,
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


def negative_case(operation, mutations: list[Mutation], **request):
    """A negative case as the fuzzer makes one: `mutations` recorded in its metadata, the request as given."""
    meta = CaseMetadata(
        generation=GenerationInfo(time=0.0, mode=GenerationMode.NEGATIVE),
        components={mutation.parameter_location: ComponentInfo(mode=GenerationMode.NEGATIVE) for mutation in mutations},
        phase=PhaseInfo(name=TestPhase.FUZZING, data=FuzzingPhaseData(
            description=None, parameter=None, parameter_location=None, location=None, mutations=tuple(mutations),
        )),
    )  # fmt: skip
    return operation.Case(_meta=meta, **request)


def mutated(location: ParameterLocation, name: str, keyword: str) -> Mutation:
    operator = OperatorKind.CHANGE_TYPE if keyword == "type" else OperatorKind.NEGATE_CONSTRAINTS
    return Mutation(
        path=(name,), parameter_location=location, schema_pointer=f"/properties/{name}",
        channel=MutationChannel.SCHEMA, operator=operator, keywords=(keyword,), parameter=name,
        original_value=None, new_value=None,
    )  # fmt: skip


def flagged(live: tuple[LiveDaemon, dict[str, str]], case) -> tuple[int, bool, bool]:
    """`case` sent to the daemon: (status, schemathesis' check flags the answer, ours flags it)."""
    daemon, _ = live
    auth = {"x-api-key": daemon.api_key}
    response = case.call(base_url=daemon.url, headers=auth, timeout=30)

    def flags(check) -> bool:
        try:
            case.validate_response(response, checks=[check], headers=auth)
        except BaseExceptionGroup:
            return True
        return False

    return response.status_code, flags(negative_data_rejection), flags(negative_data_rejection_as_read)


def test_an_ignored_authorization_header_is_not_negative_data(live):
    """The thorough run's false positive: an `Authorization` value breaking the bearer format, plus a one-element
    array for a boolean query parameter (`?isShared=true` on the wire, which schemathesis' own rule excuses when
    it is the only mutation). A `Bearer` value is still judged as schemathesis judges it."""
    daemon, _ = live
    albums = schemathesis.openapi.from_url(f"{daemon.url}/api/openapi.json")["/api/albums"]["GET"]
    mutations = [mutated(ParameterLocation.QUERY, "isShared", "type"),
                 mutated(ParameterLocation.HEADER, "Authorization", "format")]  # fmt: skip
    for value in ("Basic Zm9vOmJhcg==", "0", "Bearer "):
        case = negative_case(albums, mutations, headers={"Authorization": value}, query={"isShared": [True]})
        assert flagged(live, case) == (200, True, False), value
    case = negative_case(albums, mutations, headers={"Authorization": "Bearer x"}, query={"isShared": [True]})
    status, theirs, ours = flagged(live, case)
    assert ours == theirs, status


def test_an_empty_array_in_an_optional_form_field_is_not_negative_data(live, tmp_path):
    """An empty array sends no part: the daemon sees the optional field left out."""
    daemon, _ = live
    upload = schemathesis.openapi.from_url(f"{daemon.url}/api/openapi.json")["/api/assets"]["POST"]
    body = {"assetData": jpeg(tmp_path / "empty-array.jpg").read_bytes(), "fileCreatedAt": STORABLE_DATE,
            "fileModifiedAt": STORABLE_DATE, "deviceId": []}  # fmt: skip
    case = negative_case(
        upload, [mutated(ParameterLocation.BODY, "deviceId", "type")], body=body, media_type=FORM
    )
    status, theirs, ours = flagged(live, case)
    assert status in (200, 201) and (theirs, ours) == (True, False)


def test_only_the_two_false_positives_are_unseen(live):
    """Narrow: the same mutations with anything else in the request stay judged."""
    daemon, _ = live
    schema = schemathesis.openapi.from_url(f"{daemon.url}/api/openapi.json")
    albums, upload = schema["/api/albums"]["GET"], schema["/api/assets"]["POST"]
    header = mutated(ParameterLocation.HEADER, "Authorization", "format")

    def unseen(operation, mutation, **request) -> bool:
        return unseen_by_the_daemon(negative_case(operation, [mutation], **request), mutation)

    assert unseen(albums, header, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert not unseen(albums, header, headers={"Authorization": "Bearer not-a-session"})
    assert not unseen(albums, header, headers={"Authorization": "bearer not-a-session"})
    assert not unseen(
        albums, mutated(ParameterLocation.HEADER, "x-api-key", "format"), headers={"x-api-key": "0"}
    )
    form = {"fileCreatedAt": STORABLE_DATE, "fileModifiedAt": STORABLE_DATE, "assetData": b"x"}

    def field(name: str, value) -> bool:
        mutation = mutated(ParameterLocation.BODY, name, "type")
        return unseen(upload, mutation, body={**form, name: value}, media_type=FORM)

    assert field("deviceId", [])
    assert not field("deviceId", ["a", "b"])  # two parts: refused as an array
    assert not field("deviceId", 0)  # sent as the text "0"
    assert not field("fileCreatedAt", [])  # required: its absence must be refused
    keys = schema["/api/api-keys"]["POST"]
    permissions = mutated(ParameterLocation.BODY, "permissions", "type")
    assert not unseen(keys, permissions, body={"name": "k", "permissions": []}, media_type="application/json")
