"""A forced project delete with its contents goes through the task and model delete rules: every
collection and the file store are counted before and after; nothing of the project is left and
nothing else is touched."""

from __future__ import annotations

from uuid import uuid4

from tests.test_files import api_company, company_file, files_url, unique, upload

# Written by the session server's background jobs (or, listing hints, by its reads) at any moment: not part of
# what a delete touches.
BACKGROUND = ("lease", "metric", "stats", "heartbeat", "sign_in_failures", "server_settings", "file_deletions",
              "listing_hints")


def _snapshot(db) -> dict[str, set]:
    return {name: {str(d["_id"]) for d in db[name].find({}, {"_id": 1})}
            for name in db.list_collection_names()
            if not name.startswith("system.") and not any(b in name for b in BACKGROUND)}


def _owned_project(api, web, tag: str) -> dict:
    """A project with two tasks (one the other's parent), events, an artifact, a debug image, an
    output model with its file, and a queue entry."""
    project = api.call("projects.create", name=f"{tag}-{uuid4().hex[:6]}")["id"]
    parent = api.call("tasks.create", name=f"{tag}-parent", type="training", project=project)["id"]
    child = api.call("tasks.create", name=f"{tag}-child", type="training", project=project, parent=parent)["id"]
    paths = {k: unique(f"{tag}-{k}.bin") for k in ("artifact", "image", "model")}
    assert upload(web, api.auth, {p: k.encode() for k, p in paths.items()}).status_code == 200
    api.call("tasks.add_or_update_artifacts", task=parent,
             artifacts=[{"key": "a", "type": "custom", "uri": files_url(paths["artifact"])}])
    api.call("events.add", task=parent, type="training_debug_image", metric="m", variant="v", iter=1,
             url=files_url(paths["image"]))
    api.call("events.add", task=child, type="log", msg="hello", level="info", timestamp=1)
    api.call("events.add", task=child, type="training_stats_scalar", metric="loss", variant="v", iter=1, value=0.5)
    model = api.call("models.update_for_task", task=parent, uri=files_url(paths["model"]), name=f"{tag}-m")["id"]
    queue = api.call("queues.create", name=f"{tag}-q-{uuid4().hex[:6]}")["id"]
    api.call("tasks.enqueue", task=child, queue=queue)
    return {"project": project, "tasks": [parent, child], "model": model, "queue": queue, "paths": paths}


def test_forced_project_delete_removes_everything_it_owns_and_nothing_else(app, web, api, files, monkeypatch):
    from apiserver.state import get_state

    monkeypatch.setattr(files, "delete_delay_sec", 0)
    doomed = _owned_project(api, web, "doomed")
    kept = _owned_project(api, web, "kept")
    # A task elsewhere whose parent is in the doomed project keeps living, without the parent.
    orphan = api.call("tasks.create", name="orphan", type="training", project=kept["project"],
                      parent=doomed["tasks"][0])["id"]
    db = get_state().db
    company = api_company(api)
    before = _snapshot(db)

    out = api.call("projects.delete", project=doomed["project"], force=True, delete_contents=True)
    assert (out["deleted"], out["deleted_tasks"], out["deleted_models"]) == (1, 2, 1)
    files.process_due_deletions()
    after = _snapshot(db)

    removed = {name: before[name] - after.get(name, set()) for name in before}
    added = {name: after[name] - before.get(name, set()) for name in after}
    assert {k: v for k, v in added.items() if v} == {}
    assert removed.pop("tasks") == set(doomed["tasks"])
    assert removed.pop("projects") == {doomed["project"]}
    assert removed.pop("models") == {doomed["model"]}
    assert len(removed.pop("events")) == 1  # the debug image; the log line and the scalar, two add calls, are
    # two pending documents until the task's adds are folded into its series and log blocks
    assert len(removed.pop("event_scalar_pending")) == 2
    assert {k: v for k, v in removed.items() if v} == {}  # no other collection lost anything
    # What stays was not touched: the kept project's records, files and queue entry.
    assert api.call("tasks.get_by_id", task=orphan)["task"].get("parent") is None
    assert [e["task"] for e in api.call("queues.get_by_id", queue=doomed["queue"])["queue"]["entries"]] == []
    assert [e["task"] for e in api.call("queues.get_by_id", queue=kept["queue"])["queue"]["entries"]] \
        == [kept["tasks"][1]]
    assert all(company_file(files, company, p) is None for p in doomed["paths"].values())
    assert [company_file(files, company, p) for p in kept["paths"].values()] == [b"artifact", b"image", b"model"]
    assert api.call("models.get_by_id", model=kept["model"])["model"]["uri"] == files_url(kept["paths"]["model"])
