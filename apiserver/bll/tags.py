"""Owns the edits every tagged kind (tasks, models) shares: adding and removing user tags of
several objects, and archiving (the ``archived`` system tag)."""

from __future__ import annotations

from typing import Any

from apiserver.database.model.base import utcnow

ARCHIVED_TAG = "archived"

# ClearML's special kinds of content, by the system tag and task type that mark them: a pipeline is a
# project tagged 'pipeline' (under '<project>/.pipelines') run by 'controller' tasks; a dataset a project
# tagged 'dataset' (under '<project>/.datasets') with 'data_processing' version tasks; a report a task
# of type 'report' tagged 'reports' (in '<project>/.reports').
PIPELINE_TAG = "pipeline"
DATASET_TAG = "dataset"
REPORTS_TAG = "reports"
CONTROLLER_TYPE = "controller"
REPORT_TYPE = "report"
PIPELINES_FOLDER = ".pipelines"
DATASETS_FOLDER = ".datasets"
REPORTS_FOLDER = ".reports"


# Clients before API 2.3 knew no system_tags: they sent and read the system tags inside tags.
SYSTEM_TAGS_IN_TAGS_BEFORE = (2, 3)
# The tags such a client's tags hold that are system tags, per kind of object (each also as a "-tag"
# filter), and the prefixes of a task's system tags.
_LEGACY_SYSTEM_TAGS = {"task": ("active", ARCHIVED_TAG, "development"), "model": ("active", ARCHIVED_TAG),
                       "project": (ARCHIVED_TAG, "public", "default")}
_LEGACY_SYSTEM_PREFIXES = {"task": ("annotat",)}


def split_legacy_tags(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """An old client's request: its tags (values or a filter) split into tags and system_tags, unless it
    sent system_tags too."""
    tags = data.get("tags")
    if not isinstance(tags, list) or data.get("system_tags"):
        return data
    names = {n for name in _LEGACY_SYSTEM_TAGS.get(kind, ()) for n in (name, f"-{name}")}
    prefixes = _LEGACY_SYSTEM_PREFIXES.get(kind, ())
    system = [t for t in tags if t in names or t.lower().lstrip("-").startswith(prefixes)]
    return {**data, "tags": [t for t in tags if t not in system], "system_tags": system}


def merge_legacy_tags(answer: Any) -> Any:
    """An answer as an old client reads it: every object's system tags also in its tags (sorted)."""
    if isinstance(answer, list):
        return [merge_legacy_tags(item) for item in answer]
    if not isinstance(answer, dict):
        return answer
    out = {k: merge_legacy_tags(v) if isinstance(v, (dict, list)) else v for k, v in answer.items()}
    if out.get("system_tags"):
        out["tags"] = sorted(set(out.get("tags") or ()) | set(out["system_tags"]))
    return out


def update_tags(coll: Any, company: str, ids: list[str], add: list[str] | None, remove: list[str] | None) -> int:
    """Add then remove user tags of the company's objects among ``ids``; how many were matched."""
    flt = {"_id": {"$in": ids}, "company": company}
    updated = 0
    if add:
        updated = coll.update_many(flt, {"$addToSet": {"tags": {"$each": add}},
                                         "$set": {"last_update": utcnow()}}).matched_count
    if remove:
        updated = max(updated, coll.update_many(flt, {"$pull": {"tags": {"$in": remove}},
                                                      "$set": {"last_update": utcnow()}}).matched_count)
    return updated


def set_archived(coll: Any, object_id: str, archived: bool) -> bool:
    """Add or remove the ``archived`` system tag; whether anything changed."""
    op = "$addToSet" if archived else "$pull"
    return bool(coll.update_one({"_id": object_id}, {op: {"system_tags": ARCHIVED_TAG},
                                                     "$set": {"last_update": utcnow()}}).modified_count)
