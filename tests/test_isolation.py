"""Generated from the specs: another company's id is, on every endpoint that takes one, exactly a
missing id.

Companies A (the session server's default company) and B each own one object of each kind an
endpoint can name: task, report, model, project, queue, ClearML worker, user, workflow pipeline,
registry model, deployment, render task and render worker. For every served endpoint and every
request field naming such an object (``ID_FIELDS`` below, per service where a name means different
kinds), the admin of B sends the request with that field naming A's object, and again naming an
object nobody has (any other required id field names B's own object). The two answers must be the
same once the ids are swapped back (status, subcode, message, data): no 200 with A's data, no
"forbidden" that tells B the id exists, no 5xx. The missing-id answer must be a lookup's answer
(RPC "invalid <kind> id", REST 404, or a success finding nothing), not an error about another field
that would prove nothing; on read-only endpoints B's own object must be found (answered differently
from a missing one), so a check cannot pass by reaching nothing. Afterwards A's objects are re-read
unchanged.
"""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any
from uuid import uuid4

import pytest
import requests

from tests.helpers import ApiClient, check_response, specs

# Request fields naming an object, by service ("*" for any); the value is the object's kind.
ID_FIELDS: dict[str, dict[str, str]] = {
    "*": {"task": "task", "tasks": "task", "model": "model", "project": "project", "projects": "project",
          "destination_project": "project", "queue": "queue", "target_queue": "queue", "queue_ids": "queue",
          "worker": "worker", "worker_ids": "worker", "user": "user", "pipeline": "pipeline",
          "new_task_parent": "task", "new_task_project": "project"},
    "tasks": {"ids": "task", "id": "task", "parent": "task"},
    "models": {"ids": "model", "id": "model", "parent": "model"},
    "projects": {"id": "project"},
    "queues": {"id": "queue"},
    "users": {"id": "user"},
    "pipelines": {"ids": "task"},
    "reports": {"task": "report", "id": "report"},
    "workers": {"queues": "queue"},
    "registry": {"modelCode": "registry_model"},
    "deployments": {"deploymentKey": "deployment"},
    "manager": {"task_id": "render_task", "worker_id": "render_worker"},
    "organization": {"projects": None, "tasks": None},  # listing filters of each kind, not ids
}
# Fields that name no existing object: the caller's own name for a new one, or a field the spec says
# is ignored. A task's model link is stored as given, as ClearML stores it (tasks.create and edit too),
# never looked up, so any id is answered alike; every read through the link is scoped to the reader.
NOT_REFERENCES = {("workers.register", "worker"), ("workers.status_report", "worker"),
                  ("workers.unregister", "worker"), ("workers.set_runtime_properties", "worker"),
                  ("manager.create_task", "task_id"), ("queues.get_next_task", "task"),
                  ("tasks.add_or_update_model", "model")}
# Endpoints left out, each with why.
EXCEPTIONS = {
    # The project id of a workflow is the caller's own label for a TANGO project, not a record.
    "workflows.create": "project_id is a free label",
    "workflows.get_all": "project_id is a free label",
    # A worker's id is the name its agent chose; company B may run an agent of the same name, so
    # reporting about "A's" worker name creates B's own worker (what a missing name does too).
    "workers.get_runtime_properties": "a worker name is not a reference (B's lookup of it is its own)",
}
# Values that get a request past its other rules (the smallest valid value is not enough).
NOW = int(time.time())
VALID_OTHERWISE = {
    "models.update_for_task": {"uri": "file:///model.pt"},
    "queues.get_queue_metrics": {"from_date": NOW - 3600, "to_date": NOW, "interval": 3600},
    "workers.get_stats": {"from_date": NOW - 3600, "to_date": NOW + 3600, "interval": 3600,
                          "items": [{"key": "cpu_usage", "category": "avg"}]},
    "projects.get_hyperparam_values": {"section": "Args", "name": "lr"},  # what _build gives its objects
    "projects.get_model_metadata_values": {"key": "size"},
    "events.add": {"type": "log", "msg": "isolation"},  # an event without a type is refused before any lookup
}
# Id fields a request needs besides its declared required ones (one of several), named with B's own.
ALSO_NEEDED = {"reports.move": {"project"}, "events.add": {"task"}, "events.add_batch": {"task"}}
# The missing-id answer of these endpoints is not their own lookup's: why each still cannot tell.
UNPROVEN: dict[str, str] = {}
# Read-only fields that find nothing even for their owner here, so the positive control cannot run on
# them (the comparison with a missing id still does): what they would need.
EMPTY_FOR_OWNER = {
    ("queues.get_queue_metrics", "queue_ids"): "samples, which the metrics job takes on its own period",
    ("projects.get_unique_metric_variants", "project"): "reported scalars",
}


def _declared_ids(spec) -> dict[str, str]:
    if spec.name in EXCEPTIONS:
        return {}
    props = spec.request_schema.get("properties") or {}
    fields = {**ID_FIELDS["*"], **ID_FIELDS.get(spec.service, {})}
    return {name: kind for name, kind in fields.items()
            if kind and name in props and (spec.name, name) not in NOT_REFERENCES}


def _subject(spec):
    """The spec whose request a json-lines batch sends (one line), else the spec itself."""
    if spec.batch_action is None:
        return spec
    return specs().resolve(spec.batch_action[0], spec.batch_action[1])


def _cases() -> list:
    out = []
    for name in specs().names():
        spec = specs().versions(name)[-1]
        if spec.internal or not spec.authorize:
            continue
        ids = _declared_ids(_subject(spec))
        if ids:
            out.append((spec, ids))
    return out


CASES = _cases()


def _minimal(schema: dict, defs: dict) -> Any:
    """The smallest value a schema accepts (enough to get past validation to the lookup)."""
    if "$ref" in schema:
        return _minimal(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or (kind is None and "properties" in schema):
        return {k: _minimal(schema["properties"][k], defs) for k in schema.get("required") or []
                if k in (schema.get("properties") or {})}
    if kind == "array":
        return [_minimal(schema.get("items") or {"type": "string"}, defs)] if schema.get("minItems") else []
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return "x" * max(1, schema.get("minLength", 1))


def _missing_ids(owned: dict[str, Any]) -> dict[str, Any]:
    """Per kind, an id nobody has (in the form that kind's ids take)."""
    out: dict[str, Any] = {}
    for kind, value in owned.items():
        if isinstance(value, int):
            out[kind] = 10**9 + random.randrange(10**6)
        elif kind == "registry_model":
            out[kind] = (f"missing-{uuid4().hex[:10]}", value[1])
        elif kind == "deployment":
            out[kind] = f"missing-{uuid4().hex[:8]}"
        else:
            out[kind] = uuid4().hex
    return out


def normalise(answer: Any, kind: str, found: dict[str, Any], missing: dict[str, Any]) -> Any:
    """An answer to the id ``found[kind]`` with that id written as ``missing[kind]``."""
    value, instead = found[kind], missing[kind]
    text = json.dumps(answer, sort_keys=True)
    if kind == "registry_model":
        return json.loads(text.replace(value[0], instead[0]))
    if not isinstance(value, int):
        return json.loads(text.replace(value, instead))
    return _swap_number(json.loads(text), value, instead, "")


def _swap_number(node: Any, value: int, instead: int, key: str) -> Any:
    """An integer id (render tasks and workers) as the value of an ``..._id`` key or in a message."""
    if isinstance(node, dict):
        return {k: _swap_number(v, value, instead, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_swap_number(v, value, instead, key) for v in node]
    if isinstance(node, int) and not isinstance(node, bool) and key.endswith("_id") and node == value:
        return instead
    if isinstance(node, str):
        return re.sub(rf"(?<=_id=){value}(?![\w.])", str(instead), node)
    return node


def _body(spec, ids: dict[str, str], values: dict[str, Any]) -> dict:
    subject = _subject(spec)
    schema = subject.request_schema
    defs = schema.get("definitions") or {}
    props = schema.get("properties") or {}
    body = {k: _minimal(props[k], defs) for k in schema.get("required") or [] if k in props}
    body.update(VALID_OTHERWISE.get(subject.name, {}))
    for field, kind in ids.items():
        value = values[kind]
        if kind == "registry_model":
            body["modelCode"], body["modelVersion"] = value
            continue
        prop = props[field]
        types = prop.get("type") if isinstance(prop.get("type"), list) else [prop.get("type")]
        body[field] = [value] if "array" in types else value
    return body


def _send(client: ApiClient, spec, body: dict) -> tuple[int, Any]:
    """One call; the answer without what differs between any two calls (request and trace ids)."""
    if spec.batch_action is not None:
        status, answer, _ = client.request("POST", f"/{spec.name}", raw=json.dumps(body),
                                           headers={"Content-Type": "application/json-lines"})
    elif spec.http is None or spec.http.style != "rest":
        status, answer, _ = client.request("POST", f"/{spec.name}", body)
    else:
        path = spec.http.spec_path
        for param in spec.http.path_params:
            path = path.replace("{" + param + "}", str(body.pop(param)))
        if spec.http.method in ("GET", "DELETE"):
            query = "&".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in body.items())
            status, answer, _ = client.request(spec.http.method, path + (f"?{query}" if query else ""))
        else:
            status, answer, _ = client.request(spec.http.method, path, body)
        if isinstance(answer, dict):
            answer = {k: v for k, v in answer.items() if k != "request_id"}
        return status, answer
    if isinstance(answer, dict) and "meta" in answer:
        meta = answer["meta"]
        if status == 200 and spec.batch_action is None and not spec.raw_response:
            check_response(spec.name, meta["endpoint"]["actual_version"], answer["data"])
        answer = {"code": meta["result_code"], "subcode": meta["result_subcode"], "msg": meta["result_msg"],
                  "error_data": meta["error_data"], "data": answer["data"]}
    return status, answer


# What an endpoint answers when the id it looked up does not exist: RPC "invalid <kind> id" (or
# ClearML's generic invalid id / project not found / task not in queue), REST 404, or a success
# that simply finds nothing (a listing filtered by id).
MISSING_SUBCODES = {10, 101, 201, 302, 401, 403, 701, 703, 1001, 1005, 1201}  # 1005: no stats of those workers
EVENTS_NOT_ADDED = 131


def _is_a_lookup_answer(status: int, answer: Any) -> bool:
    if status in (200, 201, 202, 204, 404):
        return True
    if isinstance(answer, str):  # a plain-text answer (a download): its error is the message
        return status == 400 and re.match(r"invalid \w+ id", answer) is not None
    if status == 400 and isinstance(answer, dict) and answer.get("subcode") == EVENTS_NOT_ADDED:
        # events of a task the caller cannot find are counted, and a call that adds none says so
        return any(k.startswith("invalid task id") for k in (answer.get("error_data") or {}).get("errors_info", {}))
    return status == 400 and isinstance(answer, dict) and answer.get("subcode") in MISSING_SUBCODES


MLFLOW = "tango_shared.connectors.deployment.mlflow_"


def _build(client: ApiClient, base_url: str, who: str) -> tuple[dict[str, Any], requests.Session]:
    """One object of each kind in ``client``'s company."""
    tag = f"{who}-{uuid4().hex[:8]}"
    # with what the aggregate endpoints report (tags, parameters, metadata, a child, a queue entry, stats)
    project = client.call("projects.create", name=f"iso-{tag}", description="isolation", tags=["iso"])["id"]
    task = client.call("tasks.create", name=f"iso-{tag}", type="training", project=project, tags=["iso"],
                       hyperparams={"Args": {"lr": {"section": "Args", "name": "lr", "value": "0.1"}}})["id"]
    client.call("tasks.create", name=f"iso-child-{tag}", type="training", project=project, parent=task)
    report = client.call("reports.create", name=f"iso-report-{tag}", project=project)["id"]
    model = client.call("models.create", name=f"iso-{tag}", uri="file:///m.pt", project=project, task=task,
                        tags=["iso"], framework="PyTorch")["id"]
    client.call("models.add_or_update_metadata", model=model,
                metadata=[{"key": "size", "type": "int", "value": "7"}])
    queue = client.call("queues.create", name=f"iso-{tag}")["id"]
    client.call("queues.add_task", queue=queue, task=task)  # an entry; the task stays created
    worker = f"iso-worker-{tag}"
    client.call("workers.register", worker=worker, queues=[queue], timeout=600)
    client.call("workers.status_report", worker=worker, timestamp=int(time.time() * 1000),
                machine_stats={"cpu_usage": [12.5], "memory_used": 1024})
    user = client.call("users.get_current_user")["user"]["id"]  # who created all of the above
    pipeline = client.call("workflows.create", project_id=f"iso-{tag}", workflow=["labelling"])["id"]
    rest = _rest(client)
    code = f"iso-{tag}"
    resp = rest.post(base_url + "/api/model", json={
        "model_code": code, "version": "1", "name": "iso", "description": "isolation",
        "input_schema": {"type": "json", "schema": {"type": "object"}},
        "output_schema": {"type": "json", "schema": {"type": "object"}}})
    assert resp.status_code == 201, resp.text
    deployment = f"iso-{tag}"
    resp = rest.post(base_url + "/api/deployment", json={
        "deployment_key": deployment,
        "registry_connector_class": MLFLOW + "registry_connector.MlflowModelRegistryConnector",
        "registry_connector_init": {"model_registry_url": "http://127.0.0.1:1"},
        "server_proxy_class": MLFLOW + "server_proxy.MlflowModelServerProxy",
        "server_proxy_init": {"server_proxy_url": "http://127.0.0.1:1"}})
    assert resp.status_code == 201, resp.text
    resp = rest.post(base_url + "/tasks", json={"type": "blender_render", "parser": "blender_render",
                                                "priority": -10**9, "settings": {"filepath": "/iso.blend"}})
    assert resp.status_code == 202, resp.text
    render_task = resp.json()["id"]
    resp = rest.post(base_url + "/workers", json={"hostname": f"iso-{tag}"})
    render_worker = resp.json()[f"iso-{tag}"]["id"]
    return {"project": project, "task": task, "report": report, "model": model, "queue": queue,
            "worker": worker, "user": user, "pipeline": pipeline, "registry_model": (code, "1"),
            "deployment": deployment, "render_task": render_task, "render_worker": render_worker}, rest


def _tear_down(rest: requests.Session, base_url: str, owned: dict[str, Any]) -> None:
    # a live deployment would make every later /api/model of the company need a reachable registry
    assert rest.delete(f"{base_url}/api/deployment/{owned['deployment']}").status_code == 204
    rest.patch(f"{base_url}/tasks/{owned['render_task']}", json={"status": "canceled"})


@pytest.fixture(scope="module")
def worlds(admin, other_admin, server):
    """(A's objects, B's objects, ids nobody has)."""
    theirs, rest_a = _build(admin, server.base_url, "a")
    own, rest_b = _build(other_admin, server.base_url, "b")
    yield theirs, own, _missing_ids(theirs)
    _tear_down(rest_a, server.base_url, theirs)
    _tear_down(rest_b, server.base_url, own)


def _snapshot(admin: ApiClient, base_url: str, owned: dict[str, Any]) -> dict:
    """What company A sees of its objects (compared before and after company B's calls)."""
    rest = _rest(admin)
    task_fields = ["id", "name", "status", "project", "system_tags", "tags", "comment"]
    code, version = owned["registry_model"]
    return {
        "project": admin.call("projects.get_by_id", project=owned["project"])["project"]["name"],
        "tasks": admin.call("tasks.get_all", id=[owned["task"], owned["report"]], only_fields=task_fields,
                            order_by=["name"])["tasks"],
        "model": {k: v for k, v in admin.call("models.get_by_id", model=owned["model"])["model"].items()
                  if k in ("name", "uri", "ready", "system_tags", "task", "project")},
        "queue": admin.call("queues.get_by_id", queue=owned["queue"])["queue"]["name"],
        "worker": [w["queues"] for w in admin.call("workers.get_all")["workers"] if w["id"] == owned["worker"]],
        "user": {k: v for k, v in admin.call("users.get_by_id", user=owned["user"])["user"].items()
                 if k in ("name", "role", "company")},
        "pipeline": admin.call("workflows.get_by_id", pipeline=owned["pipeline"])["pipeline"]["status"],
        "registry_model": rest.get(f"{base_url}/api/model/{code}/version/{version}").json()["deleted"],
        "deployment": rest.get(f"{base_url}/api/deployment/{owned['deployment']}").status_code,
        "render_task": {k: v for k, v in rest.get(f"{base_url}/tasks/{owned['render_task']}").json().items()
                        if k in ("status", "priority", "worker_id")},
        "render_worker": rest.get(f"{base_url}/workers/{owned['render_worker']}").json()["status"],
    }


def test_the_generated_cases_cover_every_kind_and_surface():
    kinds = {kind for _, ids in CASES for kind in ids.values()}
    assert kinds == {"task", "report", "model", "project", "queue", "worker", "user", "pipeline",
                     "registry_model", "deployment", "render_task", "render_worker"}
    assert {"rest" if spec.http else "rpc" for spec, _ in CASES} == {"rest", "rpc"}
    assert len(CASES) > 120


def test_another_companys_id_is_a_missing_id_on_every_endpoint(worlds, other_admin, admin, server):
    """Per endpoint and id field: B's request naming A's object there (and B's own objects in the other
    required id fields) answers as the same request naming no object; B's own object is found."""
    theirs, own, missing = worlds
    before = _snapshot(admin, server.base_url, theirs)
    differ, unreached, broken, not_found = [], [], [], []
    for spec, ids in CASES:
        required = set(_subject(spec).request_schema.get("required") or [])
        for field, kind in ids.items():
            fields = {f: k for f, k in ids.items()
                      if f == field or f in required or f in ALSO_NEEDED.get(spec.name, ())}

            def ask(value, fields=fields, field=field, kind=kind, spec=spec):
                return _send(other_admin, spec, _body(spec, fields, {**own, kind: value}))

            where = f"{spec.name} {field}={kind}"
            answers = {"missing": ask(missing[kind]), "theirs": ask(theirs[kind])}
            if spec.read_only and spec.batch_action is None and (spec.name, field) not in EMPTY_FOR_OWNER:
                answers["own"] = ask(own[kind])
            if any(status >= 500 for status, _ in answers.values()):
                broken.append(f"{where}: {answers}")
                continue
            base = answers["missing"]
            status, body = answers["theirs"]
            if (status, normalise(body, kind, theirs, missing)) != base:
                differ.append(f"{where}:\n  A's id:  {status} {str(body)[:300]}\n  missing: {base[0]} "
                              f"{str(base[1])[:300]}")
            if not _is_a_lookup_answer(*base) and spec.name not in UNPROVEN:
                unreached.append(f"{where}: {base[0]} {str(base[1])[:200]}")
            if "own" in answers:
                status, body = answers["own"]
                if (status, normalise(body, kind, own, missing)) == base:
                    not_found.append(f"{where}: {status} {str(body)[:200]}")
    assert not broken, "5xx:\n" + "\n".join(broken)
    assert not differ, f"{len(differ)} fields tell another company's id from a missing one:\n" + "\n".join(differ)
    assert not unreached, f"{len(unreached)} fields never reached their lookup:\n" + "\n".join(unreached)
    assert not not_found, "read-only endpoints answer the caller's own object as a missing one (the check " \
        "would reach nothing there):\n" + "\n".join(not_found)
    assert _snapshot(admin, server.base_url, theirs) == before


def _rest(client: ApiClient) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = client.auth
    return session
