"""The pipeline heartbeat with 500 running pipelines against member servers on loopback: the time of
one heartbeat cycle (every pipeline's member asked for its status and the answer applied), its
ratio to the heartbeat period (must stay well under 1), and the server's memory (all processes)."""

from __future__ import annotations

import argparse
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.common import ApiServer


class BusyMember(BaseHTTPRequestHandler):
    """A member with unlimited capacity: every job starts and stays running."""

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0].strip("/")
        query = self.path.partition("?")[2]
        empty = "user_id=&project_id=" in query or not query
        body = {"start": b"started", "stop": b"finished",
                "status_request": b"ready" if empty else b"running"}.get(path, b"error")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def rss_mb(root_pid: int) -> float:
    """Resident memory of a process and its children (gunicorn master + workers)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        pid, ppid = int(fields["Pid"]), int(fields["PPid"])
        if pid == root_pid or ppid == root_pid:
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipelines", type=int, default=500)
    parser.add_argument("--members", type=int, default=8, help="member servers on loopback")
    parser.add_argument("--period", type=float, default=2.0)
    args = parser.parse_args()
    servers = []
    for _ in range(args.members):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), BusyMember)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    ids = ["labelling", "bms", "vis2code", "backbone_nas", "neck_nas", "code_gen", "cloud_deploy", "ondevice_deploy"]
    ids = (ids * (args.members // len(ids) + 1))[:args.members]
    env = {"APISERVER__pipeline__heartbeat_sec": str(args.period),
           "APISERVER__outbound__allow_hosts": '["127.0.0.1"]'}  # the member servers are on loopback
    with ApiServer(workers=2, env=env) as server:
        rss_idle = rss_mb(server.proc.pid)
        for cid, httpd in zip(ids, servers, strict=True):
            server.call("members.register", container_id=cid, url=f"http://127.0.0.1:{httpd.server_address[1]}")
        for i in range(args.pipelines):
            pid = server.call("workflows.create", project_id=f"bench-{i}", workflow=[ids[i % len(ids)]])["id"]
            server.call("workflows.start", pipeline=pid)
        cycles = []
        deadline = time.monotonic() + 60
        last_at = None
        while len(cycles) < 5 and time.monotonic() < deadline:
            stats = server.call("workflows.get_heartbeat_stats")
            if stats["at"] != last_at and stats["pipelines"] == args.pipelines:
                cycles.append(stats["seconds"])
                last_at = stats["at"]
            time.sleep(args.period / 4)
        rss_busy = rss_mb(server.proc.pid)
    for httpd in servers:
        httpd.shutdown()
    worst = max(cycles)
    print(f"{args.pipelines} running pipelines, {args.members} member servers, heartbeat every {args.period}s")
    print(f"heartbeat cycle: median {sorted(cycles)[len(cycles) // 2]:.3f}s, worst {worst:.3f}s over "
          f"{len(cycles)} cycles")
    print(f"ratio worst cycle / period: {worst / args.period:.3f}  (must stay well under 1)")
    print(f"server memory (master + workers): {rss_idle:.0f} MB idle, {rss_busy:.0f} MB with the pipelines")


if __name__ == "__main__":
    main()
