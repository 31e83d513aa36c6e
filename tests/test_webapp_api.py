"""Endpoints the ClearML web app calls at boot, with the app's own request bodies (read from its
network log)."""

from __future__ import annotations

import time


def test_preferences_set_by_path_and_stay_per_user(admin, other_admin):
    """ClearML's rule: a top-level key is a path; its value (null too) replaces what was there."""
    before = admin.call("users.get_preferences", _version="999.0")["preferences"]
    stamp = str(time.time_ns())
    answer = admin.call("users.set_preferences", _version="999.0",
                        preferences={"views": {"table.cols": ["name", "status"], "theme": "dark"}, "stamp": stamp})
    assert answer["updated"] == 1
    admin.call("users.set_preferences", _version="999.0", preferences={"views.theme": "light"})
    prefs = admin.call("users.get_preferences", _version="999.0")["preferences"]
    assert prefs == {**before, "views": {"table.cols": ["name", "status"], "theme": "light"}, "stamp": stamp}
    admin.call("users.set_preferences", _version="999.0", preferences={"views": {"$odd.key": 1}, "stamp": None})
    prefs = admin.call("users.get_preferences", _version="999.0")["preferences"]
    assert prefs == {**before, "views": {"$odd.key": 1}, "stamp": None}
    assert admin.call("users.set_preferences", _version="999.0", preferences={"stamp": None})["updated"] == 0
    assert "stamp" not in str(other_admin.call("users.get_preferences", _version="999.0")["preferences"])
    err = admin.error("users.set_preferences", preferences={"big": "x" * 300_000})
    assert err.meta["error_data"] == {"field": "preferences", "rule": "maxLength"}


def test_report_stats_option_says_nothing_is_reported(admin):
    answer = admin.call("server.report_stats_option", _version="999.0")
    assert (answer["supported"], answer["enabled"]) == (False, False)
    assert admin.call("server.report_stats_option", _version="999.0", enabled=True)["enabled"] is False


def test_project_user_names_lists_task_owners(admin, other_admin):
    project = admin.call("projects.create", name=f"owners-{time.time_ns()}")["id"]
    admin.call("tasks.create", name="owned", type="training", project=project)
    other_admin.call("tasks.create", name="theirs", type="training")
    me = admin.call("users.get_current_user")["user"]
    for body in ({"include_subprojects": True, "entity": "task"}, {"projects": [project]}):
        users = admin.call("projects.get_user_names", _version="999.0", **body)["users"]
        assert {"id": me["id"], "name": me["name"]} in users
        assert "Other Admin" not in [u["name"] for u in users]
    assert admin.call("projects.get_user_names", projects=[project])["users"] == [{"id": me["id"],
                                                                                   "name": me["name"]}]
    admin.call("models.create", name="owned model", uri="s3://bucket/m.bin", project=project)
    assert admin.call("projects.get_user_names", projects=[project], entity="model")["users"] == \
        [{"id": me["id"], "name": me["name"]}]


def test_list_operators_the_app_sends(admin):
    project = admin.call("projects.create", name=f"ops-{time.time_ns()}")["id"]
    ids = {}
    for name, ttype, tags, system_tags in (("plain", "training", ["a", "b"], []),
                                           ("archived", "training", ["a"], ["archived"]),
                                           ("annotation", "data_processing", ["c"], [])):
        ids[name] = admin.call("tasks.create", name=name, type=ttype, project=project, tags=tags,
                               system_tags=system_tags)["id"]

    def names(**flt):
        found = admin.call("tasks.get_all_ex", _version="999.0", project=[project], only_fields=["name"], **flt)
        return sorted(t["name"] for t in found["tasks"])

    assert names(system_tags=["__$not", "archived"]) == ["annotation", "plain"]
    assert names(type=["__$not", "annotation_manual", "__$not", "data_processing"]) == ["archived", "plain"]
    assert names(tags=["__$all", "a", "b"]) == ["plain"]
    assert names(tags=["__$all", "a", "b", "__$or", "c"]) == []  # as ClearML: the first operator joins: a, b and c
    assert names(tags=["__$any", "__$not", "a", "b"]) == ["annotation", "plain"]  # not a, or b
    assert names(tags=["__$any", "a", "c"]) == ["annotation", "archived", "plain"]
    assert names(tags=["a", "__$and", "__$not", "b"]) == ["archived"]


def test_ex_listings_answer_the_company_as_an_object_and_plain_listings_as_an_id(admin, server):
    """The app takes an entity whose company has no id for a read-only example (and hides its edit
    controls), so the *_ex listings answer company as {id, name}; the SDK's get_all keeps the id."""
    me = admin.call("users.get_current_user")["user"]
    company = me["company"]["id"]
    project = admin.call("projects.create", name=f"ex-company-{time.time_ns()}")["id"]
    task = admin.call("tasks.create", name="mine", type="training", project=project)["id"]
    model = admin.call("models.create", name="weights", uri="file:///tmp/w.bin", project=project)["id"]
    for name, key, object_id in (("tasks", "tasks", task), ("models", "models", model)):
        ex = admin.call(f"{name}.get_all_ex", id=[object_id], only_fields=["name", "company"])[key][0]
        assert ex["company"] == {"id": company, "name": me["company"]["name"]}
        plain = admin.call(f"{name}.get_all", id=[object_id], only_fields=["name", "company"])[key][0]
        assert plain["company"] == company
    projects = admin.call("projects.get_all_ex", id=[project], only_fields=["name", "company"])["projects"]
    assert projects[0]["company"] == {"id": company, "name": me["company"]["name"]}
    details = admin.call("tasks.get_by_id_ex", id=[task], only_fields=["company", "project.name"])["tasks"][0]
    assert details["company"]["id"] == company and details["project"]["id"] == project


def test_csv_export_of_a_table_as_the_app_asks_for_it(admin, other_admin, server):
    project = admin.call("projects.create", name=f"export-{time.time_ns()}")["id"]
    ids = [admin.call("tasks.create", name=name, type="training", project=project, tags=tags)["id"]
           for name, tags in (("alpha", ["x", "y"]), ("=HYPERLINK(1)", []), ("gamma", ["z"]))]
    admin.call("tasks.started", task=ids[2])
    body = {"entity_type": "task", "only_fields": [], "project": [project], "order_by": ["name"],
            "system_tags": ["__$not", "archived"], "scroll_id": None, "size": 15,
            "field_mappings": [{"field": "name", "name": "Name"},
                               {"field": "status", "name": "Status",
                                "values": [{"key": "in_progress", "value": "Running"}]},
                               {"field": "tags", "name": "Tags"}, {"field": "project.name", "name": "Project"}]}
    prepared = admin.call("organization.prepare_download_for_get_all", **body)["prepare_id"]
    # Another user of another company cannot take it.
    status, _, _ = other_admin.request("GET", f"/api/v999.0/organization.download_for_get_all?prepare_id={prepared}")
    assert status == 400
    status, text, headers = admin.request("GET", f"/api/v999.0/organization.download_for_get_all?prepare_id={prepared}")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == "attachment; filename=tasks.csv"
    assert headers["X-Content-Type-Options"] == "nosniff"
    name = admin.call("projects.get_by_id", project=project)["project"]["name"]
    assert text.splitlines() == ["Name,Status,Tags,Project", f"'=HYPERLINK(1),created,,{name}",
                                 f'alpha,created,"x, y",{name}', f"gamma,Running,z,{name}"]
    # Once only.
    status, again, _ = admin.request("GET", f"/api/v999.0/organization.download_for_get_all?prepare_id={prepared}")
    assert status == 400 and "prepare it again" in again["meta"]["result_msg"]
    # The listing part is checked against tasks.get_all_ex itself.
    bad = admin.error("organization.prepare_download_for_get_all", **{**body, "page_size": "ten"})
    assert (bad.code, bad.subcode) == (400, 12) and "page_size" in bad.msg


def test_queues_page_listing_names_the_next_task_counts_entries_and_lists_workers(admin):
    """The queues table reads entries[0].task.name, entries_count and workers.length."""
    queue = admin.call("queues.create", name=f"page-q-{time.time_ns()}")["id"]
    tasks = [admin.call("tasks.create", name=f"waiting-{i}", type="training")["id"] for i in range(3)]
    for task in tasks:
        admin.call("tasks.enqueue", task=task, queue=queue)
    worker = f"page-worker-{time.time_ns()}"
    admin.call("workers.register", worker=worker, queues=[queue])
    body = {"only_fields": ["display_name", "last_update", "name", "tags", "workers", "entries"],
            "count_task_entries": True, "max_task_entries": 1}
    row = next(q for q in admin.call("queues.get_all_ex", **body)["queues"] if q["id"] == queue)
    assert [e["task"] for e in row["entries"]] == [{"id": tasks[0], "name": "waiting-0"}]
    assert row["entries_count"] == 3
    assert [w["name"] for w in row["workers"]] == [worker]
    # The SDK's plain listing keeps ids and all entries.
    plain = next(q for q in admin.call("queues.get_all", only_fields=["name", "entries"])["queues"]
                 if q["id"] == queue)
    assert [e["task"] for e in plain["entries"]] == tasks and "workers" not in plain
    admin.call("workers.unregister", worker=worker)
    row = next(q for q in admin.call("queues.get_all_ex", **body)["queues"] if q["id"] == queue)
    assert row["workers"] == []


def test_global_search_counts_each_kind_with_its_own_filter(admin, other_admin):
    """organization.get_entities_count with the body the web app's search box sends."""
    word = f"needle{time.time_ns()}"
    project = admin.call("projects.create", name=f"{word}-project")["id"]
    admin.call("projects.create", name=f"{word}-project/.pipelines/{word}-pipe", system_tags=["pipeline"])
    tasks = [admin.call("tasks.create", name=f"{word}-task-{i}", type="training", project=project)["id"]
             for i in range(3)]
    admin.call("tasks.archive", tasks=[tasks[2]])
    admin.call("models.create", name=f"{word}-model", uri="file:///tmp/m.bin", project=project)
    admin.call("reports.create", name=f"{word}-report", project=project)
    other_admin.call("tasks.create", name=f"{word}-theirs", type="training")

    def any_of(*fields):
        return {"_any_": {"pattern": word, "fields": list(fields)}}

    body = {
        "projects": {**any_of("basename", "id"), "search_hidden": False, "system_tags": ["-pipeline", "-dataset"]},
        "tasks": {**any_of("name", "id"), "search_hidden": False, "system_tags": ["-archived", "-pipeline", "-dataset"],
                  "type": ["__$not", "annotation_manual", "__$not", "annotation", "__$not", "dataset_import"]},
        "models": {**any_of("name", "id"), "system_tags": ["-archived"]},
        "datasets": {**any_of("basename", "id"), "name": "/\\.datasets/", "search_hidden": True,
                     "shallow_search": False, "system_tags": ["dataset"]},
        "pipelines": {**any_of("basename", "id"), "search_hidden": True, "shallow_search": False,
                      "system_tags": ["pipeline"]},
        "reports": {**any_of("id", "name", "tags", "project", "comment", "report"), "system_tags": ["-archived"],
                    "search_hidden": False},
        "limit": 1,
    }
    counts = admin.call("organization.get_entities_count", **body)
    assert counts == {"projects": 1, "tasks": 2, "models": 1, "datasets": 0, "pipelines": 1, "reports": 1}
    assert other_admin.call("organization.get_entities_count", tasks=any_of("name"))["tasks"] == 1
    bad = admin.error("organization.get_entities_count", tasks={"page_size": "many"})
    assert bad.code == 400 and "tasks.page_size" in bad.msg


def test_removing_a_task_from_its_queue_on_the_queue_page_puts_it_back_to_created(admin):
    """queues.remove_task with update_task_status (the queue page's 'remove'): the task leaves the
    queue and is no longer queued; without it only the entry goes (the SDK's behaviour)."""
    queue = admin.call("queues.create", name=f"rm-q-{time.time_ns()}")["id"]
    first, second = (admin.call("tasks.create", name=n, type="training")["id"] for n in ("first", "second"))
    for task in (first, second):
        admin.call("tasks.enqueue", task=task, queue=queue)
    assert admin.call("queues.remove_task", queue=queue, task=first, update_task_status=True) == {"removed": 1}
    task = admin.call("tasks.get_by_id", task=first)["task"]
    assert (task["status"], task["execution"].get("queue")) == ("created", None)
    assert admin.call("queues.remove_task", queue=queue, task=second) == {"removed": 1}
    assert admin.call("tasks.get_by_id", task=second)["task"]["status"] == "queued"
    assert admin.call("queues.get_by_id", queue=queue)["queue"]["entries"] == []
    assert admin.error("queues.remove_task", queue="no-such-queue", task=first).subcode == 701
