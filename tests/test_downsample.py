"""The chart's downsampling (``bll/events/scalars.downsample``) against its rule written out plainly:
per run of groups, the first smallest low and the first largest high, one point when they are the
same point, in iteration order; several series at once give what each gives alone; a NaN never
hides a run's real extremes. (The charts through the API are tested in tests/test_events.py.)"""

from __future__ import annotations

import math
import random

import numpy as np

from apiserver.bll.events.scalars import downsample


def _rule(rows: list[tuple], samples: int) -> list[tuple]:
    """rows: (lo_i, lo_t, lo_v, hi_i, hi_t, hi_v) per group."""
    count = len(rows)
    if not samples or 2 * count <= samples:
        bounds = [(k, k + 1) for k in range(count)]
    else:
        runs = samples // 2
        bounds = [(r * count // runs, (r + 1) * count // runs) for r in range(runs)]
    out = []
    for a, b in bounds:
        run = rows[a:b]
        lows = [r for r in run if not math.isnan(r[2])] or run[:1]
        highs = [r for r in run if not math.isnan(r[5])] or run[:1]
        low = min(lows, key=lambda r: r[2])  # min/max keep the first of equals
        high = max(highs, key=lambda r: r[5])
        lo, hi = low[:3], high[3:]
        out.extend([lo] if lo == hi else sorted((lo, hi)))
    return out


def _overview(rng: random.Random, count: int, nan: bool = False) -> tuple[list[tuple], list[np.ndarray]]:
    its = sorted(rng.sample(range(count * 4 + 1), count))
    rows = []
    for i in its:
        lo = rng.choice([rng.random(), 0.5, round(rng.random(), 1)])
        if nan and rng.random() < 0.2:
            lo = math.nan
        same = rng.random() < 0.3
        hi = lo if same or math.isnan(lo) else lo + rng.choice([0.0, rng.random()])
        rows.append((i, 1000 + i, lo, i if same else i + rng.choice([0, 1]), 1000 + i + rng.choice([0, 1]), hi))
    columns = [np.array([r[k] for r in rows], np.float64 if k in (2, 5) else np.int64) for k in range(6)]
    return rows, columns


def _points(result: tuple[np.ndarray, ...]) -> list[tuple]:
    return list(zip(*(col.tolist() for col in result), strict=True))


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(x[:2] == y[:2] and (x[2] == y[2] or math.isnan(x[2]) and math.isnan(y[2]))
                                    for x, y in zip(a, b, strict=True))


def test_downsample_keeps_each_runs_first_min_and_max_in_order():
    rng = random.Random(11)
    checked = 0
    for _ in range(400):
        count = rng.choice([0, 1, 2, 3, 17, 64, 250, 251, 512, 1000])
        rows, columns = _overview(rng, count)
        for samples in (0, 2, 3, 10, 100, 500):
            got = _points(downsample([columns], samples)[0])
            assert got == _rule(rows, samples), (count, samples)
            assert len(got) <= max(samples, 2 * count) if samples else len(got) <= 2 * count
            checked += 1
    assert checked == 2400


def test_a_nan_never_hides_a_runs_extremes():
    rng = random.Random(5)
    for _ in range(200):
        rows, columns = _overview(rng, rng.choice([8, 64, 300]), nan=True)
        for samples in (0, 10, 100):
            assert _same(_points(downsample([columns], samples)[0]), _rule(rows, samples))


def test_several_series_at_once_give_what_each_gives_alone():
    rng = random.Random(3)
    for _ in range(100):
        many = [_overview(rng, rng.choice([0, 1, 5, 64, 300]))[1] for _ in range(rng.randint(0, 6))]
        for samples in (0, 10, 100, 500):
            together = downsample(many, samples)
            assert len(together) == len(many)
            for columns, got in zip(many, together, strict=True):
                assert _points(got) == _points(downsample([columns], samples)[0])
