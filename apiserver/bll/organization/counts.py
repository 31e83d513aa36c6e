"""Owns organization.get_entities_count, the web app's global search: how many readable objects of
each kind match that kind's own listing filter (the filter language and rules of its
``get_all_ex``), counted up to ``MAX_COUNT`` each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiserver.bll.tags import REPORT_TYPE

MAX_COUNT = 10_000

# Each entity of the request and the listing ("tasks", "models", "projects") that answers it:
# datasets and pipelines are projects, their versions and runs are tasks, reports are report tasks.
KINDS = {"projects": "projects", "tasks": "tasks", "models": "models", "datasets": "projects",
         "pipelines": "projects", "pipeline_runs": "tasks", "dataset_versions": "tasks", "reports": "tasks"}

Query = Callable[[str, dict[str, Any]], dict[str, Any]]


class EntityCounts:
    def __init__(self, listings: dict[str, tuple[Any, Query]]):
        """``listings``: "tasks"/"models"/"projects" -> (collection, that listing's build_query)."""
        self.listings = listings

    def count(self, company: str, filters: dict[str, dict[str, Any]], common: dict[str, Any]) -> dict[str, int]:
        """``filters``: entity -> its checked listing filter; ``common`` (``search_hidden``,
        ``allow_public``) applies where an entity's own filter does not say otherwise."""
        answer = {}
        for entity, flt in filters.items():
            coll, build = self.listings[KINDS[entity]]
            data = {**common, **flt}
            if entity == "reports":
                data = {**data, "type": [REPORT_TYPE], "search_hidden": True}
            answer[entity] = coll.count(build(company, data), MAX_COUNT)
        return answer
