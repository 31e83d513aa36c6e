"""tasks.* with 100,000 tasks in the database, each as a ratio to the same operation done with pymongo
directly in the same run:

- latency of tasks.get_all: a page of 500 with only_fields, a status filter and order_by;
- throughput of tasks.create, tasks.get_by_id and workers.status_report naming a task (each report
  records the worker on the task: one write to the big collection); and of models.delete (force),
  which removes the model from every task naming it, against pymongo deleting a model document.

It also prints the query plan of every get_all filter, to show each is served by an index.
The server is a real ``python -m apiserver`` (gunicorn) on the embedded database; requests go over
loopback, pymongo talks to the same database.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import timedelta

import mongoengine

from apiserver.bll.tasks.tasks import TaskBLL
from apiserver.database import recent_page
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.store import Store
from bench.common import ApiServer, timed

STATUSES = ["created", "queued", "in_progress", "stopped", "completed", "failed"]


def seed(coll, company: str, user: str, n: int) -> list[str]:
    rng = random.Random(1)
    now = utcnow()
    ids = []
    batch = []
    for i in range(n):
        when = now - timedelta(seconds=n - i)
        doc = {"_id": new_id(), "company": company, "user": user, "name": f"task {i}", "type": "training",
               "status": STATUSES[i % len(STATUSES)], "status_reason": "", "status_message": "",
               "status_changed": when, "created": when, "last_update": when, "project": f"p{i % 20:02d}",
               "tags": rng.sample(["a", "b", "c", "d"], 2), "system_tags": [], "parent": None,
               "execution": {"queue": f"q{i % 5}"}, "output": {}, "comment": ""}
        ids.append(doc["_id"])
        batch.append(doc)
        if len(batch) == 2000:
            coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=False)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--ops", type=int, default=300)
    args = parser.parse_args()
    with ApiServer() as server:
        http, base, company, user = server.http, server.base, server.company, server.user
        tasks = server.db.tasks
        start = time.perf_counter()
        ids = seed(tasks, company, user, args.tasks)
        print(f"seeded {args.tasks} tasks in {time.perf_counter() - start:.1f}s")

        # get_all: a page of 500, only_fields, status filter, order_by
        body = {"status": ["completed", "failed"], "only_fields": ["id", "name", "status", "last_update"],
                "order_by": ["-last_update"], "page": 0, "page_size": 500}
        query = {"company": {"$in": [company, ""]}, "status": {"$in": ["completed", "failed"]},
                 "system_tags": {"$ne": "hidden"}}
        proj = {"_id": 1, "name": 1, "status": 1, "last_update": 1}

        def api_get_all():
            r = http.post(base + "/v2.13/tasks.get_all", json=body)
            assert r.status_code == 200 and len(r.json()["data"]["tasks"]) == 500

        def mongo_get_all():
            assert len(list(tasks.find(query, proj).sort([("last_update", -1), ("_id", 1)]).limit(500))) == 500

        api_times = timed(api_get_all, args.repeat)
        mongo_times = timed(mongo_get_all, args.repeat)
        api_ms, mongo_ms = statistics.median(api_times) * 1000, statistics.median(mongo_times) * 1000
        print(f"tasks.get_all page of 500: API {api_ms:.1f} ms, pymongo {mongo_ms:.1f} ms (median of {args.repeat}); "
              f"ratio pymongo/API latency = {mongo_ms / api_ms:.3f}")

        def api_get_by_id():
            r = http.post(base + "/tasks.get_by_id", json={"task": random.choice(ids)})
            assert r.status_code == 200

        def mongo_get_by_id():
            assert tasks.find_one({"_id": random.choice(ids)})["company"] in (company, "")  # as bll/access.py reads

        def api_worker_report():  # what clearml-agent sends while it runs a task
            r = http.post(base + "/workers.status_report",
                          json={"worker": "bench-worker", "timestamp": int(time.time() * 1000),
                                "task": random.choice(ids)})
            assert r.status_code == 200, r.text

        def mongo_worker_report():
            tasks.update_one({"_id": random.choice(ids), "company": company},
                             {"$set": {"last_worker": "bench-worker", "last_worker_report": utcnow()}})

        def models_to_delete():  # models of the company, made in pymongo: only deleting them is measured
            docs = [{"_id": new_id(), "company": company, "user": user, "name": "bench-model", "uri": "file:///m.pt",
                     "ready": True, "tags": [], "system_tags": [], "created": utcnow(), "last_update": utcnow()}
                    for _ in range(args.ops)]
            server.db.models.insert_many(docs)
            return iter([d["_id"] for d in docs])

        api_models, mongo_models = models_to_delete(), models_to_delete()

        def api_model_delete():  # a model's delete leaves every task that names it (bll/tasks unlink_model)
            r = http.post(base + "/models.delete", json={"model": next(api_models), "force": True})
            assert r.status_code == 200 and r.json()["data"]["deleted"], r.text

        def mongo_model_delete():
            assert server.db.models.delete_one({"_id": next(mongo_models), "company": company}).deleted_count == 1

        http.post(base + "/workers.register", json={"worker": "bench-worker"}).raise_for_status()
        for label, api_fn, mongo_fn in (
            ("tasks.get_by_id", api_get_by_id, mongo_get_by_id),
            ("workers.status_report naming a task", api_worker_report, mongo_worker_report),
            ("tasks.create", lambda: http.post(base + "/tasks.create", json={"name": "bench", "type": "training"})
             .raise_for_status(),
             lambda: tasks.insert_one({"_id": new_id(), "company": company, "user": user, "name": "bench",
                                       "type": "training", "status": "created", "created": utcnow(),
                                       "last_update": utcnow(), "tags": [], "system_tags": []})),
            ("models.delete (force)", api_model_delete, mongo_model_delete),
        ):
            api_s, mongo_s = sum(timed(api_fn, args.ops)), sum(timed(mongo_fn, args.ops))
            print(f"{label}: API {args.ops / api_s:.0f}/s, pymongo {args.ops / mongo_s:.0f}/s; "
                  f"ratio API/pymongo throughput = {mongo_s / api_s:.3f}")

        print("\nquery plans of get_all filters (every one must use an index; on SecantusDB, of the aggregation"
              " the server runs):")
        mongoengine.connect(host=server.database.uri, db="bench", uuidRepresentation="standard")  # build_query reads
        bll = TaskBLL(None, None, progress_write_sec=0)
        samples = {"status": ["completed"], "project": ["p01"], "user": [user], "type": ["training"],
                   "tags": ["a"], "system_tags": ["x"], "parent": ids[5], "name": "^task 12",
                   "status_changed": [">=2020-01-01"], "execution.queue": ["q1"], "id": ids[:3],
                   "last_update": [">=2020-01-01"], "created": [">=2020-01-01"]}
        for field, value in samples.items():
            flt = bll.build_query(company, {field: value})
            head = flt
            if recent_page.sorts_in_python(tasks):  # the server reads the aggregation indexed_head builds
                stages = Store(collection=tasks).indexed_head(flt)
                head = stages[0]["$match"]
                plan = server.db.command("explain", {"aggregate": "tasks", "pipeline": stages,
                                                     "cursor": {}})["queryPlanner"]["winningPlan"]
            else:
                cursor = tasks.find(flt)
                hint = bll.index_hint({field: value}, [("created", -1), ("_id", 1)])
                plan = (cursor.hint(hint) if hint else cursor).explain()["queryPlanner"]["winningPlan"]
            text = str(plan)
            index = next((part.split("'")[0] for part in text.split("'indexName': '")[1:]), None)
            ranged = ("_id" if field == "id" else field) in head
            scope = "" if ranged else " (the company's range, the filter applied to it)"
            print(f"  {field:16s} {'IXSCAN ' + index + scope if 'IXSCAN' in text else 'COLLSCAN (no index!)'}")


if __name__ == "__main__":
    main()
