"""ClearML's pipelines service (runs of pipeline controllers, as the web app's pipelines page starts
and deletes them) over real HTTP: start_pipeline copies the controller with the given Args and
enqueues the copy; check_new_run finds an existing pipeline; delete_runs keeps at least one run."""

from __future__ import annotations

from uuid import uuid4


def _pipeline(admin) -> tuple[str, str, str]:
    """A pipeline as ClearML's SDK lays it out: a controller task in '<project>/.pipelines/<name>'."""
    project_name = f"pipes-{uuid4().hex[:8]}"
    holder = admin.call("projects.create", name=f"{project_name}/.pipelines/etl", system_tags=["pipeline"])["id"]
    controller = admin.call("tasks.create", name="etl", type="controller", project=holder, system_tags=["pipeline"],
                            hyperparams={"Args": {"rows": {"section": "Args", "name": "rows", "value": "10",
                                                           "type": "int"}}})["id"]
    admin.call("tasks.started", task=controller)
    admin.call("tasks.completed", task=controller)
    return project_name, holder, controller


def test_start_pipeline_copies_the_controller_with_its_args_and_enqueues_it(admin):
    _, holder, controller = _pipeline(admin)
    queue = admin.call("queues.create", name=f"pipes-{uuid4().hex[:6]}")["id"]
    started = admin.call("pipelines.start_pipeline", task=controller, queue=queue, verify_watched_queue=True,
                         args=[{"name": "rows", "value": "500"}, {"name": "mode", "value": "fast"}])
    assert (started["enqueued"], started["queue_watched"]) == (True, False)
    run = admin.call("tasks.get_by_id", task=started["pipeline"])["task"]
    assert (run["status"], run["type"], run["project"], run["execution"]["queue"]) == \
        ("queued", "controller", holder, queue)
    assert run["hyperparams"]["Args"]["rows"] == {"section": "Args", "name": "rows", "value": "500", "type": "int"}
    assert run["hyperparams"]["Args"]["mode"]["value"] == "fast"
    entries = admin.call("queues.get_by_id", queue=queue)["queue"]["entries"]
    assert [e["task"] for e in entries] == [started["pipeline"]]
    # The source controller is unchanged.
    assert admin.call("tasks.get_by_id", task=controller)["task"]["hyperparams"]["Args"]["rows"]["value"] == "10"
    # With a worker on the queue, the answer says it is watched.
    admin.call("workers.register", worker=f"pipes-worker-{uuid4().hex[:6]}", queues=[queue])
    again = admin.call("pipelines.start_pipeline", task=controller, queue=queue, verify_watched_queue=True)
    assert again["queue_watched"] is True


def test_a_new_pipeline_name_starts_the_run_in_its_own_pipeline_project(admin):
    project_name, holder, controller = _pipeline(admin)
    assert admin.call("pipelines.check_new_run", task=controller, new_project_name=project_name,
                      new_pipeline_name="fresh") == {}
    started = admin.call("pipelines.start_pipeline", task=controller, new_project_name=project_name,
                         new_pipeline_name="fresh")
    expected = f"{project_name}/.pipelines/fresh"
    assert started["new_project"]["name"] == expected
    made = admin.call("projects.get_by_id", project=started["new_project"]["id"])["project"]
    assert (made["name"], made["system_tags"]) == (expected, ["pipeline"])
    assert admin.call("tasks.get_by_id", task=started["pipeline"])["task"]["project"] == made["id"]
    existing = admin.call("pipelines.check_new_run", task=controller, new_project_name=project_name,
                          new_pipeline_name="fresh")
    assert existing == {"existing_project": {"id": made["id"], "name": expected}}
    assert admin.call("pipelines.check_new_run", task=controller, new_project_name=project_name,
                      new_pipeline_name="etl")["existing_project"]["id"] == holder


def test_delete_runs_keeps_one_run_and_reports_each(admin, other_admin):
    _, holder, controller = _pipeline(admin)
    second = admin.call("pipelines.start_pipeline", task=controller)["pipeline"]
    admin.call("tasks.dequeue", task=second)
    refused = admin.error("pipelines.delete_runs", ids=[controller, second], project=holder)
    assert (refused.code, refused.subcode) == (400, 160) and "at least one" in refused.msg  # ClearML's code
    assert refused.meta["error_data"] == {"field": "ids"}
    assert admin.call("tasks.get_by_id", task=second)["task"]["id"] == second
    stranger = admin.call("tasks.create", name="elsewhere", type="training")["id"]
    result = admin.call("pipelines.delete_runs", ids=[second, stranger], project=holder)
    assert [s["id"] for s in result["succeeded"]] == [second] and result["succeeded"][0]["deleted"] is True
    assert [(f["id"], f["error"]["codes"]) for f in result["failed"]] == [(stranger, [400, 101])]
    assert admin.error("tasks.get_by_id", task=second).subcode == 101
    assert admin.call("tasks.get_by_id", task=stranger)["task"]["id"] == stranger
    # Another company can neither start nor delete this pipeline's runs.
    assert other_admin.error("pipelines.start_pipeline", task=controller).subcode == 101
    assert admin.call("tasks.get_all", project=[holder], only_fields=["id"])["tasks"] == [{"id": controller}]
