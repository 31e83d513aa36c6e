"""The projects service: unique names per company, nesting, listing, update, delete rules, task tags."""

from __future__ import annotations

from uuid import uuid4


def test_create_get_update_and_unique_names(api, other_api):
    name = f"proj-{uuid4().hex[:6]}"
    pid = api.call("projects.create", name=name, description="d", tags=["a"])["id"]
    proj = api.call("projects.get_by_id", project=pid)["project"]
    assert (proj["name"], proj["basename"], proj["description"], proj["tags"]) == (name, name, "d", ["a"])
    err = api.error("projects.create", name=name)
    assert (err.code, err.subcode) == (400, 801)
    other = other_api.call("projects.create", name=name)["id"]  # unique per company, not globally
    assert other != pid
    nested = api.call("projects.create", name=f"{name}/child/leaf")["id"]
    assert api.call("projects.get_by_id", project=nested)["project"]["basename"] == "leaf"
    for bad in ("", "a//b", "/lead", "trail/"):
        err = api.error("projects.create", name=bad)
        assert err.code == 400, bad
    result = api.call("projects.update", project=pid, name=f"{name}-renamed", description="new")
    assert result["updated"] == 1 and result["fields"]["basename"] == f"{name}-renamed"
    assert api.error("projects.update", project=pid, name=f"{name}/child/leaf").subcode == 408  # a move
    assert api.error("projects.update", project=pid, name=f"{name}/child").subcode == 408
    assert api.error("projects.update", project=nested, name="leaf").subcode == 408
    assert api.error("projects.get_by_id", project="0" * 32).subcode == 401
    assert other_api.error("projects.get_by_id", project=pid).subcode == 401
    assert other_api.error("projects.update", project=pid, name="x").subcode == 401


def test_renaming_a_project_renames_the_projects_below_it(api):
    top = f"ren-{uuid4().hex[:6]}"
    leaf = api.call("projects.create", name=f"{top}/mid/leaf")["id"]
    mid = api.call("projects.get_all", name=f"^{top}/mid$")["projects"][0]["id"]
    task = api.call("tasks.create", name="t", type="training", project=leaf)["id"]
    result = api.call("projects.update", project=mid, name=f"{top}/middle")
    assert (result["updated"], result["fields"]["name"], result["fields"]["basename"]) == (1, f"{top}/middle", "middle")
    listed = api.call("projects.get_all", name=f"^{top}", only_fields=["name", "basename", "parent"])["projects"]
    shown = {p["id"]: (p["name"], p["basename"], p.get("parent")) for p in listed}
    top_id = api.call("projects.get_all", name=f"^{top}$")["projects"][0]["id"]
    assert shown == {top_id: (top, top, None), mid: (f"{top}/middle", "middle", top_id),
                     leaf: (f"{top}/middle/leaf", "leaf", mid)}
    assert api.call("projects.get_by_id", project=leaf)["project"]["name"] == f"{top}/middle/leaf"
    embedded = api.call("tasks.get_all_ex", id=[task], only_fields=["project.name", "project.basename"])["tasks"]
    assert embedded[0]["project"] == {"id": leaf, "name": f"{top}/middle/leaf", "basename": "leaf"}
    api.call("projects.create", name=f"{top}/taken")
    assert api.error("projects.update", project=mid, name=f"{top}/taken").subcode == 801
    assert api.call("projects.update", project=mid, description="same name")["updated"] == 1
    assert api.call("projects.get_by_id", project=mid)["project"]["name"] == f"{top}/middle"


def test_get_all_filters_and_paging(api):
    tag = uuid4().hex[:6]
    ids = [api.call("projects.create", name=f"{tag}-{i:02d}", tags=["even" if i % 2 == 0 else "odd"],
                    system_tags=["hidden"] if i == 3 else [])["id"] for i in range(8)]
    got = api.call("projects.get_all", name=f"^{tag}-", order_by=["name"])["projects"]
    assert [p["id"] for p in got] == [i for n, i in enumerate(ids) if n != 3]
    got = api.call("projects.get_all", name=f"^{tag}-", search_hidden=True, tags=["-odd"],
                   only_fields=["name"])["projects"]
    assert sorted(p["name"] for p in got) == [f"{tag}-{i:02d}" for i in range(0, 8, 2)]
    assert set(got[0]) == {"id", "name"}
    page = api.call("projects.get_all", name=f"^{tag}-", order_by=["-name"], page=1, page_size=3)["projects"]
    assert [p["name"] for p in page] == [f"{tag}-04", f"{tag}-02", f"{tag}-01"]
    assert api.call("projects.get_all", id=[ids[3]])["projects"][0]["id"] == ids[3]  # id finds hidden ones
    assert [p["id"] for p in api.call("projects.get_all_ex", name=f"^{tag}-", order_by=["name"])["projects"]] == \
        [i for n, i in enumerate(ids) if n != 3]
    assert api.error("projects.get_all", name="[").subcode == 21


def test_delete_rules_and_task_tags(api):
    pid = api.call("projects.create", name=f"del-{uuid4().hex[:6]}")["id"]
    t1 = api.call("tasks.create", name="a", type="training", project=pid, tags=["t1", "shared"],
                  system_tags=["s1"])["id"]
    api.call("tasks.create", name="b", type="training", project=pid, tags=["t2", "shared"])
    assert api.call("projects.get_task_tags", projects=[pid]) == {"tags": ["shared", "t1", "t2"],
                                                                  "system_tags": ["s1"]}
    err = api.error("projects.delete", project=pid)
    assert (err.code, err.subcode) == (400, 402)
    assert api.call("projects.get_by_id", project=pid)
    result = api.call("projects.delete", project=pid, force=True)
    assert result == {"deleted": 1, "deleted_projects": 1, "disassociated_tasks": 2, "deleted_tasks": 0,
                      "deleted_models": 0, "urls": {"artifact_urls": [], "event_urls": [], "model_urls": []}}
    assert not api.call("tasks.get_by_id", task=t1)["task"].get("project")
    empty = api.call("projects.create", name=f"empty-{uuid4().hex[:6]}")["id"]
    assert api.call("projects.delete", project=empty)["deleted"] == 1
    full = api.call("projects.create", name=f"full-{uuid4().hex[:6]}")["id"]
    gone = api.call("tasks.create", name="c", type="training", project=full)["id"]
    assert api.call("projects.delete", project=full, force=True, delete_contents=True)["deleted_tasks"] == 1
    assert api.error("tasks.get_by_id", task=gone).subcode == 101
