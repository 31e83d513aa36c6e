"""``kill -9`` of the whole server (its process group) while clients
write: after a restart on the same folder every acknowledged write is there and new writes work."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from uuid import uuid4

import pytest
import requests

from tests.helpers import ApiError, ServerProcess

WRITERS = 4


def _write_until(stop: threading.Event, killed: threading.Event, client, tag: str, acked: dict[str, int],
                 lock: threading.Lock, errors: list[str]) -> None:
    """Create queues and bump a counter in each; record only what the server acknowledged. A failed
    call ends the writer; before the kill it is an error of the server and goes into ``errors``."""
    client.resend = False  # a request the kill cut off is not sent again: it was not acknowledged
    n = 0
    while not stop.is_set():
        try:
            queue = client.call("queues.create", name=f"{tag}-{n}", metadata={"n": 0})["id"]
            with lock:
                acked[queue] = 0
            for i in range(1, 4):
                client.call("queues.update", queue=queue, metadata={"n": i})
                with lock:
                    acked[queue] = i
        except (ApiError, AssertionError, requests.RequestException, ValueError) as exc:
            if not killed.is_set():  # the server was up: nothing excuses a failed write
                errors.append(f"{tag}-{n} before the kill: {exc!r}")
            return  # the server is gone: whatever was not answered was not acknowledged
        n += 1


@pytest.mark.parametrize("kill_database", [False, True], ids=["server-group", "database-too-with-sync"])
def test_kill_9_mid_writes_loses_no_acknowledged_write(tmp_path, kill_database):
    """The server's process group gets SIGKILL (its database, in a group of its own, then gets
    SIGTERM and shuts down; the restart waits for it). With ``sync_on_commit`` the database itself
    may be SIGKILLed too. (Without it, a SIGKILLed database loses the last acknowledged commits.)"""
    data_dir = tmp_path / "data"
    db_name = f"crash_{uuid4().hex[:8]}"
    env = {"APISERVER__database__embedded__sync_on_commit": "true" if kill_database else "false"}
    first = ServerProcess(None, db_name, workers=2, data_dir=data_dir, extra_env=env).start(tmp_path)
    acked: dict[str, int] = {}
    lock = threading.Lock()
    stop, killed = threading.Event(), threading.Event()
    errors: list[str] = []
    try:
        db_pid = json.loads((data_dir / "embedded.json").read_text())["pid"]
        threads = [threading.Thread(target=_write_until,
                                    args=(stop, killed, first.admin(), f"w{i}", acked, lock, errors))
                   for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        # mid-write: every writer is between a request and its answer or about to send one
        killed.set()
        os.killpg(first.proc.pid, signal.SIGKILL)
        if kill_database:
            os.kill(db_pid, signal.SIGKILL)
        first.proc.wait(30)
        assert first.proc.returncode == -signal.SIGKILL
    finally:
        stop.set()
        first.stop()
    for thread in threads:
        thread.join(30)
    assert not errors, f"writes failed while the server was up: {errors}"
    assert len(acked) >= 40, "the writers did not get going before the kill"

    # restarted at once, as a supervisor would: it waits for the old database to let go of the folder
    second = ServerProcess(None, db_name, workers=2, data_dir=data_dir).start(tmp_path, timeout=120)
    try:
        admin = second.admin()
        stored = {q["id"]: q for q in admin.call("queues.get_all", only_fields=["id", "metadata"],
                                                 page=0, page_size=500)["queues"]}
        for page in range(1, 20):
            more = admin.call("queues.get_all", only_fields=["id", "metadata"], page=page, page_size=500)["queues"]
            stored.update({q["id"]: q for q in more})
            if not more:
                break
        missing = [q for q in acked if q not in stored]
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged queues lost"
        stale = [q for q, n in acked.items() if stored[q]["metadata"]["n"] < n]
        assert not stale, f"{len(stale)} acknowledged updates lost"
        fresh = admin.call("queues.create", name=f"after-{uuid4().hex[:6]}", metadata={"n": 7})["id"]
        admin.call("queues.update", queue=fresh, metadata={"n": 8})
        assert admin.call("queues.get_by_id", queue=fresh)["queue"]["metadata"] == {"n": 8}
    finally:
        assert second.stop() == 0
