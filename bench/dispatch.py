"""Requests per second of a trivial declared endpoint through the full pipeline (routing, version
negotiation, JSON-Schema validation, envelope; auth skipped) against a bare Flask route returning
the same JSON, both served by one gunicorn (same settings) in one run. Target ratio: >= 0.7."""

from __future__ import annotations

import argparse

from bench.common import Gunicorn, interleaved, requests_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = {"text": "hello", "count": 3}
    with Gunicorn("bench.bench_app:app") as server:
        declared, bare = interleaved(
            args.rounds,
            lambda: requests_per_second(server.port, "POST", "/v2.13/bench.ping_open", body, seconds=args.seconds),
            lambda: requests_per_second(server.port, "POST", "/bare", body, seconds=args.seconds))
    print(f"bare Flask route:          {bare:8.0f} req/s")
    print(f"declared endpoint (full):  {declared:8.0f} req/s")
    print(f"ratio declared/bare:       {declared / bare:8.3f}  (target >= 0.7)")


if __name__ == "__main__":
    main()
