"""The tasks service: every endpoint, every status transition (allowed, refused, forced), isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pymongo
import pytest

# The status machine as ClearML documents it, written out here independently of the server's table.
ALLOWED = {
    "created": {"queued", "in_progress"},
    "queued": {"created", "in_progress", "stopped"},
    "in_progress": {"stopped", "failed", "created", "completed"},
    "stopped": {"closed", "created", "failed", "queued", "in_progress", "published", "publishing", "completed"},
    "closed": {"created", "failed", "published", "publishing", "stopped"},
    "failed": {"created", "stopped", "published", "queued"},
    "publishing": {"published"},
    "completed": {"published", "in_progress", "created"},
    "published": set(),
}
# endpoint that moves a task to each status; whether a change to the same status is allowed
TARGETS = {"queued": ("tasks.enqueue", False), "in_progress": ("tasks.started", False),
           "stopped": ("tasks.stopped", True), "failed": ("tasks.failed", True),
           "completed": ("tasks.completed", True), "closed": ("tasks.close", True),
           "published": ("tasks.publish", True)}


def new_task(api, **fields) -> str:
    return api.call("tasks.create", name=fields.pop("name", "task"), type=fields.pop("type", "training"),
                    **fields)["id"]


def task_in(api, status: str) -> str:
    """A task brought to ``status`` with forced changes."""
    task = new_task(api, name=f"in-{status}")
    if status == "queued":
        api.call("tasks.enqueue", task=task)
    elif status != "created":
        endpoint = TARGETS[status][0]
        api.call(endpoint, task=task, force=True)
    assert api.call("tasks.get_by_id", task=task)["task"]["status"] == status
    return task


@pytest.mark.parametrize("source", ["created", "queued", "in_progress", "stopped", "failed", "completed", "closed",
                                    "published"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_status_transition(api, source, target):
    task = task_in(api, source)
    endpoint, same_ok = TARGETS[target]
    # a change to the same status is allowed, but nothing moves a published task
    allowed = target in ALLOWED[source] or (source == target and same_ok and source != "published")
    if endpoint == "tasks.publish":
        allowed = allowed and source in ("completed", "stopped", "failed", "closed")
    if allowed:
        result = api.call(endpoint, task=task)
        assert result["updated"] == 1 and result["fields"]["status"] == target
        assert api.call("tasks.get_by_id", task=task)["task"]["status"] == target
    else:
        err = api.error(endpoint, task=task)
        assert (err.code, err.subcode) == (400, 110), err
        assert source in err.msg and target in err.msg
        assert api.call("tasks.get_by_id", task=task)["task"]["status"] == source
        version = "2.13" if endpoint == "tasks.enqueue" else None  # enqueue takes force from 2.13
        if source == target == "queued":
            assert api.error(endpoint, version, task=task, force=True).subcode == 706  # already in the queue
        else:
            forced = api.call(endpoint, version, task=task, force=True)
            assert forced["fields"]["status"] == target


def test_status_fields_and_times(api):
    task = new_task(api)
    started = api.call("tasks.started", task=task, status_reason="go", status_message="running now")
    assert started["started"] == 1 and started["fields"]["status_reason"] == "go"
    doc = api.call("tasks.get_by_id", task=task)["task"]
    assert doc["status_message"] == "running now" and doc["started"] and not doc.get("completed")
    first_start = doc["started"]
    api.call("tasks.started", task=task, force=True)  # already running: keeps the first start time
    assert api.call("tasks.get_by_id", task=task)["task"]["started"] == first_start
    api.call("tasks.completed", task=task)
    doc = api.call("tasks.get_by_id", task=task)["task"]
    assert doc["status"] == "completed" and doc["completed"] >= doc["started"]
    api.call("tasks.publish", task=task)
    doc = api.call("tasks.get_by_id", task=task)["task"]
    assert doc["status"] == "published" and doc["published"]
    for name, data in (("tasks.edit", {"name": "x"}), ("tasks.reset", {}), ("tasks.delete", {})):
        assert api.error(name, task=task, **data).code == 400, name


def test_completed_with_publish(api):
    task = task_in(api, "in_progress")
    result = api.call("tasks.completed", _version="2.13", task=task, publish=True)
    assert result["fields"]["status"] == "published"
    assert api.call("tasks.get_by_id", task=task)["task"]["status"] == "published"


def test_unknown_and_malformed_task_ids(api):
    for name in ("tasks.get_by_id", "tasks.started", "tasks.stop", "tasks.reset", "tasks.edit", "tasks.ping",
                 "tasks.enqueue", "tasks.delete", "tasks.set_requirements"):
        data = {"requirements": {}} if name == "tasks.set_requirements" else {}
        err = api.error(name, task="0" * 32, **data)
        assert (err.code, err.subcode) == (400, 101), name
    err = api.error("tasks.started")
    assert (err.code, err.subcode) == (400, 11) and err.meta["error_data"]["field"] == "task"
    err = api.error("tasks.create", name="x", type="nonsense")
    assert err.code == 400 and err.meta["error_data"] == {"field": "type", "rule": "enum"}


def test_create_edit_update_and_references(api):
    project = api.call("projects.create", name="edit-proj")["id"]
    parent = new_task(api, name="parent")
    task = api.call("tasks.create", _version="2.13", name="t", type="testing", project=project, parent=parent,
                    comment="c", tags=["a"], output_dest="s3://bucket", script={"repository": "git@x", "entry_point":
                                                                                  "train.py"},
                    hyperparams={"Args": {"batch.size": {"section": "Args", "name": "batch.size", "value": "32"}}},
                    configuration={"cfg.main": {"name": "cfg.main", "value": "a: 1"}},
                    container={"image": "python:3.11"}, runtime={"gpu": 0},
                    models={"input": [{"name": "base", "model": "m1"}]})["id"]
    doc = api.call("tasks.get_by_id", task=task)["task"]
    assert doc["project"] == project and doc["parent"] == parent and doc["output"]["destination"] == "s3://bucket"
    assert doc["hyperparams"]["Args"]["batch.size"]["value"] == "32"  # dotted names survive
    assert doc["configuration"]["cfg.main"]["value"] == "a: 1"
    assert len(doc["id"]) == 32 and doc["created"].endswith("+00:00")
    for bad in ({"project": "0" * 32}, {"parent": "0" * 32}):
        err = api.error("tasks.create", name="t", type="testing", **bad)
        assert err.code == 400 and err.subcode in (101, 401)
    assert api.error("tasks.validate", name="t", type="testing", project="nope").subcode == 401
    assert api.call("tasks.validate", name="t", type="testing", project=project) == {}

    edited = api.call("tasks.edit", _version="2.13", task=task, name="renamed",
                      hyperparams={"Args": {"lr": {"section": "Args", "name": "lr", "value": "0.1"}}})
    assert edited["updated"] == 1 and edited["fields"]["name"] == "renamed"
    doc = api.call("tasks.get_by_id", task=task)["task"]
    assert set(doc["hyperparams"]["Args"]) == {"lr"}  # edit replaces the section it is given
    api.call("tasks.started", task=task)
    err = api.error("tasks.edit", task=task, name="no")
    assert (err.code, err.subcode) == (400, 110)
    api.call("tasks.edit", task=task, name="forced", force=True)
    updated = api.call("tasks.update", task=task, comment="any status", output__error="boom", tags=["z"])
    assert updated["fields"]["comment"] == "any status"
    doc = api.call("tasks.get_by_id", task=task)["task"]
    assert doc["name"] == "forced" and doc["output"]["error"] == "boom" and doc["tags"] == ["z"]
    req = api.call("tasks.set_requirements", task=task, requirements={"pip": "numpy==2.0"})
    assert req["updated"] == 1
    assert api.call("tasks.get_by_id", task=task)["task"]["script"]["requirements"] == {"pip": "numpy==2.0"}
    before = api.call("tasks.get_by_id", task=task)["task"]["last_update"]
    assert api.call("tasks.ping", task=task) == {}
    assert api.call("tasks.get_by_id", task=task)["task"]["last_update"] >= before


def test_update_batch_json_lines(api):
    ids = [new_task(api, name=f"batch{i}") for i in range(3)]
    body = "\n".join(f'{{"task": "{t}", "comment": "batched"}}' for t in ids)
    status, reply, _ = api.request("POST", "/tasks.update_batch", raw=body,
                                   headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"] == {"updated": 3}
    assert {api.call("tasks.get_by_id", task=t)["task"]["comment"] for t in ids} == {"batched"}


def test_clone(api):
    project = api.call("projects.create", name="clone-proj")["id"]
    source = api.call("tasks.create", _version="2.13", name="src", type="training", project=project, tags=["t1"],
                      system_tags=["development"], execution={"parameters": {"a": 1}, "framework": "torch"},
                      hyperparams={"General": {"x": {"section": "General", "name": "x", "value": "1"}}})["id"]
    api.call("tasks.started", task=source)
    clone = api.call("tasks.clone", task=source)["id"]
    doc = api.call("tasks.get_by_id", task=clone)["task"]
    assert doc["status"] == "created" and doc["name"] == "src" and doc["tags"] == ["t1"]
    assert doc["system_tags"] == [] and doc["project"] == project
    # execution.parameters is ClearML's legacy form: kept as 'legacy' items of the Args section
    assert "parameters" not in doc["execution"] and doc["hyperparams"]["General"]["x"]["value"] == "1"
    assert doc["hyperparams"]["Args"] == {"a": {"section": "Args", "name": "a", "type": "legacy", "value": "1"}}
    assert not doc.get("started")
    other = api.call("tasks.clone", _version="2.13", task=source, new_task_name="copy", new_task_tags=["n"],
                     new_task_system_tags=["s"], execution_overrides={"framework": "jax"},
                     new_task_hyperparams={"General": {}}, validate_references=True)["id"]
    doc = api.call("tasks.get_by_id", task=other)["task"]
    assert (doc["name"], doc["tags"], doc["system_tags"]) == ("copy", ["n"], ["s"])
    assert doc["execution"] == {"framework": "jax"}
    assert doc["hyperparams"] == {"General": {}}
    assert api.error("tasks.clone", task=source, new_task_project="0" * 32, validate_references=True).subcode == 401
    # a project or parent the caller names is checked even without validate_references (another
    # company's project was taken as it was)
    assert api.error("tasks.clone", task=source, new_task_project="0" * 32).subcode == 401
    assert api.error("tasks.clone", task=source, new_task_parent="0" * 32).subcode == 101


def test_enqueue_dequeue_and_default_queue(api):
    default = api.call("tasks.enqueue", task=(t1 := new_task(api)))
    queue = default["fields"]["execution.queue"]
    assert default["queued"] == 1 and len(queue) == 32
    err = api.error("tasks.enqueue", task=t1)
    assert (err.code, err.subcode) == (400, 110)  # queued -> queued is not a change
    named = api.call("tasks.enqueue", _version="2.13", task=(t2 := new_task(api)), queue_name="gpu-queue")
    assert named["fields"]["execution.queue"] != queue
    again = api.call("tasks.enqueue", _version="2.13", task=(t3 := new_task(api)), queue_name="gpu-queue")
    assert again["fields"]["execution.queue"] == named["fields"]["execution.queue"]
    assert api.error("tasks.enqueue", task=new_task(api), queue="0" * 32).subcode == 701
    dev = new_task(api, system_tags=["development", "keep"])
    api.call("tasks.enqueue", task=dev)
    assert api.call("tasks.get_by_id", task=dev)["task"]["system_tags"] == ["keep"]

    out = api.call("tasks.dequeue", task=t1)
    assert out["dequeued"] == 1 and out["fields"]["status"] == "created"
    assert api.call("tasks.get_by_id", task=t1)["task"].get("execution", {}).get("queue") is None
    failed = task_in(api, "failed")
    api.call("tasks.enqueue", task=failed)
    assert api.call("tasks.dequeue", task=failed)["fields"]["status"] == "failed"  # back to where it was
    assert api.call("tasks.dequeue", _version="2.13", task=t2, new_status="stopped")["fields"]["status"] == "stopped"
    assert api.error("tasks.dequeue", task=t2).subcode == 110
    assert api.call("tasks.dequeue", task="f" * 32) == {"dequeued": 0, "updated": 0, "fields": {}}
    api.call("tasks.delete", task=t3, force=True)
    # dequeue of a missing task sweeps every queue: nothing was left behind by the delete
    assert api.call("tasks.dequeue", task=t3) == {"dequeued": 0, "updated": 0, "fields": {}}


def test_stop(api, mongo_uri, db_name):
    queued = task_in(api, "queued")
    result = api.call("tasks.stop", task=queued)
    assert result["fields"]["status"] == "stopped" and result["fields"]["status_message"] == "Stopped by admin"
    orphan = task_in(api, "in_progress")  # no worker runs it
    assert api.call("tasks.stop", task=orphan)["fields"]["status"] == "stopped"
    dev = new_task(api, system_tags=["development"])
    api.call("tasks.started", task=dev)
    assert api.call("tasks.stop", task=dev)["fields"]["status"] == "stopped"

    run = task_in(api, "in_progress")
    me = api.call("users.get_current_user")["user"]
    workers = pymongo.MongoClient(mongo_uri)[db_name]["workers"]
    now = datetime.now(UTC).replace(tzinfo=None)
    workers.insert_one({"_id": f"w-{run}", "company": me["company"]["id"], "worker": f"w-{run}", "task": run,
                        "last_activity_time": now})
    result = api.call("tasks.stop", task=run)
    assert result["fields"]["status"] == "in_progress" and result["fields"]["status_message"] == "stopping"
    assert api.call("tasks.stopped", task=run)["fields"]["status"] == "stopped"  # the worker reports it
    stale = task_in(api, "in_progress")
    workers.insert_one({"_id": f"w-{stale}", "company": me["company"]["id"], "worker": f"w-{stale}",
                        "task": stale, "last_activity_time": now - timedelta(hours=1)})
    assert api.call("tasks.stop", task=stale)["fields"]["status"] == "stopped"
    assert api.error("tasks.stop", task=task_in(api, "completed")).subcode == 110


def test_reset_and_delete(api):
    parent = task_in(api, "completed")
    child = new_task(api, parent=parent)
    api.call("tasks.add_or_update_artifacts", task=parent, artifacts=[{"key": "k", "type": "t"},
                                                                      {"key": "in", "type": "t", "mode": "input"}])
    result = api.call("tasks.reset", task=parent)
    assert result["fields"]["status"] == "created" and result["fields"]["status_reason"] == "reset"
    doc = api.call("tasks.get_by_id", task=parent)["task"]
    assert not doc.get("started") and not doc.get("completed") and doc["status_message"] == "reset"
    # without clear_all the inputs stay; the outputs of the run go with it, as in ClearML
    assert [a["key"] for a in doc["execution"]["artifacts"]] == ["in"]
    api.call("tasks.reset", task=parent, clear_all=True)
    assert not api.call("tasks.get_by_id", task=parent)["task"].get("execution")
    queued = task_in(api, "queued")
    assert api.call("tasks.reset", task=queued)["dequeued"] == {"removed": 1}

    running = task_in(api, "in_progress")
    err = api.error("tasks.delete", task=running)
    assert (err.code, err.subcode) == (400, 123)
    archived = task_in(api, "stopped")
    api.call("tasks.update", task=archived, system_tags=["archived"])
    assert api.call("tasks.delete", task=archived)["deleted"] is True
    assert api.call("tasks.delete", task=running, force=True)["deleted"] is True
    deleted = api.call("tasks.delete", task=parent)
    assert deleted == {"deleted": True, "updated_children": 1, "updated_models": 0, "deleted_models": 0,
                       "events": {"deleted": 0}}
    assert not api.call("tasks.get_by_id", task=child)["task"].get("parent")
    assert api.error("tasks.get_by_id", task=parent).subcode == 101


def test_artifacts(api):
    task = new_task(api)
    out = api.call("tasks.add_or_update_artifacts", "2.6", task=task, artifacts=[
        {"key": "model", "type": "pickle", "uri": "s3://a"}, {"key": "model", "type": "csv", "mode": "input"}])
    assert out == {"added": ["model", "model"], "updated": []}
    out = api.call("tasks.add_or_update_artifacts", "2.6", task=task, artifacts=[
        {"key": "model", "type": "pickle", "uri": "s3://b"}, {"key": "data", "type": "csv"}])
    assert out == {"added": ["data"], "updated": ["model"]}
    arts = api.call("tasks.get_by_id", task=task)["task"]["execution"]["artifacts"]
    by_key = {(a["key"], a["mode"]): a for a in arts}
    assert len(arts) == 3 and by_key[("model", "output")]["uri"] == "s3://b"
    err = api.error("tasks.add_or_update_artifacts", task=task, artifacts=[{"key": "x"}])
    assert err.meta["error_data"] == {"field": "artifacts.0.type", "rule": "required"}
    # From 2.10 the answer is ClearML's count, which the SDK reads.
    assert api.call("tasks.add_or_update_artifacts", task=task, artifacts=[{"key": "d2", "type": "csv"}]) == \
        {"updated": 1}


def test_get_types(api):
    project = api.call("projects.create", name="types-proj")["id"]
    for kind in ("inference", "qc", "qc"):
        new_task(api, type=kind, project=project)
    assert api.call("tasks.get_types", projects=[project]) == {"types": ["inference", "qc"]}


def test_company_isolation_and_public_tasks(api, other_api):
    mine = new_task(api, name="private-to-default")
    err = other_api.error("tasks.get_by_id", task=mine)
    assert (err.code, err.subcode) == (400, 101)
    assert mine not in [t["id"] for t in other_api.call("tasks.get_all", only_fields=["id"])["tasks"]]
    for name in ("tasks.started", "tasks.edit", "tasks.delete", "tasks.enqueue", "tasks.update"):
        assert other_api.error(name, task=mine).subcode == 101, name
    assert other_api.error("tasks.make_public", ids=[mine]).subcode == 101  # not theirs: nothing changes

    assert api.call("tasks.make_public", ids=[mine]) == {"updated": 1}
    seen = other_api.call("tasks.get_by_id", task=mine)["task"]
    assert seen["company"] == "" and seen["name"] == "private-to-default"
    assert mine in [t["id"] for t in other_api.call("tasks.get_all", id=[mine])["tasks"]]
    err = other_api.error("tasks.edit", task=mine, name="hijack")
    assert (err.code, err.subcode) == (403, 21)
    assert other_api.error("tasks.make_private", ids=[mine]).subcode == 101  # not theirs to take back
    assert api.call("tasks.make_private", ids=[mine]) == {"updated": 1}
    assert other_api.error("tasks.get_by_id", task=mine).subcode == 101
    clone = other_api.error("tasks.clone", task=mine)
    assert clone.subcode == 101
