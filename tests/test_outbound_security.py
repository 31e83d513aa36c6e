"""Issue 11 (security review) over real HTTP: outbound calls never reach internal addresses, stored
JSON Schemas run safely, deployments are admins' business, and secrets are sealed at rest.

The server here runs WITHOUT the loopback allowlist the other tests' servers have: only 127.0.0.2
is allowlisted (a stand-in registry that redirects, fails or answers too much). A tiny internal
server on 127.0.0.1 counts every request it gets: it must get none.

No test here sends anything to 169.254.169.254: that URL is refused when it is stored (no
traffic), and the connect-time check for link-local addresses is shown on loopback and in the
policy's unit test.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import pymongo
import pytest
import requests

from tests.helpers import ServerProcess, free_port
from tests.test_registry import (
    DATABRICKS_PROXY,
    DATABRICKS_REGISTRY,
    MLFLOW_PROXY,
    MLFLOW_REGISTRY,
    Rest,
    model,
)

WORKSPACES = ("sec-ssrf", "sec-schema", "sec-secrets", "sec-roles", "sec-invoke")
SECRET_BODY = "INTERNAL-ONLY-do-not-leak-7f3a"
MAX_ANSWER = 4096


class Recorder:
    """A tiny HTTP server that counts what it gets and answers per path: (status, headers, body)."""

    def __init__(self, host: str, routes: dict[str, tuple[int, dict, bytes]] | None = None, port: int = 0):
        self.requests: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                recorder.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?")[0]
                status, headers, body = next((v for k, v in (routes or {}).items() if path.startswith(k)),
                                             (200, {}, SECRET_BODY.encode()))
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def internal():
    """The internal service an attacker wants the server to call (on 127.0.0.1, not allowlisted)."""
    server = Recorder("127.0.0.1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def stand_in(internal):
    """An allowlisted upstream (127.0.0.2) that misbehaves: redirects inward, fails, answers too much."""
    routes = {
        "/redirect": (302, {"Location": f"{internal.url}/"}, b"redirecting " + SECRET_BODY.encode()),
        "/fail": (500, {"Content-Type": "text/plain"}, b"stack trace with " + SECRET_BODY.encode()),
        "/huge/invocations": (200, {"Content-Type": "application/json"},
                              json.dumps({"predictions": [{"pad": "x" * (MAX_ANSWER * 4)}]}).encode()),
        "/ok/api/2.0/mlflow/model-versions/get": (200, {"Content-Type": "application/json"},
                                                  b'{"model_version": {"status": "READY"}}'),
    }
    server = Recorder("127.0.0.2", routes)
    yield server
    server.close()


@pytest.fixture(scope="module")
def guarded(mongo_uri, tmp_path_factory):
    users = ", ".join(f'{{username: "{ws}-admin", company: "{ws}", role: admin, access_key: "KEY{ws.upper()}", '
                      f'secret_key: "secret-of-{ws}-0000000"}}' for ws in WORKSPACES)
    proc = ServerProcess(mongo_uri, f"security_{uuid4().hex[:8]}", workers=2, extra_env={
        "APISERVER__auth__fixed_users": f"[{users}]",
        "APISERVER__outbound__allow_hosts": '["127.0.0.2"]',  # not 127.0.0.1, not localhost
        "APISERVER__outbound__max_response_bytes": str(MAX_ANSWER),
        "APISERVER__scheduler__enabled": "false"})
    proc.start(tmp_path_factory.mktemp("security"))
    proc.mongo_uri, proc.db_name = mongo_uri, proc.env["APISERVER__database__name"]
    yield proc
    proc.stop()


def token(server, access_key: str, secret_key: str, ws: str | None = None) -> str:
    body = {"access_key": access_key, "secret_key": secret_key, **({"workspace": ws} if ws else {})}
    resp = requests.post(server.base_url + "/api/auth/token/obtain", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["access"]


def workspace(server, ws: str) -> Rest:
    return Rest(server.base_url, token(server, f"KEY{ws.upper()}", f"secret-of-{ws}-0000000", ws))


def deployment(registry_url: str, proxy_url: str, key: str | None = None, **extra) -> dict:
    return {"deployment_key": key or f"d-{uuid4().hex[:8]}", "registry_connector_class": MLFLOW_REGISTRY,
            "registry_connector_init": {"model_registry_url": registry_url}, "server_proxy_class": MLFLOW_PROXY,
            "server_proxy_init": {"server_proxy_url": proxy_url}, **extra}


def fresh(ws: Rest) -> None:
    """Delete the workspace's deployments, so a test's own is the only one."""
    for leftover in ws("GET", "/api/deployment")[1]:
        assert ws("DELETE", f"/api/deployment/{leftover['deployment_key']}")[0] == 204


# -- 1. one guarded outbound client ------------------------------------------------------------

def test_internal_urls_are_refused_when_stored(guarded, internal):
    ws = workspace(guarded, "sec-ssrf")
    for field, init in (("registry_connector_init.model_registry_url",
                         {"registry_url": f"{internal.url}/private#", "proxy_url": "https://models.example.com"}),
                        ("server_proxy_init.server_proxy_url",
                         {"registry_url": "https://models.example.com", "proxy_url": "http://169.254.169.254/"}),
                        ("server_proxy_init.server_proxy_url",
                         {"registry_url": "https://models.example.com", "proxy_url": "http://[::1]:9/"})):
        status, err, _ = ws("POST", "/api/deployment", deployment(**init))
        assert status == 400 and err["field"] == field and err["code"] == 400, err
        assert "refused" in err["message"] and ("loopback" in err["message"] or "link-local" in err["message"])
    admin = guarded.admin()
    for url in (f"{internal.url}/private#", "http://169.254.169.254/latest/meta-data/"):
        err = admin.error("members.register", container_id="labelling", url=url)
        assert err.code == 400 and err.meta["error_data"] == {"field": "url", "rule": "outbound"}, err.meta
    assert internal.requests == []


def test_base_urls_are_checked_when_stored(guarded, stand_in):
    """A #fragment would cut off the path the server appends ('/private#' + '/api/2.0/...'); a member
    URL's password is never shown back."""
    ws = workspace(guarded, "sec-ssrf")
    status, err, _ = ws("POST", "/api/deployment", deployment("https://models.example.com/private#",
                                                              "https://models.example.com"))
    assert status == 400 and err["field"] == "registry_connector_init.model_registry_url", err
    assert "#fragment" in err["message"]
    admin = guarded.admin()
    err = admin.error("members.register", container_id="vis2code", url="https://members.example.com/x#")
    assert err.code == 400 and err.meta["error_data"] == {"field": "url", "rule": "format"}, err.meta
    admin.call("members.register", container_id="vis2code", url=f"http://svc:member-pw-9@{stand_in.url[7:]}")
    listed = {m["container_id"]: m["url"] for m in admin.call("members.get_all")["members"]}
    assert listed["vis2code"] == f"http://svc:********@{stand_in.url[7:]}"


def test_a_name_resolving_to_loopback_is_refused_at_connect_time(guarded, internal, stand_in):
    """``localhost`` passes the store-time check (names are not resolved then) and is refused when the
    server connects, for the registry, for a model's invocation and for a pipeline member."""
    ws = workspace(guarded, "sec-ssrf")
    fresh(ws)
    key = f"lh-{uuid4().hex[:6]}"
    status, body, _ = ws("POST", "/api/deployment", deployment(f"http://localhost:{internal.port}/private",
                                                               f"http://localhost:{internal.port}/", key))
    assert status == 201, body
    status, err, _ = ws("POST", "/api/model", model())
    assert status == 503 and "refused: localhost resolves to" in err["message"] and "loopback" in err["message"]
    assert SECRET_BODY not in json.dumps(err)
    assert ws("DELETE", f"/api/deployment/{key}")[0] == 204

    # invoke: the registry (an allowlisted stand-in) knows the model; the model server is localhost
    key = f"inv-{uuid4().hex[:6]}"
    assert ws("POST", "/api/deployment", deployment(f"{stand_in.url}/ok", f"http://localhost:{internal.port}",
                                                    key))[0] == 201
    payload = model()
    assert ws("POST", "/api/model", payload)[0] == 201
    status, err, _ = ws("POST", f"/api/model/{payload['model_code']}/version/1/invoke",
                        {"applicantId": "a", "loanAmount": 1, "monthlyIncome": 1})
    assert status == 503 and "refused: localhost resolves to" in err["message"], err
    assert ws("DELETE", f"/api/deployment/{key}")[0] == 204

    admin = guarded.admin()
    admin.call("members.register", container_id="bms", url=f"http://localhost:{internal.port}")
    [check] = admin.call("workflows.check_members", container_ids=["bms"])["members"]
    assert check["ready"] is False and check["error"].startswith("refused: localhost resolves to"), check
    assert internal.requests == []


def test_a_stored_literal_internal_url_is_refused_at_connect_time(guarded, internal):
    """A deployment stored before the guard existed (written straight to the database) still cannot
    make the server call 127.0.0.1: the check that counts is the one at connect time."""
    ws = workspace(guarded, "sec-ssrf")
    fresh(ws)
    key = f"old-{uuid4().hex[:6]}"
    assert ws("POST", "/api/deployment", deployment("https://models.example.com", "https://models.example.com",
                                                    key))[0] == 201
    db = pymongo.MongoClient(guarded.mongo_uri)[guarded.db_name]
    db.deployments.update_one({"_id": key}, {"$set": {
        "registry_connector_init": {"model_registry_url": f"{internal.url}/private#"}}})
    status, err, _ = ws("POST", "/api/model", model())
    assert status == 503 and "refused: 127.0.0.1 is a loopback address" in err["message"], err
    assert internal.requests == []
    assert ws("DELETE", f"/api/deployment/{key}")[0] == 204


def test_redirects_are_errors_and_upstream_bodies_never_reach_the_caller(guarded, internal, stand_in):
    ws = workspace(guarded, "sec-ssrf")
    for path, expected in (("/redirect", "HTTP 302 from the model registry: redirects are not followed"),
                           ("/fail", "HTTP 500 from the model registry")):
        fresh(ws)
        key = f"rd-{uuid4().hex[:6]}"
        assert ws("POST", "/api/deployment", deployment(stand_in.url + path, stand_in.url, key))[0] == 201
        before = len(stand_in.requests)
        status, err, _ = ws("POST", "/api/model", model())
        assert status == 503 and expected in err["message"], err
        assert SECRET_BODY not in json.dumps(err) and "stack trace" not in err["message"]
        assert len(stand_in.requests) == before + 1  # asked once; the redirect was not followed
        assert ws("DELETE", f"/api/deployment/{key}")[0] == 204
    assert internal.requests == []


def test_an_answer_over_the_size_cap_is_refused(guarded, stand_in):
    ws = workspace(guarded, "sec-invoke")
    fresh(ws)
    key = f"big-{uuid4().hex[:6]}"
    assert ws("POST", "/api/deployment", deployment(f"{stand_in.url}/ok", f"{stand_in.url}/huge", key))[0] == 201
    payload = model()
    assert ws("POST", "/api/model", payload)[0] == 201
    status, err, _ = ws("POST", f"/api/model/{payload['model_code']}/version/1/invoke",
                        {"applicantId": "a", "loanAmount": 1, "monthlyIncome": 1})
    assert status == 503 and f"over {MAX_ANSWER} bytes" in err["message"], err
    assert "xxxx" not in err["message"]


def _recorders_on_one_port() -> tuple[Recorder, Recorder]:
    """Servers on 127.0.0.1 and 127.0.0.2 with the same port, so one URL can reach either."""
    for _ in range(50):
        first = Recorder("127.0.0.1", port=free_port())
        try:
            return first, Recorder("127.0.0.2", port=first.port)
        except OSError:
            first.close()
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


def test_dns_rebinding_cannot_get_round_the_check(monkeypatch):
    """A name that resolves to an allowed address when checked and to a refused one a moment later:
    the client resolves once per connection and connects to the address it checked."""
    from apiserver.bll.outbound import AddressPolicy, OutboundClient

    internal, allowed = _recorders_on_one_port()
    port = internal.port
    answers = iter(["127.0.0.2", "127.0.0.1", "127.0.0.1", "127.0.0.1"])
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "rebind.test":
            return real(next(answers), *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        client = OutboundClient(AddressPolicy(["127.0.0.2"]))
        assert client.request("GET", f"http://rebind.test:{port}/", what="the test").status == 200
        assert internal.requests == [] and len(allowed.requests) == 1
    finally:
        internal.close()
        allowed.close()


def test_address_policy():
    import ipaddress

    from apiserver.bll.outbound import AddressPolicy

    policy = AddressPolicy([])
    for addr, kind in (("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("127.0.0.1", "loopback"),
                       ("::1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
                       ("192.168.1.1", "private"), ("fc00::1", "private"), ("224.0.0.1", "multicast"),
                       ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"), ("100.64.0.1", "non-public"),
                       ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local")):
        refusal = policy.refusal(addr, ipaddress.ip_address(addr))
        assert refusal and kind in refusal, (addr, refusal)
    assert policy.refusal("example.com", ipaddress.ip_address("93.184.216.34")) is None
    assert policy.refusal("localhost", ipaddress.ip_address("127.0.0.1")) == \
        "refused: localhost resolves to 127.0.0.1, a loopback address"
    listed = AddressPolicy(["mlflow.internal", "10.0.0.5", "192.168.0.0/16", "fd00::/8"])
    assert listed.refusal("MLflow.Internal", ipaddress.ip_address("10.9.9.9")) is None
    assert listed.refusal("x", ipaddress.ip_address("10.0.0.5")) is None
    assert listed.refusal("x", ipaddress.ip_address("192.168.4.4")) is None
    assert listed.refusal("x", ipaddress.ip_address("fd00::7")) is None
    assert listed.refusal("x", ipaddress.ip_address("10.0.0.6"))
    with pytest.raises(ValueError):
        AddressPolicy(["http://not-a-host/"])
    from apiserver.bll.outbound import OutboundClient, OutboundError

    for url in ("http://[::1", "gopher://example.com/", "http://user:pw@[::1/x"):  # a summary, never a crash
        with pytest.raises(OutboundError, match="^the URL of the registry is not usable$"):
            OutboundClient(policy).request("GET", url, what="the registry")


# -- 2. deployments are admins' business -------------------------------------------------------

def test_only_admins_create_and_delete_deployments(guarded):
    admin_rpc = guarded.client().login("KEYSEC-ROLES", "secret-of-sec-roles-0000000")
    made = admin_rpc.call("users.create", name="plain user", role="user", credentials=True)["credentials"]
    user = Rest(guarded.base_url, token(guarded, made["access_key"], made["secret_key"]))
    admin = workspace(guarded, "sec-roles")
    body = deployment("https://models.example.com", "https://models.example.com")
    status, err, _ = user("POST", "/api/deployment", body)
    assert status == 403 and "role" in err["message"], err
    status, created, _ = admin("POST", "/api/deployment", body)
    assert status == 201 and created[0]["deployment_key"] == body["deployment_key"]
    key = body["deployment_key"]
    assert user("GET", f"/api/deployment/{key}")[0] == 200  # reading stays open to the workspace
    assert user("DELETE", f"/api/deployment/{key}")[0] == 403
    assert admin("GET", f"/api/deployment/{key}")[0] == 200
    assert admin("DELETE", f"/api/deployment/{key}")[0] == 204


# -- 3. stored JSON Schemas run safely ---------------------------------------------------------

REDOS = {"type": "json", "schema": {"type": "object", "required": ["name"],
                                    "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}}


def test_a_catastrophic_pattern_answers_at_once(guarded):
    ws = workspace(guarded, "sec-schema")
    payload = model(input_schema=REDOS)
    assert ws("POST", "/api/model", payload)[0] == 201
    began = time.monotonic()
    status, err, _ = ws("POST", f"/api/model/{payload['model_code']}/version/1/invoke", {"name": "a" * 27 + "!"})
    took = time.monotonic() - began
    assert status == 400 and err["field"] == "name" and "does not match" in err["message"], err
    assert took < 1.0, f"a 28-character input took {took:.1f}s"
    keyed = model(input_schema={"type": "json", "schema": {"type": "object", "additionalProperties": False,
                                                           "patternProperties": {"^x(a+)+$": {}}}})
    assert ws("POST", "/api/model", keyed)[0] == 201
    began = time.monotonic()
    status, err, _ = ws("POST", f"/api/model/{keyed['model_code']}/version/1/invoke", {"x" + "a" * 27 + "!": 1})
    assert status == 400 and time.monotonic() - began < 1.0, err


@pytest.mark.parametrize("schema, field, words", [
    ({"properties": {"a": {"$ref": "REMOTE"}}}, "input_schema.schema.properties.a.$ref", "only references inside"),
    ({"properties": {"a": {"$ref": "file:///etc/passwd"}}}, "input_schema.schema.properties.a.$ref",
     "only references inside"),
    ({"properties": {"a": {"$ref": "#/definitions/missing"}}}, "input_schema.schema.properties.a.$ref",
     "points at nothing"),
    ({"properties": {"a": {"$id": "REMOTE", "$ref": "#/x"}}}, "input_schema.schema.properties.a.$id",
     "may only be a fragment"),
    ({"properties": {"a": {"type": "string", "pattern": "(a)\\1"}}}, "input_schema.schema.properties.a.pattern",
     "not a supported regular expression"),
    ({"patternProperties": {"(?=x)": {}}}, "input_schema.schema.patternProperties.(?=x)",
     "not a supported regular expression"),
    ({"description": "x" * 70_000}, "input_schema.schema", "at most 65536 bytes"),
])
def test_unsafe_schemas_are_refused_when_stored(guarded, internal, schema, field, words):
    ws = workspace(guarded, "sec-schema")
    schema = json.loads(json.dumps(schema).replace("REMOTE", f"{internal.url}/schema.json"))
    payload = model(input_schema={"type": "json", "schema": schema})
    status, err, _ = ws("POST", "/api/model", payload)
    assert status == 400 and err["field"] == field and words in err["message"], err
    assert ws("GET", f"/api/model/{payload['model_code']}/version/1")[0] == 404
    assert internal.requests == []


def test_local_references_still_work(guarded):
    ws = workspace(guarded, "sec-schema")
    schema = {"type": "object", "required": ["amount"], "definitions": {"money": {"type": "number", "minimum": 0}},
              "properties": {"amount": {"$ref": "#/definitions/money"}}}
    payload = model(input_schema={"type": "json", "schema": schema})
    assert ws("POST", "/api/model", payload)[0] == 201
    status, err, _ = ws("POST", f"/api/model/{payload['model_code']}/version/1/invoke", {"amount": -1})
    assert status == 400 and err["field"] == "amount" and "minimum" in err["message"], err


def test_first_error_reads_the_value_once():
    from jsonschema import Draft7Validator

    from apiserver.schema.validation import first_error

    passes = []

    class Counting:
        """Every pass over the value is a call of iter_errors."""

        def __init__(self, schema):
            self.validator = Draft7Validator(schema)

        def iter_errors(self, instance):
            passes.append(1)
            return self.validator.iter_errors(instance)

    error = first_error(Counting({"type": "object", "required": ["a"]}), {})
    assert error is not None and error.validator == "required"
    assert len(passes) == 1
    passes.clear()
    assert first_error(Counting({"type": "object"}), {}) is None and len(passes) == 1


# -- 4. secrets are sealed at rest and never answered ------------------------------------------

def test_secrets_are_sealed_at_rest_and_masked_in_answers(guarded):
    ws = workspace(guarded, "sec-secrets")
    secrets = ["dapi-AT-REST-1", "dapi-AT-REST-2", "pw-IN-URL-3", "key-AT-REST-4", "tok-IN-QUERY-5"]
    key = f"sealed-{uuid4().hex[:6]}"
    status, body, _ = ws("POST", "/api/deployment", {
        "deployment_key": key, "registry_connector_class": DATABRICKS_REGISTRY,
        "registry_connector_init": {"model_registry_url": f"https://svc:{secrets[2]}@dbx.example.com/",
                                    "tracking_server_pat": secrets[0], "api_key": secrets[3]},
        "server_proxy_class": DATABRICKS_PROXY,
        "server_proxy_init": {"server_proxy_url": f"https://dbx.example.com/?token={secrets[4]}&region=eu",
                              "server_proxy_pat": secrets[1]}})
    assert status == 201, body
    answers = [body, ws("GET", "/api/deployment")[1], ws("GET", f"/api/deployment/{key}")[1]]
    for answer in answers:
        text = json.dumps(answer)
        assert not [s for s in secrets if s in text], text
    shown = answers[2][0]
    assert shown["registry_connector_init"] == {"model_registry_url": "https://svc:********@dbx.example.com/",
                                                "tracking_server_pat": "********", "api_key": "********"}
    assert shown["server_proxy_init"] == {"server_proxy_url": "https://dbx.example.com/?token=********&region=eu",
                                          "server_proxy_pat": "********"}
    raw = pymongo.MongoClient(guarded.mongo_uri)[guarded.db_name].deployments.find_one({"_id": key})
    text = json.dumps(raw, default=str)
    assert raw is not None and not [s for s in secrets if s in text], text
    assert raw["registry_connector_init"]["tracking_server_pat"]["sealed"].startswith("v1:")
    assert raw["registry_connector_init"]["model_registry_url"]["shown"] == "https://svc:********@dbx.example.com/"


def test_masking_by_name_and_declared_keys():
    from apiserver.bll.registry.secrets import MASK, secret_name, shown

    for name in ("tracking_server_pat", "password", "db_password", "api_key", "apiKey", "X-Api-Key", "client_secret",
                 "auth_token", "secret_key", "access_key"):
        assert secret_name(name), name
    for name in ("model_registry_url", "token_url", "region", "format", "keyboard"):
        assert not secret_name(name), name
    assert secret_name("opaque", ("opaque",))
    assert shown({"user": "u", "nested": {"password": "p"}}) == {"user": "u", "nested": {"password": MASK}}
    assert shown("postgres://me:pw@db:5432/x") == f"postgres://me:{MASK}@db:5432/x"


def test_sealed_secrets_open_only_with_their_key_and_place():
    from apiserver.apierrors import APIError
    from apiserver.bll.registry.secrets import SecretBox

    init = {"tracking_server_pat": "p-1", "model_registry_url": "https://u:p-2@h/", "region": "eu"}
    box = SecretBox("key-one")
    stored = box.seal_init(init, (), "dep-a/registry_connector_init")
    assert stored["region"] == "eu" and "p-1" not in str(stored) and "p-2" not in str(stored)
    assert box.open_init(stored, "dep-a/registry_connector_init") == init
    for other_box, place in ((SecretBox("key-two"), "dep-a/registry_connector_init"),
                             (box, "dep-b/registry_connector_init"), (box, "dep-a/server_proxy_init")):
        with pytest.raises(APIError) as caught:
            other_box.open_init(stored, place)
        assert "cannot be opened" in str(caught.value)
    with pytest.raises(APIError) as caught:
        box.seal_init({"extra": {"sealed": "v1:AAAA", "shown": "x"}}, (), "dep-a/server_proxy_init")
    assert caught.value.error_data == {"field": "server_proxy_init.extra", "rule": "format"}
