"""The newest page of models after a quiet spell, through HTTP to a real server on the embedded
database: nothing has been updated for two days (a weekend; a model registry, where most days
nobody registers a model), at 1,000 and at 100,000 models.

The newest-first listing (``database/recent_page.py``) reads time slices going back from now; after a
quiet spell they are empty until one reaches the newest keys, and that one can hold a large part of
the collection. The server remembers where the last read of the same page ended (in the process and
in the database), so only the first read of a page ever is slow. Printed per page (15 and 50 models,
``models.get_all_ex`` as the web app asks): the first read ever ("cold": no hints stored, a freshly
started server), the first read of a restarted server once a hint is stored ("restarted"), and the
median of the reads after it ("warm"); and the warm page at 100,000 over the warm page at 1,000
(goal <= 2).
"""

from __future__ import annotations

import statistics
from datetime import timedelta

from apiserver.database.model.base import new_id, utcnow
from bench.common import ApiServer, size_parser, timed
from bench.listing import MODEL_FIELDS

QUIET = timedelta(days=2)


def seed(server: ApiServer, start: int, stop: int, quiet_since) -> None:
    """Models number ``start`` .. ``stop - 1``; number i was last updated 10*i seconds before the quiet spell."""
    for first in range(start, stop, 5_000):
        server.db.models.insert_many([
            {"_id": new_id(), "company": server.company, "user": server.user, "name": f"model {i}",
             "framework": "PyTorch", "project": f"p{i % 10:02d}", "task": None, "uri": f"file:///m/{i}.pt",
             "ready": True, "tags": [], "system_tags": [], "created": quiet_since - timedelta(seconds=10 * i),
             "last_update": quiet_since - timedelta(seconds=10 * i), "design": {"design": "x" * 300},
             "labels": {"a": 1}, "comment": ""}
            for i in range(first, min(stop, first + 5_000))], ordered=False)


def measure(server: ApiServer, repeat: int, expected_first: str) -> dict[int, tuple[float, float, float]]:
    """page size -> (cold ms, restarted ms, warm ms)."""
    def page(size):
        def run():
            body = {"only_fields": MODEL_FIELDS, "order_by": ["-last_update"], "page": 0, "page_size": size}
            models = server.call("models.get_all_ex", **body)["models"]
            assert len(models) == size and models[0]["name"] == expected_first, models[:1]
        return run

    server.db.listing_hints.delete_many({})
    server.restart()
    cold = {size: timed(page(size), 1)[0] * 1000 for size in (15, 50)}
    server.restart()
    out = {}
    for size in (15, 50):
        restarted = timed(page(size), 1)[0] * 1000
        warm = statistics.median(timed(page(size), repeat)) * 1000
        out[size] = (cold[size], restarted, warm)
        print(f"  models {size}: cold {cold[size]:.1f} ms, restarted {restarted:.1f} ms, warm {warm:.1f} ms",
              flush=True)
    return out


def main() -> None:
    args = size_parser(__doc__).parse_args()
    with ApiServer() as server:
        quiet_since = utcnow() - QUIET
        seed(server, 0, args.small, quiet_since)
        print(f"{args.small:,} models, the newest updated {QUIET.days} days ago")
        small = measure(server, args.repeat, "model 0")
        seed(server, args.small, args.large, quiet_since)
        print(f"{args.large:,} models")
        large = measure(server, args.repeat, "model 0")
    print(f"{'page':<10}{'models':>10}{'cold ms':>10}{'restarted ms':>14}{'warm ms':>10}{'large/small warm':>18}")
    for size in (15, 50):
        for count, (cold, restarted, warm) in ((args.small, small[size]), (args.large, large[size])):
            ratio = f"{warm / small[size][2]:>18.2f}" if count == args.large else ""
            label = f"models {size}" if count == args.small else ""
            print(f"{label:<10}{count:>10,}{cold:>10.1f}{restarted:>14.1f}{warm:>10.1f}{ratio}")


if __name__ == "__main__":
    main()
