"""Schemathesis over the server's own ``/openapi.json``: every operation, with an admin token, in the
examples, coverage and fuzzing phases, against a real server process on a database of its own (the
fuzzer deletes queues, edits users and revokes keys, which must not reach the session's server).

Every answer must be no 5xx, carry a status and Content-Type the document declares, and match the
declared schema: the success schema, or the error shape (``ErrorEnvelope`` for RPC, ``RestError``
for REST, text for the pipeline protocol) under ``default``.
"""

from __future__ import annotations

import time
from uuid import uuid4

import pytest
import requests
import schemathesis
from schemathesis import checks as st_checks
from schemathesis.config import SchemathesisConfig

from tests.helpers import ServerProcess, specs

# Small on purpose: the coverage phase already sends every boundary of every field (about 8,000
# requests in all); the fuzzing phase adds a few random bodies per operation. ~2 minutes on 2 cores.
MAX_EXAMPLES = 8
STATS = {"requests": 0, "operations": set(), "started": None}



def _document() -> dict:
    """The document the server publishes, built by the same code (schemathesis's fixture-based
    loader does not run under pytest 9, so the operations are known at import time)."""
    from apiserver import MAX_API_VERSION, __version__
    from apiserver.service_repo.openapi import build_openapi

    return build_openapi(specs(), __version__, MAX_API_VERSION)


schema = schemathesis.openapi.from_dict(_document(), config=SchemathesisConfig.from_dict({
    "request-timeout": 30,
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
               "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
}))


@pytest.fixture(scope="module")
def fuzz_server(mongo_uri, tmp_path_factory):
    proc = ServerProcess(mongo_uri, f"apifuzz_{uuid4().hex[:10]}", workers=2, extra_env={
        # every request comes from 127.0.0.1 and many sign-ins fail on purpose: no throttling here
        "APISERVER__auth__sign_in_throttle__max_failures_per_address": "100000000",
        "APISERVER__auth__sign_in_throttle__max_failures_per_account": "100000000",
    })
    proc.start(tmp_path_factory.mktemp("fuzz-logs"))
    yield proc
    proc.stop()
    if STATS["started"] is not None:
        print(f"\nfuzz: {STATS['requests']} requests over {len(STATS['operations'])} operations "
              f"in {time.monotonic() - STATS['started']:.0f}s")


@pytest.fixture(scope="module")
def fuzz_auth(fuzz_server) -> dict[str, str]:
    token = fuzz_server.admin().auth
    published = requests.get(fuzz_server.base_url + "/openapi.json", headers={"Authorization": token}, timeout=30)
    assert published.json() == _document(), "the server publishes another document than the one fuzzed"
    return {"Authorization": token}


CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance]


@schema.parametrize()
def test_every_operation_answers_by_its_schema_and_never_5xx(case, fuzz_server, fuzz_auth):
    if STATS["started"] is None:
        STATS["started"] = time.monotonic()
    STATS["requests"] += 1
    STATS["operations"].add(case.operation.label)
    case.call_and_validate(base_url=fuzz_server.base_url, headers=fuzz_auth, checks=CHECKS)
