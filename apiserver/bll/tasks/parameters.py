"""Owns a task's parameters: hyper-parameters by section, configuration items and artifacts, and
the rule that only a task still being set up (created, or forced) has its parameters changed."""

from __future__ import annotations

from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import query as q
from apiserver.bll.auth.identity import Identity
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.base import TaskBase
from apiserver.bll.tasks.fields import (
    artifact_id,
    escape_key,
    unescape_key,
)
from apiserver.database.model.base import utcnow

USER_PROPERTIES = "properties"


def _config_key(name: str, field: str) -> str:
    """A configuration item's name as its stored key; a name no key can hold is a 400 naming ``field``."""
    return q.field_path(escape_key(name), field)


class TaskParameters(TaskBase):
    """Hyper-parameters, configuration and artifacts of a task."""

    def add_or_update_artifacts(self, identity: Identity, task_id: str,
                                artifacts: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        task = self.writable(identity.company, task_id)
        existing = ((task.get("execution") or {}).get("artifacts") or {})
        added, updated = [], []
        sets = {}
        for artifact in artifacts:
            art = {"mode": "output", **artifact}
            key = artifact_id(art)
            (updated if key in existing else added).append(art["key"])
            sets[f"execution.artifacts.{key}"] = art
        if sets:
            sets["last_update"] = utcnow()
            self.store.update_one({"_id": task["_id"], "company": identity.company}, {"$set": sets})
        return added, updated

    def delete_artifacts(self, identity: Identity, task_id: str, artifacts: list[dict[str, Any]],
                         force: bool = False) -> int:
        """Remove the artifacts named by key and mode (output when not given); a published task's
        only with force. Answers 1 when the task changed."""
        task = self.writable(identity.company, task_id)
        if task["status"] == st.PUBLISHED and not force:
            raise errors.bad_request.InvalidTaskStatus("artifacts of a published task are deleted only with force",
                                                       status=task["status"])
        existing = (task.get("execution") or {}).get("artifacts") or {}
        gone = {f"execution.artifacts.{key}": 1 for key in {artifact_id(a) for a in artifacts} if key in existing}
        if not gone:
            return 0
        self.store.update_one({"_id": task["_id"], "company": identity.company},
                              {"$unset": gone, "$set": {"last_update": utcnow()}})
        return 1

    def _check_params_editable(self, task: dict[str, Any], sections: set[str], force: bool) -> None:
        """Created tasks, or any with force; the 'properties' section (user properties, which the
        SDK sets on its own running task) in any status but published."""
        if force or task["status"] == st.CREATED:
            return
        if sections and sections <= {USER_PROPERTIES} and task["status"] != st.PUBLISHED:
            return
        raise errors.bad_request.InvalidTaskStatus("hyper-parameters of a task that is not created change only "
                                                   "with force", status=task["status"])

    def edit_hyper_params(self, identity: Identity, task_id: str, items: list[dict[str, Any]],
                          replace: str = "none", force: bool = False) -> int:
        task = self.writable(identity.company, task_id)
        self._check_params_editable(task, {i.get("section") or "" for i in items}, force)
        given: dict[str, dict[str, Any]] = {}
        for item in items:
            given.setdefault(escape_key(item["section"]), {})[escape_key(item["name"])] = item
        if replace == "all":
            update = {"$set": {"hyperparams": given}}
        elif replace == "section":
            update = {"$set": {f"hyperparams.{sec}": params for sec, params in given.items()}}
        else:
            update = {"$set": {f"hyperparams.{sec}.{name}": item for sec, params in given.items()
                               for name, item in params.items()}}
        if not update["$set"] and replace != "all":
            return 0
        if not isinstance(task.get("hyperparams"), dict):  # null: no nested $set below it
            self.store.update_one({"_id": task["_id"], "company": identity.company, "hyperparams": None},
                                 {"$set": {"hyperparams": {}}})
        update["$set"]["last_update"] = utcnow()
        return self.store.update_one({"_id": task["_id"], "company": identity.company}, update).modified_count

    def delete_hyper_params(self, identity: Identity, task_id: str, keys: list[dict[str, Any]],
                            force: bool = False) -> int:
        """Delete parameters by section and name; an empty name deletes the whole section."""
        task = self.writable(identity.company, task_id)
        self._check_params_editable(task, {k.get("section") or "" for k in keys}, force)
        unset = {}
        for key in keys:
            path = f"hyperparams.{escape_key(key['section'])}"
            unset[path + (f".{escape_key(key['name'])}" if key.get("name") else "")] = ""
        if not unset:
            return 0
        update = {"$unset": {k: "" for k in q.prune_nested(list(unset))}, "$set": {"last_update": utcnow()}}
        return self.store.update_one({"_id": task["_id"], "company": identity.company}, update).modified_count

    def get_hyper_params(self, company: str, task_ids: list[str]) -> list[dict[str, Any]]:
        docs = self.store.find({"_id": {"$in": task_ids}, "company": {"$in": [company, ""]}}, {"hyperparams": 1})
        return [{"task": d["_id"], "hyperparams": sorted((  # by section and name, as ClearML lists them
            {**item, "section": unescape_key(sec), "name": unescape_key(name)}
            for sec, params in (d.get("hyperparams") or {}).items() for name, item in params.items()),
            key=lambda p: (p["section"], p["name"]))} for d in docs]

    def get_configurations(self, company: str, task_ids: list[str], names: list[str] | None = None
                           ) -> list[dict[str, Any]]:
        proj = {f"configuration.{_config_key(n, 'names')}": 1 for n in names} if names else {"configuration": 1}
        docs = self.store.find({"_id": {"$in": task_ids}, "company": {"$in": [company, ""]}}, proj)
        return [{"task": d["_id"], "configuration": [{**item, "name": unescape_key(name)} for name, item in
                                                     sorted((d.get("configuration") or {}).items())]}
                for d in docs]

    def get_configuration_names(self, company: str, task_ids: list[str], skip_empty: bool = True
                                ) -> list[dict[str, Any]]:
        return [{"task": c["task"], "names": [i["name"] for i in c["configuration"]
                                              if not skip_empty or i.get("value")]}
                for c in self.get_configurations(company, task_ids)]

    def edit_configuration(self, identity: Identity, task_id: str, items: list[dict[str, Any]],
                           replace: bool = False, force: bool = False) -> int:
        task = self.writable(identity.company, task_id)
        self._check_params_editable(task, set(), force)
        given = {_config_key(i["name"], "configuration.name"): i for i in items}
        if replace:
            sets: dict[str, Any] = {"configuration": given}
        else:
            if not isinstance(task.get("configuration"), dict):  # null: no nested $set below it
                self.store.update_one({"_id": task["_id"], "company": identity.company, "configuration": None},
                                     {"$set": {"configuration": {}}})
            sets = {f"configuration.{name}": item for name, item in given.items()}
        if not sets:
            return 0
        return self.store.update_one({"_id": task["_id"], "company": identity.company},
                                    {"$set": {**sets, "last_update": utcnow()}}).modified_count

    def delete_configuration(self, identity: Identity, task_id: str, names: list[str], force: bool = False) -> int:
        task = self.writable(identity.company, task_id)
        self._check_params_editable(task, set(), force)
        present = [n for n in names if _config_key(n, "configuration") in (task.get("configuration") or {})]
        if not present:
            return 0
        self.store.update_one({"_id": task["_id"], "company": identity.company},
                             {"$unset": {f"configuration.{escape_key(n)}": "" for n in present},
                              "$set": {"last_update": utcnow()}})
        return len(present)
