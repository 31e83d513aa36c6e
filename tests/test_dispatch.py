"""The dispatcher: URL forms, version negotiation, validation, envelopes, batches and REST bindings.

A small example service is declared only in a .conf file, bound to plain handler functions and
served by the real dispatcher; nothing about it is written in Python besides the handlers.
"""

from __future__ import annotations

import pytest
from flask import Flask

from apiserver.schema.loader import load_specs
from apiserver.service_repo.dispatcher import Dispatcher
from apiserver.service_repo.endpoint import Binding, bind_handlers

EXAMPLE = """
_description: "An example service for the dispatcher tests"
_definitions {
  include "_common.conf"
  color { type: string, enum: [red, green] }
}
greet {
  authorize: false
  "2.1" {
    request {
      type: object
      required: [ name ]
      properties {
        name { type: string, minLength: 1 }
        color { "$ref": "#/definitions/color" }
        times { type: integer, minimum: 1, maximum: 3 }
        nested { type: object, properties { deep { type: array, items { type: integer } } } }
        strict { type: object, additionalProperties: false, properties { ok { type: boolean } } }
      }
    }
    response { type: object, properties { text { type: string }, version { type: string } } }
  }
  "2.4" {
    request { type: object, required: [ name, times ], properties { name { type: string }, times { type: integer } } }
    response: ${greet."2.1".response}
  }
}
boom {
  authorize: false
  "2.1" { request { type: object } }
}
update { authorize: false, "2.1" { request { type: object, required: [id], properties { id { type: string } } } } }
update_many {
  authorize: false
  "2.1" { batch_request { action: update, version: 2.1, max_items: 1000 } }
}
item {
  authorize: false
  "2.1" {
    http { method: GET, path: "/things/{thing_id}", status: 200, style: rest }
    request { type: object, required: [thing_id], properties { thing_id { type: integer }, verbose { type: boolean } } }
  }
}
make {
  authorize: false
  "2.1" {
    http { method: POST, path: "/things", status: 201, style: rest }
    request { type: object, required: [name], properties { name { type: string } } }
  }
}
ping_text {
  authorize: false
  "2.1" { http { method: GET, path: "/plain", status: 200, style: text } }
}
"""


def greet(call):
    return {"text": f"hello {call.data['name']}" * call.data.get("times", 1), "version": call.actual_version}


def boom(call):
    raise RuntimeError("secret internals")


def update(call):
    return {}


def update_many(call):
    return {"updated": len(call.batched_data), "ids": [i["id"] for i in call.batched_data]}


def item(call):
    return {"id": call.data["thing_id"], "verbose": call.data.get("verbose", False)}


def make(call):
    return {"name": call.data["name"]}


def ping_text(call):
    return "OK"


@pytest.fixture(params=[False, True], ids=["default", "check_max_version"])
def example(request, tmp_path):
    from apiserver.schema.loader import SERVICES_DIR

    (tmp_path / "_common.conf").write_text((SERVICES_DIR / "_common.conf").read_text())
    (tmp_path / "example.conf").write_text(EXAMPLE)
    registry = load_specs(tmp_path)
    handlers = bind_handlers(registry, [Binding(f"example.{f.__name__}", None, f)
                                        for f in (greet, boom, update, update_many, item, make, ping_text)])
    app = Flask("example")
    Dispatcher(registry, handlers, None, max_version=(2, 23), check_max_version=request.param).register(app)
    client = app.test_client()
    client.check_max_version = request.param
    return client


def meta_of(resp):
    body = resp.get_json()
    assert set(body) == {"meta", "data"}
    assert resp.status_code == body["meta"]["result_code"]
    return body["meta"], body["data"]


@pytest.mark.parametrize("path", ["/example.greet", "/v2.1/example.greet", "/api/example.greet",
                                  "/api/v2.1/example.greet"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_both_url_forms_with_get_and_post(example, path, method):
    resp = example.open(path, method=method, json={"name": "ann", "times": 1, "method": "get", "unknown_extra": 1})
    meta, data = meta_of(resp)
    assert resp.status_code == 200 and data["text"] == "hello ann"
    assert meta["endpoint"]["name"] == "example.greet"
    assert meta["result_msg"] == "OK" and meta["result_subcode"] == 0
    assert len(meta["id"]) == 32 and meta["trx"] == meta["id"]
    assert meta["error_stack"] is None and meta["error_data"] == {}


@pytest.mark.parametrize("requested, actual", [
    (None, "2.4"), ("2.1", "2.1"), ("2.3", "2.1"), ("2.4", "2.4"), ("2.13", "2.4"), ("2.23", "2.4"),
])
def test_version_negotiation(example, requested, actual):
    path = f"/v{requested}/example.greet" if requested else "/example.greet"
    meta, data = meta_of(example.post(path, json={"name": "x", "times": 1}))
    assert meta["result_code"] == 200
    assert meta["endpoint"] == {"name": "example.greet", "requested_version": requested or actual,
                                "actual_version": actual}
    assert data["version"] == actual


def test_version_above_maximum(example):
    meta, data = meta_of(example.post("/v999.0/example.greet", json={"name": "x", "times": 1}))
    if example.check_max_version:
        assert (meta["result_code"], meta["result_subcode"]) == (400, 31)
        assert "999.0" in meta["result_msg"] and "2.23" in meta["result_msg"]
    else:
        assert meta["result_code"] == 200 and meta["endpoint"]["actual_version"] == "2.4"


def test_version_below_first_and_malformed(example):
    meta, _ = meta_of(example.post("/v1.0/example.greet", json={"name": "x"}))
    assert (meta["result_code"], meta["result_subcode"]) == (400, 32)
    assert "exists from version 2.1" in meta["result_msg"]
    for bad in ("vx.y", "v2", "v2.1.3", "v.1"):
        meta, _ = meta_of(example.post(f"/{bad}/example.greet", json={"name": "x"}))
        assert (meta["result_code"], meta["result_subcode"]) == (400, 2), bad


def test_unknown_endpoint_is_404_envelope(example):
    meta, data = meta_of(example.post("/v2.5/example.nothing", json={}))
    assert meta["result_code"] == 404 and data == {}
    assert meta["result_msg"] == "Unable to find endpoint for name example.nothing and version 2.5"
    meta, _ = meta_of(example.post("/nosuch.endpoint"))
    assert meta["result_msg"] == "Unable to find endpoint for name nosuch.endpoint and version 2.23"


@pytest.mark.parametrize("body, code, field, rule", [
    ({}, 11, "name", "required"),
    ({"name": 5}, 12, "name", "type"),
    ({"name": ""}, 12, "name", "minLength"),
    ({"name": "a", "color": "blue"}, 12, "color", "enum"),
    ({"name": "a", "times": 9}, 12, "times", "maximum"),
    ({"name": "a", "nested": {"deep": [1, "x"]}}, 12, "nested.deep.1", "type"),
    ({"name": "a", "strict": {"ok": True, "extra": 1}}, 12, "strict.extra", "additionalProperties"),
])
def test_validation_errors_name_field_and_rule(example, body, code, field, rule):
    meta, data = meta_of(example.post("/v2.1/example.greet", json=body))
    assert (meta["result_code"], meta["result_subcode"]) == (400, code)
    assert meta["error_data"] == {"field": field, "rule": rule}
    assert f"'{field}'" in meta["result_msg"]
    assert data == {}


@pytest.mark.parametrize("raw, subcode", [(b"{not json", 30), (b"[1, 2]", 12), (b'"text"', 12)])
def test_malformed_bodies_are_400(example, raw, subcode):
    meta, _ = meta_of(example.post("/example.greet", data=raw, content_type="application/json"))
    assert (meta["result_code"], meta["result_subcode"]) == (400, subcode)


def test_query_string_merges_into_body(example):
    meta, data = meta_of(example.get("/v2.1/example.greet?name=q"))
    assert data["text"] == "hello q"
    meta, data = meta_of(example.post("/v2.1/example.greet?name=q", json={"name": "body"}))
    assert data["text"] == "hello body"


def test_unexpected_exception_is_500_without_internals(example, caplog):
    resp = example.post("/example.boom", json={})
    meta, data = meta_of(resp)
    assert (meta["result_code"], meta["result_subcode"]) == (500, 1)
    assert "secret internals" not in resp.get_data(as_text=True)
    assert meta["id"] in meta["result_msg"]  # the request id, to find the logged stack
    assert any(meta["id"] in r.getMessage() for r in caplog.records)


def test_json_lines_batch(example):
    body = b'{"id": "a"}\n{"id": "b"}\n\n{"id": "c"}\n'
    meta, data = meta_of(example.post("/example.update_many", data=body, content_type="application/json-lines"))
    assert data == {"updated": 3, "ids": ["a", "b", "c"]}
    meta, _ = meta_of(example.post("/example.update_many", data=b'{"id": "a"}\n{"x": 1}\n',
                                   content_type="application/json-lines"))
    assert meta["result_code"] == 400 and meta["error_data"]["field"] == "[1]id"
    meta, _ = meta_of(example.post("/example.update_many", data=b"", content_type="application/json-lines"))
    assert (meta["result_code"], meta["result_subcode"]) == (400, 17)


def test_rest_bindings(example):
    resp = example.get("/things/42?verbose=true")
    assert resp.status_code == 200 and resp.get_json() == {"id": 42, "verbose": True}
    resp = example.open("/things/7", method="GET", json={"thing_id": "body cannot override the path"})
    assert resp.status_code == 200 and resp.get_json()["id"] == 7  # path params win, typed, with a body too
    resp = example.get("/things/notanumber")
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["field"] == "thing_id" and body["rule"] == "type" and "thing_id" in body["message"]
    resp = example.post("/things", json={"name": "n"})
    assert resp.status_code == 201 and resp.get_json() == {"name": "n"}
    resp = example.post("/things", json={})
    assert resp.status_code == 400 and resp.get_json()["field"] == "name"
    resp = example.delete("/things")
    assert resp.status_code == 405
    resp = example.get("/plain")
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "OK"
    assert resp.headers["Content-Type"].startswith("text/plain")


INTERNAL = """
shown { authorize: false, "2.1" { request { type: object } } }
hidden {
  internal: true
  authorize: false
  "2.1" { request { type: object } }
}
hidden_rest {
  internal: true
  authorize: false
  "2.1" { http { method: GET, path: "/hidden", status: 200, style: rest } }
}
"""


def test_internal_endpoints_are_neither_served_nor_published(tmp_path):
    from apiserver.service_repo.openapi import build_openapi

    (tmp_path / "svc.conf").write_text(INTERNAL)
    registry = load_specs(tmp_path)
    handlers = bind_handlers(registry, [Binding(f"svc.{n}", None, lambda call: {"called": True})
                                        for n in ("shown", "hidden", "hidden_rest")])
    app = Flask("internal")
    Dispatcher(registry, handlers, None, max_version=(2, 23)).register(app)
    client = app.test_client()
    assert client.post("/svc.shown", json={}).status_code == 200
    for path in ("/svc.hidden", "/v2.1/svc.hidden", "/api/svc.hidden", "/svc.hidden_rest"):
        resp = client.post(path, json={})
        meta, data = meta_of(resp)
        assert resp.status_code == 404 and data == {} and "Unable to find endpoint" in meta["result_msg"], path
    assert client.get("/hidden").status_code == 404
    assert set(build_openapi(registry, "0", "2.23")["paths"]) == {"/svc.shown"}


def test_a_dependency_error_names_the_missing_field(api):
    err = api.error("tasks.get_all", page=3)
    assert (err.code, err.subcode) == (400, 12)
    assert err.meta["error_data"] == {"field": "page_size", "rule": "dependencies"}


@pytest.mark.parametrize("peer,forwarded,client", [
    ("127.0.0.1", None, "127.0.0.1"),  # no header: the peer
    ("192.0.2.9", "203.0.113.7", "192.0.2.9"),  # an unlisted peer's header is ignored
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the left is the client's to forge
    ("127.0.0.1", "203.0.113.7, 10.1.2.3", "203.0.113.7"),  # a listed inner proxy is passed over
    ("127.0.0.1", "10.9.9.9, 10.1.2.3", "10.9.9.9"),  # all hops listed: the left-most
    ("127.0.0.1", "203.0.113.7, unknown", "127.0.0.1"),  # a garbled hop: the last address known
    ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
    ("127.0.0.1", "203.0.113.7:5555", "203.0.113.7"),  # hops with ports, as some load balancers write them
    ("127.0.0.1", "[2001:db8::1]:5555", "2001:db8::1"),
])
def test_the_client_address_is_the_right_most_forwarded_hop_past_the_trusted_proxies(peer, forwarded, client):
    from apiserver.service_repo.proxies import TrustedProxies

    assert TrustedProxies(["127.0.0.1", "10.0.0.0/8"]).client_address(peer, forwarded) == client


def test_a_trusted_proxy_entry_that_is_no_address_is_refused_with_its_name():
    from apiserver.service_repo.proxies import TrustedProxies

    with pytest.raises(ValueError, match="'nginx.local' is not an IP address"):
        TrustedProxies(["nginx.local"])
    assert TrustedProxies([]).https("127.0.0.1", "https") is False
    assert TrustedProxies(["::1"]).https("::1", "https, http") is True
