"""The web app's read calls on one project of ``--project`` tasks (300) while the company around it
grows, in one run: the company holding only that project, against the company holding another
project of ``--other`` tasks (30,000) too; and the same calls on that big project.

Tasks are spread over a project and its subproject with a ``last_update`` a second apart, like a
team's history, and a third as many models; one real task carries scalars, a log, a plot and a
debug image. Each call is the body the web app sends for a project's pages (projects, experiments
and models tables with their filter menus, a task's page). Printed per call: best of ``--repeat``
on the small project in the small and in the big company and their ratio (near 1: the call reads
what the project holds; toward 100: it reads the whole company), and on the big project (what a
call that reads every task of a project costs at that size). A survey, not a goal: BENCHMARKS.md
says which calls grow and why.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from apiserver.database.model.base import new_id, utcnow
from bench.common import ApiServer, timed

STATUSES = ["created", "queued", "in_progress", "stopped", "completed", "failed", "published"]


def seed(server: ApiServer, n: int, name: str) -> dict[str, str]:
    """A project and subproject with ``n`` tasks and n/3 models, and one real task with events."""
    call = server.call
    project = call("projects.create", name=name, description="x")["id"]
    sub = call("projects.create", name=f"{name}/sub", description="x")["id"]
    task = call("tasks.create", name="real", type="training", project=project)["id"]
    call("tasks.edit_hyper_params", task=task, hyperparams=[{"section": "Args", "name": "lr", "value": "0.1"}])
    model = call("models.create", name="m", uri="http://x/y", project=project, task=task)["id"]
    now = utcnow()
    batch = []
    for i in range(n):
        when = now - timedelta(seconds=n - i)
        batch.append({"_id": new_id(), "company": server.company, "user": server.user, "name": f"task {i}",
                      "type": "training", "status": STATUSES[i % 7], "created": when, "last_update": when,
                      "status_changed": when, "project": project if i % 3 else sub, "tags": ["a" if i % 2 else "b"],
                      "system_tags": [], "parent": None, "execution": {"queue": None},
                      "hyperparams": {"Args": {"lr": {"section": "Args", "name": "lr", "value": str(i % 10)}}},
                      "last_metrics": {}, "models": {"input": [], "output": []}, "comment": ""})
        if len(batch) == 2000 or i == n - 1:
            server.db.tasks.insert_many(batch)
            batch = []
    server.db.models.insert_many([{"_id": new_id(), "company": server.company, "user": server.user,
                                   "name": f"model {i}", "project": project, "task": None, "uri": "http://x",
                                   "framework": "PyTorch", "ready": True, "created": now - timedelta(seconds=i),
                                   "last_update": now - timedelta(seconds=i), "tags": ["m"], "system_tags": [],
                                   "metadata": {}} for i in range(max(1, n // 3))])
    events = ([{"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": "v", "iter": i,
                "value": 1.0} for i in range(100)]
              + [{"task": task, "type": "log", "msg": f"line {i}", "level": "info"} for i in range(100)]
              + [{"task": task, "type": "training_debug_image", "metric": "img", "variant": "v", "iter": 1,
                  "url": "http://x/a.png"},
                 {"task": task, "type": "plot", "metric": "pl", "variant": "v", "iter": 1, "plot_str": "{}"}])
    server.http.post(server.base + "/events.add_batch", data="\n".join(map(json.dumps, events)),
                     headers={"Content-Type": "application/json-lines"}).raise_for_status()
    return {"project": project, "task": task, "model": model}


def calls(ids: dict[str, str]) -> list[tuple[str, str, dict]]:
    p, t, m = ids["project"], ids["task"], ids["model"]
    page = {"page": 0, "page_size": 15, "order_by": ["-last_update"]}
    return [
        ("projects page", "projects.get_all_ex", {"include_stats": True, "shallow_search": True,
                                                   "only_fields": ["name", "company", "last_update"], **page}),
        ("project's stats", "projects.get_all_ex", {"id": [p], "include_stats": True, "check_own_contents": True}),
        ("hyperparameter columns", "projects.get_hyper_parameters", {"project": p}),
        ("hyperparameter values", "projects.get_hyperparam_values", {"projects": [p], "section": "Args", "name": "lr"}),
        ("model metadata keys", "projects.get_model_metadata_keys", {"project": p}),
        ("model tags", "projects.get_model_tags", {"projects": [p]}),
        ("task parents", "projects.get_task_parents", {"projects": [p]}),
        ("task tags", "projects.get_task_tags", {"projects": [p]}),
        ("metric columns", "projects.get_unique_metric_variants", {"project": p}),
        ("delete check", "projects.validate_delete", {"project": p}),
        ("experiments page", "tasks.get_all_ex", {"project": [p], "only_fields": ["name", "status", "type"], **page}),
        ("  status filter", "tasks.get_all_ex", {"project": [p], "status": ["completed"], "only_fields": ["name"],
                                                  **page}),
        ("  search", "tasks.get_all_ex", {"project": [p], "_any_": {"pattern": "task 12", "fields": ["name", "id"]},
                                           "only_fields": ["name"], **page}),
        ("  sorted by name", "tasks.get_all_ex", {"project": [p], "only_fields": ["name"], **page,
                                                   "order_by": ["name"]}),
        ("task types", "tasks.get_types", {"projects": [p]}),
        ("task page", "tasks.get_by_id_ex", {"id": [t]}),
        ("models page", "models.get_all_ex", {"project": [p], "only_fields": ["name", "framework"], **page}),
        ("model frameworks", "models.get_frameworks", {"projects": [p]}),
        ("model page", "models.get_by_id_ex", {"id": [m]}),
        ("all tags", "organization.get_tags", {}),
        ("entity counts", "organization.get_entities_count", {"projects": {}, "experiments": {"project": [p]},
                                                              "models": {"project": [p]}}),
        ("reports page", "reports.get_all_ex", {**page}),
        ("scalars", "events.scalar_metrics_iter_histogram", {"task": t}),
        ("console", "events.get_task_log", {"task": t}),
        ("debug images", "events.debug_images", {"metrics": [{"task": t, "metric": "img"}]}),
        ("SDK: a task by name", "tasks.get_all", {"project": [p], "name": "^task 12$", "only_fields": ["id"]}),
    ]


def times(server: ApiServer, ids: dict[str, str], repeat: int) -> dict[str, float]:
    out = {}
    for label, endpoint, body in calls(ids):
        def run(endpoint=endpoint, body=body):
            resp = server.http.post(f"{server.base}/{endpoint}", json=body)
            assert resp.status_code == 200, (endpoint, resp.text[:300])
        out[label] = min(timed(run, repeat)) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=int, default=300)
    parser.add_argument("--other", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with ApiServer() as server:
        alone = times(server, seed(server, args.project, "mine"), args.repeat)
    with ApiServer() as server:
        other = seed(server, args.other, "other")
        crowded = times(server, seed(server, args.project, "mine"), args.repeat)
        big = times(server, other, args.repeat)
    print(f"{'call':28s} {'project of':>10s} {'the same in':>12s} {'ratio':>6s}  {'project of':>10s}")
    print(f"{'':28s} {args.project:>10,} {f'+{args.other:,}':>12s} {'':6s}  {args.other:>10,}")
    for label in alone:
        print(f"{label:28s} {alone[label]:8.1f}ms {crowded[label]:10.1f}ms {crowded[label] / alone[label]:6.1f}"
              f"  {big[label]:8.1f}ms")


if __name__ == "__main__":
    main()
