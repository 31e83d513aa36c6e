"""Owns project records: create, list, edit, delete (refused while tasks use them unless forced)."""

from __future__ import annotations

import re
from typing import Any

from pymongo.errors import DuplicateKeyError

from apiserver.apierrors import errors
from apiserver.bll import access
from apiserver.bll import query as q
from apiserver.bll.auth.identity import Identity
from apiserver.bll.query import HIDDEN_TAG
from apiserver.database.model.auth import User
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.model import Model
from apiserver.database.model.project import Project
from apiserver.database.model.task import Task

EDITABLE = ("name", "description", "tags", "system_tags", "default_output_destination")


def _check_name(name: str) -> str:
    name = name.strip()
    parts = name.split("/")
    if not name or any(not p.strip() for p in parts):
        raise errors.bad_request.InvalidProjectName("names are non-empty; nested names are 'a/b', no empty part",
                                                    name=name)
    return "/".join(p.strip() for p in parts)


class ProjectBLL:
    @property
    def coll(self):
        return Project._get_collection()

    def readable(self, company: str, project_id: str, proj: dict | None = None) -> dict[str, Any]:
        return access.readable(self.coll, company, project_id, errors.bad_request.InvalidProjectId, proj)

    def writable(self, company: str, project_id: str) -> dict[str, Any]:
        return access.writable(self.coll, company, project_id, errors.bad_request.InvalidProjectId, "projects")

    def create(self, identity: Identity, data: dict[str, Any]) -> str:
        """A new project; the parents of a nested name ('a/b/c') are created when missing."""
        name = _check_name(data["name"])
        path = self._ensure_parents(identity, name)
        doc = self._new_doc(identity, name, path, data)
        try:
            self.coll.insert_one(doc)
        except DuplicateKeyError:
            raise errors.bad_request.ExpectedUniqueData("a project with this name exists", name=name) from None
        return doc["_id"]

    @staticmethod
    def _new_doc(identity: Identity, name: str, path: list[str], data: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        doc = {"_id": new_id(), "company": identity.company, "user": identity.user, "name": name,
               "basename": name.rsplit("/", 1)[-1], "description": data.get("description", ""),
               "tags": data.get("tags") or [], "system_tags": data.get("system_tags") or [],
               "default_output_destination": data.get("default_output_destination"), "created": now,
               "last_update": now, "path": path}
        if path:
            doc["parent"] = path[-1]
        return doc

    def _ensure_parents(self, identity: Identity, name: str) -> list[str]:
        """Ids of the ancestors of a nested name, root first, creating the missing ones.

        A created ancestor whose own name part starts with '.' (ClearML's '.datasets', '.pipelines')
        is hidden, as the projects inside it are.
        """
        parts = name.split("/")
        path: list[str] = []
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            found = self.coll.find_one({"company": identity.company, "name": ancestor}, {"_id": 1})
            if found is None:
                tags = [HIDDEN_TAG] if parts[depth - 1].startswith(".") else []
                doc = self._new_doc(identity, ancestor, list(path), {"system_tags": tags})
                try:
                    self.coll.insert_one(doc)
                    found = doc
                except DuplicateKeyError:  # created meanwhile by another call
                    found = self.coll.find_one({"company": identity.company, "name": ancestor}, {"_id": 1})
            path.append(found["_id"])
        return path

    def ensure(self, identity: Identity, name: str, system_tags: list[str] | None = None) -> str:
        """The id of the company's project of this name, created (with its parents) when missing."""
        name = _check_name(name)
        found = self.coll.find_one({"company": identity.company, "name": name}, {"_id": 1})
        if found:
            return found["_id"]
        try:
            return self.create(identity, {"name": name, "system_tags": system_tags or []})
        except errors.bad_request.ExpectedUniqueData:
            return self.coll.find_one({"company": identity.company, "name": name}, {"_id": 1})["_id"]

    def with_children(self, company: str, project_ids: list[str]) -> list[str]:
        """The projects and every project nested below them."""
        names = [d["name"] for d in self.coll.find({"_id": {"$in": project_ids}, "company": {"$in": [company, ""]}},
                                                   {"name": 1})]
        ids = list(project_ids)
        for name in names:
            below = {"company": {"$in": [company, ""]}, "name": {"$regex": "^" + re.escape(name + "/")}}
            ids += [d["_id"] for d in self.coll.find(below, {"_id": 1})]
        return list(dict.fromkeys(ids))

    def get_by_id(self, company: str, project_id: str) -> dict[str, Any]:
        return q.api_id(self.readable(company, project_id))

    def get_all(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        query = q.listing_filter(data, {"company": {"$in": [company, ""]}}, coll=self.coll,
                                 patterns=("name", "basename"),
                                 lists=("tags", "system_tags", "user"), excludable=("tags", "system_tags", "user"),
                                 text=("name", "description"))
        skip, limit = q.page_bounds(data.get("page"), data.get("page_size"))
        sort = q.order_by(data.get("order_by"), {"id": "_id"}, default=(("name", 1),))
        proj = q.projection(data.get("only_fields"), {"id": "_id"})
        return [q.api_id(d) for d in q.find_page(self.coll, query, sort, skip, limit, proj)]

    def update(self, identity: Identity, project_id: str, data: dict[str, Any]) -> dict[str, Any]:
        self.writable(identity.company, project_id)
        fields = {k: data[k] for k in EDITABLE if k in data}
        if "name" in fields:
            fields["name"] = _check_name(fields["name"])
            fields["basename"] = fields["name"].rsplit("/", 1)[-1]
        if not fields:
            return {}
        fields["last_update"] = utcnow()
        try:
            self.coll.update_one({"_id": project_id, "company": identity.company}, {"$set": fields})
        except DuplicateKeyError:
            raise errors.bad_request.ExpectedUniqueData("a project with this name exists", name=fields["name"]) \
                from None
        return fields

    def delete(self, identity: Identity, project_id: str, force: bool, delete_contents: bool) -> dict[str, Any]:
        self.writable(identity.company, project_id)
        tasks = Task._get_collection()
        in_use = tasks.count_documents({"company": identity.company, "project": project_id})
        if in_use and not force:
            raise errors.bad_request.ProjectHasTasks(f"{in_use} tasks; use force to delete", project=project_id)
        deleted_tasks = disassociated = 0
        if in_use and delete_contents:
            deleted_tasks = tasks.delete_many({"company": identity.company, "project": project_id}).deleted_count
        elif in_use:
            disassociated = tasks.update_many({"company": identity.company, "project": project_id},
                                              {"$unset": {"project": ""}, "$set": {"last_update": utcnow()}}
                                              ).modified_count
        deleted = self.coll.delete_one({"_id": project_id, "company": identity.company}).deleted_count
        return {"deleted": deleted, "disassociated_tasks": disassociated, "deleted_tasks": deleted_tasks}

    def user_names(self, company: str, projects: list[str] | None, entity: str | None) -> list[dict[str, Any]]:
        """The users who own the entity's (task's or model's) objects in ``projects`` (all when none)."""
        coll = (Model if entity == "model" else Task)._get_collection()
        ids = q.distinct_values(coll, company, projects, "user")
        users = User._get_collection().find({"_id": {"$in": ids}, "company": company}, {"name": 1})
        return sorted(({"id": u["_id"], "name": u.get("name")} for u in users),
                      key=lambda u: (u["name"] or "", u["id"]))

    def task_tags(self, company: str, projects: list[str] | None) -> dict[str, list[str]]:
        coll = Task._get_collection()
        return {field: q.distinct_values(coll, company, projects, field, unwind=True)
                for field in ("tags", "system_tags")}
