"""Import speed: ``python -m apiserver import clearml`` from one running server into another (each on an
embedded database of its own, which the import joins through ``database.uri``), against filling the source
through its API with the same tasks, events and files.

    python -m bench.import_speed [--tasks 40] [--points 2000] [--lines 200] [--files 10] [--mb 4]

Prints tasks/s, events/s and MB/s of files of the import (its whole run, process start included), the
ratio of import time to seeding time, and the time of a second import that finds nothing new.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, ApiServer


def _server(files: Path, workers: int) -> ApiServer:
    """A server on a database of its own (``database.uri``: the import joins it as it would a MongoDB)
    with its own file store."""
    return ApiServer(workers=workers, env={"APISERVER__files__local__dir": str(files)})


def seed(src: ApiServer, args: argparse.Namespace) -> tuple[int, int]:
    """Tasks with scalars, console lines and artifacts; answers (events, bytes of files)."""
    project = src.call("projects.create", name="bench-import", description="")["id"]
    events = size = 0
    files_per_task = {i % args.tasks: [] for i in range(args.files)}
    for i in range(args.files):
        body = os.urandom(args.mb << 20)
        path = f"bench-import/file-{i}.bin"
        resp = src.http.post(f"{src.base}/files/", files={path: (path.rsplit("/", 1)[-1], body)}, timeout=300)
        resp.raise_for_status()
        files_per_task[i % args.tasks].append({"key": f"file-{i}", "type": "custom", "mode": "output",
                                                "uri": f"{src.base}/files/{path}", "content_size": len(body)})
        size += len(body)
    now = int(time.time() * 1000)
    for t in range(args.tasks):
        task = src.call("tasks.create", name=f"task-{t}", type="training", project=project)["id"]
        batch = [{"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": f"v{v}", "iter": i,
                  "value": 1.0 / (i + 1), "timestamp": now + i} for v in range(4) for i in range(args.points // 4)]
        batch += [{"task": task, "type": "log", "level": "info", "msg": f"line {i}", "iter": i, "timestamp": now + i}
                  for i in range(args.lines)]
        for start in range(0, len(batch), 5000):
            resp = src.http.post(f"{src.base}/events.add_batch", timeout=300,
                                    data="\n".join(json.dumps(e) for e in batch[start:start + 5000]),
                                    headers={"Content-Type": "application/json-lines"})
            resp.raise_for_status()
        events += len(batch)
        if files_per_task.get(t):
            src.call("tasks.add_or_update_artifacts", task=task, artifacts=files_per_task[t])
    return events, size


def run_import(src: ApiServer, dst: ApiServer, data_dir: Path) -> tuple[float, str]:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "apiserver", "--data-dir", str(data_dir), "import", "clearml",
                          "--from", src.base, "--access-key", src.KEY, "--secret-key", src.SECRET,
                          "--files-url", f"{dst.base}/files"], cwd=ROOT, env=dst._env, capture_output=True, text=True,
                         timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-3000:] + out.stderr[-3000:])
    return time.monotonic() - started, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--points", type=int, default=2000, help="scalar points per task")
    parser.add_argument("--lines", type=int, default=200, help="console lines per task")
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--mb", type=int, default=4, help="MiB per file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, _server(Path(tmp) / "src-files", 2) as src, \
            _server(Path(tmp) / "dst-files", 1) as dst:
        started = time.monotonic()
        events, size = seed(src, args)
        seeding = time.monotonic() - started
        first, summary = run_import(src, dst, Path(tmp) / "dst-data")
        second, again = run_import(src, dst, Path(tmp) / "dst-data")
    new = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)", summary, re.M)}
    assert new.get("tasks") == args.tasks and new.get("events") == events and new.get("files") == args.files, summary
    mb = size / 1e6
    event_sec = float(re.search(r"^events .*copied in ([\d.]+) s", summary, re.M)[1])
    file_sec = max(float(re.search(r"^files .*copied in ([\d.]+) s", summary, re.M)[1]), 0.05)  # printed to 0.1 s
    print(summary)
    print(f"seeding the source through its API: {seeding:.1f} s; import: {first:.1f} s, ratio {first / seeding:.2f}")
    print(f"import, whole run: {args.tasks / first:.1f} tasks/s, {events / first:,.0f} events/s, "
          f"{mb / first:.1f} MB/s of files ({args.tasks} tasks, {events:,} events, {mb:.0f} MB)")
    print(f"import, time spent on each: {events / event_sec:,.0f} events/s ({event_sec:.1f} s), "
          f"{mb / file_sec:.1f} MB/s of files ({file_sec:.1f} s)")
    print(f"second import (nothing new): {second:.1f} s")
    print(again)


if __name__ == "__main__":
    main()
