"""Owns how chart series cut time into intervals: which interval a sample falls in, and the date
of each interval as ClearML answers it (epoch milliseconds of its start; the web app reads worker
and queue chart dates so)."""

from __future__ import annotations

from datetime import UTC, datetime


def bucket(ts: datetime, start: datetime, interval: int) -> int:
    """The index of the ``interval``-second bucket after ``start`` that ``ts`` falls in."""
    return int((ts - start).total_seconds() // interval)


def bucket_dates(start: datetime, interval: int, keys: list[int]) -> list[int]:
    """The start of each bucket, in epoch milliseconds. A naive ``start`` is UTC, as every date the
    database gives back is (``datetime.timestamp`` would read it as the server's local time)."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    base = int(start.timestamp()) * 1000
    return [base + k * interval * 1000 for k in keys]
