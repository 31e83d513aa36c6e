"""Regressions of the requests a fuzzer answered with a 500, one class per test, through real HTTP:
integral floats and out-of-range integers, keys BSON cannot hold, half a credential pair, odd
e-mails, enormous timeouts, field paths; and what is not served is not published."""

from __future__ import annotations

from uuid import uuid4

import pytest
import requests

from tests.helpers import ADMIN_KEY, ADMIN_SECRET

LISTINGS = [("tasks.get_all", "tasks"), ("tasks.get_all_ex", "tasks"), ("projects.get_all", "projects"),
            ("queues.get_all", "queues"), ("workflows.get_all", "pipelines"), ("users.get_all", "users")]


@pytest.fixture(scope="module")
def registry(server):
    """A bearer token for the registry's REST surface (default workspace)."""
    resp = requests.post(server.base_url + "/api/auth/token/obtain",
                         json={"access_key": ADMIN_KEY, "secret_key": ADMIN_SECRET}, timeout=30)
    assert resp.status_code == 200, resp.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {resp.json()['access']}"

    def call(method: str, path: str, body=None, params=None):
        r = session.request(method, server.base_url + path, json=body, params=params, timeout=30)
        call.headers = r.headers
        return r.status_code, (r.json() if r.content else None)
    return call


def rule_of(err) -> tuple[str, str]:
    return err.meta["error_data"].get("field"), err.meta["error_data"].get("rule")


# Four more of each listed kind, so that every listing has more than the page size of 3 to page over.
MAKERS = {"tasks": lambda admin, tag: admin.call("tasks.create", name=tag, type="training"),
          "projects": lambda admin, tag: admin.call("projects.create", name=tag),
          "queues": lambda admin, tag: admin.call("queues.create", name=tag),
          "pipelines": lambda admin, tag: admin.call("workflows.create", project_id=tag, workflow=["vis2code"]),
          "users": lambda admin, tag: admin.call("users.create", name=tag, role="user")}


@pytest.mark.parametrize(("name", "key"), LISTINGS)
def test_integral_float_page_and_size_page_every_listing(admin, name, key):
    for _ in range(4):
        MAKERS[key](admin, f"paged-{uuid4().hex[:8]}")
    answer = admin.call(name, page=0.0, page_size=3.0)
    second = admin.call(name, page=1.0, page_size=3.0)
    assert len(answer[key]) == 3 and second[key], (answer, second)  # a page of 3, and more after it
    assert not {item["id"] for item in answer[key]} & {item["id"] for item in second[key]}
    assert answer == admin.call(name, page=0, page_size=3)
    err = admin.error(name, page=0, page_size=3.5)
    assert err.status == 400 and rule_of(err) == ("page_size", "type")


def test_integral_float_in_a_query_string_is_an_integer(registry):
    status, body = registry("GET", "/api/model", params={"page": "0.0", "page_size": "5.0"})
    assert status == 200, body
    status, body = registry("GET", "/api/model", params={"page_size": "5.5"})
    assert status == 400 and (body["field"], body["rule"]) == ("page_size", "type")


@pytest.mark.parametrize("page", [154860530184473280, 2**63, 2**70])
def test_page_far_beyond_any_page_is_a_400_naming_it(admin, registry, page):
    status, body = registry("GET", "/api/model", params={"page": str(page)})
    assert status == 400 and (body["field"], body["rule"]) == ("page", "maximum"), body
    err = admin.error("tasks.get_all", page=page, page_size=10)
    assert err.status == 400 and rule_of(err) == ("page", "maximum")


def test_every_unbounded_integer_gets_a_bound_in_the_published_document(admin):
    status, doc, _ = admin.request("GET", "/openapi.json")
    assert status == 200
    page = doc["paths"]["/api/model"]["get"]["parameters"]
    assert next(p for p in page if p["name"] == "page")["schema"]["maximum"] == 2**31 - 1
    tasks = doc["paths"]["/tasks.get_all"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert tasks["properties"]["page"]["maximum"] == 2**31 - 1


def test_nul_in_a_stored_key_is_a_400_naming_the_field_and_dots_and_dollars_round_trip(admin):
    queue = admin.call("queues.create", name=f"keys-{uuid4().hex[:8]}")["id"]
    err = admin.error("queues.update", queue=queue, metadata={"ok": {"bad\x00key": 1}})
    assert err.status == 400 and rule_of(err) == ("metadata.ok.bad\\u0000key", "keyCharacters")
    odd = {"a.b": {"$c": 1}, "$set": "x", "": 2}
    admin.call("queues.update", queue=queue, metadata=odd)
    assert admin.call("queues.get_by_id", queue=queue)["queue"]["metadata"] == odd


def test_nul_keys_in_registry_schemas_are_refused_and_dollar_keys_kept(registry):
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {"a.b": {"type": "number"}}}
    model = {"model_code": f"k-{uuid4().hex[:8]}", "version": "1", "name": "keys", "description": "keys",
             "input_schema": {"type": "json", "schema": schema},
             "output_schema": {"type": "json", "schema": {"type": "object"}}}
    bad = {**model, "input_schema": {"type": "json", "schema": {**schema, "properties": {"x\x00": {}}}}}
    status, body = registry("POST", "/api/model", bad)
    assert status == 400 and body["field"] == "input_schema.schema.properties.x\\u0000", body
    assert body["rule"] == "keyCharacters"
    status, body = registry("POST", "/api/model", model)
    assert status == 201, body
    status, body = registry("GET", f"/api/model/{model['model_code']}/version/1")
    assert status == 200 and body["input_schema"]["schema"] == schema, body


def test_token_obtain_with_half_a_key_pair_never_reads_the_missing_half(server):
    url = server.base_url + "/api/auth/token/obtain"
    resp = requests.post(url, json={"username": "nobody", "password": "wrong-password", "access_key": ADMIN_KEY},
                         timeout=30)
    assert resp.status_code == 401, resp.text
    resp = requests.post(url, json={"email": "no@example.com", "password": "x", "secret_key": ADMIN_SECRET},
                         timeout=30)
    assert resp.status_code == 401, resp.text
    resp = requests.post(url, json={"access_key": ADMIN_KEY}, timeout=30)
    assert resp.status_code == 400 and resp.json()["code"] == 400


@pytest.mark.parametrize("email", ["not an e-mail", "a@b@c", "@example.com", "x\x00@example.com", "a@", "a@.b"])
def test_users_create_with_an_odd_email_is_a_400_naming_it(admin, email):
    err = admin.error("users.create", name="Odd", email=email)
    assert err.status == 400 and rule_of(err) == ("email", "format")


def test_users_create_with_a_plain_email_still_works(admin):
    email = f"u{uuid4().hex[:8]}@example.com"
    assert admin.call("users.create", name="Plain", email=email)["id"]


def test_workers_register_with_an_enormous_timeout_is_a_400_and_a_long_one_works(admin):
    worker = f"w-{uuid4().hex[:8]}"
    for timeout in (2**62, 2**31):
        err = admin.error("workers.register", worker=worker, timeout=timeout)
        assert err.status == 400 and rule_of(err) == ("timeout", "maximum")
    admin.call("workers.register", worker=worker, timeout=2**31 - 1)
    assert worker in [w["id"] for w in admin.call("workers.get_all")["workers"]]
    err = admin.error("workers.get_all", last_seen=2**62)
    assert err.status == 400 and rule_of(err) == ("last_seen", "maximum")


@pytest.mark.parametrize(("field", "value"), [("only_fields", ["name\x00"]), ("only_fields", ["a..b"]),
                                              ("order_by", ["$where"]), ("order_by", ["-a."])])
def test_field_paths_that_name_no_field_are_a_400(admin, field, value):
    for name in ("tasks.get_all", "projects.get_all", "queues.get_all"):
        err = admin.error(name, **{field: value})
        assert err.status == 400 and rule_of(err) == (field, "fieldPath"), name
    err = admin.error("tasks.get_all", _all_={"fields": ["na\x00me"], "pattern": "x"})
    assert err.status == 400 and rule_of(err) == ("_all_.fields", "fieldPath")


def test_get_all_ex_is_served_and_published(admin):
    status, doc, _ = admin.request("GET", "/openapi.json")
    for name in ("tasks", "projects", "queues"):
        assert f"/{name}.get_all_ex" in doc["paths"]
        admin.call(f"{name}.get_all_ex", page=0, page_size=1)


def test_a_204_has_no_content_type(registry):
    status, body = registry("POST", "/api/model", {
        "model_code": f"d-{uuid4().hex[:8]}", "version": "1", "name": "n", "description": "d",
        "input_schema": {"type": "json", "schema": {"type": "object"}},
        "output_schema": {"type": "json", "schema": {"type": "object"}}})
    assert status == 201, body
    status, _ = registry("DELETE", f"/api/model/{body[0]['model_code']}/version/1")
    assert status == 204 and "Content-Type" not in registry.headers and registry.headers["X-Message"]


@pytest.mark.parametrize("name,key", [("models.get_all", "models"), ("tasks.get_all", "tasks"),
                                      ("projects.get_all", "projects")])
def test_paging_fields_an_old_version_does_not_declare_are_checked_not_a_500(admin, name, key):
    """An API version without scroll paging lets `size`/`scroll_id` through unchecked (extra fields are
    allowed, as in ClearML); the listing still reads them, so it checks them itself."""
    assert isinstance(admin.call(name, _version="2.1", size=2.0)[key], list)
    for field, value in (("size", "abc"), ("page_size", -1.5), ("scroll_id", 5)):
        err = admin.error(name, _version="2.1", **{field: value, **({"page": 0} if field == "page_size" else {})})
        assert err.code == 400 and field in err.msg, (field, err)


def test_a_name_pattern_filters_models_in_the_server_not_a_500(admin):
    """models.get_all forgot to pass its collection to the pattern filter: any non-literal name was a 500."""
    suffix = uuid4().hex[:8]
    made = [admin.call("models.create", name=f"net-{n}-{suffix}", uri=f"file:///tmp/{n}.bin")["id"] for n in "ab"]
    found = admin.call("models.get_all", name=f"^net-[a]-{suffix}$", only_fields=["id"])["models"]
    assert found == [{"id": made[0]}]
