"""The newest page of a listing as the web app asks for it, at 1,000 and at 100,000 tasks (and models):
through HTTP to a real server on the embedded database, against the same raw query through pymongo
on the same database, in the same run.

Pages: 15 and 50 of one project's tasks (``tasks.get_all_ex``), of all tasks (``tasks.get_all``) and
of models (``models.get_all_ex``), each ``order_by: ["-last_update"]`` with a few ``only_fields``.
Tasks and models are spread over 10 projects and carry a ``last_update`` ten seconds apart (the
newest a moment ago), as a team's history would; the 99,000 added for the second size are older
than the first 1,000.

Printed per page: API ms; raw pymongo ms (the plain ``find().sort().limit()``) and its ratio to the
API (goal >= 0.7); sliced ms, the reads the API makes (``database/recent_page.py``) done straight through
pymongo, and its ratio to the API (what HTTP, auth, validation and encoding cost on top); and the API
page at the large size over the small (goal <= 2).
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import timedelta

from apiserver.bll import query as q
from apiserver.database import recent_page
from apiserver.database.model.base import new_id, utcnow
from bench.common import ApiServer, size_parser, timed

PROJECTS = 10
STATUSES = ["created", "queued", "in_progress", "stopped", "completed", "failed"]
TASK_FIELDS = ["id", "name", "type", "status", "user", "project", "tags", "system_tags", "last_update", "started"]
MODEL_FIELDS = ["id", "name", "framework", "user", "project", "tags", "system_tags", "ready", "last_update"]


def seed(db, company: str, user: str, start: int, stop: int, now) -> None:
    """Tasks and models number ``start`` .. ``stop - 1``; number i was last updated 10*i seconds ago."""
    rng = random.Random(start)
    tasks, models = [], []
    for i in range(start, stop):
        when = now - timedelta(seconds=10 * i)
        project = f"p{i % PROJECTS:02d}"
        tasks.append(
            {
                "_id": new_id(),
                "company": company,
                "user": user,
                "name": f"task {i}",
                "type": "training",
                "status": STATUSES[i % len(STATUSES)],
                "status_reason": "",
                "status_message": "",
                "status_changed": when,
                "created": when,
                "started": when,
                "last_update": when,
                "project": project,
                "tags": rng.sample(["a", "b", "c", "d"], 2),
                "system_tags": ["archived"] if i % 17 == 0 else [],
                "parent": None,
                "execution": {"queue": f"q{i % 5}", "parameters": {f"p{k}": k for k in range(20)}},
                "script": {"repository": "https://example.com/r.git", "diff": "x" * 500},
                "output": {},
                "comment": "",
                "hyperparams": {},
                "configuration": {},
                "runtime": {},
                "models": {"input": [], "output": []},
            }
        )
        models.append(
            {
                "_id": new_id(),
                "company": company,
                "user": user,
                "name": f"model {i}",
                "framework": "PyTorch",
                "project": project,
                "task": None,
                "uri": f"file:///m/{i}.pt",
                "ready": True,
                "tags": [],
                "system_tags": [],
                "created": when,
                "last_update": when,
                "design": {"design": "x" * 300},
                "labels": {"a": 1},
                "comment": "",
            }
        )
        if len(tasks) == 2000:
            db.tasks.insert_many(tasks, ordered=False)
            db.models.insert_many(models, ordered=False)
            tasks, models = [], []
    if tasks:
        db.tasks.insert_many(tasks, ordered=False)
        db.models.insert_many(models, ordered=False)


def cases(company: str) -> list[tuple[str, str, dict, object, dict, dict]]:
    """(label, endpoint, request body, collection name, raw filter, raw projection) per page kind."""
    scope = {"$in": [company, ""]}
    project = "p07"
    return [
        (
            "project tasks",
            "tasks.get_all_ex",
            {"project": [project], "system_tags": ["-archived"], "only_fields": TASK_FIELDS},
            "tasks",
            {"company": scope, "project": project, "system_tags": {"$nin": ["archived", "hidden"]}},
            {f: 1 for f in TASK_FIELDS if f != "id"},
        ),
        (
            "all tasks",
            "tasks.get_all",
            {"system_tags": ["-archived"], "only_fields": TASK_FIELDS},
            "tasks",
            {"company": scope, "system_tags": {"$nin": ["archived", "hidden"]}},
            {f: 1 for f in TASK_FIELDS if f != "id"},
        ),
        (
            "models",
            "models.get_all_ex",
            {"only_fields": MODEL_FIELDS},
            "models",
            {"company": scope, "system_tags": {"$ne": "hidden"}},
            {f: 1 for f in MODEL_FIELDS if f != "id"},
        ),
    ]


def measure(server: ApiServer, repeat: int, raw_repeat: int) -> dict[tuple[str, int], tuple[float, float, float]]:
    """(label, page size) -> (API ms, plain pymongo ms, sliced pymongo ms), medians of ``repeat``."""
    out = {}
    for label, endpoint, body, coll_name, raw_filter, raw_proj in cases(server.company):
        coll = server.db[coll_name]
        for size in (15, 50):
            request = {**body, "order_by": ["-last_update"], "page": 0, "page_size": size}
            key = "tasks" if coll_name == "tasks" else "models"
            expected = [
                d["_id"] for d in coll.find(raw_filter, {"_id": 1}).sort([("last_update", -1), ("_id", 1)]).limit(size)
            ]

            def api(request=request, key=key, expected=expected, endpoint=endpoint):
                r = server.http.post(f"{server.base}/{endpoint}", json=request)
                assert r.status_code == 200, r.text
                assert [t["id"] for t in r.json()["data"][key]] == expected

            def raw(coll=coll, raw_filter=raw_filter, raw_proj=raw_proj, size=size, expected=expected):
                assert [
                    d["_id"]
                    for d in coll.find(raw_filter, raw_proj).sort([("last_update", -1), ("_id", 1)]).limit(size)
                ] == expected

            def sliced(coll=coll, raw_filter=raw_filter, raw_proj=raw_proj, size=size, expected=expected):
                # the reads the API makes (database/recent_page.py), straight through pymongo
                page = recent_page.find_newest(
                    coll, q.combine(raw_filter), [("last_update", -1), ("_id", 1)], 0, size, raw_proj
                )
                assert [d["_id"] for d in page] == expected

            api()  # warm up (index list, connections)
            api_ms = statistics.median(timed(api, repeat)) * 1000
            raw_ms = statistics.median(timed(raw, raw_repeat)) * 1000
            sliced_ms = statistics.median(timed(sliced, repeat)) * 1000
            out[(label, size)] = (api_ms, raw_ms, sliced_ms)
            print(f"  {label} {size}: API {api_ms:.1f} ms, raw {raw_ms:.1f} ms, sliced {sliced_ms:.1f} ms", flush=True)
    return out


def main() -> None:
    parser = size_parser(__doc__)
    parser.add_argument("--raw-repeat", type=int, default=5, help="repeats of the plain query (slow when large)")
    args = parser.parse_args()
    with ApiServer() as server:
        now = utcnow()
        seed(server.db, server.company, server.user, 0, args.small, now)
        small = measure(server, args.repeat, args.raw_repeat)
        began = time.perf_counter()
        seed(server.db, server.company, server.user, args.small, args.large, now)
        print(
            f"seeded {args.large - args.small:,} more tasks and models in {time.perf_counter() - began:.0f}s",
            flush=True,
        )
        large = measure(server, args.repeat, args.raw_repeat)
    print(
        f"{'page':<18}{'tasks':>8}{'API ms':>9}{'raw ms':>9}{'raw/API':>9}{'sliced ms':>11}{'sliced/API':>12}"
        f"{'large/small API':>17}"
    )
    for (label, size), (api_ms, raw_ms, sliced_ms) in small.items():
        print(
            f"{label + ' ' + str(size):<18}{args.small:>8,}{api_ms:>9.1f}{raw_ms:>9.1f}{raw_ms / api_ms:>9.2f}"
            f"{sliced_ms:>11.1f}{sliced_ms / api_ms:>12.2f}"
        )
        l_api, l_raw, l_sliced = large[(label, size)]
        print(
            f"{'':<18}{args.large:>8,}{l_api:>9.1f}{l_raw:>9.1f}{l_raw / l_api:>9.2f}"
            f"{l_sliced:>11.1f}{l_sliced / l_api:>12.2f}{l_api / api_ms:>17.2f}"
        )


if __name__ == "__main__":
    main()
