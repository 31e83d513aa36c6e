"""Chart interval dates are the same whatever the server's local time zone (bll/intervals)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from apiserver.bll import intervals


@pytest.fixture(params=["UTC", "Asia/Kolkata", "America/New_York"])
def local_zone(request, monkeypatch):
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_bucket_dates_are_utc_epoch_milliseconds_in_any_local_zone(local_zone):
    start = datetime(2026, 11, 24, 2, 0, 0)  # naive UTC, as the database answers dates
    assert intervals.bucket_dates(start, 60, [0, 1, 5]) == [1795485600000, 1795485660000, 1795485900000]
    aware = datetime(2026, 11, 24, 2, 0, 0, tzinfo=UTC)
    assert intervals.bucket_dates(aware, 60, [0]) == [1795485600000]
    assert intervals.bucket(datetime(2026, 11, 24, 2, 2, 59), start, 60) == 2
