"""Render manager claims per second with 8 concurrent workers over loopback (PATCH /workers/{id} with
status available, then completing the frame range), and the ratio to the same number of plain
find_one_and_update claims from one process on the same database, in the same run."""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.common import ApiServer


def render_worker(base: str, auth: str, name: str, start, out) -> None:
    session = requests.Session()
    session.headers["Authorization"] = auth
    worker = session.post(f"{base}/workers", json={"hostname": name}).json()[name]["id"]
    start.wait()
    claimed = 0
    while True:
        task_id = session.patch(f"{base}/workers/{worker}", json={"status": "available"}).json()["task_id"]
        if task_id is None:
            break
        session.patch(f"{base}/tasks/{task_id}", json={"frame_current": 1})
        claimed += 1
    out.put(claimed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    with ApiServer(workers=2) as server:
        body = {"type": "blender_render", "parser": "blender_render", "settings": {"filepath": "/f.blend"}}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: server.http.post(f"{server.base}/tasks", json={**body, "priority": i % 5}),
                          range(args.tasks)))
        ctx = multiprocessing.get_context("spawn")
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=render_worker, args=(server.base, server.http.headers["Authorization"],
                                                         f"bench-{i}", start, out)) for i in range(args.workers)]
        for p in procs:
            p.start()
        time.sleep(3)  # all registered
        began = time.perf_counter()
        start.set()
        claimed = sum(out.get(timeout=900) for _ in procs)
        api_s = time.perf_counter() - began
        for p in procs:
            p.join(30)
        assert claimed == args.tasks, claimed

        coll = server.db.bench_claims
        coll.create_index([("status", 1), ("priority", -1), ("_id", 1)])
        coll.insert_many([{"_id": i, "status": "waiting", "priority": i % 5} for i in range(args.tasks)])
        began = time.perf_counter()
        for _ in range(args.tasks):
            coll.find_one_and_update({"status": "waiting"}, {"$set": {"status": "rendering"}},
                                     sort=[("priority", -1), ("_id", 1)])
        mongo_s = time.perf_counter() - began
    print(f"API claims ({args.workers} workers, claim + complete): {args.tasks / api_s:,.0f}/s")
    print(f"pymongo find_one_and_update claims (1 process):   {args.tasks / mongo_s:,.0f}/s")
    print(f"ratio API/pymongo: {mongo_s / api_s:.3f}")


if __name__ == "__main__":
    main()
