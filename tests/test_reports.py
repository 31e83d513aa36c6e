"""ClearML's reports service over real HTTP, with the request bodies the web app's reports page sends:
a report is a hidden task of type 'report' in '<project>/.reports'; only a created report is edited;
archive, move, publish and delete behave as ClearML's; another company never sees one."""

from __future__ import annotations

import json
from uuid import uuid4

# What the reports page and the dashboard send (read from the app's network log).
PAGE_QUERY = {"only_fields": ["name", "comment", "company", "tags", "report", "project.name", "user.name",
                              "status", "last_update", "system_tags"],
              "size": 12, "scroll_id": None, "system_tags": ["__$not", "archived"], "order_by": ["-last_update"]}


def _project(admin, prefix: str = "reports") -> tuple[str, str]:
    name = f"{prefix}-{uuid4().hex[:8]}"
    return admin.call("projects.create", name=name)["id"], name


def test_a_report_lives_hidden_in_its_projects_reports_folder(admin):
    project, name = _project(admin)
    made = admin.call("reports.create", name="weekly", project=project, report="# Results\nall good",
                      tags=["b", "a"], comment="first")
    holder = admin.call("projects.get_by_id", project=made["project_id"])["project"]
    assert (holder["name"], holder["system_tags"]) == (f"{name}/.reports", ["reports", "hidden"])
    task = admin.call("tasks.get_by_id", task=made["id"])["task"]
    assert (task["type"], task["status"], task["project"]) == ("report", "created", made["project_id"])
    assert task["system_tags"] == ["reports", "hidden"]
    # Experiment tables and project listings do not show it ...
    assert admin.call("tasks.get_all_ex", project=[made["project_id"]], only_fields=["id"])["tasks"] == []
    assert f"{name}/.reports" not in [p["name"] for p in admin.call("projects.get_all", name=name)["projects"]]
    # ... the reports page does, from the project it belongs to.
    listed = admin.call("reports.get_all_ex", **{**PAGE_QUERY, "project": [project]})["tasks"]
    assert [(r["id"], r["name"], r["report"], r["status"]) for r in listed] == \
        [(made["id"], "weekly", "# Results\nall good", "created")]
    assert sorted(listed[0]) == sorted(["id", "name", "comment", "company", "tags", "report", "project", "user",
                                        "status", "last_update", "system_tags"]), listed[0]
    assert listed[0]["project"] == {"id": made["project_id"], "name": f"{name}/.reports"}
    assert listed[0]["user"]["name"]
    top = admin.call("reports.create", name="no project")
    assert admin.call("projects.get_by_id", project=top["project_id"])["project"]["name"] == ".reports"


def test_only_a_created_report_is_edited_and_publishing_freezes_its_text(admin):
    project, _ = _project(admin)
    report = admin.call("reports.create", name="draft", project=project)["id"]
    long_text = "word " * 100
    changed = admin.call("reports.update", task=report, name="final", tags=["z", "y"], report=long_text)
    assert changed["updated"] == 1 and changed["fields"]["tags"] == ["y", "z"]
    assert len(changed["fields"]["report"]) <= 100 and changed["fields"]["report"].endswith("[...]")
    again = admin.call("reports.get_all_ex", id=[report], only_fields=["name", "tags", "report"])["tasks"][0]
    assert (again["name"], again["tags"], again["report"]) == ("final", ["z", "y"], long_text)
    assert admin.call("reports.get_tags")["tags"] == sorted(set(admin.call("reports.get_tags")["tags"]))
    assert {"y", "z"} <= set(admin.call("reports.get_tags")["tags"])

    published = admin.call("reports.publish", task=report, comment="ship it")
    assert published["updated"] == 1 and published["fields"]["status"] == "published"
    stored = admin.call("tasks.get_by_id", task=report)["task"]
    assert (stored["status"], stored["status_message"]) == ("published", "ship it")
    assert stored["published"] == published["fields"]["published"]
    refused = admin.error("reports.update", task=report, report="late edit")  # its text is frozen
    assert (refused.code, refused.subcode) == (400, 110)
    assert admin.call("tasks.get_by_id", task=report)["task"]["report"] == long_text
    admin.call("reports.update", task=report, name="renamed")  # as ClearML: name, tags and comment still change
    assert admin.call("tasks.get_by_id", task=report)["task"]["name"] == "renamed"


def test_archive_move_and_delete(admin):
    project, _ = _project(admin)
    report = admin.call("reports.create", name="to archive", project=project)["id"]
    old_holder = admin.call("tasks.get_by_id", task=report)["task"]["project"]
    assert admin.call("reports.archive", task=report) == {"archived": 1}
    assert "archived" in admin.call("tasks.get_by_id", task=report)["task"]["system_tags"]
    listed = admin.call("reports.get_all_ex", **{**PAGE_QUERY, "project": [project]})["tasks"]
    assert listed == []  # the page hides archived reports
    assert admin.call("reports.unarchive", task=report) == {"unarchived": 1}
    assert "archived" not in admin.call("tasks.get_by_id", task=report)["task"]["system_tags"]

    target = f"moved-{uuid4().hex[:8]}/inner"
    moved = admin.call("reports.move", task=report, project_name=target)
    assert admin.call("projects.get_by_id", project=moved["project_id"])["project"]["name"] == f"{target}/.reports"
    assert admin.call("tasks.get_by_id", task=report)["task"]["project"] == moved["project_id"]
    # The emptied '.reports' folder went with its last report; the project it was under stays.
    assert admin.error("projects.get_by_id", project=old_holder).code == 400
    assert admin.call("projects.get_by_id", project=project)["project"]["id"] == project
    missing = admin.error("reports.move", task=report)
    assert (missing.code, missing.subcode, missing.meta["error_data"]) == (400, 11, {"field": "project"})

    admin.call("reports.publish", task=report)
    refused = admin.error("reports.delete", task=report)
    assert (refused.code, refused.subcode) == (400, 123)
    assert admin.call("reports.delete", task=report, force=True) == {"deleted": 1}
    assert admin.error("tasks.get_by_id", task=report).subcode == 101
    assert admin.error("projects.get_by_id", project=moved["project_id"]).code == 400


def test_report_endpoints_refuse_ordinary_tasks_and_other_companies(admin, other_admin):
    task = admin.call("tasks.create", name="plain", type="training")["id"]
    wrong = admin.error("reports.publish", task=task)
    assert (wrong.code, wrong.subcode) == (400, 125)
    assert admin.call("tasks.get_by_id", task=task)["task"]["status"] == "created"
    report = admin.call("reports.create", name="private report")["id"]
    assert other_admin.call("reports.get_all_ex", id=[report])["tasks"] == []
    assert other_admin.error("reports.update", task=report, name="taken").subcode == 101
    assert other_admin.error("reports.delete", task=report, force=True).subcode == 101
    assert admin.call("tasks.get_by_id", task=report)["task"]["name"] == "private report"


def test_task_data_embeds_only_the_parts_asked_for_of_the_callers_tasks(admin, other_admin):
    task = admin.call("tasks.create", name="embedded", type="training")["id"]
    events = [{"task": task, "type": kind, "iter": it, "metric": f"m{m}", "variant": "v", **extra}
              for m in range(2) for it in (1, 2)
              for kind, extra in (("training_debug_image", {"url": f"https://f.example/{m}_{it}.png"}),
                                  ("plot", {"plot_str": "{}"}), ("training_stats_scalar", {"value": float(it)}))]
    events.append({"task": task, "type": "training_stats_scalar", "iter": -(2**31), "metric": "best", "variant": "v",
                   "value": 0.5})
    status, reply, _ = admin.request("POST", "/events.add_batch", raw="\n".join(json.dumps(e) for e in events),
                                     headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"]["added"] == len(events)
    bare = admin.call("reports.get_task_data", id=[task], only_fields=["name"])
    assert set(bare) == {"tasks"} and [t["id"] for t in bare["tasks"]] == [task]
    full = admin.call("reports.get_task_data", id=[task], only_fields=["name"], debug_images={"metrics": []},
                      plots={"metrics": [{"metric": "m1"}]}, scalar_metrics_iter_histogram={"key": "iter"},
                      single_value_metrics={})
    images = full["debug_images"]
    assert [(d["task"], [i["iter"] for i in d["iterations"]]) for d in images] == [(task, [2])]
    assert [e["metric"] for e in images[0]["iterations"][0]["events"]] == ["m0", "m1"]
    assert list(full["plots"]) == ["m1"] and list(full["plots"]["m1"]["v"][task]) == ["2"]
    assert full["scalar_metrics_iter_histogram"]["m0"]["v"][task]["x"] == [1, 2]
    assert full["single_value_metrics"] == [{"task": task, "task_name": "embedded", "values": [
        {"metric": "best", "variant": "v", "value": 0.5, "timestamp": full["single_value_metrics"][0]["values"][0][
            "timestamp"]}]}]
    # another company lists none of the caller's tasks, so it embeds nothing of them
    theirs = other_admin.call("reports.get_task_data", id=[task], debug_images={}, single_value_metrics={})
    assert theirs == {"tasks": [], "debug_images": [], "single_value_metrics": []}
