"""Build the upgrade fixture: a small data folder made by this release from real ClearML SDK runs, and
the answers this release gives for it (tests/test_upgrade.py starts every later version on it).

    .venv/bin/python scripts/make_upgrade_fixture.py

starts ``python -m apiserver`` on a new data folder (embedded database, local file store), runs a
ClearML SDK script (a task with scalars, console lines, an output model and an artifact file), reads
the answers back through the API, stops the server and writes
``tests/fixtures/upgrade-data.tar.gz`` (the folder, without its lock, log and pid files) and
``tests/fixtures/upgrade-data.json`` (what was recorded, and the release and schema version that made
it). Run it at a release, after its last stored-shape change, and commit both files.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apiserver import __version__  # noqa: E402
from apiserver.bll.migrations import SCHEMA_VERSION  # noqa: E402
from tests.helpers import ServerProcess  # noqa: E402
from tests.test_clearml_sdk_files import make_workdir, run_sdk  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
ARCHIVE = FIXTURES / "upgrade-data.tar.gz"
ANSWERS = FIXTURES / "upgrade-data.json"
DB_NAME = "upgrade_fixture"
LEFT_OUT = {"embedded.lock", "embedded.log", "embedded.json"}  # this run's process, not data

RUN = """
import json
from clearml import OutputModel, Task

task = Task.init(project_name="upgrade-fixture", task_name="trained", output_uri=True, reuse_last_task_id=False,
                 auto_connect_frameworks=False, auto_resource_monitoring=False)
task.connect({"lr": 0.01, "epochs": 3})
logger = task.get_logger()
for i in range(20):
    logger.report_scalar("loss", "train", value=1.0 / (i + 1), iteration=i)
    logger.report_scalar("accuracy", "val", value=i / 20, iteration=i)
for i in range(5):
    logger.report_text(f"epoch {i} done")
with open("notes.txt", "w") as f:
    f.write("an artifact file\\n" * 20)
task.upload_artifact("notes", "notes.txt", wait_on_upload=True)
with open("weights.bin", "wb") as f:
    f.write(bytes(range(256)) * 16)
model = OutputModel(task=task, name="fixture-net", framework="PyTorch")
model.update_weights(weights_filename="weights.bin")
task.flush(wait_for_uploads=True)
task.close()
print("RESULT", json.dumps({"task": task.id, "model": model.id}))
"""


def answers(server: ServerProcess, task_id: str, model_id: str) -> dict[str, Any]:
    """What a later version must answer the same for this data (tests/test_upgrade.py reads it the same way)."""
    api = server.admin()
    task = api.call("tasks.get_by_id", task=task_id)["task"]
    model = api.call("models.get_by_id", model=model_id)["model"]
    scalars = api.call("events.scalar_metrics_iter_histogram", task=task_id)
    log = api.call("events.get_task_log", task=task_id, batch_size=1000, navigate_earlier=False)["events"]
    files = {}
    for uri in [a["uri"] for a in task["execution"].get("artifacts", []) if a.get("uri")] + [model["uri"]]:
        path = uri[uri.index("/files/"):]
        resp = requests.get(server.base_url + path, headers={"Authorization": api.auth}, timeout=30)
        assert resp.status_code == 200, (uri, resp.status_code)
        files[path] = hashlib.sha256(resp.content).hexdigest()
    return {
        "task": {k: task.get(k) for k in ("id", "name", "status", "type", "project", "last_iteration")}
        | {"artifacts": sorted(a["key"] for a in task["execution"].get("artifacts", [])),
           "hyperparams": task.get("hyperparams")},
        "model": {k: model.get(k) for k in ("id", "name", "framework", "task", "uri", "ready")},
        "scalars": {metric: {variant: {"x": s["x"], "y": s["y"]} for variant, s in variants.items()}
                    for metric, variants in scalars.items()},
        "log": sorted(e["msg"] for e in log),
        "files": files,
    }


def main() -> int:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="upgrade-fixture-") as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "data"
        server = ServerProcess(None, DB_NAME, workers=1, data_dir=data)
        server.start(tmp_path, timeout=120)
        try:
            work = make_workdir(server.base_url, tmp_path)
            made = run_sdk(work, RUN, "fixture_run.py")
            recorded = answers(server, made["task"], made["model"])
        finally:
            server.stop()
        with tarfile.open(ARCHIVE, "w:gz", compresslevel=9) as tar:
            tar.add(data, arcname="data", filter=lambda info: None if Path(info.name).name in LEFT_OUT else info)
    ANSWERS.write_text(json.dumps({"server_version": __version__, "schema_version": SCHEMA_VERSION,
                                   "database_name": DB_NAME, "answers": recorded}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {ARCHIVE} ({ARCHIVE.stat().st_size} bytes) and {ANSWERS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
