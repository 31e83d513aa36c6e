"""events.* against a real server on the embedded database, as ratios measured in one run:

- events.add_batch: events per second in batches of 500 scalar events (json-lines), against pymongo
  insert_many of the same events as one document each (the shape before blocks); and again once
  20,000 other tasks have scalar series, against the first figure;
- the scalar chart (scalar_metrics_iter_histogram, 5 metrics x 4 variants) of a task with
  1,000,000 points against the same chart of a task with 100,000 points (--sizes);
- the newest and the oldest 100-line pages of a 1,000,000-line console log (get_task_log) against
  the same pages of a 100,000-line log.

Latencies are the best of --repeat rounds in which the compared calls take turns (the machine may be
shared); absolute times are printed for context.
"""

from __future__ import annotations

import argparse
import json
import time

import orjson

from apiserver.database.model.base import new_id
from bench.common import ApiServer, timed

JSON_LINES = {"Content-Type": "application/json-lines"}


def scalar_batch(task: str, start_iter: int, size: int) -> list[dict]:
    """``size`` scalar events over 5 metrics x 4 variants, 20 per iteration from ``start_iter`` on."""
    now = int(time.time() * 1000)
    return [{"task": task, "type": "training_stats_scalar", "metric": f"m{i % 5}", "variant": f"v{i % 4}",
             "iter": start_iter + i // 20, "value": float((i * 7919) % 1000), "timestamp": now + i}
            for i in range(size)]


def log_batch(task: str, start: int, size: int, t0: int) -> list[dict]:
    return [{"task": task, "type": "log", "level": "info", "worker": "bench", "timestamp": t0 + start + i,
             "msg": f"line {start + i}: loss went down a little, as it does"} for i in range(size)]


class EventsBench:
    def __init__(self, server: ApiServer, repeat: int):
        self.server = server
        self.repeat = repeat

    def post_lines(self, events: list[dict]) -> None:
        resp = self.server.http.post(f"{self.server.base}/events.add_batch",
                                     data="\n".join(map(json.dumps, events)), headers=JSON_LINES)
        assert resp.status_code == 200 and resp.json()["data"]["added"] == len(events), resp.text

    def best_ms(self, *fns) -> list[float]:
        """Each function's best time of ``repeat`` rounds, the functions taking turns in every round, so
        that load from other processes on the machine hits all of them alike."""
        best = [float("inf")] * len(fns)
        for fn in fns:
            fn()  # warm
        for _ in range(self.repeat):
            for k, fn in enumerate(fns):
                best[k] = min(best[k], timed(fn, 1)[0] * 1000)
        return best

    def add_batch(self, batches: int) -> None:
        server = self.server
        task = server.call("tasks.create", name="events-bench", type="training")["id"]
        raw_coll = server.db.bench_raw_events
        raw_coll.create_index([("task", 1), ("type", 1), ("metric", 1), ("variant", 1), ("iter", 1)])
        work = [scalar_batch(task, n * 25, 500) for n in range(batches)]
        api_s = mongo_s = 0.0
        for batch in work:  # taking turns, batch by batch
            api_s += timed(lambda b=batch: self.post_lines(b), 1)[0]
            mongo_s += timed(lambda b=batch: raw_coll.insert_many(
                [{**e, "_id": new_id(), "company": server.company} for e in b]), 1)[0]
        total = 500 * batches
        print(f"events.add_batch (500 scalars/batch): API {total / api_s:,.0f} events/s, pymongo insert_many "
              f"{total / mongo_s:,.0f} events/s; ratio API/pymongo = {mongo_s / api_s:.3f} (goal >= 0.8)")
        # The same calls once 20,000 other tasks have logged scalars (each has a series list document,
        # which every add_batch of a task updates): a write that scanned that collection shows here.
        server.db.event_scalar_tasks.insert_many(
            [{"_id": new_id(), "company": server.company, "pc": 0, "pp": 0,
              "s": {f"k{j}": {"m": f"m{j}", "r": "v", "n": 100, "x0": 0, "x1": 99} for j in range(4)}}
             for _ in range(20_000)])
        crowded_s = sum(timed(lambda b=batch: self.post_lines(b), 1)[0]
                        for batch in [scalar_batch(task, (batches + n) * 25, 500) for n in range(batches)])
        print(f"  with 20,000 other tasks' series lists: API {total / crowded_s:,.0f} events/s; "
              f"ratio to the first = {api_s / crowded_s:.3f} (goal >= 0.5)")

    def chart(self, sample_sizes: list[int], sizes: tuple[int, int]) -> None:
        server = self.server
        tasks = {}
        small_n, big_n = sizes
        for points in sizes:
            task = server.call("tasks.create", name=f"chart-{points}", type="training")["id"]
            for start in range(0, points, 10_000):
                self.post_lines(scalar_batch(task, start // 20, min(10_000, points - start)))
            tasks[points] = task

        def api_chart(task, samples):
            def run():  # a lean client, the answer parsed in C (orjson), as the raw reads' BSON is by pymongo
                body = server.post_lean("events.scalar_metrics_iter_histogram", {"task": task, "samples": samples})
                data = orjson.loads(body)["data"]
                assert sum(len(v) for v in data.values()) == 20
            return run

        for samples in sample_sizes:
            small, big = self.best_ms(api_chart(tasks[small_n], samples), api_chart(tasks[big_n], samples))
            print(f"scalar chart (samples={samples}/series): {small_n:,} points {small:.1f} ms, {big_n:,} points "
                  f"{big:.1f} ms; ratio = {big / small:.2f} (goal <= 1.5)")
        default, = self.best_ms(lambda: server.call("events.scalar_metrics_iter_histogram", task=tasks[big_n]))
        print(f"  the web app's request (no samples: 6000/series) at {big_n:,} points: {default:.0f} ms")

    def logs(self, sizes: tuple[int, int]) -> None:
        server = self.server
        tasks = {}
        t0 = int(time.time() * 1000)
        small_n, big_n = sizes
        for lines in sizes:
            task = server.call("tasks.create", name=f"log-{lines}", type="training")["id"]
            for start in range(0, lines, 10_000):
                self.post_lines(log_batch(task, start, min(10_000, lines - start), t0))
            tasks[lines] = task

        def page(task, earlier, first):
            def run():
                data = server.call("events.get_task_log", task=task, batch_size=100, navigate_earlier=earlier)
                assert data["returned"] == 100 and data["events"][0]["msg"].startswith(first), data["events"][0]
            return run

        for name, earlier in (("newest", True), ("oldest", False)):
            first = {n: f"line {n - 1}:" if earlier else "line 0:" for n in sizes}
            small, big = self.best_ms(page(tasks[small_n], earlier, first[small_n]),
                                      page(tasks[big_n], earlier, first[big_n]))
            print(f"get_task_log {name} 100 lines: {small_n:,}-line log {small:.1f} ms, {big_n:,}-line log "
                  f"{big:.1f} ms; ratio = {big / small:.2f} (goal <= 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=40, help="add_batch calls measured")
    parser.add_argument("--samples", type=int, default=100, help="chart points per series")
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 1_000_000],
                        help="the events of the smaller and the larger task compared")
    args = parser.parse_args()
    with ApiServer() as server:
        bench = EventsBench(server, args.repeat)
        bench.add_batch(args.batches)
        bench.chart([args.samples, 500], tuple(args.sizes))
        bench.logs(tuple(args.sizes))


if __name__ == "__main__":
    main()
