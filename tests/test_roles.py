"""Generated from the specs: for every served RPC endpoint version, a guest and a plain user are
refused (403/20) exactly when its ``allow_roles`` / ``read_only`` say so, and let through otherwise.

The role check runs before the body is validated, so an empty body is enough: a refused role gets
403/20, an allowed one anything but that (its answer to an empty body: a 400 naming a missing field,
a 404, or the endpoint's success; never a 5xx)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tests.helpers import ApiClient, specs

ROLE_REFUSED = (403, 20)
# Endpoints whose success with an empty body would end the caller's session mid-test.
SESSION_ENDING = {"login.logout", "auth.logout"}


def _served() -> list:
    out = []
    for spec in specs().all():
        if spec.internal or not spec.authorize or spec.http is not None or spec.name in SESSION_ENDING:
            continue
        out.append(spec)
    return out


SERVED = _served()


def refused(spec, role: str) -> bool:
    if spec.allow_roles is not None and role not in spec.allow_roles:
        return True
    return role == "guest" and not spec.read_only


@pytest.fixture(scope="module")
def role_clients(app, api) -> dict[str, ApiClient]:
    clients = {}
    for role in ("guest", "user"):
        made = api.call("users.create", name=f"{role}-{uuid4().hex[:6]}", role=role, credentials=True)["credentials"]
        clients[role] = ApiClient(flask_client=app.test_client()).login(made["access_key"], made["secret_key"])
    return clients


def test_the_generated_cases_cover_both_outcomes():
    """The table below is not vacuous: for each role, some endpoints refuse it and some let it in."""
    for role in ("guest", "user"):
        outcomes = {refused(spec, role) for spec in SERVED}
        assert outcomes == {True, False}, role
    assert len(SERVED) > 100


@pytest.mark.parametrize("role", ["guest", "user"])
def test_each_endpoint_refuses_exactly_the_roles_its_spec_refuses(role_clients, role):
    client = role_clients[role]
    wrong = []
    for spec in SERVED:
        status, body = client.envelope(spec.name, spec.version_str)
        meta = body["meta"]
        got_refused = (status, meta.get("result_subcode")) == ROLE_REFUSED
        if got_refused != refused(spec, role) or status >= 500:
            wrong.append(f"{spec.name} {spec.version_str}: {status} {meta.get('result_subcode')} "
                         f"{meta.get('result_msg', '')[:80]} (allow_roles={sorted(spec.allow_roles or [])}, "
                         f"read_only={spec.read_only})")
    assert not wrong, f"{len(wrong)} endpoints disagree with their spec for {role}:\n" + "\n".join(wrong)
