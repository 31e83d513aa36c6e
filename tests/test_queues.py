"""The queues service: CRUD, moves, atomic pops (8 processes over 400 tasks), metrics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import requests

from tests.helpers import race


def new_queue(api, **kw) -> str:
    return api.call("queues.create", name=kw.pop("name", f"q-{uuid4().hex[:8]}"), **kw)["id"]


def queued_task(api, queue: str) -> str:
    task = api.call("tasks.create", name="queued", type="training")["id"]
    api.call("tasks.enqueue", task=task, queue=queue)
    return task


def test_crud_and_default(api, other_api):
    name = f"crud-{uuid4().hex[:6]}"
    qid = new_queue(api, name=name, tags=["gpu"])
    assert api.error("queues.create", name=name).subcode == 801
    queue = api.call("queues.get_by_id", queue=qid)["queue"]
    assert (queue["name"], queue["tags"], queue["entries"]) == (name, ["gpu"], [])
    assert api.error("queues.get_by_id", queue=name).subcode == 701  # the SDK first tries a name here
    assert other_api.error("queues.get_by_id", queue=qid).subcode == 701
    found = api.call("queues.get_all", name=name[2:])["queues"]  # unanchored regex
    assert [q["id"] for q in found] == [qid]
    assert api.call("queues.get_all", id=[qid], only_fields=["name"])["queues"] == [{"id": qid, "name": name}]
    default = api.call("queues.get_default")
    assert default["name"] == "default"
    assert other_api.call("queues.get_default")["id"] != default["id"]  # every company has its own
    assert api.call("queues.update", queue=qid, name=f"{name}-x")["fields"]["name"] == f"{name}-x"
    task = queued_task(api, qid)
    assert (err := api.error("queues.delete", queue=qid)).subcode == 702 and err.code == 400
    assert api.call("queues.delete", queue=qid, force=True) == {"deleted": 1}
    assert api.error("queues.get_by_id", queue=qid).subcode == 701
    task = api.call("tasks.get_by_id", task=task)["task"]  # as ClearML: its queued tasks are dequeued first
    assert task["status"] == "created" and task["status_reason"] == f"queue {qid} was deleted"


def test_add_remove_and_moves(api):
    qid = new_queue(api)
    tasks = [queued_task(api, qid) for _ in range(4)]
    loose = api.call("tasks.create", name="loose", type="training")["id"]
    assert api.call("queues.add_task", queue=qid, task=loose) == {"added": 1}
    assert api.error("queues.add_task", queue=qid, task=loose).subcode == 706
    order = [*tasks, loose]

    def entries():
        return [e["task"] for e in api.call("queues.get_by_id", queue=qid)["queue"]["entries"]]

    assert entries() == order
    assert api.call("queues.move_task_to_front", queue=qid, task=loose) == {"position": 0}
    assert entries() == [loose, *tasks]
    assert api.call("queues.move_task_backward", queue=qid, task=loose, count=2) == {"position": 2}
    assert entries() == [tasks[0], tasks[1], loose, tasks[2], tasks[3]]
    assert api.call("queues.move_task_forward", queue=qid, task=tasks[3]) == {"position": 3}
    assert api.call("queues.move_task_to_back", queue=qid, task=tasks[0]) == {"position": 4}
    assert entries() == [tasks[1], loose, tasks[3], tasks[2], tasks[0]]
    assert api.call("queues.remove_task", queue=qid, task=loose) == {"removed": 1}
    assert api.call("queues.remove_task", queue=qid, task=loose) == {"removed": 0}
    assert api.error("queues.move_task_to_front", queue=qid, task=loose).subcode == 703
    assert api.call("queues.get_all", id=[qid], max_task_entries=2)["queues"][0]["entries"][1]["task"] == tasks[3]


def test_get_next_task(api):
    qid = new_queue(api)
    assert api.call("queues.get_next_task", queue=qid) == {}
    first, second = queued_task(api, qid), queued_task(api, qid)
    api.call("tasks.stop", task=first)  # no longer queued: its entry is gone (and would be skipped)
    stale = api.call("tasks.create", name="not queued", type="training")["id"]
    api.call("queues.add_task", queue=qid, task=stale)
    got = api.call("queues.get_next_task", queue=qid, get_task_info=True)
    assert got["entry"]["task"] == second and got["task_info"]["user"]
    assert api.call("queues.get_next_task", queue=qid) == {}  # the stale entry was dropped, not handed out
    assert api.error("queues.get_next_task", queue="0" * 32).subcode == 701


def _claim_all(base_url: str, auth: str, queue: str) -> list:
    session = requests.Session()
    got = []
    while True:
        resp = session.post(f"{base_url}/queues.get_next_task", json={"queue": queue},
                            headers={"Authorization": auth}, timeout=90)
        assert resp.status_code == 200, resp.text
        entry = resp.json()["data"].get("entry")
        if not entry:
            return got
        got.append(entry["task"])


RACE_TASKS = 200  # each pop rewrites the queue's entry array: cost grows with the square of this


def test_eight_processes_pop_every_task_exactly_once(admin, server):
    """Eight processes released together by a barrier pop one queue until it is empty: every task is
    handed out exactly once, and every process got some (they really overlapped)."""
    qid = admin.call("queues.create", name=f"race-{uuid4().hex[:6]}")["id"]

    def enqueue_one(_):
        task = admin.call("tasks.create", name="pop", type="training")["id"]
        admin.call("tasks.enqueue", task=task, queue=qid)
        return task

    with ThreadPoolExecutor(8) as pool:  # setup only; clients keep their own sessions
        expected = list(pool.map(enqueue_one, range(RACE_TASKS)))
    results = race(_claim_all, [(server.base_url, admin.auth, qid)] * 8)
    handed = [t for r in results for t in r]
    assert len(handed) == RACE_TASKS, f"{len(handed)} handed out, {len(set(handed))} distinct"
    assert sorted(handed) == sorted(expected)
    assert [bool(r) for r in results] == [True] * 8, [len(r) for r in results]
    assert admin.call("queues.get_by_id", queue=qid)["queue"]["entries"] == []


def test_queue_metrics_refuse_an_impossible_range(api):
    """Samples themselves come from the scheduler's job: tests/test_jobs.py."""
    err = api.error("queues.get_queue_metrics", from_date=10, to_date=5, interval=60)
    assert (err.code, err.subcode) == (400, 6)
