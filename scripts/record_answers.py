"""Records the answers of a fixed script of API calls, so a change meant to keep behaviour (a storage
clean-up, a split of a module) can be checked to answer the same, call for call.

    .venv/bin/python scripts/record_answers.py OUT.json      # then: diff before.json after.json

The script runs in-process (the Flask app, no scheduler) on an embedded database of its own in a
temp folder: listings with filters, order and paging, a task's life (create, edit, parameters,
configuration, artifacts, enqueue, start, stop, reset, publish, clone), models, queues and their
entries, workers, events (scalars, the chart, log pages, debug images, plots), reports, ClearML
pipeline runs, project statistics and deletes of tasks, models and projects. Each answer is written
with what changes from run to run replaced: ids by their order of first appearance, times by a
marker. Errors are recorded too (status and subcode).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY, SECRET = "RECORDADMINKEY0000000000", "record-admin-secret-0123456789abcdef"
ID = re.compile(r"^[0-9a-f]{32}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
TIME_KEYS = {"created", "started", "completed", "last_update", "last_change", "published", "last_activity_time",
             "last_report_time", "register_time", "timestamp", "last_iteration_time", "status_changed",
             "active_duration", "dates", "uptime_sec", "expires", "token", "last_seen", "running_time",
             "scroll_id"}


class Normalizer:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def __call__(self, value: Any, key: str = "") -> Any:
        if key in TIME_KEYS and value is not None:
            return "<time>"
        if isinstance(value, dict):
            return {self._key(k): self(v, k) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return [self(v, key) for v in value]
        if isinstance(value, str):
            if ID.match(value):
                return self.ids.setdefault(value, f"<id{len(self.ids)}>")
            if ISO.match(value):
                return "<time>"
            return re.sub(r"[0-9a-f]{32}", lambda m: self.ids.setdefault(m.group(0), f"<id{len(self.ids)}>"), value)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 1_000_000_000_000:
            return "<ms>"
        return value

    def _key(self, key: str) -> str:
        return self(key) if isinstance(key, str) and ID.match(key) else key


def script(api, record) -> None:  # noqa: PLR0915 - one long script, read top to bottom
    """The calls, in order; ``record(name, **data)`` calls and records, and returns the answer."""
    project = record("projects.create", name="rec", description="recorded")["id"]
    sub = record("projects.create", name="rec/sub")["id"]
    tasks = [record("tasks.create", name=f"t{i}", type="training", project=project if i % 2 else sub,
                    tags=[f"tag{i % 3}"], comment=f"task {i}")["id"] for i in range(6)]
    record("tasks.edit", task=tasks[0], comment="edited", script={"repository": "r", "entry_point": "e.py"})
    record("tasks.edit_hyper_params", task=tasks[0], hyperparams=[
        {"section": "Args", "name": "lr", "value": "0.1", "type": "float"},
        {"section": "Args", "name": "epochs", "value": "3"}, {"section": "General", "name": "seed", "value": "1"}])
    record("tasks.get_hyper_params", tasks=[tasks[0]])
    record("tasks.delete_hyper_params", task=tasks[0], hyperparams=[{"section": "General"}])
    record("tasks.edit_configuration", task=tasks[0], configuration=[
        {"name": "cfg", "value": "a: 1", "type": "yaml"}, {"name": "other", "value": "{}"}])
    record("tasks.get_configurations", tasks=[tasks[0]], names=["cfg"])
    record("tasks.get_configuration_names", tasks=[tasks[0]])
    record("tasks.add_or_update_artifacts", task=tasks[0], artifacts=[
        {"key": "a", "type": "custom", "uri": "s3://b/a.bin", "mode": "output"}])
    record("tasks.get_by_id", task=tasks[0])
    queue = record("queues.create", name="rec-q", tags=["x"])["id"]
    record("queues.add_or_update_metadata", queue=queue, metadata=[{"key": "k", "value": "v", "type": "str"}])
    for task in tasks[:3]:
        record("tasks.enqueue", task=task, queue=queue)
    record("queues.get_by_id", queue=queue)
    record("queues.get_all_ex", name="rec-q")
    record("queues.move_task_forward", queue=queue, task=tasks[2], count=1)
    record("tasks.dequeue", task=tasks[1])
    record("workers.register", worker="rec-worker", queues=[queue])
    record("queues.get_next_task", queue=queue)
    record("tasks.started", task=tasks[2])
    record("workers.status_report", worker="rec-worker", timestamp=1_700_000_000_000, task=tasks[2])
    record("workers.get_all")
    record("events.add_batch", _batch=[
        {"task": tasks[2], "type": "training_stats_scalar", "metric": "loss", "variant": v, "iter": i,
         "value": i * (2 if v == "train" else 3) / 10, "timestamp": 1_700_000_000_000 + i}
        for i in range(40) for v in ("train", "val")] + [
        {"task": tasks[2], "type": "log", "msg": f"line {i}", "level": "info", "timestamp": 1_700_000_000_000 + i}
        for i in range(30)] + [
        {"task": tasks[2], "type": "training_debug_image", "metric": "img", "variant": "v", "iter": i,
         "url": f"s3://b/img{i}.png"} for i in range(3)] + [
        {"task": tasks[2], "type": "plot", "metric": "p", "variant": "v", "iter": 0, "plot_str": '{"data": []}'}])
    record("events.scalar_metrics_iter_histogram", task=tasks[2], samples=10)
    record("events.get_task_metrics", tasks=[tasks[2]])
    record("events.get_task_log", task=tasks[2], batch_size=10)
    record("events.get_task_log", task=tasks[2], batch_size=10, navigate_earlier=False)
    record("events.debug_images", metrics=[{"task": tasks[2], "metric": "img"}], iters=2)
    record("events.get_task_plots", task=tasks[2])
    record("events.get_scalar_metrics_and_variants", task=tasks[2])
    record("events.get_task_latest_scalar_values", task=tasks[2])
    record("tasks.stopped", task=tasks[2], force=True)
    record("tasks.get_by_id", task=tasks[2])
    record("tasks.reset", task=tasks[2])
    record("tasks.started", task=tasks[3], force=True)
    record("tasks.completed", task=tasks[3])
    record("tasks.publish", task=tasks[3])
    clone = record("tasks.clone", task=tasks[0], new_task_name="clone")["id"]
    record("tasks.get_all", project=[project], only_fields=["name", "status", "tags"], order_by=["name"])
    record("tasks.get_all_ex", project=[sub], only_fields=["name", "status", "project.name"], order_by=["-name"],
           page=0, page_size=2)
    record("tasks.get_all_ex", tags=["tag1"], only_fields=["name"], order_by=["name"])
    record("tasks.get_all_ex", status=["queued", "created"], only_fields=["name", "status"], order_by=["name"])
    record("tasks.get_all", only_fields=["name"], order_by=["nonsense_field", "name"])
    record("tasks.get_types", projects=[project])
    record("tasks.archive", tasks=[tasks[4]])
    record("tasks.get_all_ex", system_tags=["archived"], only_fields=["name"])
    model = record("models.create", name="m1", uri="s3://b/m1.bin", project=project, task=tasks[0])["id"]
    record("models.update_for_task", task=tasks[0], uri="s3://b/out.bin", name="out")
    record("models.get_all", project=[project], only_fields=["name", "uri", "task"], order_by=["name"])
    record("models.get_all_ex", task=[tasks[0]], only_fields=["name", "ready"], order_by=["name"])
    record("models.set_ready", model=model)
    record("models.get_by_id", model=model)
    record("tasks.get_by_id", task=tasks[0])
    report = record("reports.create", name="rec report", project=project)["id"]
    record("reports.update", task=report, report="# hello")
    record("reports.get_all_ex", only_fields=["name", "report"])
    record("projects.get_all_ex", id=[project, sub], include_stats=True, only_fields=["name", "stats"])
    record("projects.get_all_ex", name="rec", shallow_search=True, only_fields=["name"])
    record("projects.get_task_tags", projects=[project])
    record("projects.validate_delete", project=project)
    record("reports.delete", task=report, force=True)
    record("models.delete", model=model, force=True)
    record("tasks.delete", task=clone)
    record("tasks.delete", task=tasks[5], _allow_error=True)
    record("tasks.delete_many", ids=tasks[4:6], force=True)
    record("queues.delete", queue=queue, force=True)
    record("projects.delete", project=sub, force=True, delete_contents=True)
    record("projects.delete", project=project, _allow_error=True)
    record("projects.delete", project=project, force=True, delete_contents=True)
    record("projects.get_all_ex", only_fields=["name"], order_by=["name"])
    record("tasks.get_all_ex", only_fields=["name", "status"], order_by=["name"])


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    if out is None:
        print(__doc__)
        return 2
    from apiserver.database.embedded import EmbeddedDatabase

    with tempfile.TemporaryDirectory() as tmp:
        db = EmbeddedDatabase(Path(tmp) / "db")
        uri = db.ensure_running()
        try:
            os.environ.update({"APISERVER_ADMIN_ACCESS_KEY": KEY, "APISERVER_ADMIN_SECRET_KEY": SECRET})
            from apiserver.app import create_app
            from tests.helpers import ApiClient, ApiError

            app = create_app(overrides={"database.uri": uri, "database.name": "record", "auth.bcrypt_rounds": 4,
                                        "files.local.dir": str(Path(tmp) / "files"), "webapp.enabled": False},
                             start_scheduler=False)
            api = ApiClient(flask_client=app.test_client()).login(KEY, SECRET)
            norm = Normalizer()
            answers: list[Any] = []

            def record(endpoint: str, /, _allow_error: bool = False, _batch: list | None = None, **data: Any) -> Any:
                if _batch is not None:
                    status, body, _ = api.request("POST", f"/{endpoint}", raw="\n".join(json.dumps(e) for e in _batch),
                                                  headers={"Content-Type": "application/json-lines"})
                    answers.append({"call": endpoint, "status": status, "answer": norm(body.get("data"))})
                    return body.get("data")
                try:
                    got = api.call(endpoint, **data)
                except ApiError as exc:
                    if not _allow_error:
                        raise
                    answers.append({"call": endpoint, "request": norm(data), "error": [exc.code, exc.subcode]})
                    return None
                answers.append({"call": endpoint, "request": norm(data), "answer": norm(got)})
                return got

            script(api, record)
            out.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
            print(f"{len(answers)} answers written to {out}")
        finally:
            db.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
