"""GET /api/model throughput with 10,000 registered models in the workspace, as a ratio to the same
query (a page of 100, sorted by code and version) done directly with pymongo in the same run."""

from __future__ import annotations

import argparse

import requests

from apiserver.bll.registry.registry import LIST_INDEX
from apiserver.database.model.base import utcnow
from bench.common import ApiServer, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with ApiServer() as server:
        token = requests.post(f"{server.base}/api/auth/token/obtain",
                              json={"access_key": server.KEY, "secret_key": server.SECRET}).json()["access"]
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        schema = {"type": "json", "schema": {"type": "object"}}
        now = utcnow()
        coll = server.db.registry_models
        docs = [{"_id": f"m{i:05d}@1", "company": server.company, "model_code": f"m{i:05d}", "version": "1",
                 "name": f"model {i}", "description": "bench", "input_schema": schema, "output_schema": schema,
                 "created": now, "deleted": None, "explains": None, "explainer": None} for i in range(args.models)]
        for start in range(0, len(docs), 2000):
            coll.insert_many(docs[start:start + 2000])

        def api_list():
            resp = http.get(f"{server.base}/api/model?page=3&page_size=100")
            assert resp.status_code == 200 and len(resp.json()) == 100

        def mongo_list():
            rows = list(coll.find({"company": server.company, "deleted": None, "explains": None})
                        .sort([("model_code", 1), ("version", 1)]).hint(LIST_INDEX).skip(300).limit(100))
            assert len(rows) == 100

        api_s, mongo_s = sum(timed(api_list, args.requests)), sum(timed(mongo_list, args.requests))
    print(f"GET /api/model (page of 100 of {args.models:,}): API {args.requests / api_s:.1f}/s, pymongo "
          f"{args.requests / mongo_s:.1f}/s; ratio API/pymongo = {mongo_s / api_s:.3f}")


if __name__ == "__main__":
    main()
