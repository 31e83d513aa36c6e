"""The newest-first listing read in time slices (database/recent_page.py) gives the page of the plain query:
checked against the plain pymongo query on the same database for spread, clustered, future and
missing keys, filters with ``$and``/``$or``, and deep pages; and through the API after updates move
tasks to the front, paging through every task once."""

from __future__ import annotations

import random
from datetime import timedelta

import pymongo
import pytest

from apiserver.bll import query as q
from apiserver.database import recent_page
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.store import Store

SORT = [("last_update", -1), ("_id", 1)]


@pytest.fixture(scope="module")
def coll(mongo_uri):
    """Tasks of two companies and six projects; keys spread over a year, a burst of 300 within one
    second, some in the future and some missing."""
    db = pymongo.MongoClient(mongo_uri)[f"recent_page_{new_id()}"]
    coll = db.tasks
    coll.create_index([("company", 1), ("project", 1), ("last_update", -1)])
    coll.create_index([("company", 1), ("last_update", -1)])
    rng = random.Random(3)
    now = utcnow()
    docs = []
    for i in range(1500):
        if i < 300:
            when = now - timedelta(milliseconds=rng.randrange(1000))  # a burst: many keys in one second
        elif i < 1400:
            when = now - timedelta(seconds=rng.randrange(365 * 86400))
        elif i < 1450:
            when = now + timedelta(seconds=rng.randrange(3600))  # a clock ahead of ours
        else:
            when = None
        doc = {
            "_id": new_id(),
            "company": "c1" if i % 7 else "",
            "project": f"p{i % 6}",
            "status": ["created", "completed", "failed"][i % 3],
            "system_tags": ["archived"] if i % 5 == 0 else ([] if i % 9 else ["hidden"]),
            "n": i,
        }
        if when is not None:
            doc["last_update"] = when.replace(microsecond=when.microsecond // 1000 * 1000)
        docs.append(doc)
    # some share a key exactly, so the _id tie-break decides
    for doc in docs[1000:1020]:
        doc["last_update"] = docs[999]["last_update"]
    coll.insert_many(docs)
    yield coll
    db.client.drop_database(db.name)
    db.client.close()


FILTERS = {
    "one project": q.combine(
        {"company": {"$in": ["c1", ""]}},
        {"project": {"$in": ["p2"]}},
        {"system_tags": {"$nin": ["archived"]}},
        {"system_tags": {"$ne": "hidden"}},
    ),
    "two projects": q.combine({"company": {"$in": ["c1", ""]}}, {"project": {"$in": ["p1", "p4"]}}),
    "all of a company": q.combine({"company": {"$in": ["c1", ""]}}, {"system_tags": {"$ne": "hidden"}}),
    "a rare status": q.combine({"company": "c1"}, {"$or": [{"status": "failed", "n": {"$lt": 40}}, {"n": 1499}]}),
}


@pytest.mark.parametrize("name", list(FILTERS))
@pytest.mark.parametrize("skip,limit", [(0, 15), (0, 50), (15, 15), (100, 50), (0, 500)])
def test_sliced_page_is_the_plain_page(coll, name, skip, limit):
    query = FILTERS[name]
    proj = {"_id": 1, "n": 1, "last_update": 1}
    plain = list(coll.find(query, proj).sort(SORT).skip(skip).limit(limit))
    sliced = recent_page.find_newest(coll, query, SORT, skip, limit, proj)
    if len(plain) < limit or any("last_update" not in d for d in plain):
        # the slices never hold a full page (14 documents match the rare status, a project holds about
        # 250, the page reaches documents without the key): the caller reads the plain query
        assert sliced is None
    else:
        assert sliced is not None, "the sliced read applies to this filter"
        assert sliced == plain
    assert Store(collection=coll).find_page(query, SORT, skip, limit, proj) == plain


def test_page_running_into_missing_keys_is_the_plain_page(coll):
    """The last page of a project holds the documents without a key; the plain query answers it."""
    query = {"company": "c1", "project": "p3"}
    total = coll.count_documents(query)
    plain = list(coll.find(query, {"_id": 1}).sort(SORT).skip(total - 10).limit(15))
    assert len(plain) == 10
    assert Store(collection=coll).find_page(query, SORT, total - 10, 15, {"_id": 1}) == plain


def test_only_newest_first_date_keys_are_sliced(coll):
    query = {"company": "c1", "project": "p2"}
    assert recent_page.find_newest(coll, query, [("last_update", 1), ("_id", 1)], 0, 15, None) is None
    assert recent_page.find_newest(coll, query, [("n", -1), ("_id", 1)], 0, 15, None) is None
    # a filter on a field no index pins with the key: no slices
    assert recent_page.find_newest(coll, {"status": "failed"}, SORT, 0, 15, None) is None


class _Aggregates(pymongo.monitoring.CommandListener):
    """The key ranges of the slices read (each aggregation's first $match)."""

    def __init__(self):
        self.ranges = []

    def started(self, event):
        if event.command_name == "aggregate":
            self.ranges.append(event.command["pipeline"][0]["$match"]["last_update"])

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_after_a_quiet_spell_the_next_read_stops_at_the_last_page(mongo_uri):
    """Nothing updated for two days: the first read goes back in slices doubling in width, the last of
    which holds far more than the page (no more than as long again as the quiet spell); the next read
    of the same page reads no key older than the last page's oldest, in this process or (the hint
    stored in the database) in a new one. Deleting that page's documents (the hint now short) still
    gives the plain page."""
    listener = _Aggregates()
    client = pymongo.MongoClient(mongo_uri, event_listeners=[listener])
    db = client[f"recent_quiet_{new_id()}"]
    try:
        coll = db.models
        coll.create_index([("company", 1), ("last_update", -1)])
        quiet_since = utcnow().replace(microsecond=0) - timedelta(days=2)
        coll.insert_many(
            [
                {"_id": new_id(), "company": "c1", "n": i, "last_update": quiet_since - timedelta(seconds=10 * i)}
                for i in range(3000)
            ]
        )
        query = {"company": "c1"}
        plain = list(coll.find(query).sort(SORT).limit(15))
        assert recent_page.find_newest(coll, query, SORT, 0, 15, None) == plain
        oldest = plain[-1]["last_update"]
        first_reach = min(r["$gte"] for r in listener.ranges if "$gte" in r)
        assert first_reach < oldest - timedelta(hours=1)  # the cold read went far past the page
        # but, reaching back twice as far per empty slice, no further than as long again as the quiet spell
        assert first_reach >= quiet_since - (utcnow() - quiet_since)
        for new_process in (False, True):  # the hint this process keeps; the one another process stored
            if new_process:
                recent_page.forget_hints()
            listener.ranges.clear()
            assert recent_page.find_newest(coll, query, SORT, 0, 15, None) == plain
            assert listener.ranges and all("$gte" in r and r["$gte"] >= oldest for r in listener.ranges)
        # the page's documents gone: the range up to the hint holds none, the slices go on past it
        coll.delete_many({"_id": {"$in": [d["_id"] for d in plain]}})
        assert recent_page.find_newest(coll, query, SORT, 0, 15, None) == list(coll.find(query).sort(SORT).limit(15))
    finally:
        client.drop_database(db.name)
        client.close()


def test_api_page_order_follows_updates_and_paging_shows_each_task_once(api):
    project = api.call("projects.create", name=f"recent-{new_id()}")["id"]
    ids = [api.call("tasks.create", name=f"t{i}", type="training", project=project)["id"] for i in range(40)]
    # touch some tasks: each moves to the front of the newest-first order
    touched = [ids[3], ids[17], ids[0], ids[25]]
    for task in touched:
        api.call("tasks.edit", task=task, comment=f"edited {task}")

    def page(n, size):
        return api.call(
            "tasks.get_all_ex",
            project=[project],
            order_by=["-last_update"],
            page=n,
            page_size=size,
            only_fields=["id", "last_update"],
        )["tasks"]

    first = page(0, 4)
    assert [t["id"] for t in first] == touched[::-1]
    seen = []
    for n in range(6):
        seen += [t["id"] for t in page(n, 7)]
    assert len(seen) == 40
    assert sorted(seen) == sorted(ids)
    assert seen[:4] == touched[::-1]
    every = api.call("tasks.get_all", project=[project], order_by=["-last_update"], only_fields=["id"])["tasks"]
    assert [t["id"] for t in every] == seen
