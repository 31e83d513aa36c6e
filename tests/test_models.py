"""ClearML's models service through the Flask test client: records, task links, ready and archived
states, listing, metadata, batch answers and company scoping."""

from __future__ import annotations

from uuid import uuid4


def new_model(api, **fields) -> str:
    fields.setdefault("ready", False)  # a draft, as the SDK creates them
    fields.setdefault("name", f"m-{uuid4().hex[:6]}")
    fields.setdefault("uri", f"s3://bucket/{uuid4().hex}.pt")
    return api.call("models.create", **fields)["id"]


def test_create_get_edit_update(api):
    project = api.call("projects.create", name=f"mp-{uuid4().hex[:6]}")["id"]
    mid = new_model(api, name="resnet", framework="PyTorch", labels={"cat": 1}, design={"layers": 3},
                    project=project, tags=["a"], metadata={"acc": {"key": "acc", "type": "float", "value": "0.9"}})
    model = api.call("models.get_by_id", model=mid)["model"]
    assert (model["name"], model["framework"], model["labels"], model["ready"]) == ("resnet", "PyTorch", {"cat": 1},
                                                                                      False)
    assert model["metadata"] == {"acc": {"key": "acc", "type": "float", "value": "0.9"}}
    assert api.call("models.edit", model=mid, comment="better", uri="s3://b/2.pt")["updated"] == 1
    out = api.call("models.update", model=mid, name="resnet-2", ui_cache={"x": 1})
    assert out["updated"] == 1 and out["fields"]["name"] == "resnet-2"
    model = api.call("models.get_by_id", model=mid)["model"]
    assert (model["comment"], model["uri"], model["name"]) == ("better", "s3://b/2.pt", "resnet-2")
    assert api.error("models.create", name="x").meta["error_data"]["field"] == "uri"
    assert api.error("models.create", name="x", uri="u", project="nope").subcode == 401
    assert api.error("models.get_by_id", model="0" * 32).subcode == 201


def test_a_ready_model_is_edited_like_a_draft(api):
    mid = new_model(api)
    api.call("models.set_ready", model=mid)
    assert api.call("models.get_by_id", model=mid)["model"]["ready"] is True
    assert api.call("models.edit", model=mid, uri="s3://other", comment="fine")["updated"] == 1  # as ClearML
    model = api.call("models.get_by_id", model=mid)["model"]
    assert (model["uri"], model["comment"], model["ready"]) == ("s3://other", "fine", True)


def test_task_output_and_input_models(api):
    project = api.call("projects.create", name=f"tm-{uuid4().hex[:6]}")["id"]
    task = api.call("tasks.create", name="trainer", type="training", project=project,
                    execution={"framework": "Keras"})["id"]
    out = api.call("models.update_for_task", task=task, uri="s3://w/1.h5", iteration=7)
    assert out["created"] is True and out["updated"] == 1
    model = api.call("models.get_by_id", model=out["id"])["model"]
    assert (model["task"], model["project"], model["framework"], model["name"]) == (task, project, "Keras", "trainer")
    doc = api.call("tasks.get_by_id", task=task)["task"]
    assert [m["model"] for m in doc["models"]["output"]] == [out["id"]]
    assert doc["output"]["model"] == out["id"] and doc["last_iteration"] == 7
    assert api.call("models.get_by_task_id", task=task)["model"]["id"] == out["id"]
    again = api.call("models.update_for_task", task=task, override_model_id=out["id"])
    assert again["created"] is False and again["id"] == out["id"]
    assert api.error("models.update_for_task", task=task).subcode == 11

    consumer = api.call("tasks.create", name="user", type="inference")["id"]
    api.call("tasks.add_or_update_model", task=consumer, name="base", model=out["id"], type="input")
    used = api.call("tasks.get_by_id", task=consumer)["task"]
    assert used["models"]["input"][0]["model"] == used["execution"]["model"] == out["id"]
    # as in ClearML, an id no model has is taken (tasks.create takes those too); another company's never
    elsewhere = api.call("tasks.create", name="unknown model", type="inference")["id"]
    api.call("tasks.add_or_update_model", task=elsewhere, name="x", model="0" * 32, type="input")
    err = api.error("models.delete", model=out["id"])
    assert err.subcode == 205  # another task uses it as input
    assert api.call("models.delete", model=out["id"], force=True)["deleted"] is True
    # as in ClearML, a task that used it keeps the link, marked deleted
    assert [m["model"] for m in api.call("tasks.get_by_id", task=consumer)["task"]["models"]["input"]] == \
        [f"__DELETED__{out['id']}"]
    api.call("tasks.delete_models", task=consumer, models=[{"name": "base", "type": "input"}])
    assert api.call("tasks.get_by_id", task=task)["task"]["models"]["output"] == []
    # and the legacy single-model fields
    assert "model" not in api.call("tasks.get_by_id", task=task)["task"]["output"]
    assert "model" not in api.call("tasks.get_by_id", task=consumer)["task"].get("execution", {})

    second = new_model(api)
    api.call("tasks.add_or_update_model", task=consumer, name="other", model=second, type="input")
    assert api.call("tasks.delete_models", task=consumer, models=[{"name": "other", "type": "input"}])["updated"] == 1
    assert api.call("tasks.get_by_id", task=consumer)["task"]["models"]["input"] == []
    assert api.call("models.get_by_id", model=second)  # the model itself stays


def test_set_ready_publishes_the_creating_task(api):
    task = api.call("tasks.create", name="done", type="training")["id"]
    api.call("tasks.started", task=task)
    api.call("tasks.stopped", task=task)
    mid = api.call("models.update_for_task", task=task, uri="s3://w/2.h5")["id"]
    out = api.call("models.set_ready", model=mid)
    assert out["updated"] == 1 and out["published_task"]["id"] == task
    assert api.call("tasks.get_by_id", task=task)["task"]["status"] == "published"
    assert api.error("models.delete", model=mid).subcode == 206  # its creating task is published
    running = api.call("tasks.create", name="running", type="training")["id"]
    api.call("tasks.started", task=running)
    other = api.call("models.update_for_task", task=running, uri="s3://w/3.h5")["id"]
    result = api.call("models.publish_many", ids=[other, "0" * 32])
    assert result["succeeded"] == []  # as in ClearML: a running task cannot be published, so neither is its model
    assert {f["id"]: f["error"]["codes"] for f in result["failed"]} == {other: [400, 110], "0" * 32: [400, 201]}
    assert api.call("tasks.get_by_id", task=running)["task"]["status"] == "in_progress"
    assert api.call("models.get_by_id", model=other)["model"]["ready"] is False
    result = api.call("models.publish_many", ids=[other], publish_tasks=False)
    assert result["succeeded"] == [{"id": other, "updated": True}]
    assert api.error("models.set_ready", model=other).subcode == 203  # ready already


def test_models_are_created_ready_unless_told_and_a_published_task_readies_its_output(api):
    plain = api.call("models.create", name="plain", uri="s3://w/p.h5")["id"]
    assert api.call("models.get_by_id", model=plain)["model"]["ready"] is True
    task = api.call("tasks.create", name="to publish", type="training")["id"]
    api.call("tasks.started", task=task)
    first = api.call("models.update_for_task", task=task, uri="s3://w/a.h5")["id"]
    api.call("tasks.stopped", task=task)
    assert api.call("models.get_by_id", model=first)["model"]["ready"] is False
    api.call("tasks.publish", task=task)
    assert api.call("models.get_by_id", model=first)["model"]["ready"] is True
    assert api.call("models.edit", model=first, ready=False, uri="s3://w/b.h5")["updated"] == 1


def test_listing_language_and_paging(api):
    tag = uuid4().hex[:6]
    project = api.call("projects.create", name=f"list-{tag}")["id"]
    sub = api.call("projects.create", name=f"list-{tag}/sub")["id"]
    ids = [new_model(api, name=f"{tag}-{i}", project=project if i < 3 else sub, framework="TF" if i % 2 else "PT",
                     tags=["even"] if i % 2 == 0 else ["odd"]) for i in range(5)]
    api.call("models.set_ready", model=ids[0])
    names = lambda **kw: [m["name"] for m in api.call("models.get_all", name=f"^{tag}-", **kw)["models"]]  # noqa: E731
    assert names(order_by=["name"]) == [f"{tag}-{i}" for i in range(5)]
    assert names(order_by=["-name"], page=1, page_size=2) == [f"{tag}-2", f"{tag}-1"]
    assert names(ready=True) == [f"{tag}-0"]
    assert set(names(ready=False)) == {f"{tag}-{i}" for i in range(1, 5)}
    assert set(names(tags=["-even"])) == {f"{tag}-1", f"{tag}-3"}
    assert set(names(framework=["TF"])) == {f"{tag}-1", f"{tag}-3"}
    assert set(names(project=[project])) == {f"{tag}-{i}" for i in range(3)}
    assert len(names(project=[project], include_subprojects=True)) == 5
    assert names(_any_={"pattern": f"{tag}-4$", "fields": ["name", "comment"]}) == [f"{tag}-4"]
    only = api.call("models.get_all_ex", id=[ids[1]], only_fields=["name"])["models"]
    assert only == [{"id": ids[1], "name": f"{tag}-1"}]
    assert api.call("models.get_by_id_ex", id=[ids[2]])["models"][0]["id"] == ids[2]
    assert set(api.call("models.get_frameworks", projects=[project])["frameworks"]) == {"PT", "TF"}
    assert api.error("models.get_all", name="[").subcode == 21


def test_archive_tags_metadata_move(api):
    a, b = new_model(api), new_model(api)
    out = api.call("models.archive_many", ids=[a, b])
    assert out == {"succeeded": [{"id": a, "archived": True}, {"id": b, "archived": True}], "failed": []}
    assert "archived" in api.call("models.get_by_id", model=a)["model"]["system_tags"]
    assert api.call("models.unarchive_many", ids=[a])["succeeded"] == [{"id": a, "unarchived": True}]
    assert api.call("models.update_tags", ids=[a, b], add_tags=["x", "y"])["updated"] == 2
    api.call("models.update_tags", ids=[a], remove_tags=["x"])
    assert api.call("models.get_by_id", model=a)["model"]["tags"] == ["y"]
    api.call("models.add_or_update_metadata", model=a, metadata=[
        {"key": "dotted.key", "type": "str", "value": "1"}, {"key": "$dollar", "type": "int", "value": "2"}])
    api.call("models.add_or_update_metadata", model=a, metadata=[{"key": "dotted.key", "type": "str", "value": "3"}])
    assert api.call("models.get_by_id", model=a)["model"]["metadata"] == {
        "dotted.key": {"key": "dotted.key", "type": "str", "value": "3"},
        "$dollar": {"key": "$dollar", "type": "int", "value": "2"}}
    assert api.call("models.delete_metadata", model=a, keys=["$dollar"])["updated"] == 1
    api.call("models.add_or_update_metadata", model=a, metadata=[{"key": "only", "value": "v"}],
             replace_metadata=True)
    assert list(api.call("models.get_by_id", model=a)["model"]["metadata"]) == ["only"]
    name = f"moved-{uuid4().hex[:6]}/deep/er"
    target = api.call("models.move", ids=[a, b], project_name=name)["project_id"]
    assert api.call("projects.get_by_id", project=target)["project"]["name"] == name
    parent = api.call("projects.get_all", name=f"^{name.rsplit('/', 1)[0]}$")["projects"][0]
    assert api.call("projects.get_by_id", project=target)["project"]["parent"] == parent["id"]
    assert api.call("models.get_by_id", model=b)["model"]["project"] == target
    out = api.call("models.delete_many", ids=[a, "0" * 32])
    assert out["succeeded"][0]["id"] == a and out["succeeded"][0]["deleted"] is True
    assert out["failed"][0]["error"]["codes"] == [400, 201]


def test_another_companys_model_looks_missing(api, other_api):
    mid = new_model(api)
    # ClearML answers a missing model with 400/201, which the SDK relies on; another company's
    # model is indistinguishable from a missing one.
    for call, data in (("models.get_by_id", {"model": mid}), ("models.edit", {"model": mid, "comment": "x"}),
                       ("models.delete", {"model": mid}), ("models.set_ready", {"model": mid})):
        assert other_api.error(call, **data).subcode == 201, call
    assert other_api.call("models.get_all", id=[mid])["models"] == []
    assert other_api.call("models.archive_many", ids=[mid])["failed"][0]["error"]["codes"] == [400, 201]
    assert "comment" not in api.call("models.get_by_id", model=mid)["model"]  # the edit did nothing
