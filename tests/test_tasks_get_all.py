"""tasks.get_all over a fixture of a few hundred tasks, each answer checked against a plain Python
filter over the same fixture, plus races of status changes over real HTTP: 20 concurrent `tasks.started`,
and `tasks.completed` against `tasks.failed` on one running task."""

from __future__ import annotations

import random
import re
import threading
import time
from datetime import datetime

import pytest
import requests

from tests.helpers import send

STATUSES = ["created", "queued", "in_progress", "stopped", "completed", "failed", "closed"]
TYPES = ["training", "testing", "inference", "qc"]
N = 240


@pytest.fixture(scope="module")
def fixture(api, other_api):
    """N tasks in three projects with varied fields; every task as get_by_id shows it."""
    rng = random.Random(7)
    tag = f"mx{rng.randrange(10**6)}"
    projects = [api.call("projects.create", name=f"{tag}-p{i}")["id"] for i in range(3)]
    ids = []
    for i in range(N):
        fields = {"name": f"{tag} {rng.choice(['alpha', 'beta', 'Gamma'])} {i:03d}", "type": rng.choice(TYPES),
                  "tags": rng.sample(["red", "green", "blue", "x"], rng.randrange(0, 3)),
                  "system_tags": [tag] + (["hidden"] if i % 17 == 0 else []) + (["archived"] if i % 11 == 0 else []),
                  "comment": rng.choice(["", "needle in comment", "plain"])}
        if i % 5:
            fields["project"] = projects[i % 3]
        if i > 10 and i % 7 == 0:
            fields["parent"] = ids[i - 3]
        task = api.call("tasks.create", **fields)["id"]
        ids.append(task)
        status = STATUSES[i % len(STATUSES)]
        if status == "queued":
            api.call("tasks.enqueue", task=task)
        elif status != "created":
            endpoint = {"in_progress": "tasks.started", "stopped": "tasks.stopped", "completed": "tasks.completed",
                        "failed": "tasks.failed", "closed": "tasks.close"}[status]
            api.call(endpoint, task=task, force=True)
    other = other_api.call("tasks.create", name=f"{tag} alpha other-company", type="training",
                           system_tags=[tag])["id"]
    tasks = [api.call("tasks.get_by_id", task=t)["task"] for t in ids]
    return {"tag": tag, "tasks": tasks, "projects": projects, "other": other}


def expected(tasks, *, name=None, status=None, type_=None, tags=None, project=None, parent=None, search_hidden=False,
             ids=None, search_text=None, any_=None, status_changed_gte=None):
    out = []
    for t in tasks:
        if not search_hidden and not ids and "hidden" in t["system_tags"]:
            continue
        if ids and t["id"] not in ids:
            continue
        if name and not re.search(name, t["name"]):
            continue
        if status and t["status"] not in status:
            continue
        if type_ and t["type"] not in type_:
            continue
        if tags:
            inc = [x for x in tags if not x.startswith("-")]
            exc = [x[1:] for x in tags if x.startswith("-")]
            if inc and not set(inc) & set(t["tags"]):
                continue
            if set(exc) & set(t["tags"]):
                continue
        if project is not None:
            want_none = None in project
            if not (t.get("project") in project or (want_none and not t.get("project"))):
                continue
        if parent and t.get("parent") != parent:
            continue
        if search_text and not any(search_text.lower() in (t.get(f) or "").lower() for f in ("name", "comment", "id")):
            continue
        if any_ and not any(re.search(any_[1], t.get(f) or "", re.I) for f in any_[0]):
            continue
        if status_changed_gte and t["status_changed"] < status_changed_gte:
            continue
        out.append(t)
    return out


def query(fixture, **kw):
    kw = {"system_tags": [fixture["tag"]], "page_size": 500, **kw}
    return kw


CASES = [
    {},
    {"name": r"alpha"},
    {"name": r"^mx\d+ (beta|Gamma) 0[0-4]"},
    {"status": ["completed", "failed"]},
    {"type": ["qc"]},
    {"tags": ["red"]},
    {"tags": ["red", "blue"]},
    {"tags": ["-red"]},
    {"tags": ["green", "-blue"]},
    {"project": "P0"},
    {"project": "NONE"},
    {"parent": "PARENT"},
    {"search_hidden": True},
    {"search_text": "NEEDLE"},
    {"_any_": {"fields": ["name", "comment"], "pattern": "gamma|needle"}},
    {"status": ["in_progress", "queued"], "type": ["training", "testing"], "tags": ["-x"]},
    {"name": "beta", "status": ["created"], "project": "P1", "search_hidden": True},
    {"status_changed": "MIDDLE"},
]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_get_all_matches_a_plain_python_filter(api, fixture, case):
    tasks = fixture["tasks"]
    req = dict(case)
    kw = {"search_hidden": req.get("search_hidden", False)}
    if req.get("project") == "P0":
        req["project"] = [fixture["projects"][0]]
    elif req.get("project") == "P1":
        req["project"] = [fixture["projects"][1]]
    elif req.get("project") == "NONE":
        req["project"] = [None]
    if req.get("parent") == "PARENT":
        req["parent"] = next(t["parent"] for t in tasks if t.get("parent"))
    if req.get("status_changed") == "MIDDLE":
        middle = sorted(t["status_changed"] for t in tasks)[len(tasks) // 2]
        req["status_changed"] = [f">={middle}"]
        kw["status_changed_gte"] = middle
    any_ = req.get("_any_")
    want = expected(tasks, name=req.get("name"), status=req.get("status"), type_=req.get("type"),
                    tags=req.get("tags"), project=req.get("project"), parent=req.get("parent"),
                    search_text=req.get("search_text"), any_=(any_["fields"], any_["pattern"]) if any_ else None, **kw)
    got = api.call("tasks.get_all", _version="2.13", **query(fixture, **req))["tasks"]
    assert sorted(t["id"] for t in got) == sorted(t["id"] for t in want)
    assert len(want) > 0 or case == {"parent": "PARENT"}


def test_other_company_tasks_never_appear(api, fixture):
    got = api.call("tasks.get_all", _version="2.13", system_tags=[fixture["tag"]], search_hidden=True,
                   page_size=500)["tasks"]
    assert fixture["other"] not in {t["id"] for t in got}
    assert len(got) == N
    ex = api.call("tasks.get_all_ex", _version="2.13", system_tags=[fixture["tag"]], search_hidden=True,
                  page_size=500, only_fields=["id"])["tasks"]  # the internal twin answers the same
    assert sorted(t["id"] for t in ex) == sorted(t["id"] for t in got)


@pytest.mark.parametrize("order", [["name"], ["-name"], ["status", "-name"], ["-last_update"], ["type", "name"]])
def test_order_by_and_paging(api, fixture, order):
    want = expected(fixture["tasks"])

    def key(t):
        parts = []
        for field in order:
            value = t.get(field.lstrip("-")) or ""
            parts.append(value)
        return parts

    # a stable multi-key sort with mixed directions, id last as the tie-break
    want = sorted(want, key=lambda t: t["id"])
    for field in reversed(order):
        want = sorted(want, key=lambda t, f=field: t.get(f.lstrip("-")) or "", reverse=field.startswith("-"))
    pages = []
    for page in range(0, 10):
        chunk = api.call("tasks.get_all", **query(fixture, order_by=order, page=page, page_size=50,
                                                  only_fields=["id", "name", "status", "type", "last_update"]))["tasks"]
        pages += chunk
        if len(chunk) < 50:
            break
    got_ids, want_ids = [t["id"] for t in pages], [t["id"] for t in want]
    if got_ids != want_ids:
        pairs = enumerate(zip(got_ids, want_ids, strict=False))
        at = next((i for i, (a, b) in pairs if a != b), min(len(got_ids), len(want_ids)))
        by_id = {t["id"]: t for t in fixture["tasks"]}
        detail = [(i, by_id.get(a, {}).get(order[0].lstrip("-")), by_id.get(b, {}).get(order[0].lstrip("-")))
                  for i, (a, b) in enumerate(zip(got_ids[at:at + 3], want_ids[at:at + 3], strict=False), start=at)]
        raise AssertionError(f"order differs at {at} of {len(want_ids)} (got {len(got_ids)}): {detail}")
    first = next(t for t in fixture["tasks"] if t["id"] == pages[0]["id"])
    assert set(pages[0]) == {"id", "name", "status", "type", "last_update"}  # what was asked, all of it
    assert [pages[0][k] for k in ("name", "status", "type")] == [first[k] for k in ("name", "status", "type")]


@pytest.mark.parametrize("order", [["name"], ["-last_update"], ["project", "-name"]])
def test_named_ids_in_order_and_pages(api, fixture, order):
    """A query naming its ids is read by id (Store.find_page) and keeps the listing's rules: the order,
    empty values last on an ascending key, paging, the filters beside the ids, hidden ones included."""
    named = [t["id"] for t in fixture["tasks"][::3]][:60]
    want = expected(fixture["tasks"], ids=set(named), status=["created", "completed", "failed", "in_progress"])
    want = sorted(want, key=lambda t: t["id"])
    for field in reversed(order):
        key = field.lstrip("-")
        want = sorted(want, key=lambda t, k=key: t.get(k) or "", reverse=field.startswith("-"))
        if not field.startswith("-"):  # ClearML puts empty values after the filled ones
            want = sorted(want, key=lambda t, k=key: not t.get(k))
    got = []
    for page in range(10):
        chunk = api.call("tasks.get_all", id=named, status=["created", "completed", "failed", "in_progress"],
                         order_by=order, page=page, page_size=7, only_fields=["id"])["tasks"]
        got += chunk
        if len(chunk) < 7:
            break
    assert len(want) > 14 and [t["id"] for t in got] == [t["id"] for t in want]


def test_ascending_order_puts_empty_values_last(api, fixture):
    got = api.call("tasks.get_all", **query(fixture, order_by=["project"], only_fields=["project"]))["tasks"]
    values = [t.get("project") for t in got]
    first_empty = next(i for i, v in enumerate(values) if not v)
    assert all(values[:first_empty]) and not any(values[first_empty:])
    assert values[:first_empty] == sorted(values[:first_empty])


def test_only_fields_nesting_and_exclusion(api, fixture):
    task = fixture["tasks"][1]["id"]
    got = api.call("tasks.get_all", id=[task], only_fields=["name", "execution.queue", "-x"])["tasks"][0]
    want = fixture["tasks"][1]  # a queued one: it has an execution.queue
    assert got == {"id": task, "name": want["name"], "execution": {"queue": want["execution"]["queue"]}}
    full = api.call("tasks.get_all", id=[task])["tasks"][0]
    got = api.call("tasks.get_all", id=[task], only_fields=["-comment", "-tags"])["tasks"][0]
    assert {"comment", "tags", "name"} <= set(full)  # the exclusion below removes something real
    assert got == {k: v for k, v in full.items() if k not in ("comment", "tags")}


def test_bad_get_all_requests_are_clear_400s(api):
    for data, field in (({"name": "(unclosed"}, None), ({"page": 1}, None), ({"page_size": 501}, "page_size"),
                        ({"status": ["bogus"]}, "status.0"), ({"status_changed": [">=not-a-date"]}, "status_changed"),
                        ({"status_changed": [None, "2024\n-01-01", None]}, "status_changed")):  # fuzz: was a 500
        err = api.error("tasks.get_all", _version="2.13", **data)
        assert err.code == 400 and err.status == 400, data
        if field:
            assert err.meta["error_data"]["field"] == field, (data, err.meta)


def test_twenty_concurrent_started_calls_one_wins(admin, server):
    task = admin.call("tasks.create", name="race", type="training")["id"]
    barrier = threading.Barrier(20)
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def start():
        session = requests.Session()
        barrier.wait()
        resp = session.post(f"{server.base_url}/tasks.started", json={"task": task},
                            headers={"Authorization": admin.auth})
        meta = resp.json()["meta"]
        with lock:
            results.append((meta["result_code"], meta["result_subcode"]))

    threads = [threading.Thread(target=start) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 20
    assert results.count((200, 0)) == 1, results
    assert all(r in ((400, 121), (400, 110)) for r in results if r != (200, 0)), results
    doc = admin.call("tasks.get_by_id", task=task)["task"]
    assert doc["status"] == "in_progress"
    assert datetime.fromisoformat(doc["started"].replace("Z", "+00:00"))


def test_completed_and_failed_raced_on_one_running_task_one_wins_and_the_other_gets_121(admin, server):
    """Two different changes sent together at one running task: ``tasks.completed`` and ``tasks.failed``
    (neither status may follow the other, so a loser that read the winner's status is a 400/110).
    Every round exactly one wins and the task holds its status; a loser that read ``in_progress``
    as the winner did must lose the compare-and-set with 400/121. Rounds go on until three rounds
    whose two requests overlapped in time (start and end stamped around each) ended in 121, so the
    test has seen the race it stands for, not only serialised requests."""
    sessions = [requests.Session(), requests.Session()]
    for session in sessions:  # keep-alive connections open before the first round
        assert send(session, "POST", f"{server.base_url}/server.info", headers={"Authorization": admin.auth}).ok
    changes = ["tasks.completed", "tasks.failed"]

    def change(i: int, task: str, barrier: threading.Barrier, answers: list) -> None:
        barrier.wait(30)
        began = time.monotonic()
        resp = send(sessions[i], "POST", f"{server.base_url}/{changes[i]}", json={"task": task},
                    headers={"Authorization": admin.auth}, timeout=60)
        answers[i] = (began, time.monotonic(), resp.status_code, resp.json()["meta"]["result_subcode"])

    raced, rounds = 0, []
    while raced < 3:
        assert len(rounds) < 300, f"no overlapping pair of requests ended in 400/121 in 300 rounds: {rounds[-5:]}"
        task = admin.call("tasks.create", name="two-changes", type="training")["id"]
        admin.call("tasks.started", task=task)
        barrier, answers = threading.Barrier(2), [None, None]
        threads = [threading.Thread(target=change, args=(i, task, barrier, answers)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        (a_start, a_end, *a), (b_start, b_end, *b) = answers
        outcome = (tuple(a), tuple(b))
        rounds.append(outcome)
        winners = [i for i, got in enumerate((a, b)) if got == [200, 0]]
        assert len(winners) == 1, f"round {len(rounds)}: {changes} answered {outcome}"
        loser = (a, b)[1 - winners[0]]
        assert loser in ([400, 110], [400, 121]), f"round {len(rounds)}: {changes} answered {outcome}"
        status = admin.call("tasks.get_by_id", task=task)["task"]["status"]
        assert status == changes[winners[0]].split(".")[1], (outcome, status)
        if loser == [400, 121] and a_start < b_end and b_start < a_end:
            raced += 1
