"""Deployment figures: how long the server takes to answer /health, how long a second API host takes
to take the scheduler over from a killed one, and (with ``--image``) the container's size, start-up
and idle memory.

    python -m bench.deploy [--runs 3] [--image localhost/apiserver:latest]

Start-up is compared with the embedded database's own start (``apiserver database``) on the same
kind of folder; the takeover with ``scheduler.lease_ttl_sec``, the longest it may take by design.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymongo
import requests

from apiserver.config import load_config
from bench.common import ROOT, free_port

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APISERVER")}
    return {**env, **extra}


def _until(check, timeout: float = 120, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(every)
    return got


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def server_start(data_dir: Path) -> float:
    """Seconds from launching ``python -m apiserver`` to its first 200 on /health."""
    port = free_port()
    began = time.monotonic()
    proc = _spawn([sys.executable, "-m", "apiserver", "--port", str(port), "--data-dir", str(data_dir)], _env(),
                  data_dir.parent / "server.log")
    try:
        _until(lambda: _healthy(f"http://127.0.0.1:{port}"))
        return time.monotonic() - began
    finally:
        _stop(proc)


def database_start(data_dir: Path) -> float:
    """Seconds from launching ``python -m apiserver database`` to its printed URI."""
    log = data_dir.parent / "database.log"
    log.write_text("")
    began = time.monotonic()
    proc = _spawn([sys.executable, "-m", "apiserver", "--data-dir", str(data_dir), "database", "--port",
                   str(free_port())], _env(), log)
    try:
        _until(lambda: "APISERVER__database__uri=" in log.read_text())
        return time.monotonic() - began
    finally:
        _stop(proc)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])


def takeover(folder: Path) -> tuple[float, float]:
    """A database host and two API hosts (default lease settings): SIGKILL to the holder's process
    group; seconds until the other host's worker holds the lease. Returns (seconds, lease_ttl_sec)."""
    log = folder / "database.log"
    db = _spawn([sys.executable, "-m", "apiserver", "--data-dir", str(folder / "db"), "database", "--port",
                 str(free_port())], _env(), log)
    hosts: list[tuple[subprocess.Popen, str]] = []
    try:
        uri = _until(lambda: (m := re.search(r"APISERVER__database__uri='([^']+)'", log.read_text())) and m.group(1))
        for name in ("a", "b"):
            port = free_port()
            env = _env(APISERVER__database__uri=uri, APISERVER__files__backend="gridfs")
            proc = _spawn([sys.executable, "-m", "apiserver", "--port", str(port), "--workers", "1",
                           "--data-dir", str(folder / name)], env, folder / f"host-{name}.log")
            hosts.append((proc, f"http://127.0.0.1:{port}"))
            _until(lambda url=f"http://127.0.0.1:{port}": _healthy(url))
        with pymongo.MongoClient(uri) as client:
            leases = client["apiserver"]["leases"]

            def holder_host() -> subprocess.Popen | None:
                doc = leases.find_one({"_id": "scheduler"}) or {}
                if not doc.get("holder"):
                    return None
                try:
                    parent = _parent(int(doc["holder"].split(":")[1]))
                except (OSError, IndexError):
                    return None
                return next((p for p, _ in hosts if p.pid == parent), None)

            dead = _until(holder_host)
            time.sleep(2)  # a renewal or two in: the lease is mid-period, as it usually is
            os.killpg(dead.pid, signal.SIGKILL)
            killed = time.monotonic()
            dead.wait()
            _until(lambda: (h := holder_host()) is not None and h is not dead, timeout=120, every=0.1)
            return time.monotonic() - killed, float(load_config()["scheduler.lease_ttl_sec"])
    finally:
        for proc, _ in hosts:
            _stop(proc)
        _stop(db)


def container(image: str) -> dict:
    size = int(subprocess.run([*PODMAN, "image", "inspect", image, "--format", "{{.Size}}"], capture_output=True,
                              text=True, check=True).stdout.strip())
    name, port = f"bench-{os.getpid()}", free_port()
    began = time.monotonic()
    subprocess.run([*PODMAN, "run", "-d", "--name", name, "--network", "host", "-v", f"{name}:/data",
                    "-e", f"APISERVER__apiserver__listen__port={port}", image], check=True, capture_output=True)
    try:
        _until(lambda: _healthy(f"http://127.0.0.1:{port}"))
        started = time.monotonic() - began
        time.sleep(20)  # idle: the scheduler's jobs run, nothing else
        top = subprocess.run([*PODMAN, "top", name, "pid", "rss", "args"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[1:]
        rss = {f"{pid} {args[:50]}": int(kb) / 1024 for pid, kb, args in (line.split(None, 2) for line in top)}
    finally:
        subprocess.run([*PODMAN, "rm", "-f", "-t", "5", name], capture_output=True)
        subprocess.run([*PODMAN, "volume", "rm", "-f", name], capture_output=True)
    return {"image_mb": size / 1e6, "start_s": started, "idle_rss_mb": rss, "idle_total_mb": sum(rss.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", help="also measure this container image (podman)")
    args = parser.parse_args()
    first, again, db_first, db_again, takeovers = [], [], [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            first.append(server_start(folder / "s"))
            again.append(server_start(folder / "s"))
            db_first.append(database_start(folder / "d"))
            db_again.append(database_start(folder / "d"))
        with tempfile.TemporaryDirectory() as tmp:
            seconds, ttl = takeover(Path(tmp))
            takeovers.append(seconds)
    med = statistics.median
    print(f"server start to /health, new folder: {med(first):.2f} s (runs {[round(x, 2) for x in first]}); "
          f"database alone: {med(db_first):.2f} s; ratio {med(first) / med(db_first):.2f}")
    print(f"server start to /health, existing folder: {med(again):.2f} s (runs {[round(x, 2) for x in again]}); "
          f"database alone: {med(db_again):.2f} s; ratio {med(again) / med(db_again):.2f}")
    print(f"lease takeover after kill -9 of the holder: {med(takeovers):.2f} s "
          f"(runs {[round(x, 2) for x in takeovers]}); lease_ttl_sec {ttl:.0f}, ratio {med(takeovers) / ttl:.2f}")
    if args.image:
        print("container:", json.dumps(container(args.image), indent=1))


if __name__ == "__main__":
    main()
