"""Owns reading an MLflow tracking server through its REST API and handing it to the writer as ClearML's
records: experiments as projects, runs as tasks (status, start and end times, params as hyper-parameters,
tags, every metric's history with its steps and timestamps as scalars, artifacts copied into /files),
registered model versions as models linked to their runs.

Ids: a run keeps its id (32 hex digits, as a task's); an experiment's project is ``mlflow-<experiment id>``,
a user ``mlflow-<user name>``, a model version a hash of its name and version, so that every run of the
import names the same records. Artifacts are copied through the server's artifact proxy
(``mlflow-artifacts:``, what ``mlflow server`` serves by default); artifacts stored elsewhere stay links.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from apiserver.bll.events.events import SCALAR
from apiserver.bll.transfer.source import HttpSource, SourceError
from apiserver.bll.transfer.writer import Progress, TransferWriter

API = "api/2.0/mlflow"
PROXY = "api/2.0/mlflow-artifacts/artifacts"
STATUSES = {"RUNNING": "in_progress", "SCHEDULED": "created", "FINISHED": "completed", "FAILED": "failed",
            "KILLED": "stopped"}
PAGE = 1000


class MlflowSource(HttpSource):
    files_folder = "mlflow"

    def check(self) -> None:
        """The server answers MLflow's API (nothing is written before)."""
        self.call("GET", "experiments/search", max_results=1)

    def file_prefixes(self) -> list[str]:
        return [f"{self.base_url}/{PROXY}"]

    def call(self, method: str, endpoint: str, **data: Any) -> dict[str, Any]:
        url = f"{self.base_url}/{API}/{endpoint}"
        kwargs = {"params": data} if method == "GET" else {"json": data}
        resp = self.request(method, url, "the MLflow server", **kwargs)
        body = self.json_body(resp)
        if resp.status_code != 200 or body is None:
            message = (body or {}).get("message")
            raise SourceError(f"{url} is not an MLflow tracking server's API or failed (HTTP {resp.status_code})"
                              + (f": {message}" if message else ""))
        return body

    def pages(self, method: str, endpoint: str, key: str, **data: Any) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            answer = self.call(method, endpoint, **data, **({"page_token": token} if token else {}))
            yield from answer.get(key) or []
            token = answer.get("next_page_token")
            if not token:
                return

    def metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        return list(self.pages("GET", "metrics/get-history", "metrics", run_id=run_id, metric_key=key,
                               max_results=25000))

    def artifact_files(self, run_id: str, path: str = "") -> Iterator[dict[str, Any]]:
        answer = self.call("GET", "artifacts/list", run_id=run_id, **({"path": path} if path else {}))
        for item in answer.get("files") or []:
            if item.get("is_dir"):
                yield from self.artifact_files(run_id, item["path"])
            else:
                yield item


def _ms(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def _user_id(name: str) -> str:
    return "mlflow-" + re.sub(r"[^A-Za-z0-9_.@-]", "_", name or "unknown")


def _pairs(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {i["key"]: i.get("value") for i in items or []}


def import_mlflow(source: MlflowSource, writer: TransferWriter, experiment_names: list[str]) -> None:
    experiments = list(source.pages("POST", "experiments/search", "experiments", max_results=PAGE,
                                    view_type="ALL"))
    if experiment_names:
        missing = set(experiment_names) - {e["name"] for e in experiments}
        if missing:
            raise SourceError(f"no experiment named {', '.join(sorted(map(repr, missing)))} on the MLflow server")
        experiments = [e for e in experiments if e["name"] in experiment_names]
    runs = [r for e in experiments for r in source.pages("POST", "runs/search", "runs", max_results=PAGE,
                                                         experiment_ids=[e["experiment_id"]], run_view_type="ALL")]
    users = sorted({r["info"].get("user_id") or "" for r in runs})
    progress = Progress("users", len(users))
    for user in users:
        writer.put_user(_user_id(user), user or "unknown")
        progress.step()
    writer.put_projects([{"id": f"mlflow-{e['experiment_id']}", "name": e["name"],
                          "created": _ms(e.get("creation_time")), "last_update": _ms(e.get("last_update_time")),
                          "tags": [], "system_tags": ["archived"] if e.get("lifecycle_stage") == "deleted" else [],
                          "description": _pairs(e.get("tags")).get("mlflow.note.content", "")}
                         for e in experiments])
    progress = Progress("tasks", len(runs))
    copied: dict[str, dict[str, str]] = {}  # run id -> artifact path -> its URL here
    for run in runs:
        doc = _import_run(source, writer, run)
        if doc is not None:
            copied[doc["_id"]] = {a["key"]: a["uri"] for a in doc["execution"]["artifacts"].values()}
        progress.step()
    _import_models(source, writer, copied, runs)


def _import_run(source: MlflowSource, writer: TransferWriter, run: dict[str, Any]) -> dict[str, Any] | None:
    """The run as a task with its metrics and artifacts; answers the stored task (None: not written)."""
    info, data = run["info"], run.get("data") or {}
    run_id = info["run_id"]
    tags = _pairs(data.get("tags"))
    params = _pairs(data.get("params"))
    start, end = _ms(info.get("start_time")), _ms(info.get("end_time"))
    artifacts = []
    root = info.get("artifact_uri") or ""
    if root.startswith("mlflow-artifacts:"):
        base = f"{source.base_url}/{PROXY}/{quote(root.split(':', 1)[1].lstrip('/'))}"
        for item in source.artifact_files(run_id):
            artifacts.append({"key": item["path"], "type": "custom", "mode": "output",
                              "uri": f"{base}/{quote(item['path'])}", "content_size": int(item.get("file_size") or 0),
                              "timestamp": (end or start or 0) // 1000})
    task = {"id": run_id, "name": info.get("run_name") or tags.get("mlflow.runName") or run_id, "type": "training",
            "status": STATUSES.get(info.get("status"), "created"), "project": f"mlflow-{info['experiment_id']}",
            "user": _user_id(info.get("user_id") or ""), "created": start, "started": start, "completed": end,
            "last_update": end or start, "status_changed": end or start, "comment": tags.get("mlflow.note.content", ""),
            "tags": [f"{k}={v}" for k, v in sorted(tags.items()) if not k.startswith("mlflow.")],
            "system_tags": ["archived"] if info.get("lifecycle_stage") == "deleted" else [],
            "hyperparams": {"Args": {k: {"section": "Args", "name": k, "value": v, "type": ""}
                                     for k, v in params.items()}} if params else {},
            "configuration": {}, "script": {"entry_point": tags.get("mlflow.source.name", "")},
            "execution": {"artifacts": artifacts}, "output": {}, "models": {"input": [], "output": []}}
    doc = writer.put_task(task)
    if doc is None:
        return None
    keys = sorted({m["key"] for m in data.get("metrics") or []})
    histories = {key: source.metric_history(run_id, key) for key in keys}
    total = sum(len(h) for h in histories.values())
    if writer.events_current(run_id, {SCALAR: total}):
        writer.skip_events(total)
        return doc
    writer.replace_events(run_id, ([{"type": SCALAR, "metric": key, "variant": key, "iter": int(p.get("step") or 0),
                                     "timestamp": int(p["timestamp"]), "value": float(p["value"])} for p in points]
                                   for key, points in histories.items()))
    writer.restore_task(doc)
    return doc


def _versions_of(source: MlflowSource, name: str) -> list[dict[str, Any]]:
    """A registered model's versions. MLflow's filter strings have no escape (it only strips their quotes): a
    name with one kind of quote is quoted with the other; one with both is picked from every version."""
    for quote_mark in ("'", '"'):
        if quote_mark not in name:
            return list(source.pages("GET", "model-versions/search", "model_versions",
                                     filter=f"name={quote_mark}{name}{quote_mark}"))
    return [v for v in source.pages("GET", "model-versions/search", "model_versions") if v.get("name") == name]


def _import_models(source: MlflowSource, writer: TransferWriter, copied: dict[str, dict[str, str]],
                   runs: list[dict[str, Any]]) -> None:
    """Registered model versions of imported runs, as models of those runs (their files are the runs'
    artifacts, copied with them)."""
    projects = {r["info"]["run_id"]: f"mlflow-{r['info']['experiment_id']}" for r in runs}
    users = {r["info"]["run_id"]: _user_id(r["info"].get("user_id") or "") for r in runs}
    versions = [v for m in source.pages("GET", "registered-models/search", "registered_models", max_results=PAGE)
                for v in _versions_of(source, m["name"])]
    versions = [v for v in versions if v.get("run_id") in copied]
    progress = Progress("models", len(versions))
    for version in versions:
        digest = hashlib.md5(f"mlflow-model:{version['name']}:{version['version']}".encode()).hexdigest()  # noqa: S324
        uri = version.get("source") or ""
        match = re.match(r"runs:/([^/]+)/(.+)", uri)
        if match:  # the model's file here (or its folder, when it has several)
            files = [u for key, u in copied.get(match[1], {}).items()
                     if key == match[2] or key.startswith(match[2] + "/")]
            if files:
                uri = files[0] if len(files) == 1 else files[0].rsplit("/" + quote(match[2]) + "/", 1)[0] + "/" + \
                    quote(match[2])
        writer.put_model({"id": digest, "name": version["name"], "task": version["run_id"],
                          "project": projects.get(version["run_id"]), "user": users[version["run_id"]],
                          "comment": version.get("description", ""), "uri": uri, "ready": True, "framework": "",
                          "tags": [f"version:{version['version']}"] + ([version["current_stage"]]
                                                                         if version.get("current_stage") not in
                                                                         (None, "", "None") else []),
                          "system_tags": [], "created": _ms(version.get("creation_timestamp")),
                          "last_update": _ms(version.get("last_updated_timestamp")),
                          "metadata": [{"key": "mlflow_version", "type": "str", "value": str(version["version"])},
                                       {"key": "mlflow_source", "type": "str", "value": version.get("source", "")}]})
        progress.step()
