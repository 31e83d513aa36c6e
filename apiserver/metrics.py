"""Owns the server's Prometheus metrics: the counters and histograms every process records into, the
multiprocess folder the gunicorn master prepares for them, and the text a scrape of ``/metrics`` answers.

Under gunicorn each worker writes its values to files in one folder (``prometheus_client``'s
multiprocess mode), so a scrape answered by any worker sums them all. The folder must be named in
``PROMETHEUS_MULTIPROC_DIR`` before ``prometheus_client`` is first imported in a process (it picks its
value class then), so this module imports it lazily: the master sets the variable
(``prepare_multiprocess_dir``) before it forks, and each worker creates the metrics on first use.
Without the variable (a test's in-process app) the values live in the process, as usual.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Request and database latencies in seconds: a fast read is milliseconds, an upload may take seconds.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNKNOWN_ENDPOINT = "unknown"  # a path that names no endpoint: never a label of its own (cardinality)


class _Metrics:
    """The metric objects of this process, made on first use (after the fork, see the module doc)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter("apiserver_requests", "Requests answered, by endpoint and HTTP status",
                                ["endpoint", "code"])
        self.latency = Histogram("apiserver_request_duration_seconds", "Time to answer a request, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS)
        self.db_latency = Histogram("apiserver_database_command_duration_seconds",
                                    "Time of one database command, by command name (failed ones included)",
                                    ["command"], buckets=LATENCY_BUCKETS)
        self.events = Counter("apiserver_events_stored", "Task events stored (scalars, console lines, plots...)")


_METRICS: _Metrics | None = None


def _metrics() -> _Metrics:
    global _METRICS
    if _METRICS is None:
        _METRICS = _Metrics()
    return _METRICS


# The labelled children by their labels: ``labels()`` takes a lock and builds a key on every call.
_REQUEST_CHILDREN: dict[tuple[str, int], tuple[Any, Any]] = {}
_COMMAND_CHILDREN: dict[str, Any] = {}


def observe_request(endpoint: str, code: int, seconds: float) -> None:
    children = _REQUEST_CHILDREN.get((endpoint, code))
    if children is None:
        m = _metrics()
        children = _REQUEST_CHILDREN[(endpoint, code)] = (m.requests.labels(endpoint, str(code)),
                                                           m.latency.labels(endpoint))
    children[0].inc()
    children[1].observe(seconds)


def observe_database_command(command: str, seconds: float) -> None:
    child = _COMMAND_CHILDREN.get(command)
    if child is None:
        child = _COMMAND_CHILDREN[command] = _metrics().db_latency.labels(command)
    child.observe(seconds)


def count_events_stored(count: int) -> None:
    if count:
        _metrics().events.inc(count)


def exposition(gauges: Iterable[tuple[str, str, list[tuple[dict[str, str], float]]]]) -> str:
    """The scrape's text: every process's counters and histograms, then ``gauges`` computed now
    ((name, help, [(labels, value), ...]) each)."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    _metrics()  # so a scrape before any request still lists the metric families
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client.multiprocess import MultiProcessCollector

        recorded = CollectorRegistry()
        MultiProcessCollector(recorded)
    else:
        recorded = REGISTRY

    class Now:
        def collect(self) -> Iterable[Any]:
            for name, text, samples in gauges:
                names = sorted({k for labels, _ in samples for k in labels})
                family = GaugeMetricFamily(name, text, labels=names)
                for labels, value in samples:
                    family.add_metric([labels.get(k, "") for k in names], value)
                yield family

    current = CollectorRegistry(auto_describe=False)
    current.register(Now())
    return (generate_latest(recorded) + generate_latest(current)).decode()


# -- the gunicorn master ---------------------------------------------------------------------------


def prepare_multiprocess_dir(configured: str = "") -> str:
    """Before forking: the folder the workers write to (``configured`` or a new temporary one), emptied
    of an earlier run's values, named in the environment the workers inherit. Returns it."""
    folder = configured or os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="apiserver-metrics-")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))
    os.environ[MULTIPROC_ENV] = folder
    return folder


def remove_multiprocess_dir(folder: str) -> None:
    """At the master's exit: a temporary folder goes (a configured one stays for the next start to empty)."""
    if os.path.basename(folder).startswith("apiserver-metrics-"):
        shutil.rmtree(folder, ignore_errors=True)
