"""The race helper of tests/helpers.py: a racer's failure reaches the test with its text, at once,
and no racer outlives the race."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers import race


def _racer(kind: str, pid_dir: str) -> int:
    Path(pid_dir, f"{kind}.pid").write_text(str(os.getpid()))
    if kind == "fails":
        raise AssertionError("racer-assertion-marker 41 != 42")
    if kind == "hangs":
        time.sleep(3600)
    return os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a terminated child not yet reaped by anyone is a zombie: not running
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def test_results_come_back_in_argument_order(tmp_path):
    pids = race(_racer, [("a", str(tmp_path)), ("b", str(tmp_path)), ("c", str(tmp_path))])
    assert pids == [int((tmp_path / f"{k}.pid").read_text()) for k in "abc"]
    assert len(set(pids)) == 3 and os.getpid() not in pids


def test_a_failing_racer_fails_the_race_with_its_message_and_the_rest_are_stopped(tmp_path):
    with pytest.raises(AssertionError) as failed:
        race(_racer, [("hangs", str(tmp_path)), ("fails", str(tmp_path))], timeout=600)
    message = str(failed.value)
    # only the failing racer is reported: the failure ended the race, not its timeout
    assert "1 of 2 racers failed" in message and "racer 1 ('fails'" in message and "racer 0" not in message
    assert "racer-assertion-marker 41 != 42" in message
    assert not _alive(int((tmp_path / "hangs.pid").read_text()))


def test_a_race_past_its_timeout_names_the_racers_still_running(tmp_path):
    with pytest.raises(AssertionError) as failed:
        race(_racer, [("hangs", str(tmp_path)), ("done", str(tmp_path))], timeout=20)
    assert "racer 0 ('hangs'" in str(failed.value) and "still running after 20s" in str(failed.value)
    assert "racer 1" not in str(failed.value)
    assert not _alive(int((tmp_path / "hangs.pid").read_text()))
