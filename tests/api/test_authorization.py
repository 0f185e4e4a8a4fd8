"""Every route of the app, enumerated from the app itself (not a hand-written list):
401 without credentials except the public ones, 403 for non-admins on admin routes, and the permission each
route demands matches Immich's reference document."""

import json
import re
import uuid
from pathlib import Path

from api.access import policy_for
from api.app import create_app

SPEC = Path(__file__).resolve().parents[3] / "shared" / "immich-api" / "immich-openapi-specs.json"

PUBLIC = {
    ("GET", "/.well-known/immich"), ("GET", "/api/.well-known/immich"), ("GET", "/api/server/ping"),
    ("GET", "/api/server/version"), ("GET", "/api/server/features"), ("GET", "/api/server/media-types"),
    ("POST", "/api/auth/login"), ("POST", "/api/auth/admin-sign-up"),
    ("GET", "/api/openapi.json"), ("GET", "/api/docs"),
    ("GET", "/metrics"),  # filmroll's Prometheus metrics (aggregates); `[metrics] public = false` checks in the view
}  # fmt: skip


def routes(services):
    app = create_app(services)
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("web."):
            continue  # the web pages redirect to the sign-in page instead: tests/web/test_pages.py
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = re.sub(r"<[^>]+>", str(uuid.uuid4()), rule.rule)
            yield method, rule.rule, path, policy_for(app, rule.endpoint)


async def test_the_public_set_is_exactly_the_documented_one(daemon):
    declared = {(method, rule) for method, rule, _, policy in routes(daemon.services) if policy.public}
    assert declared == PUBLIC


async def test_every_non_public_route_answers_401_without_credentials(daemon):
    checked = 0
    async with daemon.client() as client:
        for method, rule, path, policy in routes(daemon.services):
            if policy.public:
                continue
            reply = await client.request(method, path, json={})
            assert reply.status_code == 401, f"{method} {rule} gave {reply.status_code}"
            assert reply.json()["message"] == "Authentication required"
            checked += 1
    assert checked >= 15


async def test_admin_routes_answer_403_to_a_non_admin(daemon, user):
    admin_routes = [(m, r, p) for m, r, p, policy in routes(daemon.services) if policy.admin]
    assert admin_routes, "there are admin routes to check"
    for method, rule, path in admin_routes:
        reply = await user.client.request(method, path, json={})
        assert reply.status_code == 403, f"{method} {rule} gave {reply.status_code}"
        assert reply.json()["message"] == "Forbidden"


async def test_declared_permissions_match_immich(daemon):
    reference = json.loads(SPEC.read_text())["paths"]
    compared = 0
    for method, rule, _, policy in routes(daemon.services):
        spec_path = re.sub(r"<[^>]+>", "{id}", rule.removeprefix("/api"))
        operation = reference.get(spec_path, {}).get(method.lower())
        if operation is None:
            continue
        expected_permission = operation.get("x-immich-permission")
        expected_admin = bool(operation.get("x-immich-admin-only"))
        if rule.startswith("/api/libraries"):
            # libraries.md §0: each user manages their own libraries (Immich A), where Immich C made them
            # admin-only; /validate checks paths on disk, so it needs library.update, which Immich leaves unnamed.
            expected_admin = False
            expected_permission = expected_permission or "library.update"
        assert policy.permission == expected_permission, f"{method} {rule}"
        assert policy.admin == expected_admin, f"{method} {rule}"
        compared += 1
    assert compared >= 20
