"""ClearML's clients send null for every optional argument they leave unset; the server takes it as
absent, for every endpoint, at the dispatcher (one rule)."""

from __future__ import annotations

import time

import pytest

from tests.helpers import ServerProcess, specs


@pytest.fixture(scope="module")
def isolated(mongo_uri, tmp_path_factory):
    proc = ServerProcess(mongo_uri, f"nulls_{time.time_ns()}", workers=1).start(tmp_path_factory.mktemp("nulls"))
    yield proc
    proc.stop()


def _optional_nulls(schema: dict) -> dict:
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    return {name: None for name in props if name not in required}


def test_every_optional_field_sent_as_null_is_taken_as_absent(isolated):
    admin = isolated.admin()
    refused = []
    checked = 0
    for spec in specs().all():
        if spec.batch_action is not None or spec.name == "auth.login":
            continue
        if spec is not specs().versions(spec.name)[-1]:
            continue  # the newest version, which a client without a version gets
        body = _optional_nulls(spec.request_schema)
        if not body:
            continue
        if spec.http is not None and spec.http.path == f"/{spec.name}":  # answers in its own style (text) there
            status, text, _ = admin.request(spec.http.method, spec.http.path, body)
            checked += 1
            assert status != 500 and "(rule: type)" not in str(text), f"{spec.name}: {text}"
            continue
        status, answer = admin.envelope(spec.name, **body)
        checked += 1
        meta = answer["meta"]
        if status == 400 and meta["error_data"].get("field") in body and meta["error_data"].get("rule") == "type":
            refused.append(f"{spec.name}: {meta['result_msg']}")
        assert status != 500, f"{spec.name}: {meta['result_msg']}"
    assert checked > 50
    assert refused == []


def test_a_null_the_schema_accepts_is_kept(isolated):
    admin = isolated.admin()
    task = admin.call("tasks.create", name="null project", type="training", project=None, system_tags=None,
                      comment=None)["id"]
    got = admin.call("tasks.get_by_id", task=task)["task"]
    assert got["name"] == "null project" and got.get("project") is None and got["system_tags"] == []
    listed = admin.call("tasks.get_all_ex", id=[task], order_by=None, user=None, only_fields=["name"])["tasks"]
    assert [t["name"] for t in listed] == ["null project"]
    err = admin.error("tasks.create", name=None, type="training")  # a required field stays required
    assert (err.code, err.subcode) == (400, 11) and err.meta["error_data"]["field"] == "name"
