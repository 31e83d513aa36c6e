"""Owns the writes every kind that sits in a project (tasks, models) shares: moving objects into a
project or out of every project, and counting, listing, moving, detaching or deleting the company's
objects in given projects.

TaskBLL and ModelBLL call these with their own collection; other domains (project deletion and
merging) ask TaskBLL and ModelBLL, never the collections. Only the caller's company's objects are
touched: public ones stay where they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiserver.database.model.base import utcnow


def _placed_in(project: str | None, touch: bool = True) -> dict[str, Any]:
    """The update that puts an object into ``project`` (None: out of any project), noting
    ``last_update`` when ``touch``."""
    update: dict[str, Any] = {"$set": {"project": project}} if project else {"$unset": {"project": ""}}
    if touch:
        update.setdefault("$set", {})["last_update"] = utcnow()
    return update


def in_projects(company: str, project_ids: list[str]) -> dict[str, Any]:
    """The company's objects in any of ``project_ids``."""
    return {"company": company, "project": {"$in": list(project_ids)}}


def move(coll: Any, company: str, ids: list[str], project: str | None, check_writable: Callable[[str], Any]
         ) -> str | None:
    """Put the objects ``ids`` into ``project`` (None: out of any project), each checked with
    ``check_writable`` before anything moves; answers ``project``."""
    for object_id in ids:
        check_writable(object_id)
    coll.update_many({"_id": {"$in": ids}, "company": company}, _placed_in(project))
    return project


def count(coll: Any, company: str, project_ids: list[str]) -> int:
    return coll.count_documents(in_projects(company, project_ids))


def find(coll: Any, company: str, project_ids: list[str], proj: dict[str, int]) -> list[dict[str, Any]]:
    return list(coll.find(in_projects(company, project_ids), proj))


def move_all(coll: Any, company: str, source: str, target: str) -> int:
    """Move every object of ``source`` into ``target``; how many moved."""
    return coll.update_many(in_projects(company, [source]), _placed_in(target)).modified_count


def detach(coll: Any, company: str, project_ids: list[str], touch: bool = True) -> int:
    """Take the objects in these projects out of any project (``touch``: and note ``last_update``);
    how many changed."""
    return coll.update_many(in_projects(company, project_ids), _placed_in(None, touch)).modified_count


def delete(coll: Any, company: str, project_ids: list[str]) -> int:
    return coll.delete_many(in_projects(company, project_ids)).deleted_count
