"""Every query shape the project uses, run against the test database (SecantusDB or MONGODB_URI).

SecantusDB is young: a gap in its MongoDB compatibility shows up here as a failing test with a
clear name, before it shows up as a wrong answer from an endpoint.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pymongo
import pytest
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from apiserver.database.writes import update_and_read
from tests.helpers import ROOT, race

N = 300


@pytest.fixture(scope="module")
def coll(mongo_uri, db_name):
    client = pymongo.MongoClient(mongo_uri)
    c = client[db_name]["conformance"]
    c.drop()
    base = datetime(2026, 1, 1)
    c.insert_many([{
        "_id": f"id{i:04d}", "company": "c1" if i % 4 else "", "name": f"t{i}", "status": ["created", "queued",
        "in_progress", "completed"][i % 4], "tags": ["a", "b"] if i % 2 else ["c"], "system_tags": [] if i % 3 else
        ["hidden"], "created": base + timedelta(hours=i), "execution": {"queue": f"q{i % 5}", "priority": i % 7},
        "last_metrics": {"m1": {"v1": {"value": float(i), "max_value": float(i)}}}, "n": i,
        "entries": [{"task": f"x{i}", "added": base}, {"task": f"y{i}", "added": base}],
        **({"parent": f"id{i - 1:04d}"} if i % 10 == 0 and i else {}),
    } for i in range(N)])
    c.create_index([("company", 1), ("status", 1), ("created", -1)])
    c.create_index([("name", 1)])
    yield c
    c.drop()
    client.close()


def ids(cursor) -> list[str]:
    return [d["_id"] for d in cursor]


def test_in_nin_and_array_membership(coll):
    assert coll.count_documents({"status": {"$in": ["created", "queued"]}}) == N // 2
    assert coll.count_documents({"tags": {"$in": ["a"]}}) == N // 2
    assert coll.count_documents({"tags": {"$nin": ["a"]}}) == N // 2
    assert coll.count_documents({"tags": {"$all": ["a", "b"]}}) == N // 2
    assert coll.count_documents({"tags": "c"}) == N // 2
    assert coll.count_documents({"system_tags": {"$size": 0}}) == N - len(range(0, N, 3))


def _is_secantus(coll) -> bool:
    return "secantusVersion" in coll.database.client.server_info()


@pytest.mark.parametrize("form", ["string", "options", "compiled"])
def test_regex_forms(coll, form, request):
    if form == "compiled" and _is_secantus(coll):
        # Known SecantusDB 0.7 gap: a BSON regex on an indexed field matches nothing. The project
        # only sends {"$regex": ...} (apiserver.bll.query.regex) and never mongoengine's
        # __contains/__startswith/__iexact operators, which compile regexes. Kept to notice a fix.
        request.applymarker(pytest.mark.xfail(reason="SecantusDB: BSON regex on an indexed field", strict=True))
    expected = len([i for i in range(N) if f"t{i}".startswith("t1")])
    query = {"string": {"$regex": "^t1"}, "options": {"$regex": "^T1", "$options": "i"},
             "compiled": re.compile("^t1")}[form]
    assert coll.count_documents({"name": query}) == expected


def test_nested_fields_exists_null_and_or(coll):
    assert coll.count_documents({"execution.queue": "q1"}) == N // 5
    assert coll.count_documents({"last_metrics.m1.v1.value": {"$gte": 100.0}}) == N - 100
    assert coll.count_documents({"parent": {"$exists": True}}) == len(range(10, N, 10))
    assert coll.count_documents({"parent": None}) == N - len(range(10, N, 10))
    assert coll.count_documents({"$or": [{"company": ""}, {"status": "queued"}]}) == N // 2
    assert coll.count_documents({"$and": [{"company": "c1"}, {"tags": {"$ne": "c"}}]}) == N // 2
    assert coll.count_documents({"entries.task": "x5"}) == 1
    assert coll.count_documents({"entries": {"$elemMatch": {"task": "y7"}}}) == 1


def test_dates_compare(coll):
    start = datetime(2026, 1, 1) + timedelta(hours=100)
    assert coll.count_documents({"created": {"$gte": start, "$lt": start + timedelta(hours=10)}}) == 10


def test_sort_skip_limit_and_projection(coll):
    docs = list(coll.find({"company": "c1"}, {"name": 1, "execution.queue": 1, "_id": 1})
                .sort([("execution.priority", -1), ("_id", 1)]).skip(5).limit(10))
    everything = sorted(coll.find({"company": "c1"}), key=lambda d: (-d["execution"]["priority"], d["_id"]))
    assert ids(docs) == [d["_id"] for d in everything[5:15]]
    assert set(docs[0]) == {"_id", "name", "execution"} and set(docs[0]["execution"]) == {"queue"}
    excluded = coll.find_one({"_id": "id0001"}, {"last_metrics": 0, "entries": 0})
    assert "last_metrics" not in excluded and "name" in excluded


def test_update_operators(coll):
    coll.update_one({"_id": "id0002"}, {"$set": {"execution.queue": "qq", "new.field": 1}, "$inc": {"n": 5},
                                        "$push": {"tags": {"$each": ["z1", "z2"]}}, "$addToSet": {"system_tags": "s"},
                                        "$unset": {"parent": ""}})
    doc = coll.find_one({"_id": "id0002"})
    assert doc["execution"]["queue"] == "qq" and doc["new"]["field"] == 1 and doc["n"] == 7
    assert doc["tags"] == ["c", "z1", "z2"] and "s" in doc["system_tags"]
    coll.update_one({"_id": "id0002"}, {"$pull": {"tags": {"$in": ["z1"]}, "entries": {"task": "x2"}},
                                        "$max": {"last_metrics.m1.v1.max_value": 99.0},
                                        "$min": {"n": 1}})
    doc = coll.find_one({"_id": "id0002"})
    assert doc["tags"] == ["c", "z2"] and [e["task"] for e in doc["entries"]] == ["y2"]
    assert doc["last_metrics"]["m1"]["v1"]["max_value"] == 99.0 and doc["n"] == 1
    assert coll.update_many({"status": "completed", "company": "c1"}, {"$set": {"flag": True}}).modified_count == \
        len([i for i in range(N) if i % 4 == 3])


def test_find_one_and_update_is_conditional(coll):
    changed = coll.find_one_and_update({"_id": "id0004", "status": "created"}, {"$set": {"status": "queued"}},
                                       return_document=ReturnDocument.AFTER)
    assert changed["status"] == "queued"
    assert coll.find_one_and_update({"_id": "id0004", "status": "created"}, {"$set": {"status": "x"}}) is None
    popped = coll.find_one_and_update({"_id": "id0008"}, {"$pop": {"entries": -1}},
                                      projection={"entries": {"$slice": 1}}, return_document=ReturnDocument.BEFORE)
    assert popped["entries"][0]["task"] == "x8"
    assert [e["task"] for e in coll.find_one({"_id": "id0008"})["entries"]] == ["y8"]
    ordered = coll.find_one_and_update({"status": "queued", "company": "c1"}, {"$set": {"claimed": 1}},
                                       sort=[("execution.priority", -1), ("created", 1)])
    assert ordered is not None


def test_update_and_read(coll):
    """The O(1) stand-in for find_one_and_update (apiserver/database/writes.py): conditional, upserting,
    and refusing filters that no index serves on SecantusDB."""
    doc = update_and_read(coll, {"_id": "id0012", "status": "created"}, {"$set": {"status": "queued"}},
                          {"status": 1, "n": 1})
    assert doc == {"_id": "id0012", "status": "queued", "n": 12}
    assert update_and_read(coll, {"_id": "id0012", "status": "created"}, {"$set": {"status": "x"}}) is None
    assert coll.find_one({"_id": "id0012"})["status"] == "queued"
    assert update_and_read(coll, {"_id": "new-one"}, {"$inc": {"n": 2}}, upsert=True) == {"_id": "new-one", "n": 2}
    assert update_and_read(coll, {"_id": "new-one"}, {"$inc": {"n": 2}}, {"n": 1}, upsert=True)["n"] == 4
    # unset, null and past all match the fold lease's condition; a future value does not
    now = datetime(2026, 6, 1)
    coll.insert_many([{"_id": "lease-unset"}, {"_id": "lease-null", "until": None},
                      {"_id": "lease-past", "until": now - timedelta(1)},
                      {"_id": "lease-future", "until": now + timedelta(1)}])
    taken = [k for k in ("lease-unset", "lease-null", "lease-past", "lease-future")
             if update_and_read(coll, {"_id": k, "until": {"$not": {"$gte": now}}}, {"$set": {"until": now}})]
    assert taken == ["lease-unset", "lease-null", "lease-past"]
    with pytest.raises(ValueError, match=r"\$or"):
        update_and_read(coll, {"_id": "id0013", "$or": [{"a": 1}, {"b": 2}]}, {"$set": {"c": 1}})
    coll.delete_many({"_id": {"$in": ["new-one", "lease-unset", "lease-null", "lease-past", "lease-future"]}})


def test_find_and_modify_only_on_small_collections():
    """findAndModify scans the whole collection on SecantusDB (apiserver/database/writes.py), so the
    server calls it only where a comment on the line or the one before says the collection is small."""
    found = []
    for path in sorted((ROOT / "apiserver").rglob("*.py")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.search(r"\.find_one_and_(update|delete|replace)\(", line) and \
                    not any("small collection:" in ln for ln in lines[max(0, i - 1):i + 1]):
                found.append(f"{path.relative_to(ROOT)}:{i + 1}")
    assert found == []


def test_upsert_and_unique_index(mongo_uri, db_name):
    c = pymongo.MongoClient(mongo_uri)[db_name]["conformance_unique"]
    c.drop()
    c.create_index([("key", 1)], unique=True)
    c.create_index([("company", 1), ("name", 1)], unique=True)
    c.insert_one({"key": "k1", "company": "a", "name": "n"})
    with pytest.raises(DuplicateKeyError):
        c.insert_one({"key": "k1", "company": "b", "name": "n"})
    with pytest.raises(DuplicateKeyError):
        c.insert_one({"key": "k2", "company": "a", "name": "n"})
    c.insert_one({"key": "k3", "company": "b", "name": "n"})
    doc = c.find_one_and_update({"_id": "lease", "holder": "me"}, {"$set": {"holder": "me"}}, upsert=True,
                                return_document=ReturnDocument.AFTER)
    assert doc["holder"] == "me"
    with pytest.raises(DuplicateKeyError):  # a live lease held by another: the upsert collides
        c.find_one_and_update({"_id": "lease", "holder": "other"}, {"$set": {"holder": "other"}}, upsert=True)
    c.drop()


def test_aggregation(coll):
    by_status = {d["_id"]: d["count"] for d in coll.aggregate([
        {"$match": {"company": {"$in": ["c1", ""]}}}, {"$group": {"_id": "$status", "count": {"$sum": 1}}}])}
    assert sum(by_status.values()) == N and len(by_status) == 4
    tags = {d["_id"] for d in coll.aggregate([{"$unwind": "$tags"}, {"$group": {"_id": "$tags"}}])}
    assert {"a", "b", "c"} <= tags
    top = list(coll.aggregate([{"$match": {"company": "c1"}}, {"$sort": {"n": -1}}, {"$limit": 3},
                               {"$project": {"_id": 0, "n": 1, "q": "$execution.queue"}}]))
    assert [d["n"] for d in top] == sorted((i for i in range(N) if i % 4), reverse=True)[:3]
    assert set(top[0]) == {"n", "q"}
    stats = list(coll.aggregate([{"$group": {"_id": None, "min": {"$min": "$n"}, "max": {"$max": "$n"},
                                             "avg": {"$avg": "$n"}}}]))[0]
    assert stats["max"] >= N - 1


def test_indexed_filters_use_the_index(coll):
    plan = coll.find({"company": "c1", "status": "queued"}).sort("created", -1).explain()["queryPlanner"]["winningPlan"]
    assert "IXSCAN" in str(plan)


def _cas_increments(uri: str, db: str, n: int) -> int:
    c = pymongo.MongoClient(uri)[db]["conformance_cas"]
    wins = 0
    for _ in range(n):
        while True:
            doc = c.find_one({"_id": "x"})
            if c.update_one({"_id": "x", "n": doc["n"]}, {"$set": {"n": doc["n"] + 1}}).modified_count:
                wins += 1
                break
    return wins


def _pop_with_pre_image(uri: str, db: str) -> list:
    c = pymongo.MongoClient(uri)[db]["conformance_cas"]
    got = []
    while (doc := c.find_one_and_update({"_id": "q", "e.0": {"$exists": True}}, {"$pop": {"e": -1}},
                                        return_document=ReturnDocument.BEFORE)) is not None:
        got.append(doc["e"][0])
    return got


def _in_processes(target, args, n=8):
    return race(target, [args] * n, timeout=120)


def test_conditional_update_is_atomic_across_processes(mongo_uri, db_name):
    """Compare-and-set with update_one: what queue pops, leases and status changes rely on."""
    c = pymongo.MongoClient(mongo_uri)[db_name]["conformance_cas"]
    c.delete_many({})
    c.insert_one({"_id": "x", "n": 0})
    wins = _in_processes(_cas_increments, (mongo_uri, db_name, 25))
    assert sum(wins) == 200 and c.find_one({"_id": "x"})["n"] == 200


def test_find_one_and_update_pre_image_under_concurrency(mongo_uri, db_name):
    """Eight processes $pop one array through find_one_and_update, trusting the returned pre-image.

    MongoDB hands every entry out once. Known SecantusDB 0.7 gap: the returned document can be stale
    when several processes update it, so an entry may be handed out twice (and another never) in some
    runs and not in others; a test cannot require a race to happen, nor to stay away. What holds on
    both: every call that found an entry popped one, so the array ends empty after 300 pops of entries
    it held. The project never trusts a returned document for a claim (QueueBLL.pop_front; the queue
    races in tests/test_queues.py check every task is handed out once)."""
    c = pymongo.MongoClient(mongo_uri)[db_name]["conformance_cas"]
    secantus = "secantusVersion" in c.database.client.server_info()
    c.delete_many({"_id": "q"})
    c.insert_one({"_id": "q", "e": list(range(300))})
    handed = [x for got in _in_processes(_pop_with_pre_image, (mongo_uri, db_name)) for x in got]
    assert c.find_one({"_id": "q"})["e"] == []
    assert len(handed) == 300 and set(handed) <= set(range(300)), (len(handed), sorted(handed)[:20])
    if not secantus:
        assert sorted(handed) == list(range(300))


def test_no_text_indexes_on_secantusdb(coll):
    """Known SecantusDB gap, pinned: no text index (so no $text); free-text search uses $regex."""
    if not _is_secantus(coll):
        coll.create_index([("name", "text")], name="probe_text")
        assert coll.count_documents({"$text": {"$search": "t7"}}) == 1
        coll.drop_index("probe_text")
        return
    with pytest.raises(pymongo.errors.OperationFailure) as refused:
        coll.create_index([("name", "text")], name="probe_text")
    assert refused.value.code == 67 and "text indexes are not supported" in str(refused.value)
    with pytest.raises(pymongo.errors.OperationFailure) as unknown:
        coll.count_documents({"$text": {"$search": "t7"}})
    assert "$text" in str(unknown.value)
