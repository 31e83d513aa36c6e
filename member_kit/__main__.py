"""``python -m member_kit --container-id bms --port 8081 --leader http://127.0.0.1:8085 [--work 2:success]``

Runs a stand-in member whose job sleeps then succeeds, fails, or hangs (``--work SECONDS:OUTCOME``,
OUTCOME one of success, failure, hang; ``--unresponsive`` makes it accept connections but never answer;
``--freeze-after-start`` answers readiness and /start, then never answers /status_request again;
``--start-delay SECONDS`` answers /start that much later).
"""

from __future__ import annotations

import argparse
import logging
import socket
import time

from member_kit import Member, sleep_work


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m member_kit", description=__doc__)
    parser.add_argument("--container-id", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--leader", help="the leader's base URL, for /status_report")
    parser.add_argument("--work", default="1:success")
    parser.add_argument("--unresponsive", action="store_true")
    parser.add_argument("--freeze-after-start", action="store_true")
    parser.add_argument("--start-delay", type=float, default=0.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.unresponsive:  # a hung container: the port is open, no answer ever comes
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(128)
        held = []
        while True:
            conn, _ = sock.accept()
            held.append(conn)
            time.sleep(0.01)
    seconds, _, outcome = args.work.partition(":")
    cls = FrozenAfterStart if args.freeze_after_start else Member
    member = cls(args.container_id, sleep_work(float(seconds), outcome or "success"), args.leader, args.host,
                 args.port)
    member.start_delay = args.start_delay
    member.serve_forever()


class FrozenAfterStart(Member):
    """A member that hangs once it has a job: its /status_request never answers."""

    def status(self, user_id: str, project_id: str) -> str:
        if user_id or project_id:
            time.sleep(3600)
        return super().status(user_id, project_id)


if __name__ == "__main__":
    main()
