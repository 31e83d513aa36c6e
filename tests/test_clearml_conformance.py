"""ClearML's API as its clients and web app send it (``/v999.0``, nulls for unset fields), checked
against ClearML's documented answers, through real HTTP to a real server process."""

from __future__ import annotations

import time

import pytest

V = "999.0"  # what the web app sends: served at the newest version


def _name(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


@pytest.fixture(scope="module")
def listing(admin):
    """A project with five tasks named t0..t4 (t0 oldest), one with a parent, one in a subproject."""
    top = _name("cf")
    project = admin.call("projects.create", name=top)["id"]
    sub = admin.call("projects.create", name=f"{top}/sub")["id"]
    ids = []
    for i in range(5):
        fields = {"name": f"t{i}", "type": "training", "project": project, "comment": None, "tags": None}
        if i == 3:
            fields["parent"] = ids[0]
        if i == 4:
            fields["project"] = sub
        ids.append(admin.call("tasks.create", **fields)["id"])
    return {"project": project, "sub": sub, "ids": ids, "top": top}


def test_scroll_paging_continues_and_refresh_rereads_what_was_read(admin, listing):
    body = {"project": [listing["project"]], "include_subprojects": True, "order_by": ["name"],
            "only_fields": ["name"], "size": 2, "refresh_scroll": None}
    first = admin.call("tasks.get_all_ex", _version=V, scroll_id=None, **body)
    assert [t["name"] for t in first["tasks"]] == ["t0", "t1"]
    second = admin.call("tasks.get_all_ex", _version=V, scroll_id=first["scroll_id"], **body)
    assert [t["name"] for t in second["tasks"]] == ["t2", "t3"]
    admin.call("tasks.update", task=listing["ids"][1], name="t1-renamed")
    refreshed = admin.call("tasks.get_all_ex", _version=V, **{**body, "refresh_scroll": True,
                                                              "scroll_id": second["scroll_id"]})
    assert [t["name"] for t in refreshed["tasks"]] == ["t0", "t1-renamed", "t2", "t3"]
    third = admin.call("tasks.get_all_ex", _version=V, scroll_id=refreshed["scroll_id"], **body)
    assert [t["name"] for t in third["tasks"]] == ["t4"]
    last = admin.call("tasks.get_all_ex", _version=V, scroll_id=third["scroll_id"], **body)
    assert last["tasks"] == []
    admin.call("tasks.update", task=listing["ids"][1], name="t1")
    err = admin.error("tasks.get_all_ex", _version=V, scroll_id="not-a-scroll", size=2)
    assert (err.code, err.subcode) == (400, 1104)


def test_page_paging_answers_no_scroll_id(admin, listing):
    answer = admin.call("tasks.get_all_ex", _version=V, project=[listing["project"]], order_by=["-name"],
                        page=1, page_size=2, only_fields=["name"])
    assert [t["name"] for t in answer["tasks"]] == ["t1", "t0"]
    assert "scroll_id" not in answer


def test_subprojects_are_included_only_when_asked(admin, listing):
    names = lambda **kw: sorted(t["name"] for t in admin.call(  # noqa: E731
        "tasks.get_all_ex", _version=V, project=[listing["project"]], only_fields=["name"], **kw)["tasks"])
    assert names() == ["t0", "t1", "t2", "t3"]
    assert names(include_subprojects=True) == ["t0", "t1", "t2", "t3", "t4"]


def test_only_fields_dereference_project_user_and_parent(admin, listing):
    me = admin.call("users.get_current_user")["user"]
    tasks = admin.call("tasks.get_all_ex", _version=V, id=[listing["ids"][3]],
                       only_fields=["name", "project.name", "user.name", "parent.name", "status"])["tasks"]
    assert tasks == [{"id": listing["ids"][3], "name": "t3", "status": "created",
                      "project": {"id": listing["project"], "name": listing["top"]},
                      "user": {"id": me["id"], "name": me["name"]},
                      "parent": {"id": listing["ids"][0], "name": "t0"}}]
    # as ClearML's join: every reference the listing does not read is still an object, {id}
    plain = admin.call("tasks.get_all_ex", _version=V, id=[listing["ids"][3]], only_fields=["project"])["tasks"]
    assert plain == [{"id": listing["ids"][3], "project": {"id": listing["project"]}}]
    whole = admin.call("tasks.get_all_ex", _version="2.12", id=[listing["ids"][3]])["tasks"][0]
    assert (whole["project"], whole["parent"]) == ({"id": listing["project"]}, {"id": listing["ids"][0]})
    assert admin.call("tasks.get_all", id=[listing["ids"][3]])["tasks"][0]["project"] == listing["project"]


def test_only_fields_dereference_models_and_queue_entries(admin, listing):
    task = listing["ids"][2]
    model = admin.call("models.create", name="weights", uri="s3://b/w.bin", project=listing["project"],
                       task=task)["id"]
    admin.call("tasks.add_or_update_model", task=task, name="out", model=model, type="output")
    tasks = admin.call("tasks.get_all_ex", _version=V, id=[task],
                       only_fields=["models.output.model.name", "models.output.name"])["tasks"]
    assert tasks[0]["models"]["output"] == [{"name": "out", "model": {"id": model, "name": "weights"}}]
    models = admin.call("models.get_all_ex", _version=V, id=[model], only_fields=["name", "task.name",
                                                                                  "project.name"])["models"]
    assert models == [{"id": model, "name": "weights", "task": {"id": task, "name": "t2"},
                       "project": {"id": listing["project"], "name": listing["top"]}}]
    queue = admin.call("queues.create", name=_name("q"))["id"]
    admin.call("tasks.enqueue", task=listing["ids"][1], queue=queue)
    try:
        got = admin.call("queues.get_all_ex", _version=V, id=[queue], only_fields=["*", "entries.task.name"])
        assert [e["task"] for e in got["queues"][0]["entries"]] == [{"id": listing["ids"][1], "name": "t1"}]
    finally:
        admin.call("tasks.dequeue", task=listing["ids"][1])


def test_a_single_value_where_a_list_is_declared(admin, listing):
    tasks = admin.call("tasks.get_all_ex", _version=V, id=listing["ids"][0], only_fields=["name"])["tasks"]
    assert [t["name"] for t in tasks] == ["t0"]
    tasks = admin.call("tasks.get_all_ex", _version=V, project=listing["project"], status="created",
                       only_fields=["name"], order_by="name")["tasks"]
    assert [t["name"] for t in tasks] == ["t0", "t1", "t2", "t3"]


def test_a_date_filter_as_one_string_or_a_range(admin, listing):
    created = admin.call("tasks.get_by_id", task=listing["ids"][2])["task"]["created"]
    later = admin.call("tasks.get_all_ex", _version=V, project=[listing["project"]], include_subprojects=True,
                       created=f">={created}", only_fields=["name"], order_by=["name"])["tasks"]
    assert [t["name"] for t in later] == ["t2", "t3", "t4"]
    ranged = admin.call("tasks.get_all_ex", _version=V, project=[listing["project"]], created=[created, created],
                        only_fields=["name"])["tasks"]
    assert [t["name"] for t in ranged] == ["t2"]


def test_order_by_several_fields_puts_empty_last_both_ways(admin, listing):
    project = admin.call("projects.create", name=_name("order"))["id"]
    for name, comment in (("a", "x"), ("b", ""), ("c", "y"), ("d", None), ("e", "x")):
        admin.call("tasks.create", name=name, type="training", project=project, comment=comment)
    order = lambda *keys: [t["name"] for t in admin.call(  # noqa: E731
        "tasks.get_all_ex", _version=V, project=[project], order_by=list(keys), only_fields=["name"])["tasks"]]
    assert order("comment", "-name")[:3] == ["e", "a", "c"]
    assert sorted(order("comment", "-name")[3:]) == ["b", "d"]
    assert order("-comment", "name")[:3] == ["c", "a", "e"]
    assert sorted(order("-comment", "name")[3:]) == ["b", "d"]


def test_order_by_a_field_outside_the_schema_orders_nothing(admin, listing):
    """As ClearML (the web app's projects page sends 'featured' first): the next keys decide; a key
    that cannot name a field is a 400 naming order_by, never a 500."""
    for name in ("m-b", "m-a", "m-c"):
        admin.call("models.create", name=name, uri=f"s3://b/{name}", project=listing["project"])
    queue_prefix = _name("oq")
    for name in ("b", "a", "c"):
        admin.call("queues.create", name=f"{queue_prefix}-{name}")
    listings = (("tasks.get_all_ex", "tasks", {"project": [listing["project"]]}),
                ("models.get_all_ex", "models", {"project": [listing["project"]], "name": "^m-"}),
                ("queues.get_all_ex", "queues", {"name": f"^{queue_prefix}"}),
                ("projects.get_all_ex", "projects", {"name": f"^{listing['top']}"}))
    for endpoint, key, body in listings:
        def names(order, endpoint=endpoint, key=key, body=body, **kw):
            return [x["name"] for x in admin.call(endpoint, _version=V, order_by=order, only_fields=["name"],
                                                  **body, **kw)[key]]
        expected = names(["name"])
        assert expected == sorted(expected) and len(expected) >= 2, endpoint
        for order in (["featured", "name"], ["-featured", "name"], ["no.such.field", "name"], ["--name", "name"],
                      ["ñame", "name"], ["x" * 2000, "name"], ["-", "name"], ["", "name"]):
            assert names(order) == expected, (endpoint, order)
            assert names(order, scroll_id=None, size=2) == expected[:2], (endpoint, order)
        assert names(["+name"]) == expected and names(["-name"]) == expected[::-1], endpoint
        by_id = names(["id"])  # alone, such a key leaves only the tie-break on id
        assert names(["featured"]) == names(["-featured"]) == names(["--name"]) == by_id, endpoint
        for bad in ("$x", "a..b", "name.", "-$x", "a.$b", "a\x00b"):
            status, answer = admin.envelope(endpoint, _version=V, order_by=[bad, "name"], **body)
            assert (status, answer["meta"]["result_subcode"]) == (400, 12), (endpoint, bad)
            assert "order_by" in answer["meta"]["result_msg"], (endpoint, bad)


def test_models_projects_and_queues_scroll_too(admin, listing):
    for name in ("m1", "m2"):
        admin.call("models.create", name=name, uri=f"s3://b/{name}", project=listing["project"])
    for service, key, body in (("projects", "projects", {"name": f"^{listing['top']}"}),
                               ("models", "models", {"project": [listing["project"]]})):
        first = admin.call(f"{service}.get_all_ex", _version=V, scroll_id=None, size=1, order_by=["name"], **body)
        rest = admin.call(f"{service}.get_all_ex", _version=V, scroll_id=first["scroll_id"], size=10,
                          order_by=["name"], **body)
        everything = admin.call(f"{service}.get_all_ex", _version=V, order_by=["name"], **body)[key]
        assert [x["id"] for x in first[key] + rest[key]] == [x["id"] for x in everything]
        assert len(first[key]) == 1


# -- tasks: archive, bulk actions, move, tags, configuration -------------------------------------

def _task(admin, name="t", **fields):
    return admin.call("tasks.create", name=name, **{"type": "training", **fields})["id"]


def test_archive_dequeues_and_unarchive_restores(admin):
    queue = admin.call("queues.create", name=_name("arch"))["id"]
    queued, plain = _task(admin), _task(admin)
    admin.call("tasks.enqueue", task=queued, queue=queue)
    assert admin.call("tasks.archive", _version=V, tasks=[queued, plain]) == {"archived": 2}
    got = {t["id"]: t for t in admin.call("tasks.get_all_ex", _version=V, id=[queued, plain],
                                          only_fields=["status", "system_tags"])["tasks"]}
    assert got[queued] == {"id": queued, "status": "created", "system_tags": ["archived"]}
    assert got[plain]["system_tags"] == ["archived"]
    assert admin.call("queues.get_by_id", queue=queue)["queue"]["entries"] == []
    assert admin.call("tasks.unarchive", _version=V, tasks=[queued]) == {"unarchived": 1}
    assert admin.call("tasks.get_by_id", task=queued)["task"]["system_tags"] == []


def test_archive_many_and_unarchive_many_answer_succeeded_and_failed(admin):
    task = _task(admin)
    answer = admin.call("tasks.archive_many", _version=V, ids=[task, "0" * 32])
    assert answer["succeeded"] == [{"id": task, "archived": True}]
    assert [(f["id"], f["error"]["codes"]) for f in answer["failed"]] == [("0" * 32, [400, 101])]
    answer = admin.call("tasks.unarchive_many", _version=V, ids=[task])
    assert answer == {"succeeded": [{"id": task, "unarchived": True}], "failed": []}


def test_bulk_actions_fail_one_item_never_the_others(admin):
    queue = admin.call("queues.create", name=_name("bulk"))["id"]
    a, b, published = _task(admin), _task(admin), _task(admin)
    admin.call("tasks.completed", task=published, force=True, publish=True)
    answer = admin.call("tasks.enqueue_many", _version=V, ids=[a, b, published], queue=queue, validate_tasks=None)
    assert [s["id"] for s in answer["succeeded"]] == [a, b]
    assert all(s["queued"] == 1 for s in answer["succeeded"])
    assert [(f["id"], f["error"]["codes"]) for f in answer["failed"]] == [(published, [400, 110])]
    answer = admin.call("tasks.dequeue_many", _version=V, ids=[a, published])
    assert [s["id"] for s in answer["succeeded"]] == [a] and [f["id"] for f in answer["failed"]] == [published]
    answer = admin.call("tasks.stop_many", _version=V, ids=[b], force=None)
    assert answer["succeeded"][0]["fields"]["status"] == "stopped"
    answer = admin.call("tasks.publish_many", _version=V, ids=[b, a])
    assert [s["id"] for s in answer["succeeded"]] == [b] and [f["id"] for f in answer["failed"]] == [a]
    answer = admin.call("tasks.reset_many", _version=V, ids=[a, published])
    assert [s["id"] for s in answer["succeeded"]] == [a] and [f["id"] for f in answer["failed"]] == [published]
    answer = admin.call("tasks.delete_many", _version=V, ids=[a, published], return_file_urls=True)
    assert [s["id"] for s in answer["succeeded"]] == [a] and answer["succeeded"][0]["deleted"] is True
    assert [f["id"] for f in answer["failed"]] == [published]
    assert admin.error("tasks.get_by_id", task=a).subcode == 101


def test_move_by_name_creates_the_project_with_its_parents(admin):
    task = _task(admin)
    top = _name("moved")
    project = admin.call("tasks.move", _version=V, ids=[task], project=None, project_name=f"{top}/inner")["project_id"]
    assert admin.call("tasks.get_by_id", task=task)["task"]["project"] == project
    names = [p["name"] for p in admin.call("projects.get_all", name=f"^{top}")["projects"]]
    assert sorted(names) == [top, f"{top}/inner"]
    assert admin.call("tasks.move", ids=[task], project=None, project_name=None) == {"project_id": None}
    assert admin.call("tasks.get_by_id", task=task)["task"].get("project") is None


def test_update_tags_adds_and_removes(admin):
    a, b = _task(admin, tags=["old", "keep"]), _task(admin)
    assert admin.call("tasks.update_tags", _version=V, ids=[a, b], add_tags=["new"], remove_tags=["old"]) == \
        {"updated": 2}
    assert admin.call("tasks.get_by_id", task=a)["task"]["tags"] == ["keep", "new"]
    assert admin.call("tasks.get_by_id", task=b)["task"]["tags"] == ["new"]


def test_clients_before_2_3_keep_system_tags_in_tags(admin):
    old = "2.2"
    task = admin.call("tasks.create", _version=old, name=_name("legacy-tags"), type="training",
                      tags=["annotator7", "development", "mine"])["id"]
    stored = admin.call("tasks.get_by_id", task=task)["task"]  # a newer client sees them apart
    assert (sorted(stored["tags"]), sorted(stored["system_tags"])) == (["mine"], ["annotator7", "development"])
    assert admin.call("tasks.get_by_id", _version=old, task=task)["task"]["tags"] == [
        "annotator7", "development", "mine"]
    found = admin.call("tasks.get_all", _version=old, id=[task], tags=["-development"])["tasks"]
    assert found == []  # a system tag filter too
    admin.call("tasks.update", _version=old, task=task, tags=["mine"])
    assert admin.call("tasks.get_by_id", _version=old, task=task)["task"]["tags"] == ["mine"]
    both = admin.call("tasks.create", _version=old, name=_name("legacy-tags"), type="training", tags=["archived"],
                      system_tags=["x"])["id"]  # system_tags given: tags are taken as they are
    assert admin.call("tasks.get_by_id", task=both)["task"]["tags"] == ["archived"]
    project = admin.call("projects.create", _version=old, name=_name("legacy-tags"), description="",
                         tags=["public", "p"])["id"]
    assert admin.call("projects.get_by_id", project=project)["project"]["system_tags"] == ["public"]


def test_configuration_items_edit_list_and_delete(admin):
    task = _task(admin, configuration={"General": {"name": "General", "value": "a: 1", "type": "yaml"}})
    assert admin.call("tasks.edit_configuration", _version=V, task=task, replace_configuration=None, force=None,
                      configuration=[{"name": "extra.cfg", "value": "x=1", "type": "ini", "description": None},
                                     {"name": "empty", "value": ""}]) == {"updated": 1}
    names = admin.call("tasks.get_configuration_names", _version=V, tasks=[task], skip_empty=None)
    assert names == {"configurations": [{"task": task, "names": ["General", "extra.cfg"]}]}
    names = admin.call("tasks.get_configuration_names", _version=V, tasks=[task], skip_empty=False)
    assert names["configurations"][0]["names"] == ["General", "empty", "extra.cfg"]
    got = admin.call("tasks.get_configurations", _version=V, tasks=[task], names=["extra.cfg"])
    assert got == {"configurations": [{"task": task, "configuration": [
        {"name": "extra.cfg", "value": "x=1", "type": "ini", "description": None}]}]}
    assert admin.call("tasks.delete_configuration", _version=V, task=task, configuration=["General", "nope"]) == \
        {"deleted": 1}
    admin.call("tasks.edit_configuration", task=task, replace_configuration=True,
               configuration=[{"name": "only", "value": "1"}])
    assert admin.call("tasks.get_by_id", task=task)["task"]["configuration"] == {"only": {"name": "only",
                                                                                           "value": "1"}}
    err = admin.error("tasks.edit_configuration", task=task, configuration=[{"name": "", "value": "1"}])
    assert (err.code, err.meta["error_data"]["field"]) == (400, "configuration.name")
    admin.call("tasks.started", task=task)
    err = admin.error("tasks.edit_configuration", task=task, configuration=[{"name": "late", "value": "1"}])
    assert (err.code, err.subcode) == (400, 110)


def test_get_by_id_ex_answers_like_get_all_ex(admin, listing):
    got = admin.call("tasks.get_by_id_ex", _version=V, id=[listing["ids"][0]], only_fields=["name", "project.name"])
    assert got["tasks"] == [{"id": listing["ids"][0], "name": "t0",
                             "project": {"id": listing["project"], "name": listing["top"]}}]


# -- projects ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree(admin):
    """top/{a, b/c}: tasks in a (one archived, one completed), in c, and directly in top."""
    top = _name("tree")
    ids = {}
    for name in ("a", "b/c"):
        ids[name] = admin.call("projects.create", name=f"{top}/{name}")["id"]
    ids["top"] = admin.call("projects.get_all", name=f"^{top}$")["projects"][0]["id"]
    ids["b"] = admin.call("projects.get_all", name=f"^{top}/b$")["projects"][0]["id"]
    done = _task(admin, "done", project=ids["a"], tags=["t-a"])
    admin.call("tasks.started", task=done)
    admin.call("tasks.completed", task=done)
    archived = _task(admin, "archived", project=ids["a"])
    admin.call("tasks.archive", tasks=[archived])
    _task(admin, "in c", project=ids["b/c"], parent=done,
          hyperparams={"Args": {"lr": {"section": "Args", "name": "lr", "value": "0.1"}}})
    _task(admin, "own", project=ids["top"],
          hyperparams={"Args": {"lr": {"section": "Args", "name": "lr", "value": "0.2"},
                                "batch": {"section": "Args", "name": "batch", "value": "8"}}})
    return {"top": top, "ids": ids, "done": done}


def test_shallow_search_lists_one_level_with_sub_projects(admin, tree):
    ids = tree["ids"]
    got = admin.call("projects.get_all_ex", _version=V, parent=[ids["top"]], shallow_search=True,
                     only_fields=["name", "basename"], order_by=["name"], scroll_id=None, size=10)["projects"]
    assert [(p["name"], p["basename"]) for p in got] == [(f"{tree['top']}/a", "a"), (f"{tree['top']}/b", "b")]
    assert [p["sub_projects"] for p in got] == [[], [{"id": ids["b/c"], "name": f"{tree['top']}/b/c"}]]
    below = admin.call("projects.get_all_ex", _version=V, parent=[ids["top"]], only_fields=["name"])["projects"]
    assert sorted(p["name"].removeprefix(tree["top"]) for p in below) == ["/a", "/b", "/b/c"]
    roots = admin.call("projects.get_all_ex", _version=V, shallow_search=True, name=f"^{tree['top']}",
                       only_fields=["name"])["projects"]
    assert [p["name"] for p in roots] == [tree["top"]]


def test_stats_roll_up_from_subprojects_per_state(admin, tree):
    ids = tree["ids"]
    got = admin.call("projects.get_all_ex", _version=V, id=[ids["top"], ids["a"]], include_stats=True,
                     stats_for_state="active", check_own_contents=True, order_by=["name"])["projects"]
    top, a = got
    assert top["stats"]["active"]["total_tasks"] == 3 and a["stats"]["active"]["total_tasks"] == 1
    assert top["stats"]["active"]["status_count"]["completed"] == 1
    assert top["stats"]["active"]["status_count"]["created"] == 2
    assert a["stats"]["active"]["completed_tasks_24h"] == 1
    assert set(top["stats"]) == {"active"}
    # own contents count the tasks of stats_for_state too (a: one active, one archived)
    assert (top["own_tasks"], top["own_models"], a["own_tasks"]) == (1, 0, 1)
    both = admin.call("projects.get_all_ex", _version=V, id=[ids["a"]], include_stats=True, check_own_contents=True,
                      stats_for_state=None)["projects"][0]
    assert (both["stats"]["active"]["total_tasks"], both["stats"]["archived"]["total_tasks"]) == (1, 1)
    assert both["own_tasks"] == 2


@pytest.fixture(scope="module")
def kinds(admin, server):
    """<top> holding an experiment, a pipeline (<top>/.pipelines/pipe: a completed controller and a step),
    a dataset (<top>/.datasets/ds, two versions) and a report; <top>-theirs made by a colleague with
    one task of theirs; <top>-empty."""
    top = _name("kinds")
    made = admin.call("users.create", name="Colleague", role="user", credentials=True)
    colleague = server.client().login(made["credentials"]["access_key"], made["credentials"]["secret_key"])
    ids = {"top": admin.call("projects.create", name=top)["id"],
           "pipe": admin.call("projects.create", name=f"{top}/.pipelines/pipe",
                              system_tags=["hidden", "pipeline"])["id"],
           "ds": admin.call("projects.create", name=f"{top}/.datasets/ds", system_tags=["hidden", "dataset"],
                            tags=["images"])["id"],
           "theirs": colleague.call("projects.create", name=f"{top}-theirs")["id"],
           "empty": admin.call("projects.create", name=f"{top}-empty")["id"]}
    for name in (".pipelines", ".datasets"):
        ids[name] = admin.call("projects.get_all", name=f"^{top}/\\{name}$", search_hidden=True)["projects"][0]["id"]
    controller = _task(admin, "pipe", type="controller", project=ids["pipe"], system_tags=["pipeline"])
    admin.call("tasks.started", task=controller)
    admin.call("tasks.completed", task=controller)
    _task(admin, "step", project=ids["pipe"])
    for files, size in ((1, 10), (3, 1024)):  # the later version is the one dataset_stats shows
        _task(admin, f"v{files}", type="data_processing", project=ids["ds"], system_tags=["dataset"],
              runtime={"ds_file_count": files, "ds_total_size": size})
    ids[".reports"] = admin.call("reports.create", name="notes", project=ids["top"])["project_id"]
    _task(admin, "exp", project=ids["top"])
    colleague.call("tasks.create", name="their task", type="training", project=ids["theirs"])
    return {"top": top, "ids": ids, "me": admin.call("users.get_current_user")["user"]["id"], "colleague": made["id"]}


def _projects(admin, **body):
    return admin.call("projects.get_all_ex", _version=V, order_by=["name"], **body)["projects"]


def test_children_type_lists_the_projects_above_pipelines_datasets_and_reports(admin, kinds):
    top, ids = kinds["top"], kinds["ids"]
    for kind in ("pipeline", "dataset", "report"):  # the web app's nested views
        got = _projects(admin, children_type=kind, shallow_search=True, search_hidden=False, name=f"^{top}",
                        only_fields=["name"])
        assert [p["name"] for p in got] == [top], kind
    pipelines = _projects(admin, children_type="pipeline", shallow_search=True, name=f"^{top}", include_stats=True,
                          stats_with_children=True, only_fields=["name"])
    # only the controller counts, and only the projects on the way to a pipeline are sub_projects
    assert pipelines[0]["stats"]["active"]["total_tasks"] == 1
    assert pipelines[0]["stats"]["active"]["status_count"]["completed"] == 1
    assert pipelines[0]["sub_projects"] == [{"id": ids[".pipelines"], "name": f"{top}/.pipelines"},
                                            {"id": ids["pipe"], "name": f"{top}/.pipelines/pipe"}]
    reports = _projects(admin, children_type="report", shallow_search=True, name=f"^{top}", include_stats=True)
    assert reports[0]["stats"]["active"]["total_tasks"] == 1
    assert reports[0]["stats"]["active"]["status_count"]["created"] == 1
    datasets = _projects(admin, children_type="dataset", shallow_search=True, name=f"^{top}", include_stats=True,
                         check_own_contents=True)
    assert datasets[0]["stats"] == {"datasets": {"count": 1, "tags": ["images"]}}
    assert datasets[0]["own_datasets"] == 0
    below = _projects(admin, children_type="dataset", id=[ids[".datasets"], ids["empty"]], check_own_contents=True)
    assert [(p["id"], p["own_datasets"]) for p in below] == [(ids[".datasets"], 1)]
    assert _projects(admin, children_type="pipeline", id=[ids["empty"]]) == []


def test_include_stats_filter_selects_the_tasks_counted(admin, kinds):
    top, ids = kinds["top"], kinds["ids"]
    flat = {"search_hidden": True, "shallow_search": False, "name": f"^{top}/\\.pipelines/",  # the pipelines table
            "system_tags": ["pipeline"], "include_stats": True, "stats_with_children": False, "only_fields": ["name"]}
    unfiltered = _projects(admin, **flat)
    assert [(p["id"], p["stats"]["active"]["total_tasks"], p["sub_projects"]) for p in unfiltered] == \
        [(ids["pipe"], 2, [])]
    filtered = _projects(admin, include_stats_filter={"system_tags": ["pipeline"], "type": ["controller"]}, **flat)
    assert filtered[0]["stats"]["active"]["total_tasks"] == 1
    # '-x' excludes; hidden subprojects are counted with search_hidden
    training = _projects(admin, id=[ids["top"]], include_stats=True, search_hidden=True,
                         include_stats_filter={"type": ["-controller", "-data_processing", "-report"]})
    assert training[0]["stats"]["active"]["total_tasks"] == 2  # exp and the pipeline's step
    plain = _projects(admin, id=[ids["top"]], include_stats=True)  # hidden subprojects are not
    assert plain[0]["stats"]["active"]["total_tasks"] == 1
    assert [c["name"] for c in plain[0]["sub_projects"]] == []
    for bad in ({"type": []}, {"type": [1]}, {"$where": ["x"]}, {"tags": {"any": ["a"]}}, {"tags": {"some": {}}},
                {"tags": 3}):
        err = admin.error("projects.get_all_ex", _version=V, id=[ids["top"]], include_stats=True,
                          include_stats_filter=bad)
        assert (err.code, err.subcode) == (400, 12), bad
        assert "include_stats_filter." in err.msg
    assert err.meta["error_data"] == {"field": "include_stats_filter.tags", "rule": "type"}
    err = admin.error("projects.get_all_ex", _version=V, id=[ids["top"]], include_stats=True,
                      include_stats_filter={"tags": {"any": ["a"]}})
    assert err.meta["error_data"] == {"field": "include_stats_filter.tags.any", "rule": "type"}  # was a 500
    # a filters object counts what it selects; a null entry counts everything
    for flt, total in (({"type": {"any": {"include": ["controller"]}}}, 0), ({"type": None}, 1)):
        got = _projects(admin, id=[ids["top"]], include_stats=True, include_stats_filter=flt)
        assert got[0]["stats"]["active"]["total_tasks"] == total, flt


def test_dataset_stats_and_the_hidden_flag(admin, kinds):
    top, ids = kinds["top"], kinds["ids"]
    got = _projects(admin, search_hidden=True, shallow_search=False, system_tags=["dataset"],
                    name=f"^{top}/\\.datasets/", include_dataset_stats=True, stats_with_children=False,
                    only_fields=["name", "basename"])
    assert got == [{"id": ids["ds"], "name": f"{top}/.datasets/ds", "basename": "ds", "hidden": True,
                    "sub_projects": [], "dataset_stats": {"file_count": 3, "total_size": 1024}}]
    plain = _projects(admin, id=[ids["top"], ids["empty"]], include_dataset_stats=True, only_fields=["name"])
    assert [p["dataset_stats"] for p in plain] == [None, None]
    assert "hidden" not in plain[0]


def test_active_users_lists_projects_with_their_contents(admin, kinds):
    top, ids = kinds["top"], kinds["ids"]
    mine = _projects(admin, active_users=[kinds["me"]], name=f"^{top}", shallow_search=True, only_fields=["name"])
    assert [p["id"] for p in mine] == [ids["top"], ids["empty"]]
    theirs = _projects(admin, active_users=[kinds["colleague"]], name=f"^{top}", include_stats=True,
                       check_own_contents=True, only_fields=["name"])
    assert [(p["id"], p["stats"]["active"]["total_tasks"], p["own_tasks"]) for p in theirs] == [(ids["theirs"], 1, 1)]
    counted = _projects(admin, active_users=[kinds["me"]], id=[ids["top"]], include_stats=True, search_hidden=True)
    assert counted[0]["stats"]["active"]["total_tasks"] == 6  # everything under top is the admin's


def test_permission_roots_only_leaves_nothing_out(admin, kinds):
    body = {"shallow_search": True, "name": f"^{kinds['top']}", "include_stats": True, "scroll_id": None, "size": 16,
            "order_by": ["featured", "name"], "only_fields": ["name", "company", "user", "created", "basename"]}
    roots = admin.call("projects.get_all_ex", _version=V, permission_roots_only=True, **body)["projects"]
    plain = admin.call("projects.get_all_ex", _version=V, **body)["projects"]
    assert [p["id"] for p in roots] == [p["id"] for p in plain] == [kinds["ids"][k] for k in ("top", "empty", "theirs")]


def test_contents_of_projects_tags_parents_hyperparams(admin, tree):
    ids = tree["ids"]
    assert admin.call("projects.get_task_tags", projects=[ids["a"]])["tags"] == ["t-a"]
    parents = admin.call("projects.get_task_parents", _version=V, projects=[ids["top"]], include_subprojects=True,
                         tasks_state="active")["parents"]
    assert parents == [{"id": tree["done"], "name": "done", "project": {"id": ids["a"], "name": f"{tree['top']}/a"}}]
    assert admin.call("projects.get_task_parents", _version=V, projects=[ids["top"]], task_name="^don")["parents"] \
        and not admin.call("projects.get_task_parents", _version=V, projects=[ids["top"]], task_name="x")["parents"]
    params = admin.call("projects.get_hyper_parameters", _version=V, projects=[ids["top"]], page=0, page_size=1,
                        include_subprojects=True)
    assert params == {"parameters": [{"section": "Args", "name": "batch"}], "total": 2, "remaining": 1}
    values = admin.call("projects.get_hyperparam_values", _version=V, projects=[ids["top"]], section="Args",
                        name="lr", include_subprojects=True, page=None, page_size=None, pattern=None)
    assert values == {"values": ["0.1", "0.2"], "total": 2}
    only_top = admin.call("projects.get_hyperparam_values", projects=[ids["top"]], section="Args", name="lr",
                          include_subprojects=False)
    assert only_top["values"] == ["0.2"]
    # ClearML's scope: none named without subprojects is the top level only, an empty list everything
    top_level = admin.call("projects.get_task_tags", _version=V, include_subprojects=False)["tags"]
    everywhere = admin.call("projects.get_task_tags", _version=V, projects=[], include_subprojects=False)["tags"]
    assert "t-a" in everywhere and "t-a" not in top_level
    admin.call("projects.update", project=ids["a"], tags=["ptag"])
    assert "ptag" in admin.call("projects.get_project_tags", _version=V)["tags"]
    tags = admin.call("organization.get_tags", _version=V, include_system=True, filter=None)
    assert {"t-a", "ptag"} <= set(tags["tags"]) and "archived" in tags["system_tags"]
    assert "system_tags" not in admin.call("organization.get_tags", _version=V)


def test_unique_metric_variants_come_from_last_metrics(admin, tree):
    task = _task(admin, "metrics", project=tree["ids"]["b"])
    for variant, value in (("train", 1.0), ("val", 2.0)):
        admin.call("events.add", task=task, type="training_stats_scalar", metric="loss", variant=variant,
                   value=value, iter=1)
    metrics = admin.call("projects.get_unique_metric_variants", _version=V, project=tree["ids"]["b"],
                         include_subprojects=True, model_metrics=None)["metrics"]
    assert [(m["metric"], m["variant"]) for m in metrics] == [("loss", "train"), ("loss", "val")]
    assert all(len(m["metric_hash"]) == 32 and len(m["variant_hash"]) == 32 for m in metrics)
    other = _task(admin, "metrics 2", project=tree["ids"]["b"])
    admin.call("events.add", task=other, type="training_stats_scalar", metric="acc", variant="val", value=0.5, iter=1)
    by_ids = {ids: [m["metric"] for m in admin.call("projects.get_unique_metric_variants", _version=V,
                                                    ids=list(ids), project=None)["metrics"]]
              for ids in ((task,), (other,), (task, other))}
    assert by_ids == {(task,): ["loss", "loss"], (other,): ["acc"], (task, other): ["acc", "loss", "loss"]}


def test_model_tags_and_metadata_keys(admin, tree):
    project = tree["ids"]["b/c"]
    model = admin.call("models.create", name="meta", uri="s3://b/meta", project=project, tags=["m-tag"])["id"]
    admin.call("models.add_or_update_metadata", model=model,
               metadata=[{"key": "acc", "type": "float", "value": "0.9"}, {"key": "epochs", "value": "3"}])
    assert admin.call("projects.get_model_tags", _version=V, projects=[tree["ids"]["b"]])["tags"] == ["m-tag"]
    keys = admin.call("projects.get_model_metadata_keys", _version=V, projects=[tree["ids"]["b"]])
    assert keys == {"keys": ["acc", "epochs"], "total": 2, "remaining": 0}
    values = admin.call("projects.get_model_metadata_values", _version=V, projects=[project], key="acc")
    assert values == {"values": ["0.9"], "total": 1}


def test_move_merge_and_validate_delete(admin):
    top = _name("mv")
    src = admin.call("projects.create", name=f"{top}/src")["id"]
    inner = admin.call("projects.create", name=f"{top}/src/inner")["id"]
    task = _task(admin, "x", project=inner)
    assert admin.call("projects.move", _version=V, project=src, new_location=f"{top}/new/place") == {"moved": 2}
    assert admin.call("projects.get_by_id", project=inner)["project"]["name"] == f"{top}/new/place/src/inner"
    place = admin.call("projects.get_all", name=f"^{top}/new/place$")["projects"][0]["id"]
    assert admin.call("projects.get_by_id", project=inner)["project"]["path"][-2:] == [place, src]
    counts = admin.call("projects.validate_delete", _version=V, project=src)
    assert (counts["tasks"], counts["non_archived_tasks"], counts["models"]) == (1, 1, 0)
    dest = admin.call("projects.create", name=f"{top}/dest")["id"]
    own = _task(admin, "own", project=src)
    merged = admin.call("projects.merge", _version=V, project=src, destination_project=dest)
    assert merged == {"moved_entities": 1, "moved_projects": 1}
    assert admin.call("tasks.get_by_id", task=own)["task"]["project"] == dest
    assert admin.call("projects.get_by_id", project=inner)["project"]["name"] == f"{top}/dest/inner"
    assert admin.call("tasks.get_by_id", task=task)["task"]["project"] == inner
    assert admin.error("projects.get_by_id", project=src).subcode == 401


def test_stats_sum_run_times_and_count_the_last_day_from_the_stored_times(admin, mongo_uri, db_name):
    """Run times and start/completion moments only the server's own clock writes, set in the database."""
    from datetime import UTC, datetime, timedelta

    import pymongo

    project = admin.call("projects.create", name=_name("runtime"))["id"]
    names = ("hour", "recent", "old", "backwards", "failed")
    hour_ago, recent, old, backwards, failed = (_task(admin, n, project=project) for n in names)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    stored = {hour_ago: {"status": "completed", "started": now - timedelta(hours=1), "completed": now},
              recent: {"status": "stopped", "completed": now - timedelta(minutes=5)},  # no start: no run time
              old: {"status": "completed", "started": now - timedelta(hours=30),
                    "completed": now - timedelta(hours=29)},
              backwards: {"status": "completed", "started": now - timedelta(hours=2),
                          "completed": now - timedelta(hours=3)},  # completed before it started: no run time
              failed: {"status": "failed", "started": now - timedelta(minutes=20), "completed": now}}
    tasks = pymongo.MongoClient(mongo_uri)[db_name]["tasks"]
    for task, fields in stored.items():
        tasks.update_one({"_id": task}, {"$set": fields})
    stats = admin.call("projects.get_all_ex", _version=V, id=[project], include_stats=True,
                       stats_for_state="active")["projects"][0]["stats"]["active"]
    assert stats["total_runtime"] == 3600 + 3600 + 1200
    # completed in the last day: not the one 29 hours ago, and not the failed one
    assert stats["completed_tasks_24h"] == 3
    assert stats["last_task_run"].startswith((now - timedelta(minutes=20)).isoformat())
    assert (stats["total_tasks"], stats["status_count"]["completed"], stats["status_count"]["failed"]) == (5, 3, 1)


def test_validate_delete_counts_each_kind_and_its_archived_ones(admin):
    project = admin.call("projects.create", name=_name("vd"))["id"]
    _task(admin, "plain", project=project)
    _task(admin, "archived", project=project, system_tags=["archived"])
    _task(admin, "pipeline", project=project, type="controller", system_tags=["pipeline"])
    _task(admin, "old dataset", project=project, type="data_processing", system_tags=["dataset", "archived"])
    admin.call("reports.create", name="report", project=project)  # in the project's ".reports" child
    admin.call("models.create", name="m", uri="http://x/m", project=project)
    admin.call("models.create", name="old m", uri="http://x/o", project=project, system_tags=["archived"])
    other = admin.call("projects.create", name=_name("vd-other"))["id"]
    _task(admin, "elsewhere", project=other)  # not counted
    counts = admin.call("projects.validate_delete", _version=V, project=project)
    assert counts == {"tasks": 2, "non_archived_tasks": 1, "pipelines": 1, "non_archived_pipelines": 1,
                      "datasets": 1, "non_archived_datasets": 0, "reports": 1, "non_archived_reports": 1,
                      "models": 2, "non_archived_models": 1}


# -- queues ------------------------------------------------------------------------------------

def test_queue_reads_and_clear_queue(admin):
    queue = admin.call("queues.create", name=_name("cq"), display_name="Nice Queue")["id"]
    other = admin.call("queues.create", name=_name("cq2"))["id"]
    first, second = _task(admin), _task(admin)
    for task in (first, second):
        admin.call("tasks.enqueue", task=task, queue=queue)
    assert admin.call("queues.get_num_entries", _version=V, queue=queue) == {"num": 2}
    assert admin.call("queues.peek_task", _version=V, queue=queue) == {"task": first}
    got = admin.call("queues.get_by_task_id", _version=V, task=second)["queue"]
    assert (got["id"], got["display_name"]) == (queue, "Nice Queue")
    assert admin.call("queues.move_task_to_queue", _version=V, queue=queue, task=second, target_queue=other) == \
        {"position": 0}
    assert admin.call("tasks.get_by_id", task=second)["task"]["execution"]["queue"] == other
    err = admin.error("queues.move_task_to_queue", queue=queue, task=second, target_queue=other)
    assert (err.code, err.subcode) == (400, 703)
    assert admin.call("queues.clear_queue", _version=V, queue=queue) == {"removed_tasks": [first]}
    assert admin.call("tasks.get_by_id", task=first)["task"]["status"] == "created"
    assert admin.call("queues.get_num_entries", queue=queue) == {"num": 0}
    assert admin.call("queues.peek_task", queue=queue) == {"task": None}
    assert admin.call("queues.get_by_task_id", task=first) == {"queue": None}
    got = admin.call("queues.get_all_ex", _version=V, id=[other], max_task_entries=0)["queues"][0]
    assert got["entries"] == []


def test_dequeue_of_a_task_that_is_not_queued_and_of_a_deleted_queue(admin):
    task = _task(admin)
    err = admin.error("tasks.dequeue", _version=V, task=task)
    assert (err.code, err.subcode) == (400, 110)
    queue = admin.call("queues.create", name=_name("gone"))["id"]
    admin.call("tasks.enqueue", task=task, queue=queue)
    admin.call("tasks.edit", task=task, status="queued", force=True)  # ClearML's edit sets a status as given
    answer = admin.call("tasks.dequeue", _version=V, task=task)  # queued in no queue
    assert answer["fields"]["status"] == "created"
    admin.call("tasks.enqueue", task=task, queue=queue)
    admin.call("queues.delete", queue=queue, force=True)  # its tasks are dequeued first
    assert admin.call("tasks.get_by_id", task=task)["task"]["status"] == "created"


# -- workers and users -------------------------------------------------------------------------

def test_worker_count_metric_keys_and_stats_per_variant(admin):
    worker = _name("gpu-box")
    admin.call("workers.register", _version=V, worker=worker, tags=["gpu"], system_tags=["fast"], queues=None,
               timeout=None)
    start = time.time() - 1
    for gpu in (10.0, 30.0):
        admin.call("workers.status_report", worker=worker, timestamp=int(time.time() * 1000), task=None,
                   machine_stats={"gpu_usage": [gpu, gpu + 50], "cpu_usage": [gpu], "memory_used": 100})
    end = time.time() + 1
    assert admin.call("workers.get_count", _version=V, last_seen=None)["count"] == \
        len(admin.call("workers.get_all", _version=V, last_seen=None)["workers"])
    assert [w["id"] for w in admin.call("workers.get_all", _version=V, tags=["gpu"], system_tags=["fast"],
                                        last_seen=None)["workers"]] == [worker]
    categories = admin.call("workers.get_metric_keys", _version=V, worker_ids=[worker])["categories"]
    assert categories == [{"name": "cpu", "metric_keys": ["cpu_usage"]}, {"name": "gpu", "metric_keys": ["gpu_usage"]},
                          {"name": "memory", "metric_keys": ["memory_used"]}]
    items = [{"key": "gpu_usage", "aggregation": "max"}, {"key": "gpu_usage", "aggregation": "min"}]
    plain = admin.call("workers.get_stats", _version=V, worker_ids=[worker], from_date=start, to_date=end,
                       interval=3600, items=items, split_by_variant=None)["workers"][0]["metrics"]
    # as ClearML: each GPU's value is a sample of the interval
    assert [(m["metric"], [(s["aggregation"], s["values"]) for s in m["stats"]]) for m in plain] == \
        [("gpu_usage", [("max", [80.0]), ("min", [10.0])])]
    per_gpu = admin.call("workers.get_stats", _version=V, worker_ids=[worker], from_date=start, to_date=end,
                         interval=3600, items=items[:1], split_by_resource=True)["workers"][0]["metrics"]
    assert per_gpu[0]["stats"][0]["resource_series"] == [{"name": "0", "values": [30.0]},
                                                         {"name": "1", "values": [80.0]}]
    split = admin.call("workers.get_stats", _version=V, worker_ids=[worker], from_date=start, to_date=end,
                       interval=3600, items=items, split_by_variant=True)["workers"][0]["metrics"]
    assert [(m["variant"], [(s["aggregation"], s["values"]) for s in m["stats"]]) for m in split] == \
        [("0", [("max", [30.0]), ("min", [10.0])]), ("1", [("max", [80.0]), ("min", [60.0])])]


def test_workers_get_all_filters_tags_in_the_list_filter_language(admin):
    prefix = _name("tagged")
    for name, tags in (("a", ["gpu", "big"]), ("b", ["gpu"]), ("c", ["cpu"]), ("d", [])):
        admin.call("workers.register", _version=V, worker=f"{prefix}-{name}", tags=tags, system_tags=[f"s-{name}"])
    listed = lambda **kw: [w["id"].removeprefix(prefix + "-") for w in admin.call(  # noqa: E731
        "workers.get_all", _version=V, **kw)["workers"] if w["id"].startswith(prefix)]
    assert listed(tags=["gpu"]) == ["a", "b"]
    assert listed(tags=["-gpu"]) == ["c", "d"]
    assert listed(tags=["__$all", "gpu", "big"]) == ["a"]
    assert listed(tags=["cpu", "__$or", "big"]) == ["a", "c"]
    assert listed(tags=["__$not", "cpu", "__$and", "__$not", "gpu"]) == ["d"]
    assert listed(tags=[None]) == ["d"]
    assert listed(tags=["gpu"], system_tags=["-s-a"]) == ["b"]
    assert listed(tags="cpu") == ["c"]


def test_users_get_all_ex_and_update_own_name(admin, server):
    me = admin.call("users.get_current_user")["user"]
    listed = admin.call("users.get_all_ex", _version=V, id=[me["id"]], only_fields=["name"], order_by=None)["users"]
    assert [u["id"] for u in listed] == [me["id"]]
    new_name = _name("renamed")
    assert admin.call("users.update", _version=V, user=me["id"], name=new_name) == \
        {"updated": 1, "fields": {"name": new_name}}
    assert admin.call("users.get_by_id", user=me["id"])["user"]["name"] == new_name
    admin.call("users.update", user=me["id"], name=me["name"])
    assert admin.call("users.get_by_id", user=me["id"])["user"]["name"] == me["name"]


def test_clone_into_a_project_named_by_the_request(admin):
    source = _task(admin, "source", hyperparams={"Args": {"lr": {"section": "Args", "name": "lr", "value": "1"}}})
    top = _name("clone")
    answer = admin.call("tasks.clone", _version=V, task=source, new_task_name="copy", new_project_name=f"{top}/dst",
                        new_task_project=None, new_task_comment=None,
                        new_task_hyperparams={"Args": {"lr": {"section": "Args", "name": "lr", "value": "2"}}},
                        execution_overrides={"docker_cmd": "python:3.11"})
    copy = admin.call("tasks.get_by_id", task=answer["id"])["task"]
    assert answer["new_project"] == {"id": copy["project"], "name": f"{top}/dst"}
    assert (copy["name"], copy["status"], copy["hyperparams"]["Args"]["lr"]["value"]) == ("copy", "created", "2")
    assert copy["execution"]["docker_cmd"] == "python:3.11"


def test_legacy_execution_parameters_map_to_args_per_api_version(admin):
    task = admin.call("tasks.create", _version="2.1", name="legacy", type="training",
                      execution={"parameters": {"lr": 0.5, "TF_DEFINE/depth": 3}, "model_desc": {"net": "a"}})["id"]
    new = admin.call("tasks.get_by_id", _version="2.9", task=task)["task"]
    assert new["hyperparams"] == {
        "Args": {"lr": {"section": "Args", "name": "lr", "type": "legacy", "value": "0.5"}},
        "TF_DEFINE": {"depth": {"section": "TF_DEFINE", "name": "depth", "type": "legacy", "value": "3"}}}
    assert new["configuration"] == {"net": {"name": "net", "type": "legacy", "value": "a"}}
    assert "parameters" not in new["execution"] and "model_desc" not in new["execution"]
    old = admin.call("tasks.get_by_id", _version="2.1", task=task)["task"]
    assert old["execution"]["parameters"] == {"lr": "0.5", "TF_DEFINE/depth": "3"}
    assert old["execution"]["model_desc"] == {"net": "a"}
    admin.call("tasks.edit_hyper_params", task=task, hyperparams=[{"section": "Args", "name": "new", "value": "1"}])
    admin.call("tasks.edit", _version="2.1", task=task, execution={"parameters": {"lr": 0.7}})
    params = admin.call("tasks.get_by_id", task=task)["task"]["hyperparams"]
    assert params == {"Args": {"lr": {"section": "Args", "name": "lr", "type": "legacy", "value": "0.7"},
                               "new": {"section": "Args", "name": "new", "value": "1"}}}
    listed = admin.call("tasks.get_all", _version="2.1", id=[task], only_fields=["execution.parameters"])["tasks"]
    assert listed[0]["execution"]["parameters"] == {"lr": "0.7"}


def test_queue_metadata_add_replace_and_delete(admin):
    queue = admin.call("queues.create", name=_name("meta"))["id"]
    item = {"key": "gpu.type", "type": "str", "value": "a100"}
    assert admin.call("queues.add_or_update_metadata", _version=V, queue=queue, metadata=[item],
                      replace_metadata=None) == {"updated": 1}
    admin.call("queues.add_or_update_metadata", queue=queue, metadata=[{"key": "zone", "value": "eu"}])
    assert admin.call("queues.get_by_id", queue=queue)["queue"]["metadata"] == {
        "gpu.type": item, "zone": {"key": "zone", "type": None, "value": "eu"}}
    assert admin.call("queues.delete_metadata", _version=V, queue=queue, keys=["gpu.type"]) == {"updated": 1}
    admin.call("queues.add_or_update_metadata", queue=queue, metadata=[item], replace_metadata=True)
    assert admin.call("queues.get_by_id", queue=queue)["queue"]["metadata"] == {"gpu.type": item}


def test_a_model_name_pattern_that_is_no_literal_is_matched(admin):
    project = admin.call("projects.create", name=_name("mpat"))["id"]
    for name in ("resnet-50", "resnet-101", "vgg"):
        admin.call("models.create", name=name, uri=f"s3://b/{name}", project=project)
    got = admin.call("models.get_all_ex", _version=V, project=[project], name="^res.*[0-9]+$", order_by=["name"],
                     only_fields=["name"])["models"]
    assert [m["name"] for m in got] == ["resnet-101", "resnet-50"]


def test_delete_takes_the_subprojects_and_their_contents(admin):
    top = _name("del")
    parent = admin.call("projects.create", name=top)["id"]
    child = admin.call("projects.create", name=f"{top}/child/leaf")["id"]
    task = _task(admin, "inside", project=child)
    err = admin.error("projects.delete", _version=V, project=parent)
    assert (err.code, err.subcode) == (400, 402)
    answer = admin.call("projects.delete", _version=V, project=parent, force=True, delete_contents=True)
    assert (answer["deleted"], answer["deleted_projects"], answer["deleted_tasks"]) == (3, 3, 1)
    assert admin.call("projects.get_all", name=f"^{top}")["projects"] == []
    assert admin.error("tasks.get_by_id", task=task).subcode == 101


def test_no_version_in_the_url_reads_as_the_newest_clients(admin):
    task = admin.call("tasks.create", _version="2.1", name="legacy-new", type="training",
                      execution={"parameters": {"lr": 1}})["id"]
    status, reply, _ = admin.request("POST", "/tasks.get_by_id", {"task": task})
    assert status == 200 and "parameters" not in reply["data"]["task"]["execution"]
    assert reply["data"]["task"]["hyperparams"]["Args"]["lr"]["value"] == "1"


def _as_user(client, user: str, endpoint: str, /, **data):
    """``endpoint`` called by ``client`` acting as ``user`` (ClearML's X-ClearML-Impersonate-As)."""
    status, body, _ = client.request("POST", f"/v{V}/{endpoint}", data, headers={"X-ClearML-Impersonate-As": user})
    return status, body


def test_create_user_impersonate_and_active_users(admin, other_admin):
    company = admin.call("users.get_current_user")["user"]["company"]["id"]
    users = [admin.call("auth.create_user", company=company, name=_name("u"), email=f"{_name('u')}@x.io")["id"]
             for _ in range(3)]
    project = admin.call("projects.create", name=_name("active"))["id"]
    status, body = _as_user(admin, users[1], "models.create", name="m", uri="file:///a")
    assert status == 200
    status, body = _as_user(admin, users[2], "tasks.create", name="t", type="testing", project=project)
    assert status == 200
    status, body = _as_user(admin, users[2], "users.get_current_user")
    assert body["data"]["user"]["id"] == users[2]
    listed = {u["id"] for u in admin.call("users.get_all_ex", id=users, active_in_projects=[])["users"]}
    assert listed == {users[1], users[2]}
    listed = {u["id"] for u in admin.call("users.get_all_ex", id=users, active_in_projects=[project])["users"]}
    assert listed == {users[2]}
    assert len(admin.call("users.get_all_ex", id=users)["users"]) == 3


def test_impersonation_and_create_user_stay_within_the_company_and_role(admin, other_admin):
    company = admin.call("users.get_current_user")["user"]["company"]["id"]
    other_company = other_admin.call("users.get_current_user")["user"]["company"]["id"]
    err = admin.error("auth.create_user", company=other_company, name="x", email=f"{_name('x')}@x.io")
    assert err.code == 403
    user = admin.call("auth.create_user", company=company, name="plain", email=f"{_name('p')}@x.io")["id"]
    # another company's admin cannot act as this company's user
    status, body = _as_user(other_admin, user, "users.get_current_user")
    assert (status, body["meta"]["result_subcode"]) == (400, 7)
    # acting as a plain user, an admin has only that user's role
    status, body = _as_user(admin, user, "auth.create_user", company=company, name="y", email=f"{_name('y')}@x.io")
    assert status == 403
    status, body = _as_user(admin, "no-such-user", "users.get_current_user")
    assert (status, body["meta"]["result_subcode"]) == (400, 7)


def test_preferences_of_an_impersonated_user_are_its_own(admin):
    company = admin.call("users.get_current_user")["user"]["company"]["id"]
    user = admin.call("auth.create_user", company=company, name="prefs", email=f"{_name('pr')}@x.io")["id"]
    assert _as_user(admin, user, "users.get_preferences")[1]["data"]["preferences"] == {}
    for update, expected in (({"a": 0}, {"a": 0}), ({"section.a": 2}, {"a": 0, "section": {"a": 2}}),
                             ({"section": {"a": None}}, {"a": 0, "section": {"a": None}})):
        _as_user(admin, user, "users.set_preferences", preferences=update)
        assert _as_user(admin, user, "users.get_preferences")[1]["data"]["preferences"] == expected


def test_user_companies_list_the_callers_company_users_only(admin, other_admin):
    company = admin.call("users.get_current_user")["user"]["company"]
    other_name = other_admin.call("users.get_current_user")["user"]["name"]
    [entry] = admin.call("organization.get_user_companies", _version=V)["companies"]
    assert (entry["id"], entry["name"]) == (company["id"], company["name"])
    names = [u["name"] for u in entry["owners"]]
    assert entry["allocated"] == len(names) > 0 and names == sorted(names)
    assert other_name not in names and all("avatar" in u for u in entry["owners"])


def test_project_usages_count_run_time_under_the_named_project(admin):
    top = _name("usage")
    project = admin.call("projects.create", name=top)["id"]
    child = admin.call("projects.create", name=f"{top}/child")["id"]
    me = admin.call("users.get_current_user")["user"]["id"]
    tasks = [_task(admin, "ran", project=pid) for pid in (project, child)]
    for task in tasks:
        admin.call("tasks.started", task=task, force=True)
    time.sleep(1.2)
    for task in tasks:
        admin.call("tasks.stopped", task=task, force=True)
    body = {"projects": [project], "from_date": "2020-01-01T00:00:00+00:00", "to_date": None}
    answer = admin.call("organization.get_project_usages", _version=V, include_development=True, **body)
    [total] = answer["projects"]["total"]
    assert (total["id"], total["name"]) == (project, top) and total["duration"] >= 2
    assert [u["id"] for u in answer["users"]["total"]] == [me] and answer["queues"]["total"] == []
    [series] = answer["projects"]["series"]
    assert len(series["dates"]) == len(series["duration"]) >= 1
    # not run from a queue: development work, left out unless asked for
    answer = admin.call("organization.get_project_usages", _version=V, **body)
    assert answer["projects"]["total"] == []
    err = admin.error("organization.get_project_usages", _version=V, **{**body, "projects": ["nope"]})
    assert (err.code, err.subcode) == (400, 401)


def test_artifacts_delete_by_key_and_mode_and_outputs_stay_behind_on_clone_and_reset(admin):
    arts = [{"key": "b", "type": "int", "uri": "u2"}, {"key": "a", "type": "str", "uri": "u1", "mode": "input"},
            {"key": "c", "type": "int", "uri": "u3"}]
    task = _task(admin, "arts", execution={"artifacts": arts})
    keys = lambda t: [a["key"] for a in admin.call("tasks.get_by_id", task=t)["task"]["execution"]["artifacts"]]  # noqa: E731
    assert keys(task) == ["a", "b", "c"]  # by key, as ClearML lists them
    clone = admin.call("tasks.clone", task=task)["id"]
    assert keys(clone) == ["a"]
    assert admin.call("tasks.delete_artifacts", _version=V, task=task, artifacts=[{"key": "c"}])["deleted"] == 1
    assert admin.call("tasks.delete_artifacts", _version=V, task=task,
                      artifacts=[{"key": "a", "mode": "output"}])["deleted"] == 0
    assert keys(task) == ["a", "b"]
    admin.call("tasks.reset", task=task, force=True)
    assert keys(task) == ["a"]
    assert admin.error("tasks.delete_artifacts", _version=V, task=task, artifacts=[{"mode": "input"}]).code == 400


def test_a_task_model_link_keeps_its_place_and_shows_nothing_of_another_companys_model(admin, other_admin):
    """A link is stored as given, as ClearML does: an unknown id and another company's id are answered
    alike (else the answer would say the other company's model exists), and reading through the link
    shows nothing of a model the reader cannot read."""
    theirs = other_admin.call("models.create", name="theirs", uri="file:///t")["id"]
    task = _task(admin, "linked", models={"input": [{"name": "a", "model": "m1"}, {"name": "b", "model": "m2"}]})
    assert admin.call("tasks.add_or_update_model", _version=V, task=task, name="a", type="input",
                      model="unknown")["updated"] == 1
    inputs = admin.call("tasks.get_by_id", task=task)["task"]["models"]["input"]
    assert [(m["name"], m["model"]) for m in inputs] == [("a", "unknown"), ("b", "m2")]
    assert admin.call("tasks.add_or_update_model", _version=V, task=task, name="c", type="input",
                      model=theirs)["updated"] == 1
    shown = admin.call("tasks.get_all_ex", id=[task], only_fields=["models.input.model.name"])["tasks"][0]
    assert {"id": theirs} in [m["model"] for m in shown["models"]["input"]], shown
    assert admin.error("models.get_by_id", model=theirs).subcode == 201


def test_project_tags_of_the_projects_a_filter_keeps(admin):
    shown = admin.call("projects.create", name=_name("ptag"), tags=["t1", "t2"])["id"]
    hidden = admin.call("projects.create", name=_name("ptag"), tags=["t1", "t3"], system_tags=["hidden"])["id"]
    both = admin.call("projects.get_project_tags", _version=V, projects=[shown, hidden])
    assert both["tags"] == ["t1", "t2", "t3"]
    kept = admin.call("projects.get_project_tags", _version=V, projects=[shown, hidden],
                      filter={"system_tags": ["__$not", "hidden"]})
    assert kept["tags"] == ["t1", "t2"]
    assert admin.call("projects.get_project_tags", _version=V, projects=[shown, hidden],
                      filter={"system_tags": ["-hidden"]})["tags"] == ["t1", "t2"]


def test_field_filters_any_and_all_with_include_exclude_and_empty(admin):
    tag = _name("ff")
    ids = [_task(admin, f"f{i}", tags=[f"{tag}-{t}" for t in "ab"[:i]]) for i in range(3)]  # [], [a], [a, b]
    a, b = f"{tag}-a", f"{tag}-b"

    def found(**flt):
        return {t["id"] for t in admin.call("tasks.get_all_ex", _version=V, id=ids, filters={"tags": flt})["tasks"]}

    assert found(any={"include": [None]}) == {ids[0]}
    assert found(any={"include": [b, None]}) == {ids[0], ids[2]}
    assert found(any={"exclude": [a, b]}) == {ids[0], ids[1]}  # not every one of them
    assert found(all={"include": [a, b]}) == {ids[2]}
    assert found(all={"exclude": [b, None]}) == {ids[1]}
    assert found(any={"include": [a]}, all={"exclude": [b]}) == {ids[1]}
    assert found(any={"include": [None]}, all={"include": [a, b]}, op="or") == {ids[0], ids[2]}
    err = admin.error("tasks.get_all_ex", _version=V, filters={"tags": {"some": {"include": ["x"]}}})
    assert (err.code, err.subcode) == (400, 12)
    # a null entry filters nothing (it reached the filter builder and answered 500)
    assert found() == set(ids)
    for service in ("tasks", "projects", "models"):
        assert admin.call(f"{service}.get_all_ex", _version=V, id=ids[:1], filters={"tags": None}) is not None


def test_make_public_and_private_are_for_admins_and_all_or_nothing(admin, other_admin):
    company = admin.call("users.get_current_user")["user"]["company"]["id"]
    user = admin.call("auth.create_user", company=company, name=_name("pu"), email=f"{_name('pu')}@x.io")["id"]
    model = admin.call("models.create", name="shared", uri="file:///s")["id"]
    project = admin.call("projects.create", name=_name("pub"))["id"]
    theirs = other_admin.call("models.create", name="theirs", uri="file:///t")["id"]
    status, _ = _as_user(admin, user, "models.make_public", ids=[model])
    assert status == 403  # a public object is read by every company: admins only
    assert admin.error("models.make_private", ids=[model]).subcode == 201  # not public
    assert admin.error("models.make_public", ids=[model, theirs]).subcode == 201  # all or nothing
    assert other_admin.error("models.get_by_id", model=model).subcode == 201
    assert admin.call("models.make_public", ids=[model]) == {"updated": 1}
    assert admin.call("projects.make_public", ids=[project]) == {"updated": 1}
    assert other_admin.call("models.get_by_id", model=model)["model"]["name"] == "shared"
    assert other_admin.error("models.update", model=model, name="x").subcode == 201  # ClearML: as if missing
    assert admin.error("projects.update", project=project, name=_name("x")).code == 403
    assert other_admin.error("models.make_private", ids=[model]).subcode == 201  # not theirs to take back
    assert admin.call("models.make_private", ids=[model]) == {"updated": 1}
    assert admin.call("projects.make_private", ids=[project]) == {"updated": 1}
    assert other_admin.error("models.get_by_id", model=model).subcode == 201


def test_model_stats_and_a_deleted_models_links(admin):
    model = admin.call("models.create", name="labelled", uri="file:///l", labels={"a": 1, "b": 2})["id"]
    got = admin.call("models.get_all_ex", _version=V, id=[model], include_stats=True, only_fields=["name"])
    assert got["models"] == [{"id": model, "name": "labelled", "stats": {"labels_count": 2}}]
    # an exclusion stays one, and labels asked for (every field, or by name) stay in the answer
    for only_fields, shown in ((None, {"name", "uri", "labels"}), (["-uri"], {"name", "labels"}),
                               (["*"], {"uri", "labels"}), (["name", "labels"], {"name", "labels"}),
                               (["-labels"], {"name", "uri"})):
        got = admin.call("models.get_all_ex", _version=V, id=[model], include_stats=True,
                         only_fields=only_fields)["models"][0]
        assert got["stats"] == {"labels_count": 2}, only_fields
        assert shown <= set(got) and ("uri" in got) == ("uri" in shown), only_fields
        assert ("labels" in got) == ("labels" in shown), only_fields
    task = _task(admin, "creator")
    admin.call("tasks.started", task=task)
    output = admin.call("models.update_for_task", task=task, uri="file:///o")["id"]
    admin.call("tasks.stopped", task=task)
    admin.call("tasks.publish", task=task, publish_model=False)
    assert admin.error("models.delete", model=output).subcode == 206
    admin.call("models.delete", model=output, force=True)
    published = admin.call("tasks.get_by_id", task=task)["task"]
    assert [m["model"] for m in published["models"]["output"]] == [f"__DELETED__{output}"]
    assert published["output"]["error"].startswith("model deleted on ")


def test_queue_changes_are_charted_glue_queues_hide_and_add_task_names_the_queue(admin):
    glue = admin.call("queues.create", name=_name("glue"), system_tags=["k8s-glue"])["id"]
    first, second = (admin.call("queues.create", name=_name("q"))["id"] for _ in range(2))
    listed = {q["id"] for q in admin.call("queues.get_all_ex", _version=V, only_fields=["id"])["queues"]}
    assert first in listed and glue not in listed
    assert glue in {q["id"] for q in admin.call("queues.get_all_ex", _version=V, search_hidden=True)["queues"]}
    task = _task(admin)
    before = time.time() - 1
    admin.call("tasks.enqueue", task=task, queue=first)
    admin.call("queues.remove_task", queue=first, task=task)
    admin.call("queues.add_task", queue=second, task=task)
    assert admin.call("tasks.get_by_id", task=task)["task"]["execution"]["queue"] == second
    charted = admin.call("queues.get_queue_metrics", queue_ids=[first], from_date=before, to_date=time.time() + 1,
                         interval=3600)["queues"][0]
    assert charted["queue_lengths"] and max(charted["queue_lengths"]) >= 0.5  # sampled as it changed


def test_worker_charts_are_dense_and_dated_by_the_reports(admin):
    worker, start = _name("w"), int(time.time())
    for minute, usage in ((0, [10, 30]), (2, [20, 40])):
        admin.call("workers.status_report", worker=worker, timestamp=(start + minute * 60) * 1000,
                   machine_stats={"gpu_usage": usage})
    stats = admin.call("workers.get_stats", _version=V, worker_ids=[worker], from_date=start, to_date=start + 200,
                       interval=1, items=[{"key": "gpu_usage", "aggregation": "avg"}])["workers"][0]["metrics"][0]
    assert stats["dates"] == [(start + 40 * i) * 1000 for i in range(5)]  # 40 s at least, as ClearML
    assert stats["stats"][0]["values"] == [20.0, 0.0, 0.0, 30.0, 0.0]
    asked = admin.call("workers.get_stats", _version=V, worker_ids=[worker], from_date=start, to_date=start + 200,
                       interval=1, items=[{"key": "gpu_usage", "aggregation": "avg"},
                                          {"key": "cpu_usage", "aggregation": "avg"}])["workers"][0]["metrics"]
    assert [m["metric"] for m in asked] == ["gpu_usage"]  # a key never reported has no all-zero chart
    tag = _name("t")
    admin.call("workers.register", worker=_name("w"), system_tags=[tag], timeout=1)
    assert admin.call("workers.get_count", _version=V, system_tags=[tag])["count"] == 1
    time.sleep(1.5)  # past its timeout: no longer live, before the expiry sweep marks it
    assert admin.call("workers.get_count", _version=V, system_tags=[tag])["count"] == 0


def test_clone_archive_and_edit_as_clearml(admin):
    model = admin.call("models.create", name="base", uri="file:///b")["id"]
    source = _task(admin, "src", comment="cmp-" + _name("c"), system_tags=["development", "keep"],
                   execution={"model": model})
    assert [m["model"] for m in admin.call("tasks.get_by_id", task=source)["task"]["models"]["input"]] == [model]
    comment = admin.call("tasks.get_by_id", task=source)["task"]["comment"]
    assert [t["id"] for t in admin.call("tasks.get_all_ex", _version=V, comment=f"^{comment}$")["tasks"]] == [source]
    clone = admin.call("tasks.clone", task=source)["id"]
    assert admin.call("tasks.get_by_id", task=clone)["task"]["system_tags"] == ["keep"]
    err = admin.error("tasks.clone", task=source, execution_overrides={"model": "no such model"})
    assert err.subcode == 201
    admin.call("models.delete", model=model, force=True)
    admin.call("tasks.clone", task=source)  # a deleted input model is copied as it is
    assert admin.error("tasks.clone", task=source, validate_references=True).subcode == 201
    admin.call("tasks.archive", tasks=[clone], status_message="old", status_reason="cleanup")
    archived = admin.call("tasks.get_by_id", task=clone)["task"]
    assert (archived["status_message"], archived["status_reason"]) == ("old", "cleanup")


def test_parameter_order_deletes_and_reports_as_clearml(admin):
    tag = _name("num")
    ids = [_task(admin, f"{tag}-{v}", hyperparams={"s": {"p": {"section": "s", "name": "p", "value": v}}})
           for v in ("1", "11", "2")]
    ordered = admin.call("tasks.get_all_ex", _version=V, id=ids, order_by=["hyperparams.s.p"], only_fields=["name"])
    assert [t["name"] for t in ordered["tasks"]] == [f"{tag}-1", f"{tag}-2", f"{tag}-11"]  # as numbers
    project = admin.call("projects.create", name=_name("del"))["id"]
    _task(admin, "old", project=project, system_tags=["archived"])
    assert admin.call("projects.delete", project=project)["disassociated_tasks"] == 1  # archived only: no force
    creator = _task(admin, "creator")
    model = admin.call("models.create", name="pub", uri="file:///p", task=creator)["id"]  # ready by default
    assert admin.error("tasks.delete", task=creator, force=False).subcode == 123  # its published model
    assert admin.call("tasks.delete", task=creator, force=True)["updated_models"] == 1
    assert admin.call("models.get_by_id", model=model)["model"].get("task") is None
    report = admin.call("reports.create", name="r")["id"]
    admin.call("reports.publish", task=report)
    assert admin.error("reports.update", task=report, report="text").subcode == 110
    assert admin.call("reports.update", task=report, name="renamed")["updated"] == 1  # name, tags, comment
    assert report in {r["id"] for r in admin.call("reports.get_all_ex", project=[None])["tasks"]}


def test_a_refused_controller_delete_leaves_its_steps(admin):
    """tasks.delete with include_pipeline_steps checks the controller itself first: a running controller
    without force is refused (400/123) and its steps are all still there; with force all go."""
    controller = admin.call("tasks.create", name="pipe", type="controller")["id"]
    steps = [admin.call("tasks.create", name=f"step {n}", type="training", parent=controller)["id"]
             for n in range(2)]
    admin.call("tasks.started", task=controller)
    error = admin.error("tasks.delete", task=controller, include_pipeline_steps=True)
    assert (error.code, error.subcode) == (400, 123)
    assert [admin.call("tasks.get_by_id", task=s)["task"]["id"] for s in steps] == steps
    admin.call("tasks.delete", task=controller, include_pipeline_steps=True, force=True)
    assert all(admin.error("tasks.get_by_id", task=s).subcode == 101 for s in steps)
