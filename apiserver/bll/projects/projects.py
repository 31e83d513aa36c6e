"""Owns project records: create, list, edit, move, and the project side of merging and deleting.

What happens to the tasks and models inside a project on merge or delete is orchestrated one layer
up (``bll/projects/merge.py``, ``bll/tasks/deletion.py``) through TaskBLL and ModelBLL; the reads of
what projects contain are ``bll/projects/contents.py``.
"""

from __future__ import annotations

import re
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import access
from apiserver.bll import query as q
from apiserver.bll.auth.identity import Identity
from apiserver.bll.projects import contents
from apiserver.bll.query import HIDDEN_TAG
from apiserver.bll.references import dereference, split_references
from apiserver.database.errors import DuplicateKeyError
from apiserver.database.model.auth import Company, User
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.project import Project
from apiserver.database.store import store_of

EDITABLE = ("name", "description", "tags", "system_tags", "default_output_destination", "events_retention_days")


def _check_name(name: str) -> str:
    name = name.strip()
    parts = name.split("/")
    if not name or any(not p.strip() for p in parts):
        raise errors.bad_request.InvalidProjectName("names are non-empty; nested names are 'a/b', no empty part",
                                                    name=name)
    return "/".join(p.strip() for p in parts)


class ProjectBLL:
    @property
    def store(self):
        return store_of(Project)

    def readable(self, company: str, project_id: str, proj: dict | None = None) -> dict[str, Any]:
        return access.readable(self.store, company, project_id, errors.bad_request.InvalidProjectId, proj)

    def writable(self, company: str, project_id: str) -> dict[str, Any]:
        return access.writable(self.store, company, project_id, errors.bad_request.InvalidProjectId, "projects")

    def set_public(self, company: str, ids: list[str], public: bool) -> int:
        return access.set_public(self.store, company, ids, public, errors.bad_request.InvalidProjectId)

    def create(self, identity: Identity, data: dict[str, Any]) -> str:
        """A new project; the parents of a nested name ('a/b/c') are created when missing."""
        name = _check_name(data["name"])
        path = self._ensure_parents(identity, name)
        doc = self._new_doc(identity, name, path, data)
        try:
            self.store.insert_one(doc)
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
        if data.get("events_retention_days") is not None:
            doc["events_retention_days"] = data["events_retention_days"]
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
            found = self.store.find_one({"company": identity.company, "name": ancestor}, {"_id": 1})
            if found is None:
                tags = [HIDDEN_TAG] if parts[depth - 1].startswith(".") else []
                doc = self._new_doc(identity, ancestor, list(path), {"system_tags": tags})
                try:
                    self.store.insert_one(doc)
                    found = doc
                except DuplicateKeyError:  # created meanwhile by another call
                    found = self.store.find_one({"company": identity.company, "name": ancestor}, {"_id": 1})
            path.append(found["_id"])
        return path

    def ensure(self, identity: Identity, name: str, system_tags: list[str] | None = None) -> str:
        """The id of the company's project of this name, created (with its parents) when missing."""
        name = _check_name(name)
        found = self.store.find_one({"company": identity.company, "name": name}, {"_id": 1})
        if found:
            return found["_id"]
        try:
            return self.create(identity, {"name": name, "system_tags": system_tags or []})
        except errors.bad_request.ExpectedUniqueData:
            return self.store.find_one({"company": identity.company, "name": name}, {"_id": 1})["_id"]

    def destination(self, identity: Identity, project: str | None, project_name: str | None) -> str | None:
        """Where tasks or models move: a project given by id (it must be readable), or by name
        (created, parents too, when missing); None (neither): out of any project."""
        if project_name and not project:
            return self.ensure(identity, project_name)
        if project:
            self.readable(identity.company, project, {"_id": 1})
        return project

    def events_retention(self) -> dict[str, int]:
        """{project id: days} of the projects (all companies) that set their own events retention."""
        return {d["_id"]: int(d["events_retention_days"])
                for d in self.store.find({"events_retention_days": {"$type": "number"}}, {"events_retention_days": 1})}

    def with_children(self, company: str, project_ids: list[str]) -> list[str]:
        """The projects and every project nested below them."""
        names = [d["name"] for d in self.store.find({"_id": {"$in": project_ids}, "company": {"$in": [company, ""]}},
                                                   {"name": 1})]
        ids = list(project_ids)
        for name in names:
            below = {"company": {"$in": [company, ""]}, "name": {"$regex": "^" + re.escape(name + "/")}}
            ids += [d["_id"] for d in self.store.find(below, {"_id": 1})]
        return list(dict.fromkeys(ids))

    def get_by_id(self, company: str, project_id: str) -> dict[str, Any]:
        return q.api_id(self.readable(company, project_id))

    def build_query(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        scope = {"company": {"$in": [company, ""]} if data.get("allow_public") is not False else company}
        query = q.listing_filter(data, scope, store=self.store,
                                 patterns=("name", "basename"),
                                 lists=("tags", "system_tags", "user"), excludable=("tags", "system_tags", "user"),
                                 text=("name", "description"))
        return q.combine(query, self._nesting_filter(data))

    def get_all(self, company: str, data: dict[str, Any], ex: bool = False, within: list[str] | None = None
                ) -> list[dict[str, Any]]:
        """The listing; ``within``: only among these project ids."""
        query = self.build_query(company, data)
        if within is not None:
            query = q.combine(query, {"_id": {"$in": within}})
        skip, limit = q.page_window(data)
        sort = q.order_by(data.get("order_by"), q.FIELD_IDS, default=(("name", 1),))
        refs = {"user": store_of(User), "company": store_of(Company), "parent": store_of(Project)}
        only_fields, wanted = split_references(data.get("only_fields"), refs, ex)
        proj = q.projection(only_fields, q.FIELD_IDS)
        docs = [q.api_id(d) for d in self.store.find_page(query, sort, skip, limit, proj)]
        return dereference(docs, wanted, refs, company)

    @staticmethod
    def _nesting_filter(data: dict[str, Any]) -> dict[str, Any]:
        """``parent``: the projects below these (with ``shallow_search`` only one level below);
        ``shallow_search`` alone: top-level projects only."""
        parents = data.get("parent")
        if parents:
            parents = parents if isinstance(parents, list) else [parents]
            return {"parent": {"$in": parents}} if data.get("shallow_search") else {"path": {"$in": parents}}
        return {"parent": None} if data.get("shallow_search") else {}

    def get_all_ex(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """get_all as ClearML's ``get_all_ex`` answers it (see ``bll/projects/contents.py``):

        - ``children_type`` (pipeline, dataset, report) lists only the projects holding such children
          and the projects above them; ``active_users`` only those holding projects, tasks or models
          of these users (and counts only theirs in the statistics);
        - each project's ``sub_projects``: every project nested below it (hidden ones only with
          ``search_hidden``, or for pipelines and reports), none when ``stats_with_children`` is false;
        - ``include_stats``: ``stats`` for ``stats_for_state`` (active by default, null for both) over
          the tasks ``include_stats_filter`` (or the ``children_type``) selects, rolled up from those
          subprojects; for ``children_type: dataset`` the count and tags of the dataset projects;
        - ``check_own_contents``: ``own_tasks``/``own_models`` (``own_datasets`` for datasets) directly
          inside; ``include_dataset_stats``: ``dataset_stats`` of the latest dataset version;
        - with ``search_hidden``, a hidden project says ``hidden: true``.
        """
        users = data.get("active_users") or None
        within = allowed = None
        if data.get("children_type") or users:
            within, allowed = contents.selected_projects(company, data)
            if not within:
                return []
        shown = data
        only_fields = data.get("only_fields")
        strip_tags = bool(data.get("search_hidden") and only_fields and "*" not in only_fields
                          and "system_tags" not in only_fields)
        if strip_tags:
            shown = {**data, "only_fields": [*only_fields, "system_tags"]}
        projects = self.get_all(company, shown, ex=True, within=within)
        ids = [p["id"] for p in projects]
        if not ids:
            return projects
        datasets = data.get("children_type") == "dataset"
        filter_, counts_hidden = contents.stats_filter(data)
        match = contents.filter_match(filter_, users)
        with_children = data.get("stats_with_children") is not False
        below = contents.nested(company, ids, counts_hidden or datasets, allowed) if with_children else \
            {p: [] for p in ids}
        family = {p: [p, *(c["id"] for c in below[p])] for p in ids}
        stats: dict[str, Any] = {}
        if data.get("include_stats") and datasets:
            stats = contents.dataset_stats(company, ids, family, match)
        elif data.get("include_stats"):
            states = ["active", "archived"] if "stats_for_state" in data and data["stats_for_state"] is None \
                else [data.get("stats_for_state") or "active"]
            stats = contents.project_stats(company, ids, states, family, match)
        own: dict[str, Any] = {}
        if data.get("check_own_contents"):
            own = contents.own_datasets(company, ids, match) if datasets else contents.own_counts(
                company, ids, q.combine(match, contents.state_match(data.get("stats_for_state", "active"))))
        versions = contents.dataset_versions(company, ids, users) if data.get("include_dataset_stats") else {}
        for project in projects:
            pid = project["id"]
            project["sub_projects"] = below[pid]
            if stats:
                project["stats"] = stats[pid]
            if versions:
                project["dataset_stats"] = versions[pid]
            project.update(own.get(pid, {}))
            if data.get("search_hidden"):
                tags = project.pop("system_tags", []) if strip_tags else project.get("system_tags") or []
                if HIDDEN_TAG in tags:
                    project["hidden"] = True
        return projects

    def move(self, identity: Identity, project_id: str, new_location: str | None) -> int:
        """Put a project (with everything below it) under the project named ``new_location``
        (created when missing; empty: the top level); how many projects were renamed."""
        project = self.writable(identity.company, project_id)
        new_name = f"{_check_name(new_location)}/{project['basename']}" if new_location else project["basename"]
        return self._rename_tree(identity, project, new_name)

    def _rename_tree(self, identity: Identity, project: dict[str, Any], new_name: str) -> int:
        new_name = _check_name(new_name)
        if new_name == project["name"]:
            return 0
        if new_name.startswith(project["name"] + "/"):
            raise errors.bad_request.InvalidProjectName("a project cannot move below itself", name=new_name)
        if self.store.find_one({"company": identity.company, "name": new_name}, {"_id": 1}):
            raise errors.bad_request.ExpectedUniqueData("a project with this name exists", name=new_name)
        path = self._ensure_parents(identity, new_name)
        old_prefix, old_depth = project["name"], len(project.get("path") or [])
        below = list(self.store.find({"company": identity.company, "path": project["_id"]}, {"name": 1, "path": 1}))
        now = utcnow()
        self.store.update_one({"_id": project["_id"]}, {"$set": {
            "name": new_name, "basename": new_name.rsplit("/", 1)[-1], "path": path,
            "parent": path[-1] if path else None, "last_update": now}})
        for doc in below:
            self.store.update_one({"_id": doc["_id"]}, {"$set": {
                "name": new_name + doc["name"][len(old_prefix):],
                "path": path + (doc.get("path") or [])[old_depth:], "last_update": now}})
        return 1 + len(below)

    def merge_pair(self, identity: Identity, project_id: str, destination: str
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The source and destination of a merge, both writable; a project never merges into itself
        or a project below it."""
        source = self.writable(identity.company, project_id)
        target = self.writable(identity.company, destination)
        if target["_id"] == source["_id"] or source["_id"] in (target.get("path") or []):
            raise errors.bad_request.InvalidProjectId("a project cannot merge into itself or a project below it",
                                                      id=destination)
        return source, target

    def merge_records(self, identity: Identity, source: dict[str, Any], target: dict[str, Any]) -> int:
        """After its tasks and models moved (see ``bll/projects/merge.py``): the source's subprojects go
        below the target and the source is deleted; how many subprojects moved."""
        moved_projects = 0
        for child in list(self.store.find({"company": identity.company, "parent": source["_id"]})):
            moved_projects += bool(self._rename_tree(identity, child, f"{target['name']}/{child['basename']}"))
        self.store.delete_one({"_id": source["_id"], "company": identity.company})
        return moved_projects

    def validate_delete(self, company: str, project_id: str) -> dict[str, int]:
        """What deleting the project (with its subprojects) would touch, as ClearML counts it."""
        self.readable(company, project_id, {"_id": 1})
        return contents.delete_counts(company, self.family(company, project_id))

    def update(self, identity: Identity, project_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Edit a project. A new name keeps the project where it is (moving is ``move``) and renames
        the projects nested below it with it, as ClearML does."""
        project = self.writable(identity.company, project_id)
        fields = {k: data[k] for k in EDITABLE if k in data}
        if not fields:
            return {}
        if "name" in fields:
            fields["name"] = _check_name(fields["name"])
            if fields["name"].rpartition("/")[0] != project["name"].rpartition("/")[0]:
                raise errors.bad_request.CannotUpdateProjectLocation(
                    "a new name keeps the project's location; use projects.move", name=fields["name"])
            fields["basename"] = fields["name"].rsplit("/", 1)[-1]
            try:
                self._rename_tree(identity, project, fields["name"])
            except DuplicateKeyError:  # taken meanwhile
                raise errors.bad_request.ExpectedUniqueData("a project with this name exists", name=fields["name"]) \
                    from None
        fields["last_update"] = utcnow()
        self.store.update_one({"_id": project_id, "company": identity.company}, {"$set": fields})
        return fields

    def family(self, company: str, project_id: str) -> list[str]:
        """The project and every project nested below it."""
        return contents.descendants(company, [project_id])[project_id]

    def delete_records(self, company: str, project_id: str, family: list[str]) -> dict[str, int]:
        """Delete the project records of ``family`` (the project and those below it; their tasks and
        models were dealt with first, see ``bll/tasks/deletion.py``)."""
        below = [i for i in family if i != project_id]
        removed = self.store.delete_many({"_id": {"$in": below}, "company": company}).deleted_count if below else 0
        removed += self.store.delete_one({"_id": project_id, "company": company}).deleted_count
        return {"deleted": removed, "deleted_projects": removed}  # both count the subprojects, as ClearML's deleted
