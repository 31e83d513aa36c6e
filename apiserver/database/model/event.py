"""Owns the shapes of task events: one document per plot, debug image or vector event, and the blocks
that scalar series and console lines are stored in (``database/events/`` reads and writes them)."""

from __future__ import annotations

from mongoengine import (
    BinaryField,
    DateTimeField,
    DictField,
    DynamicDocument,
    FloatField,
    IntField,
    ListField,
    LongField,
    StringField,
)

from apiserver.database.model.base import new_id

# The event types (an event's ``type``), as ClearML names them.
SCALAR = "training_stats_scalar"
VECTOR = "training_stats_vector"
DEBUG_IMAGE = "training_debug_image"
PLOT = "plot"
LOG = "log"
EVENT_TYPES = (SCALAR, VECTOR, DEBUG_IMAGE, PLOT, LOG)
# The iteration ClearML reports a metric's single value at.
SINGLE_VALUE_ITER = -(2**31)


class Event(DynamicDocument):
    """A plot, debug image or vector event, one document each (scalars and log lines were stored so
    before their blocks; ``bll/events/migration.py`` moves such documents into the blocks)."""

    meta = {
        "collection": "events",
        "indexes": [
            # per-task reads: logs by time, metrics by metric/variant/iteration
            ("task", "type", "timestamp"),
            ("task", "type", "metric", "variant", "iter"),
            ("company", "task"),
        ],
    }

    id = StringField(primary_key=True, default=new_id)
    company = StringField(required=True)
    task = StringField(required=True)
    type = StringField(required=True)
    timestamp = LongField(required=True)  # epoch milliseconds, as clients send it
    iter = IntField()
    metric = StringField()
    variant = StringField()
    value = FloatField()
    msg = StringField()
    level = StringField()
    worker = StringField()
    received = DateTimeField()


# -- the blocks ------------------------------------------------------------------------------------
# Their indexes are created by their stores (``database/events/``) as they always were, with a plain
# create_index: declared here, mongoengine would ask again with ``background: false``, which SecantusDB
# refuses as a conflict with the index an earlier version made.
#
# Scalar series (``database/events/scalars.py``):
# A series is a task's (metric, variant); its key ``k`` is series_key(metric, variant) and its id
# ``<task>.<k>``. Points are packed arrays: ``i`` iterations and ``t`` timestamps (int64), ``v`` values
# (float64).


class ScalarPending(DynamicDocument):
    """One add call's scalar points and console lines of one task, until they are folded into the
    blocks and overviews (``database/events/pending.py``)."""

    meta = {"collection": "event_scalar_pending"}

    id = StringField(primary_key=True, default=new_id)
    company = StringField(required=True)
    task = StringField(required=True)
    # [{k: series key, m: metric, r: variant, i: [iterations], t: [timestamps], v: [values], single: {t, v}}]
    series = ListField(DictField())
    lines = ListField(DictField())  # console lines as log blocks hold them
    nl = IntField()  # how many


class ScalarSeriesList(DynamicDocument):
    """One task's series: ``s.<k>`` = {m: metric, r: variant, n: point count, x0, x1: first and last
    iteration, single: {t, v} the single value}, pending points not counted; ``fold_until``, the lease of
    the process folding the task's pending events. (``pc``/``pp``, pending calls and points, were kept
    by the versions that counted them here.)"""

    meta = {"collection": "event_scalar_tasks"}

    id = StringField(primary_key=True)  # the task id
    company = StringField(required=True)
    s = DictField()
    pc = IntField()
    pp = IntField()
    fold_until = DateTimeField()


class ScalarBlock(DynamicDocument):
    """A series' points of one block of iterations, sorted by iteration (``i``, ``t``, ``v`` packed)."""

    meta = {"collection": "event_scalar_blocks"}

    id = StringField(primary_key=True)  # "<series id>:<block>"
    company = StringField(required=True)
    task = StringField(required=True)
    series = StringField(required=True)
    block = IntField(required=True)  # iteration // block_iterations
    n = IntField()
    i = BinaryField()
    t = BinaryField()
    v = BinaryField()


class SeriesOverview(DynamicDocument):
    """A series' chart overview: its iterations in groups of ``width``, each group's lowest and highest
    point as packed columns ``lo_i``, ``lo_t``, ``lo_v``, ``hi_i``, ``hi_t``, ``hi_v`` in group order."""

    meta = {"collection": "event_series_groups"}

    id = StringField(primary_key=True)  # the series id
    company = StringField(required=True)
    task = StringField(required=True)
    width = IntField()


class SeriesCoarseOverviews(DynamicDocument):
    """A task's coarse overviews, all series in one document: ``s.<k>`` = {width and the packed
    columns of ``SeriesOverview``}, with fewer groups."""

    meta = {"collection": "event_series_coarse"}

    id = StringField(primary_key=True)  # the task id
    company = StringField(required=True)
    task = StringField(required=True)
    s = DictField()


# Console lines (``database/events/logs.py``):


class LogBlock(DynamicDocument):
    """Up to a block's worth of a task's lines: ``lines`` = [{id, timestamp, msg, level, worker, iter}]."""

    meta = {"collection": "event_log_blocks"}

    id = StringField(primary_key=True)  # "<task>:<seq>"
    company = StringField(required=True)
    task = StringField(required=True)
    seq = IntField(required=True)
    n = IntField()
    lines = ListField(DictField())


class LogHead(DynamicDocument):
    """One task's log: ``total`` lines, the open block ``seq`` with its ``open_n`` lines and
    ``open_bytes``, per block its earliest and latest timestamp (``t0``, ``t1``: packed int64), and
    ``ver``, the version writers check."""

    meta = {"collection": "event_log_heads"}

    id = StringField(primary_key=True)  # the task id
    company = StringField(required=True)
    task = StringField(required=True)
    total = LongField()
    seq = IntField()
    open_n = IntField()
    open_bytes = LongField()
    t0 = BinaryField()
    t1 = BinaryField()
    ver = StringField()
