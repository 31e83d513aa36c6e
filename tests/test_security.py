"""Security regressions: each test here failed on the code a penetration test probed (issue 11)."""

from __future__ import annotations

import time

import pytest
import requests

from tests.helpers import basic


@pytest.fixture(scope="module")
def guest(admin, server):
    made = admin.call("users.create", name="Guest Reader", role="guest", credentials=True)
    return server.client().login(made["credentials"]["access_key"], made["credentials"]["secret_key"])


# -- regexes from requests ------------------------------------------------------------------------

EVIL = "(a+)+$"


@pytest.fixture(scope="module")
def evil_names(admin):
    """Names on which a backtracking engine takes exponential time for ``(a+)+$``."""
    name = "a" * 30 + "b"
    project = admin.call("projects.create", name=f"redos-{time.time_ns()}")["id"]
    task = admin.call("tasks.create", name=name, type="training", project=project)["id"]
    admin.call("queues.create", name="a" * 30 + "b-" + str(time.time_ns()))
    return project, task, name


@pytest.mark.parametrize("endpoint,data,key", [
    ("tasks.get_all", {"name": EVIL}, "tasks"),
    ("tasks.get_all", {"_any_": {"pattern": EVIL, "fields": ["name", "comment"]}}, "tasks"),
    ("projects.get_all", {"name": EVIL}, "projects"),
    ("queues.get_all", {"name": EVIL}, "queues"),
    ("users.get_all", {"name": EVIL}, "users"),
])
def test_a_guest_regex_answers_at_once_and_the_server_stays_healthy(server, guest, evil_names, endpoint, data, key):
    started = time.monotonic()
    found = guest.call(endpoint, **data)[key]
    elapsed = time.monotonic() - started
    assert found == []  # ``(a+)+$`` matches no name ending in "b"
    assert elapsed < 1.0, f"{endpoint} took {elapsed:.2f}s"
    assert requests.get(server.base_url + "/health", timeout=2).status_code == 200


def test_patterns_still_match_as_regexes(guest, evil_names):
    project, task, name = evil_names
    assert [t["id"] for t in guest.call("tasks.get_all", name="^a{30}b$", project=[project])["tasks"]] == [task]
    assert [t["id"] for t in guest.call("tasks.get_all", name=f"^{name}$", project=[project])["tasks"]] == [task]
    assert [t["id"] for t in guest.call("tasks.get_all", name="a+b", project=[project])["tasks"]] == [task]
    assert guest.call("tasks.get_all", name="^a{31}b$", project=[project])["tasks"] == []
    found = guest.call("tasks.get_all", _any_={"pattern": "A{30}B", "fields": ["comment", "name"]},
                       project=[project])["tasks"]
    assert [t["id"] for t in found] == [task]  # _any_ is case-insensitive, over any of the fields


@pytest.mark.parametrize("pattern,rule", [("(a)\\1", "pattern"), ("(?=a)a", "pattern"), ("a" * 600, "maxLength")])
def test_patterns_no_linear_engine_can_run_are_clear_400s(guest, pattern, rule):
    err = guest.error("tasks.get_all", name=pattern)
    assert (err.code, err.subcode) == (400, 21)
    assert err.meta["error_data"] == {"field": "name", "rule": rule}


def test_task_names_are_bounded(admin):
    err = admin.error("tasks.create", name="x" * 1001, type="training")
    assert (err.code, err.subcode) == (400, 12)
    assert err.meta["error_data"] == {"field": "name", "rule": "maxLength"}


def test_basic_header_helper_is_used(server):
    """Positive control for the Basic tests below: a good key pair works on any endpoint."""
    from tests.helpers import ADMIN_KEY, ADMIN_SECRET

    assert server.client(basic(ADMIN_KEY, ADMIN_SECRET)).call("debug.ping") == {"msg": "ping"}
