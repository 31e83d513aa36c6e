"""events.* against a real server, each as a ratio to pymongo doing the same work in the same run:

- events.add_batch throughput: events per second in batches of 500 scalar events (json-lines),
  against pymongo insert_many of the same documents;
- scalar_metrics_iter_histogram latency for a task with 100,000 scalar events, against a pymongo
  find of the same events sorted by metric, variant and iteration.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from apiserver.database.model.base import new_id
from bench.common import ApiServer, timed


def scalar_batch(task: str, start_iter: int, size: int) -> list[dict]:
    now = int(time.time() * 1000)
    return [{"task": task, "type": "training_stats_scalar", "metric": f"m{i % 5}", "variant": f"v{i % 4}",
             "iter": start_iter + i // 20, "value": float(i), "timestamp": now + i} for i in range(size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="scalar events in the histogram task")
    parser.add_argument("--batches", type=int, default=40, help="add_batch calls measured")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with ApiServer() as server:
        task = server.call("tasks.create", name="events-bench", type="training")["id"]
        raw_coll = server.db.bench_raw_events
        for index in server.db.events.index_information().values():  # same indexes as the API's collection
            if index["key"] != [("_id", 1)]:
                raw_coll.create_index(index["key"])
        batches = [scalar_batch(task, n * 25, 500) for n in range(args.batches)]
        headers = {"Content-Type": "application/json-lines"}

        def api_add(batch):
            resp = server.http.post(f"{server.base}/events.add_batch", data="\n".join(map(json.dumps, batch)),
                                    headers=headers)
            assert resp.status_code == 200 and resp.json()["data"]["added"] == len(batch), resp.text

        def mongo_add(batch):
            raw_coll.insert_many([{**e, "_id": new_id(), "company": server.company} for e in batch])

        api_s = sum(timed(lambda it=iter(batches): api_add(next(it)), len(batches)))
        mongo_s = sum(timed(lambda it=iter(batches): mongo_add(next(it)), len(batches)))
        total = 500 * len(batches)
        print(f"events.add_batch (500 scalars/batch): API {total / api_s:,.0f} events/s, pymongo insert_many "
              f"{total / mongo_s:,.0f} events/s; ratio API/pymongo = {mongo_s / api_s:.3f}")

        hist_task = server.call("tasks.create", name="histogram-bench", type="training")["id"]
        added = 0
        while added < args.events:
            size = min(5000, args.events - added)
            docs = [{**e, "_id": new_id(), "company": server.company}
                    for e in scalar_batch(hist_task, added // 20, size)]
            server.db.events.insert_many(docs)
            added += size

        def api_hist():
            data = server.call("events.scalar_metrics_iter_histogram", task=hist_task, samples=10_000)
            assert len(data) == 5

        def mongo_find():
            rows = list(server.db.events.find({"task": hist_task, "type": "training_stats_scalar"},
                                              {"metric": 1, "variant": 1, "value": 1, "iter": 1, "_id": 0})
                        .sort([("metric", 1), ("variant", 1), ("iter", 1)]))
            assert len(rows) == args.events

        api_ms = statistics.median(timed(api_hist, args.repeat)) * 1000
        mongo_ms = statistics.median(timed(mongo_find, args.repeat)) * 1000
        print(f"scalar_metrics_iter_histogram over {args.events:,} events: API {api_ms:.0f} ms, pymongo find "
              f"{mongo_ms:.0f} ms (median of {args.repeat}); ratio pymongo/API latency = {mongo_ms / api_ms:.3f}")


if __name__ == "__main__":
    main()
