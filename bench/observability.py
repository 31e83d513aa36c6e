"""The cost of Prometheus metrics and JSON log lines on the dispatch benchmark (bench/dispatch.py's
declared endpoint, one gunicorn worker and thread): four servers side by side, with neither, metrics
(multiprocess mode, as the server runs them), JSON logs (one line per request, to a file) and both;
each measured in turn, ``--rounds`` times, and the median of each reported: requests per second, and
the worker's CPU time per request (user + system), which a shared machine's load
disturbs far less than throughput. Goal: under 5% each."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

import psutil

from bench.common import Gunicorn, requests_per_second

CONFIGS = {"neither": {}, "metrics": {"BENCH_METRICS": "1"}, "json logs": {"BENCH_JSON_LOGS": "1"},
           "both": {"BENCH_METRICS": "1", "BENCH_JSON_LOGS": "1"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    body = {"text": "hello", "count": 3}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-observe-")))  # gone after the servers
        servers = {}
        for name, flags in CONFIGS.items():
            env = dict(flags)
            if "BENCH_METRICS" in flags:
                (tmp / name).mkdir()
                env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / name)
            if "BENCH_JSON_LOGS" in flags:
                env["BENCH_LOG_FILE"] = str(tmp / f"{name.replace(' ', '-')}.log")
            servers[name] = stack.enter_context(Gunicorn("bench.bench_app:app", env=env))
        runs: dict[str, list[float]] = {name: [] for name in CONFIGS}
        cpu: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for _ in range(args.rounds):
            for name, server in servers.items():
                (worker,) = psutil.Process(server.proc.pid).children()  # the one gunicorn worker
                began = cpu_seconds(worker)
                rate = requests_per_second(server.port, "POST", "/v2.13/bench.ping_open", body, seconds=args.seconds)
                runs[name].append(rate)
                # requests_per_second warms up with 50 requests before it times args.seconds
                cpu[name].append((cpu_seconds(worker) - began) / (rate * args.seconds + 50) * 1e6)
        costs = hook_costs(tmp)
    base, base_cpu = statistics.median(runs["neither"]), statistics.median(cpu["neither"])
    print(f"{args.rounds} rounds of {args.seconds:.0f}s, configurations in turn; medians")
    print(f"{'configuration':<12} {'req/s':>7} {'vs neither':>10} {'CPU us/req':>11} {'vs neither':>10}   req/s runs")
    for name, values in runs.items():
        median, used = statistics.median(values), statistics.median(cpu[name])
        print(f"{name:<12} {median:7.0f} {median / base - 1:+10.1%} {used:11.0f} {used / base_cpu - 1:+10.1%}   "
              f"{' '.join(f'{v:.0f}' for v in values)}")
    print(f"work added per request, timed in-process (median of 5 x 20000; share of neither's {base_cpu:.0f} us CPU):")
    for name, cost in costs.items():
        print(f"  {name:<32} {cost:6.1f} us  {cost / base_cpu:6.2%}")


def hook_costs(folder: Path, n: int = 20000) -> dict[str, float]:
    """The work the observer adds to one request, timed in this process (microseconds, median of 5
    runs of ``n``): what the end-to-end figures above cannot resolve on a busy machine."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "in-process")  # before prometheus_client loads
    (folder / "in-process").mkdir()
    import logging
    import time

    from flask import Flask, Response, g

    from apiserver import metrics
    from apiserver.jsonlog import JsonLinesFormatter
    from apiserver.service_repo.observe import RequestObserver

    handler = logging.FileHandler(folder / "in-process.log")
    handler.setFormatter(JsonLinesFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    costs = {}
    app = Flask("bench")
    with app.test_request_context("/v2.13/bench.ping_open", method="POST"):
        response = Response(b"{}", mimetype="application/json")
        for name, (on, logs) in {"metrics": (True, False), "json logs": (False, True), "both": (True, True)}.items():
            observer = RequestObserver(metrics_enabled=on, log_requests=logs)
            runs = []
            for _ in range(5):
                began = time.perf_counter()
                for _ in range(n):
                    observer._before()
                    g.endpoint = "bench.ping_open"
                    observer._after(response)
                runs.append((time.perf_counter() - began) / n * 1e6)
            costs[name] = statistics.median(runs)
        began = time.perf_counter()
        for _ in range(n):
            metrics.observe_database_command("find", 0.001)
        costs["one database command (listener)"] = (time.perf_counter() - began) / n * 1e6
    return costs


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


if __name__ == "__main__":
    main()
