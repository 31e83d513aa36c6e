"""Model registry and deployments over real HTTP: payload rules, explainer chains, uniqueness, soft
deletes, workspaces, the connector allowlist, secret masking; a real MLflow tracking and scoring
server; a Databricks stand-in (Databricks cannot run here)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import pytest
import requests

from tests.helpers import ALLOW_LOOPBACK, RestClient, ServerProcess

WORKSPACES = ("ws-mlflow", "ws-plain", "ws-other", "ws-multi", "ws-pages")
MLFLOW_REGISTRY = "tango_shared.connectors.deployment.mlflow_registry_connector.MlflowModelRegistryConnector"
MLFLOW_PROXY = "tango_shared.connectors.deployment.mlflow_server_proxy.MlflowModelServerProxy"
DATABRICKS_REGISTRY = "tango_shared.connectors.databricks_registry_connector.DatabricksModelRegistryConnector"
DATABRICKS_PROXY = "tango_shared.connectors.databricks_server_proxy.DatabricksModelServerProxy"
JSON_IN = {"type": "json", "description": "loan request", "schema": {
    "type": "object", "required": ["applicantId", "loanAmount", "monthlyIncome"],
    "properties": {"applicantId": {"type": "string"}, "loanAmount": {"type": "number"},
                   "monthlyIncome": {"type": "number"}}}}
JSON_OUT = {"type": "json", "description": "risk", "schema": {
    "type": "object", "required": ["riskScore", "isApproved"],
    "properties": {"riskScore": {"type": "number"}, "isApproved": {"type": "boolean"}}}}
FILE_IN = {"type": "file", "description": "a CSV", "schema": {"type": "object", "required": ["fileId"],
                                                              "properties": {"fileId": {"type": "string"}}},
           "fileConstraints": {"mediaTypes": ["text/csv"], "maxSizeMb": 25},
           "contentSchema": {"format": "csv", "delimiter": ",", "requiredColumns": ["id", "amount"]}}


class Rest(RestClient):
    """Answers checked against their declared schemas: success status and body, or RestError."""

    def __init__(self, base_url: str, token: str):
        super().__init__(base_url, f"Bearer {token}")


@pytest.fixture(scope="module")
def registry_server(mongo_uri, tmp_path_factory):
    users = ", ".join(f'{{username: "{ws}-admin", company: "{ws}", role: admin, access_key: "KEY{ws.upper()}", '
                      f'secret_key: "secret-of-{ws}-0000000"}}' for ws in WORKSPACES)
    proc = ServerProcess(mongo_uri, f"registry_{uuid4().hex[:8]}", workers=2,
                         extra_env={"APISERVER__auth__fixed_users": f"[{users}]", **ALLOW_LOOPBACK})
    proc.start(tmp_path_factory.mktemp("registry"))
    yield proc
    proc.stop()


def workspace(server, ws: str) -> Rest:
    resp = requests.post(server.base_url + "/api/auth/token/obtain",
                         json={"access_key": f"KEY{ws.upper()}", "secret_key": f"secret-of-{ws}-0000000",
                               "workspace": ws})
    assert resp.status_code == 200, resp.text
    return Rest(server.base_url, resp.json()["access"])


@pytest.fixture(scope="module")
def plain(registry_server) -> Rest:
    return workspace(registry_server, "ws-plain")


@pytest.fixture(scope="module")
def other(registry_server) -> Rest:
    return workspace(registry_server, "ws-other")


def model(code=None, version="1", **kw) -> dict:
    return {"model_code": code or f"m-{uuid4().hex[:10]}", "version": version, "name": "A model",
            "description": "What it does", "input_schema": JSON_IN, "output_schema": JSON_OUT, **kw}


def test_deployments_lifecycle_masking_and_isolation(plain, other):
    key = f"dbx-{uuid4().hex[:8]}"
    payload = {"deployment_key": key, "registry_connector_class": DATABRICKS_REGISTRY,
               "registry_connector_init": {"model_registry_url": "https://dbx.example.com",
                                           "tracking_server_url": "https://dbx.example.com",
                                           "tracking_server_pat": "dapi-SECRET-1"},
               "server_proxy_class": DATABRICKS_PROXY,
               "server_proxy_init": {"server_proxy_url": "https://dbx.example.com",
                                     "server_proxy_pat": "dapi-SECRET-2"}}
    status, body, _ = other("POST", "/api/deployment", payload)
    assert status == 201 and isinstance(body, list) and len(body) == 1
    assert body[0]["workspace"] == "ws-other" and body[0]["deployment_key"] == key
    assert "dapi-SECRET" not in json.dumps(body)
    assert body[0]["registry_connector_init"]["tracking_server_pat"] == "********"
    assert body[0]["registry_connector_init"]["model_registry_url"] == "https://dbx.example.com"
    status, listed, _ = other("GET", "/api/deployment")
    assert status == 200 and key in [d["deployment_key"] for d in listed]
    assert "dapi-SECRET" not in json.dumps(listed)
    status, one, _ = other("GET", f"/api/deployment/{key}")
    assert status == 200 and [d["deployment_key"] for d in one] == [key]
    assert plain("GET", f"/api/deployment/{key}")[0] == 404  # another workspace's: missing, not forbidden
    assert key not in [d["deployment_key"] for d in plain("GET", "/api/deployment")[1]]
    assert plain("DELETE", f"/api/deployment/{key}")[0] == 404
    status, body, headers = other("DELETE", f"/api/deployment/{key}")
    assert status == 204 and headers["X-Message"] == "The TANGO Deployment has been deleted"
    assert headers["X-Message-Code"] == "ok"
    assert other("GET", f"/api/deployment/{key}")[0] == 404
    for client in (other, plain):  # the key is never reusable
        status, err, _ = client("POST", "/api/deployment", payload)
        assert status == 409 and "never reused" in err["message"]


@pytest.mark.parametrize("change, field", [
    ({"registry_connector_class": "os.system"}, "registry_connector_class"),
    ({"server_proxy_class": "subprocess.Popen"}, "server_proxy_class"),
    ({"registry_connector_init": {}}, "registry_connector_init.model_registry_url"),
    ({"registry_connector_init": {"model_registry_url": "not a url"}}, "registry_connector_init.model_registry_url"),
    ({"registry_connector_class": DATABRICKS_REGISTRY}, "registry_connector_init.tracking_server_pat"),
    ({"server_proxy_init": {}}, "server_proxy_init.server_proxy_url"),
    ({"deployment_key": "bad key!"}, "deployment_key"),
])
def test_deployment_validation(plain, change, field):
    payload = {"deployment_key": f"d-{uuid4().hex[:8]}", "registry_connector_class": MLFLOW_REGISTRY,
               "registry_connector_init": {"model_registry_url": "http://127.0.0.1:1"},
               "server_proxy_class": MLFLOW_PROXY, "server_proxy_init": {"server_proxy_url": "http://127.0.0.1:1"},
               **change}
    status, err, _ = plain("POST", "/api/deployment", payload)
    assert status == 400 and err["field"] == field, err
    if field.endswith("_class"):  # the answer lists what is allowed
        assert "allowed" in err["message"] and ("MlflowModelRegistryConnector" in err["message"]
                                                or "MlflowModelServerProxy" in err["message"])


def test_unlisted_class_names_are_never_imported(app, api):
    """In-process, so the server's own sys.modules can be inspected."""
    module = "xml.dom.pulldom"
    sys.modules.pop(module, None)
    client = app.test_client()
    resp = client.post("/api/deployment", headers={"Authorization": api.auth}, json={
        "deployment_key": f"imp-{uuid4().hex[:8]}", "registry_connector_class": f"{module}.PullDOM",
        "registry_connector_init": {"model_registry_url": "http://x.example"}, "server_proxy_class": MLFLOW_PROXY,
        "server_proxy_init": {"server_proxy_url": "http://x.example"}})
    assert resp.status_code == 400 and resp.get_json()["field"] == "registry_connector_class"
    assert module not in sys.modules


@pytest.mark.parametrize("mutate, field", [
    (lambda m: m.pop("description"), "description"),
    (lambda m: m.update(model_code="has space"), "model_code"),
    (lambda m: m.update(version=""), "version"),
    (lambda m: m.update(input_schema={"type": "json"}), "input_schema.schema"),
    (lambda m: m.update(input_schema={"type": "xml", "schema": {}}), "input_schema.type"),
    (lambda m: m.update(input_schema={**JSON_IN, "schema": {"type": "strng"}}), "input_schema.schema.type"),
    (lambda m: m.update(output_schema={**JSON_OUT, "schema": {"properties": {"a": {"minimum": "x"}}}}),
     "output_schema.schema.properties.a.minimum"),
    (lambda m: m.update(input_schema={k: v for k, v in FILE_IN.items() if k != "fileConstraints"}),
     "input_schema.fileConstraints"),
    (lambda m: m.update(input_schema={**FILE_IN, "fileConstraints": {"mediaTypes": ["csv"]}}),
     "input_schema.fileConstraints.mediaTypes.0"),
    (lambda m: m.update(input_schema={**FILE_IN, "fileConstraints": {"mediaTypes": ["text/csv"], "maxSizeMb": 0}}),
     "input_schema.fileConstraints.maxSizeMb"),
    (lambda m: m.update(input_schema={**FILE_IN, "contentSchema": {"format": "csv", "delimiter": ";;"}}),
     "input_schema.contentSchema.delimiter"),
    (lambda m: m.update(input_schema={**FILE_IN, "contentSchema": {"format": "zip"}}),
     "input_schema.contentSchema.manifest"),
    (lambda m: m.update(input_schema={**FILE_IN, "contentSchema": {"format": "pdf"}}),
     "input_schema.contentSchema.format"),
    (lambda m: m.update(explainer={"model_code": "x"}), "explainer.version"),
])
def test_model_payload_rules_name_the_bad_field(plain, mutate, field):
    payload = model()
    mutate(payload)
    status, err, _ = plain("POST", "/api/model", payload)
    assert status == 400 and err["field"] == field, err
    assert plain("GET", f"/api/model/{payload['model_code']}/version/{payload.get('version') or '1'}")[0] == 404


def test_file_models_and_listing(plain):
    code = f"csv-{uuid4().hex[:8]}"
    zip_out = {**FILE_IN, "contentSchema": {"format": "zip", "manifest": [{"path": "out.json", "required": True}]}}
    status, body, _ = plain("POST", "/api/model", model(code, input_schema=FILE_IN, output_schema=zip_out))
    assert status == 201 and body[0]["input_schema"]["contentSchema"]["requiredColumns"] == ["id", "amount"]
    status, listed, _ = plain("GET", "/api/model?page_size=500")
    assert status == 200 and code in [m["model_code"] for m in listed]
    status, err, _ = plain("POST", f"/api/model/{code}/version/1/invoke", {"fileId": "f"})
    assert status == 400 and err["field"] == "input_schema.type"


def test_explainer_chains_all_or_nothing(plain, other):
    def chain(depth, base):
        payload = model(f"{base}-0")
        node = payload
        for i in range(1, depth + 1):
            node["explainer"] = model(f"{base}-{i}")
            node = node["explainer"]
        return payload

    base = f"ch-{uuid4().hex[:6]}"
    status, err, _ = plain("POST", "/api/model", chain(11, base))
    assert status == 400 and err["field"] == "explainer." * 10 + "explainer" and "10" in err["message"]
    assert plain("GET", f"/api/model/{base}-0/version/1")[0] == 404  # nothing of the chain was written
    status, body, _ = plain("POST", "/api/model", chain(10, base))
    assert status == 201
    depth, node = 0, plain("GET", f"/api/model/{base}-0/version/1")[1]
    while node["explainer"]:
        depth, node = depth + 1, node["explainer"]
    assert depth == 10 and node["model_code"] == f"{base}-10"
    assert f"{base}-3" not in [m["model_code"] for m in plain("GET", "/api/model?page_size=500")[1]]

    clash = f"cl-{uuid4().hex[:6]}"
    taken = model(f"{clash}-2")
    assert plain("POST", "/api/model", taken)[0] == 201
    payload = model(f"{clash}-0", explainer=model(f"{clash}-1", explainer=model(f"{clash}-2")))
    status, err, _ = other("POST", "/api/model", payload)  # taken in another workspace: still taken
    assert status == 409 and f"{clash}-2@1" in err["message"]
    for code in (f"{clash}-0", f"{clash}-1"):
        assert other("GET", f"/api/model/{code}/version/1")[0] == 404


def test_uniqueness_soft_delete_and_isolation(plain, other):
    payload = model()
    code = payload["model_code"]
    assert plain("POST", "/api/model", payload)[0] == 201
    assert plain("POST", "/api/model", payload)[0] == 409
    assert other("POST", "/api/model", payload)[0] == 409  # unique across workspaces
    assert other("GET", f"/api/model/{code}/version/1")[0] == 404
    assert other("DELETE", f"/api/model/{code}/version/1")[0] == 404
    assert code not in [m["model_code"] for m in other("GET", "/api/model?page_size=500")[1]]
    status, _, headers = plain("DELETE", f"/api/model/{code}/version/1")
    assert status == 204 and headers["X-Message"] == "The TANGO Model has been deleted"
    assert plain("GET", f"/api/model/{code}/version/1")[0] == 404
    assert plain("DELETE", f"/api/model/{code}/version/1")[0] == 404
    assert plain("POST", "/api/model", payload)[0] == 409  # never reusable
    assert code not in [m["model_code"] for m in plain("GET", "/api/model?page_size=500")[1]]
    payload["version"] = "2"
    assert plain("POST", "/api/model", payload)[0] == 201  # a new version is fine
    # include_deleted (what the console lists): the deleted version too, marked; still per workspace.
    listed = [m for m in plain("GET", "/api/model?page_size=500&include_deleted=true")[1] if m["model_code"] == code]
    assert [m["version"] for m in listed] == ["1", "2"]
    assert listed[0]["deleted"].endswith("+00:00") and listed[1]["deleted"] is None
    assert code not in [m["model_code"] for m in other("GET", "/api/model?page_size=500&include_deleted=true")[1]]


def test_model_listing_pages(registry_server):
    """page and page_size give exactly the models of that slice, in model_code order; their bounds are
    checked by name (a workspace of its own, so that the listing holds only this test's models)."""
    ws = workspace(registry_server, "ws-pages")
    tag = uuid4().hex[:6]
    codes = [f"pg-{tag}-{i}" for i in range(5)]
    for code in reversed(codes):
        assert ws("POST", "/api/model", model(code))[0] == 201

    def page(query: str) -> list[str]:
        status, listed, _ = ws("GET", f"/api/model?{query}")
        assert status == 200, listed
        return [m["model_code"] for m in listed]

    assert page("page=0&page_size=2") == codes[:2]
    assert page("page=1&page_size=2") == codes[2:4]
    assert page("page=2&page_size=2") == codes[4:]
    assert page("page=3&page_size=2") == []
    assert page("page_size=1") == codes[:1]
    assert page("page_size=500") == page("") == codes  # the default page (100) holds them all
    for query, field, rule in (("page_size=0", "page_size", "minimum"), ("page_size=501", "page_size", "maximum"),
                               ("page=-1", "page", "minimum"), ("page=x", "page", "type")):
        status, err, _ = ws("GET", f"/api/model?{query}")
        assert (status, err["field"], err["rule"]) == (400, field, rule), (query, err)


def test_several_deployments_need_a_deployment_key(registry_server):
    ws = workspace(registry_server, "ws-multi")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), DatabricksStandIn)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    keys = [f"multi-{i}-{uuid4().hex[:6]}" for i in range(2)]
    try:
        for key in keys:
            assert ws("POST", "/api/deployment", {
                "deployment_key": key, "registry_connector_class": DATABRICKS_REGISTRY,
                "registry_connector_init": {"model_registry_url": url, "tracking_server_pat": DatabricksStandIn.PAT},
                "server_proxy_class": DATABRICKS_PROXY,
                "server_proxy_init": {"server_proxy_url": url, "server_proxy_pat": DatabricksStandIn.PAT}})[0] == 201
        status, err, _ = ws("POST", "/api/model", model("dbx-multi", "1"))
        assert (status, err["field"], err["rule"]) == (400, "deployment_key", "required")
        assert "2 deployments" in err["message"]
        status, err, _ = ws("POST", "/api/model", model("dbx-multi", "1", deployment_key="no-such-key"))
        assert (status, err["field"], err["rule"]) == (400, "deployment_key", "exists")
        assert ws("GET", "/api/model/dbx-multi/version/1")[0] == 404  # neither wrote anything
        status, body, _ = ws("POST", "/api/model", model("dbx-multi", "1", deployment_key=keys[1]))
        assert status == 201 and body[0]["deployment_key"] == keys[1]
        assert ws("GET", "/api/model/dbx-multi/version/1")[1]["deployment_key"] == keys[1]
    finally:
        httpd.shutdown()
        for key in keys:
            ws("DELETE", f"/api/deployment/{key}")


def test_connector_classes_are_the_allowlist_with_their_secret_fields(plain):
    status, body, _ = plain("POST", "/api/deployments.get_connector_classes", {})
    assert status == 200
    registries = {c["name"]: c for c in body["data"]["registry_connectors"]}
    proxies = {c["name"]: c for c in body["data"]["server_proxies"]}
    assert len(registries) == 5 and len(proxies) == 5  # apiserver/config/default/registry.conf
    assert registries[DATABRICKS_REGISTRY]["secret_keys"] == ["tracking_server_pat"]
    assert registries[DATABRICKS_REGISTRY]["init_schema"]["required"] == ["model_registry_url", "tracking_server_pat"]
    assert registries[MLFLOW_REGISTRY]["secret_keys"] == [] and proxies[DATABRICKS_PROXY]["secret_keys"] == \
        ["server_proxy_pat"]
    assert proxies[MLFLOW_PROXY]["init_schema"]["required"] == ["server_proxy_url"]


class DatabricksStandIn(BaseHTTPRequestHandler):
    """Databricks' REST shapes for the connector tests: bearer PAT, registry lookup, serving endpoint."""

    PAT = "dapi-test-token"
    KNOWN = {("dbx-model", "7"), ("dbx-multi", "1")}

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.PAT}":
            self._reply(401, {"error_code": "UNAUTHENTICATED"})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        from urllib.parse import parse_qs, urlparse
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/2.0/mlflow/model-versions/get":
            if (q.get("name"), q.get("version")) in self.KNOWN:
                self._reply(200, {"model_version": {"name": q["name"], "version": q["version"], "status": "READY"}})
            else:
                self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
        else:
            self._reply(404, {})

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/serving-endpoints/dbx-model/invocations":
            row = body["dataframe_records"][0]
            self._reply(200, {"predictions": [{"riskScore": row["loanAmount"] / 1e6, "isApproved": True}]})
        else:
            self._reply(404, {})

    def log_message(self, *args) -> None:
        pass


def test_databricks_connectors_against_a_stand_in(registry_server):
    ws = workspace(registry_server, "ws-other")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), DatabricksStandIn)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        for leftover in ws("GET", "/api/deployment")[1]:
            ws("DELETE", f"/api/deployment/{leftover['deployment_key']}")
        key = f"dbx-{uuid4().hex[:8]}"
        assert ws("POST", "/api/deployment", {
            "deployment_key": key, "registry_connector_class": DATABRICKS_REGISTRY,
            "registry_connector_init": {"model_registry_url": url, "tracking_server_pat": DatabricksStandIn.PAT},
            "server_proxy_class": DATABRICKS_PROXY,
            "server_proxy_init": {"server_proxy_url": url, "server_proxy_pat": DatabricksStandIn.PAT}})[0] == 201
        status, err, _ = ws("POST", "/api/model", model("dbx-model", "8"))
        assert status == 400 and err["field"] == "version" and "not in the registry" in err["message"]
        assert ws("POST", "/api/model", model("dbx-model", "7"))[0] == 201
        status, answer, _ = ws("POST", "/api/model/dbx-model/version/7/invoke",
                               {"applicantId": "a", "loanAmount": 250000, "monthlyIncome": 4000})
        assert status == 200 and answer == {"riskScore": 0.25, "isApproved": True}
        ws("DELETE", f"/api/deployment/{key}")
        wrong = f"dbx-wrong-{uuid4().hex[:6]}"
        ws("POST", "/api/deployment", {
            "deployment_key": wrong, "registry_connector_class": DATABRICKS_REGISTRY,
            "registry_connector_init": {"model_registry_url": url, "tracking_server_pat": "wrong"},
            "server_proxy_class": DATABRICKS_PROXY, "server_proxy_init": {"server_proxy_url": url,
                                                                          "server_proxy_pat": "wrong"}})
        status, err, _ = ws("POST", "/api/model", model("dbx-model", "9"))
        assert status == 503 and "401" in err["message"]
        ws("DELETE", f"/api/deployment/{wrong}")
    finally:
        httpd.shutdown()


@pytest.mark.timeout(900)  # the session's MLflow may start in this test's setup
def test_mlflow_registration_and_invocation(registry_server, mlflow_stack):
    ws = workspace(registry_server, "ws-mlflow")
    key = f"mlflow-{uuid4().hex[:8]}"
    status, body, _ = ws("POST", "/api/deployment", {
        "deployment_key": key, "registry_connector_class": MLFLOW_REGISTRY,
        "registry_connector_init": {"model_registry_url": mlflow_stack.tracking_url,
                                    "tracking_server_url": mlflow_stack.tracking_url},
        "server_proxy_class": MLFLOW_PROXY, "server_proxy_init": {"server_proxy_url": mlflow_stack.scoring_url}})
    assert status == 201, body
    name = mlflow_stack.model_name
    status, err, _ = ws("POST", "/api/model", model(name, "99"))
    assert status == 400 and "not in the registry" in err["message"] and err["field"] == "version"
    status, body, _ = ws("POST", "/api/model", model(name, "1"))
    assert status == 201 and body[0]["deployment_key"] == key
    status, answer, _ = ws("POST", f"/api/model/{name}/version/1/invoke",
                           {"applicantId": "a-1", "loanAmount": 10000, "monthlyIncome": 1000})
    assert status == 200 and answer == {"riskScore": 0.2, "isApproved": True}  # MLflow's own prediction
    status, err, _ = ws("POST", f"/api/model/{name}/version/1/invoke", {"applicantId": "a-1", "monthlyIncome": 1})
    assert status == 400 and err["field"] == "loanAmount"
    strict_out = {**JSON_OUT, "schema": {**JSON_OUT["schema"], "required": ["riskScore", "explanation"]}}
    assert ws("POST", "/api/model", model(name, "2", output_schema=strict_out))[0] == 201
    status, err, _ = ws("POST", f"/api/model/{name}/version/2/invoke",
                        {"applicantId": "a-2", "loanAmount": 10, "monthlyIncome": 1000})
    assert status == 503 and "explanation" in err["message"]
