"""A database that stops answering writes: a call fails after ``database.operation_timeout_sec`` with
500/102 instead of holding its thread for ever, and the server recovers when the database answers
again. (SecantusDB has been seen to stall writes under load; see the README's database section.)

The server reaches the suite's real database through a TCP relay in this process that can hold
back the answers to writes."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from uuid import uuid4

from tests.helpers import ServerProcess

WRITES = (b"\x02insert\x00", b"\x02update\x00", b"\x02delete\x00", b"\x02findAndModify\x00")


class StallingRelay:
    """Forwards TCP to the database. While ``stalled`` is set, a connection that sends a write gets
    no answer any more (held back, not lost); the others, the driver's monitor among them, are
    answered as usual. This is the stall seen on SecantusDB: its monitor still saw a healthy
    server, so nothing but a timeout on the call itself ended the wait."""

    def __init__(self, host: str, port: int, listen_port: int = 0):
        self.upstream = (host, port)
        self.stalled = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", listen_port))
        self.port = self.listener.getsockname()[1]
        self.closing = threading.Event()

    def start(self) -> StallingRelay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def close(self) -> None:
        self.closing.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            held = threading.Event()  # this connection sent a write while stalled
            threading.Thread(target=self._pump, args=(client, server, held, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, held, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, held: threading.Event, answers: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if not answers and self.stalled.is_set() and any(w in chunk for w in WRITES):
                    held.set()
                while answers and held.is_set() and self.stalled.is_set() and not self.closing.is_set():
                    time.sleep(0.05)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()


def test_a_stalled_database_is_a_500_102_and_the_server_recovers(mongo_uri, tmp_path):
    match = re.search(r"(?<=[@/])(127\.0\.0\.1|localhost):(\d+)", mongo_uri)
    assert match, f"the suite's database is not on this host: {mongo_uri}"
    relay = StallingRelay(match.group(1), int(match.group(2))).start()
    uri = mongo_uri[:match.start()] + f"127.0.0.1:{relay.port}" + mongo_uri[match.end():]
    # SecantusDB answers as a replica set member naming its own address: connect to the relay only
    uri += ("&" if "?" in uri else "/?") + "directConnection=true"
    env = {"APISERVER__database__operation_timeout_sec": "3", "APISERVER__database__server_selection_timeout_sec": "3",
           "APISERVER__scheduler__lease_renew_sec": "1", "APISERVER__pipeline__heartbeat_sec": "1"}
    # the lease renewal and the jobs fail while it is stalled, and log it: expected here
    server = ServerProcess(uri, f"stall_{uuid4().hex[:8]}", workers=1, extra_env=env,
                           expected_log_errors=(r"NetworkTimeout|AutoReconnect|ServerSelectionTimeout|timed out",))
    server.start(tmp_path)
    try:
        admin = server.admin()
        assert admin.call("tasks.create", name="before", type="training")["id"]  # through the relay
        relay.stalled.set()
        err = admin.error("tasks.create", name="stalled", type="training")  # the client waits 60 s at most
        assert (err.code, err.subcode) == (500, 102), err
        assert "the database did not answer in time (database.operation_timeout_sec)" in err.msg
        relay.stalled.clear()
        deadline = time.monotonic() + 60
        while True:
            status, body = admin.envelope("tasks.create", name="after", type="training")
            if status == 200:
                break
            assert (status, body["meta"]["result_subcode"]) == (500, 102), body["meta"]
            assert time.monotonic() < deadline, "the server did not recover once the database answered"
            time.sleep(0.5)
        task = body["data"]["id"]
        assert admin.call("tasks.get_by_id", task=task)["task"]["name"] == "after"
    finally:
        server.stop()
        relay.close()
