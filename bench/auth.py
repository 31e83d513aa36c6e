"""Requests per second of a trivial endpoint with a Bearer token, as a ratio to the same endpoint
declared without authentication, one gunicorn, one run. Token checks are signature checks only (no
database), so the target ratio is > 0.9."""

from __future__ import annotations

import argparse

from bench.bench_app import bench_token
from bench.common import Gunicorn, interleaved, requests_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = {"text": "hello", "count": 3}
    headers = {"Authorization": f"Bearer {bench_token()}"}
    with Gunicorn("bench.bench_app:app") as server:
        authed, open_ = interleaved(
            args.rounds,
            lambda: requests_per_second(server.port, "POST", "/bench.ping_auth", body, headers, args.seconds),
            lambda: requests_per_second(server.port, "POST", "/bench.ping_open", body, seconds=args.seconds))
    print(f"unauthenticated endpoint:  {open_:8.0f} req/s")
    print(f"Bearer-token endpoint:     {authed:8.0f} req/s")
    print(f"ratio authenticated/open:  {authed / open_:8.3f}  (target > 0.9)")


if __name__ == "__main__":
    main()
