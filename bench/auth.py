"""Requests per second of a trivial endpoint with a Bearer token, as a ratio to the same endpoint
declared without authentication, one gunicorn, one run. A token's signature is checked once per
process; whether its key is revoked or its user's role changed is re-checked against a real (embedded)
database every ``auth.token_recheck_sec`` (2 s), so the target ratio is > 0.95."""

from __future__ import annotations

import argparse
import tempfile

from apiserver.database.embedded import EmbeddedDatabase
from bench.bench_app import RECHECK_SEC, bench_token, seed_identity
from bench.common import Gunicorn, interleaved, requests_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = {"text": "hello", "count": 3}
    headers = {"Authorization": f"Bearer {bench_token()}"}
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as folder:
        database = EmbeddedDatabase(folder)
        uri = database.ensure_running()
        try:
            seed_identity(uri)
            with Gunicorn("bench.bench_app:app", env={"BENCH_MONGODB_URI": uri}) as server:
                authed, open_ = interleaved(
                    args.rounds,
                    lambda: requests_per_second(server.port, "POST", "/bench.ping_auth", body, headers,
                                                args.seconds),
                    lambda: requests_per_second(server.port, "POST", "/bench.ping_open", body,
                                                seconds=args.seconds))
        finally:
            database.stop()
    print(f"unauthenticated endpoint:  {open_:8.0f} req/s")
    print(f"Bearer-token endpoint:     {authed:8.0f} req/s (re-checked in the database every {RECHECK_SEC:g} s)")
    print(f"ratio authenticated/open:  {authed / open_:8.3f}  (target > 0.95)")


if __name__ == "__main__":
    main()
