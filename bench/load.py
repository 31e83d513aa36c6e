"""Team scale: N runs reporting at once, as the ClearML SDK reports, while people open charts and logs.

A real ``python -m apiserver`` on its embedded default database (its default workers) in a fresh data
folder. Phase 1 ("paced"): ``--runs`` tasks each post a json-lines ``events.add_batch`` of ``--batch``
events (scalars and console lines, as the SDK batches them) every ``--every`` seconds, their starts
spread over the interval, while ``--viewers`` people each open, once a second, a random run's scalar
chart (``events.scalar_metrics_iter_histogram``) and its newest console page (``events.get_task_log``).
Phase 2 ("back to back"): ``--posters`` clients post the same batches without pausing, for the ceiling.

Per phase it prints the events asked for and stored, rejected (an answer other than 200 or ``added``
short of the batch) and lost (acknowledged but missing when the totals are read back through the API
afterwards), p50/p99 of add_batch and of a viewer's chart + log page, and the CPU seconds each process
used (the database processes, each API worker, the gunicorn master) with the database's CPU per 1,000
events stored. The baseline, measured in the same run on the idle server before the phases (one
client at a time: 30 add_batch calls of the same size, then 30 viewer opens of that run),
gives each phase's p99 as a ratio to the idle p50. Absolute figures are this machine's; compare runs
of the same build side by side.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64encode
from pathlib import Path

import psutil

from bench.common import ROOT, free_port

KEY, SECRET = "LOADBENCHKEY000000000000", "load-bench-secret-00000000000000000"
METRICS, VARIANTS = 4, 2  # scalars per iteration: METRICS x VARIANTS


class Client:
    """One kept-alive connection with the admin's token."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, endpoint: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
        for attempt in range(2):
            try:
                self.conn.request("POST", f"/{endpoint}", body, {"Content-Type": content_type,
                                                                 "Authorization": f"Bearer {self.token}"})
                resp = self.conn.getresponse()
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else {})
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt:
                    return 599, {}
        return 599, {}

    def call(self, endpoint: str, **data) -> dict:
        status, body = self.post(endpoint, json.dumps(data).encode())
        assert status == 200, (endpoint, status, body)
        return body["data"]


class Run:
    """A task reporting like the SDK: each batch is one iteration's scalars and console lines."""

    def __init__(self, task: str, batch: int):
        self.task, self.batch = task, batch
        self.iteration = 0
        self.lines = 0
        self.scalars_acked = self.lines_acked = 0

    def next_batch(self) -> tuple[bytes, int, int]:
        now = int(time.time() * 1000)
        events, scalars, lines = [], 0, 0
        while len(events) < self.batch:
            if scalars < self.batch * 4 // 5:
                for m in range(METRICS):
                    for v in range(VARIANTS):
                        if len(events) < self.batch * 4 // 5:
                            events.append({"task": self.task, "type": "training_stats_scalar", "metric": f"loss{m}",
                                           "variant": f"v{v}", "iter": self.iteration, "timestamp": now,
                                           "value": random.random()})
                            scalars += 1
                self.iteration += 1
            else:
                events.append({"task": self.task, "type": "log", "level": "info", "worker": "load",
                               "timestamp": now, "msg": f"iteration {self.iteration} line {self.lines}: "
                                                        "loss went down a little, as it does"})
                self.lines += 1
                lines += 1
        return "\n".join(json.dumps(e) for e in events).encode(), scalars, lines


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Server:
    def __init__(self, workers: int | None, env: dict[str, str]):
        self.work = Path(tempfile.mkdtemp(prefix="load-"))
        self.port = free_port()
        cmd = [sys.executable, "-m", "apiserver", "--port", str(self.port), "--data-dir", str(self.work)]
        if workers:
            cmd += ["--workers", str(workers)]
        env = {**os.environ, "APISERVER_ADMIN_ACCESS_KEY": KEY, "APISERVER_ADMIN_SECRET_KEY": SECRET,
               "APISERVER__apiserver__log_level": "WARNING", **env}
        self.log = open(self.work / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"server did not start: see {self.work / 'server.log'}")
            time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", self.port)
        conn.request("POST", "/auth.login", b"{}", {"Authorization": "Basic " + b64encode(f"{KEY}:{SECRET}".encode())
                                                    .decode(), "Content-Type": "application/json"})
        self.token = json.loads(conn.getresponse().read())["data"]["token"]

    def processes(self) -> dict[str, psutil.Process]:
        """The server's processes by role: master, worker N, database N."""
        master = psutil.Process(self.proc.pid)
        out = {"gunicorn master": master}
        workers = databases = 0
        for child in master.children(recursive=True):
            try:
                cmd = " ".join(child.cmdline()).lower()
            except psutil.Error:
                continue
            if "secantus" in cmd:
                databases += 1
                out[f"database {databases}"] = child
            elif child.ppid() == master.pid:
                workers += 1
                out[f"api worker {workers}"] = child
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)


def cpu_seconds(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for name, proc in procs.items():
        try:
            times = proc.cpu_times()
            out[name] = times.user + times.system
        except psutil.Error:
            out[name] = 0.0
    return out


class Phase:
    def __init__(self, name: str):
        self.name = name
        self.asked = self.stored = self.rejected = 0
        self.add_ms: list[float] = []
        self.view_ms: list[float] = []
        self.lock = threading.Lock()

    def record_add(self, ms: float, asked: int, added: int, ok: bool) -> None:
        with self.lock:
            self.add_ms.append(ms)
            self.asked += asked
            self.stored += added if ok else 0
            self.rejected += 0 if ok and added == asked else asked - (added if ok else 0)


def post_batch(client: Client, run: Run, phase: Phase) -> None:
    body, scalars, lines = run.next_batch()
    start = time.perf_counter()
    status, answer = client.post("events.add_batch", body, "application/json-lines")
    ms = (time.perf_counter() - start) * 1000
    added = (answer.get("data") or {}).get("added", 0) if status == 200 else 0
    ok = status == 200 and added == scalars + lines
    if ok:
        run.scalars_acked += scalars
        run.lines_acked += lines
    phase.record_add(ms, scalars + lines, added, status == 200)


def viewer(server: Server, runs: list[Run], phase: Phase, stop: threading.Event) -> None:
    client = Client(server.port, server.token)
    while not stop.is_set():
        tick = time.monotonic()
        run = random.choice(runs)
        start = time.perf_counter()
        client.call("events.scalar_metrics_iter_histogram", task=run.task, key="iter")
        client.call("events.get_task_log", task=run.task, batch_size=100, navigate_earlier=True)
        with phase.lock:
            phase.view_ms.append((time.perf_counter() - start) * 1000)
        stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))


def paced(server: Server, runs: list[Run], every: float, seconds: float, viewers: int) -> Phase:
    phase = Phase(f"{len(runs)} runs, a batch every {every:g} s each")
    stop = threading.Event()

    def reporter(run: Run, offset: float) -> None:
        client = Client(server.port, server.token)
        next_at = time.monotonic() + offset
        while True:
            stop.wait(max(0.0, next_at - time.monotonic()))
            if stop.is_set():
                return
            post_batch(client, run, phase)
            next_at += every

    threads = [threading.Thread(target=reporter, args=(r, every * k / len(runs))) for k, r in enumerate(runs)]
    threads += [threading.Thread(target=viewer, args=(server, runs, phase, stop)) for _ in range(viewers)]
    return run_for(threads, seconds, stop, phase)


def run_for(threads: list[threading.Thread], seconds: float, stop: threading.Event, phase: Phase) -> Phase:
    """Run the threads for ``seconds``, then set ``stop`` and wait for them."""
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return phase


def back_to_back(server: Server, runs: list[Run], posters: int, seconds: float) -> Phase:
    phase = Phase(f"back to back, {posters} clients")
    stop = threading.Event()

    def poster(run: Run) -> None:
        client = Client(server.port, server.token)
        while not stop.is_set():
            post_batch(client, run, phase)

    return run_for([threading.Thread(target=poster, args=(runs[k % len(runs)],)) for k in range(posters)],
                   seconds, stop, phase)


def lost_events(client: Client, runs: list[Run]) -> int:
    """Events acknowledged but not there when read back through the API."""
    lost = 0
    for run in runs:
        scalars = client.call("events.get_task_events", task=run.task, event_type="training_stats_scalar",
                              batch_size=1)["total"]
        lines = client.call("events.get_task_log", task=run.task, batch_size=1)["total"]
        lost += max(0, run.scalars_acked - scalars) + max(0, run.lines_acked - lines)
    return lost


def idle_baseline(server: Server, run: Run, rounds: int = 30) -> tuple[float, float]:
    """p50 of an add_batch and of a viewer's open (chart + newest log page) with nothing else running."""
    client, phase = Client(server.port, server.token), Phase("idle")
    for _ in range(rounds):
        post_batch(client, run, phase)
    views = []
    for _ in range(rounds):
        start = time.perf_counter()
        client.call("events.scalar_metrics_iter_histogram", task=run.task, key="iter")
        client.call("events.get_task_log", task=run.task, batch_size=100, navigate_earlier=True)
        views.append((time.perf_counter() - start) * 1000)
    return pct(phase.add_ms, 0.5), pct(views, 0.5)


def report(phase: Phase, seconds: float, cpu: dict[str, float], lost: int, idle: tuple[float, float]) -> None:
    print(f"\n== {phase.name}, {seconds:.0f} s")
    print(f"events asked {phase.asked} ({phase.asked / seconds:.0f}/s), stored {phase.stored} "
          f"({phase.stored / seconds:.0f}/s), rejected {phase.rejected}, lost {lost}")
    print(f"add_batch: {len(phase.add_ms)} calls, p50 {pct(phase.add_ms, 0.5):.0f} ms, "
          f"p99 {pct(phase.add_ms, 0.99):.0f} ms; p99 / idle p50 ({idle[0]:.1f} ms) = "
          f"{pct(phase.add_ms, 0.99) / idle[0]:.1f}")
    if phase.view_ms:
        print(f"viewer (chart + newest log page): {len(phase.view_ms)} opens, p50 {pct(phase.view_ms, 0.5):.0f} ms, "
              f"p99 {pct(phase.view_ms, 0.99):.0f} ms; p99 / idle p50 ({idle[1]:.1f} ms) = "
              f"{pct(phase.view_ms, 0.99) / idle[1]:.1f}")
    db = sum(v for k, v in cpu.items() if k.startswith("database"))
    print("CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items()))
          + (f"; database per 1,000 events stored: {1000 * db / phase.stored:.2f} s" if phase.stored else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[20, 80], help="paced phases, one per count (0: none)")
    parser.add_argument("--batch", type=int, default=50, help="events per add_batch (4/5 scalars, 1/5 lines)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between a run's batches")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--viewers", type=int, default=2)
    parser.add_argument("--posters", type=int, default=16, help="clients of the back-to-back phase (0: skip)")
    parser.add_argument("--workers", type=int, help="API workers (default: the server's default)")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (config overrides)")
    args = parser.parse_args()
    server = Server(args.workers, dict(kv.split("=", 1) for kv in args.env))
    try:
        client = Client(server.port, server.token)
        project = client.call("projects.create", name=f"load {time.time():.0f}", description="bench/load.py")["id"]
        runs = []
        for n in range(max(args.runs + [args.posters])):
            task = client.call("tasks.create", name=f"run {n}", type="training", project=project)["id"]
            client.call("tasks.started", task=task)
            runs.append(Run(task, args.batch))
        baseline = Run(client.call("tasks.create", name="idle baseline", type="training", project=project)["id"],
                       args.batch)
        client.call("tasks.started", task=baseline.task)
        idle = idle_baseline(server, baseline)
        print(f"idle (one client): add_batch p50 {idle[0]:.1f} ms, viewer p50 {idle[1]:.1f} ms")
        procs = server.processes()
        print(f"server: {', '.join(sorted(procs))}; {psutil.cpu_count()} cores")
        phases = [(paced, runs[:n], args.every, args.seconds, args.viewers) for n in args.runs if n]
        if args.posters:
            phases.append((back_to_back, runs[:args.posters], args.posters, args.seconds))
        for fn, subset, *rest in phases:
            before = cpu_seconds(procs)
            start = time.perf_counter()
            phase = fn(server, subset, *rest)
            seconds = time.perf_counter() - start
            after = cpu_seconds(procs)
            lost = lost_events(client, subset)
            report(phase, seconds, {k: after[k] - before[k] for k in procs}, lost, idle)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
