"""Owns reading a ClearML server (ClearML's own, its hosted service, or this one) through ClearML's REST
API and handing what it holds to the writer: users as owners, projects, tasks with their events and
files, models, queues."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from apiserver.bll.events.events import EVENT_TYPES
from apiserver.bll.transfer.source import HttpSource, SourceError
from apiserver.bll.transfer.writer import Progress, TransferWriter, ref_id

PAGE = 200
EVENTS_PAGE = 5000
CLEARML_FILES_PORT = 8081  # ClearML's own deployments serve files on their own port


class ClearMLSource(HttpSource):
    """A ClearML server, signed in with an access key and secret key."""

    def __init__(self, base_url: str, access_key: str, secret_key: str, timeout: float = 60):
        super().__init__(base_url, timeout)
        self.access_key, self.secret_key = access_key, secret_key

    def sign_in(self) -> None:
        """auth.login with the key pair; SourceError saying what is wrong (nothing is written before)."""
        url = f"{self.base_url}/auth.login"
        resp = self.request("POST", url, "the ClearML server", auth=(self.access_key, self.secret_key), json={})
        body = self.json_body(resp)
        if resp.status_code in (401, 403):
            raise SourceError(f"the ClearML server at {self.base_url} refused the access key {self.access_key!r} "
                              f"and its secret key: {_message(body) or resp.reason}")
        token = ((body or {}).get("data") or {}).get("token")
        if resp.status_code != 200 or not token:
            raise SourceError(f"{url} is not a ClearML API (HTTP {resp.status_code}): "
                              f"{_message(body) or 'no token in the answer'}")
        self.headers = {"Authorization": f"Bearer {token}"}

    def file_prefixes(self) -> list[str]:
        """Where the source's files are: its /files (this server), ClearML's own file server on port 8081
        of the same host, and ``files.<domain>`` beside ``api.<domain>`` (ClearML's hosted service and
        its usual deployments); ``--source-files`` names any other."""
        parts = urlsplit(self.base_url)
        prefixes = [f"{self.base_url}/files"]
        if parts.hostname:
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            prefixes.append(urlunsplit((parts.scheme, f"{host}:{CLEARML_FILES_PORT}", "", "", "")))
            if host.startswith("api."):
                prefixes.append(urlunsplit((parts.scheme, "files." + host[4:], "", "", "")))
        return prefixes

    def call(self, endpoint: str, **data: Any) -> dict[str, Any]:
        url = f"{self.base_url}/{endpoint}"
        resp = self.request("POST", url, "the ClearML server", json=data)
        body = self.json_body(resp)
        if resp.status_code != 200 or body is None:
            raise SourceError(f"{endpoint} on {self.base_url} answered HTTP {resp.status_code}: "
                              f"{_message(body) or resp.reason}")
        return body.get("data") or {}

    def listing(self, endpoint: str, key: str, **data: Any) -> list[dict[str, Any]]:
        """Every record a get_all_ex answers, page by page in creation order."""
        out: list[dict[str, Any]] = []
        page = 0
        while True:
            batch = self.call(endpoint, page=page, page_size=PAGE, order_by=["created", "id"], **data).get(key) or []
            out.extend(batch)
            if len(batch) < PAGE:
                return out
            page += 1

    def event_total(self, task: str, event_type: str) -> int:
        return int(self.call("events.get_task_events", task=task, event_type=event_type,
                             batch_size=1).get("total") or 0)

    def events(self, task: str, event_type: str) -> Iterator[list[dict[str, Any]]]:
        """A task's events of one type, in batches, scrolled in time order."""
        scroll_id = None
        while True:  # to the empty page, not to ``total`` (a search engine may answer a capped total)
            answer = self.call("events.get_task_events", task=task, event_type=event_type, batch_size=EVENTS_PAGE,
                               order="asc", scroll_id=scroll_id)
            batch = answer.get("events") or []
            if not batch:
                return
            scroll_id = answer.get("scroll_id")
            yield [_event(e) for e in batch]


def _event(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("_id", "id", "@timestamp", "company", "task")}


def _message(body: dict[str, Any] | None) -> str:
    meta = (body or {}).get("meta") or {}
    return str(meta.get("result_msg") or "")


def selected_projects(projects: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The projects named (with everything nested below them, and the ones above for the hierarchy)."""
    if not names:
        return projects
    chosen = {p["name"] for p in projects if _named_or_below(p["name"], names)}
    missing = [n for n in names if n not in chosen]
    if missing:
        raise SourceError(f"no project named {', '.join(repr(n) for n in missing)} on the source")
    above = {"/".join(name.split("/")[:i]) for name in chosen for i in range(1, name.count("/") + 1)}
    return [p for p in projects if p["name"] in chosen | above]


def _named_or_below(name: str, names: list[str]) -> bool:
    return any(name == n or name.startswith(n + "/") for n in names)


def import_clearml(source: ClearMLSource, writer: TransferWriter, project_names: list[str]) -> None:
    """Everything the source holds (or the named projects' work) into this server, idempotently."""
    all_projects = source.listing("projects.get_all_ex", "projects", search_hidden=True)
    projects = selected_projects(all_projects, project_names)
    # tasks and models of the named projects and those below; the ones above are only the hierarchy's
    scope: dict[str, Any] = {"project": [p["id"] for p in projects if _named_or_below(p["name"], project_names)]} \
        if project_names else {}
    tasks = source.listing("tasks.get_all_ex", "tasks", search_hidden=True, **scope)
    models = source.listing("models.get_all_ex", "models", search_hidden=True, **scope)
    queues = source.listing("queues.get_all_ex", "queues")

    user_ids = sorted({u for r in (*projects, *tasks, *models) if (u := ref_id(r.get("user")))})
    try:
        names = {u["id"]: u.get("name") for u in source.call("users.get_all_ex", id=user_ids).get("users") or []} \
            if user_ids else {}
    except SourceError:  # a source that does not list users to this key: owners keep their ids as names
        names = {}
    progress = Progress("users", len(user_ids))
    for user_id in user_ids:
        writer.put_user(user_id, names.get(user_id) or user_id)
        progress.step()

    writer.put_projects(projects)
    progress = Progress("queues", len(queues))
    for queue in queues:  # the records first, so tasks name the queues here; entries once tasks exist
        writer.put_queue(queue)
        progress.step()
    progress = Progress("tasks", len(tasks))
    imported: set[str] = set()
    for task in tasks:
        doc = writer.put_task(task)
        if doc is not None:
            imported.add(task["id"])
            _copy_events(source, writer, task["id"], doc)
        progress.step()
    progress = Progress("models", len(models))
    for model in models:
        writer.put_model(model)
        progress.step()
    for queue in queues:
        writer.put_entries(queue, imported)


def _copy_events(source: ClearMLSource, writer: TransferWriter, task_id: str, doc: dict[str, Any]) -> None:
    totals = {kind: source.event_total(task_id, kind) for kind in EVENT_TYPES}
    if writer.events_current(task_id, totals):
        writer.skip_events(sum(totals.values()))
        return
    writer.replace_events(task_id, (batch for kind, total in totals.items() if total
                                    for batch in source.events(task_id, kind)))
    writer.restore_task(doc)
