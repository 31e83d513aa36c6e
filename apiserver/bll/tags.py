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
