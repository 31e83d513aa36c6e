"""The real ClearML SDK against real server processes with the file server at /files: artifacts,
output and input models, debug images, clearml-data datasets and a PipelineController, on the
local-folder store and (artifacts and models) on GridFS. Every SDK call carries the credentials
of clearml.conf and files.public_read stays off, so these runs also show that the SDK sends its
token on uploads, downloads and get_local_copy."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import clearml  # noqa: F401 - a requirement (requirements-test.txt): missing, it is a failure, not a skip
import pytest
import requests
from pymongo import MongoClient

from tests.helpers import ADMIN_KEY, ADMIN_SECRET, ServerProcess

WRITE = """
import hashlib, json, os
import numpy as np
from clearml import OutputModel, Task

task = Task.init(project_name="files-e2e", task_name="artifacts", output_uri=True, reuse_last_task_id=False,
                 auto_connect_frameworks=False, auto_resource_monitoring=False)
task.upload_artifact("config", {"lr": 0.1, "layers": [1, 2, 3]}, metadata={"origin": "e2e", "rows": 3},
                     wait_on_upload=True)
blob = os.urandom(3 * 1024 * 1024)
with open("blob.bin", "wb") as f:
    f.write(blob)
task.upload_artifact("blob", "blob.bin", wait_on_upload=True)
weights = os.urandom(300_000)
with open("weights.bin", "wb") as f:
    f.write(weights)
model = OutputModel(task=task, name="net", framework="PyTorch")
model.update_weights(weights_filename="weights.bin")
image = np.zeros((16, 24, 3), dtype=np.uint8)
image[:, :12] = 255
task.get_logger().report_image("samples", "first", iteration=3, image=image)
task.flush(wait_for_uploads=True)
task.close()
print("RESULT", json.dumps({"task": task.id, "model": model.id, "model_uri": model.url,
                            "blob": hashlib.sha256(blob).hexdigest(),
                            "weights": hashlib.sha256(weights).hexdigest()}))
"""

READ = """
import hashlib, json, sys
from clearml import InputModel, Task

task = Task.get_task(task_id=sys.argv[1])
config = task.artifacts["config"].get()
blob = open(task.artifacts["blob"].get_local_copy(), "rb").read()
weights = open(InputModel(model_id=sys.argv[2]).get_weights(), "rb").read()
samples = task.get_debug_samples("samples", "first")
print("RESULT", json.dumps({"config": config, "metadata": task.artifacts["config"].metadata,
                            "blob": hashlib.sha256(blob).hexdigest(),
                            "blob_uri": task.artifacts["blob"].url,
                            "weights": hashlib.sha256(weights).hexdigest(),
                            "output_models": [m.id for m in task.models["output"]],
                            "images": [s["url"] for s in samples]}))
"""

DATASET = """
import filecmp, json, os
from clearml import Dataset

dataset = Dataset.create(dataset_name="toy", dataset_project="files-e2e")
dataset.add_files("data")
dataset.upload()
dataset.finalize()
copy = Dataset.get(dataset_id=dataset.id).get_local_copy()
mine, theirs = [], []
for root, _, names in os.walk("data"):
    for name in names:
        rel = os.path.relpath(os.path.join(root, name), "data")
        mine.append(rel)
for root, _, names in os.walk(copy):
    for name in names:
        theirs.append(os.path.relpath(os.path.join(root, name), copy))
match, mismatch, errors = filecmp.cmpfiles("data", copy, mine, shallow=False)
print("RESULT", json.dumps({"id": dataset.id, "mine": sorted(mine), "theirs": sorted(theirs),
                            "match": sorted(match), "mismatch": mismatch, "errors": errors}))
"""

PIPELINE = """
import json
from clearml import PipelineController, Task

def make_numbers(n):
    return list(range(n))

def total(numbers):
    print("SECOND STEP GOT", numbers)
    return sum(numbers), {"count": len(numbers), "numbers": numbers}

# pool_frequency: the controller looks at its steps every 0.6 s, not every 12 s (its default)
pipe = PipelineController(name="pipe-e2e", project="files-e2e", version="1.0.0", add_pipeline_tags=False,
                          pool_frequency=0.01)
pipe.add_function_step(name="make", function=make_numbers, function_kwargs={"n": 4},
                       function_return=["numbers"], cache_executed_step=False)
pipe.add_function_step(name="total", function=total, function_kwargs={"numbers": "${make.numbers}"},
                       function_return=["result", "summary"], cache_executed_step=False, parents=["make"])
pipe.start_locally(run_pipeline_steps_locally=True)
# The last step's outputs, read as a user (or a later step) reads them: a value of a basic type is
# stored as the step's parameter 'return/<name>', anything else as its artifact (the SDK's rule).
last = Task.get_task(task_id=pipe.get_pipeline_dag()["total"].executed)
print("RESULT", json.dumps({"id": pipe.id, "status": Task.get_task(pipe.id).get_status(),
                            "result": last.get_parameters(cast=True).get("return/result"),
                            "summary": last.artifacts["summary"].get()}))
"""


def make_workdir(base_url: str, folder: Path) -> Path:
    (folder / "clearml.conf").write_text(textwrap.dedent(f"""
        api {{
          api_server: {base_url}
          web_server: {base_url}
          files_server: {base_url}/files
          credentials {{ access_key: "{ADMIN_KEY}", secret_key: "{ADMIN_SECRET}" }}
        }}
        sdk.development.vcs_repo_detect_async: false
    """))
    (folder / "home").mkdir(exist_ok=True)
    return folder


def run_sdk(workdir: Path, source: str, name: str, *args: str, timeout: int = 300) -> dict:
    (workdir / name).write_text(source)
    env = {**os.environ, "CLEARML_CONFIG_FILE": str(workdir / "clearml.conf"), "HOME": str(workdir / "home"),
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, name, *args], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stdout[-4000:] + proc.stderr[-4000:]
    return {**json.loads(line[len("RESULT "):]), "_stdout": proc.stdout}


@pytest.fixture(scope="module")
def workdir(server, tmp_path_factory) -> Path:
    return make_workdir(server.base_url, tmp_path_factory.mktemp("sdk-files"))


@pytest.fixture(scope="module")
def gridfs_server(mongo_uri, db_name, tmp_path_factory):
    proc = ServerProcess(mongo_uri, f"{db_name}_grid", workers=2,
                         extra_env={"APISERVER__files__backend": "gridfs",
                                    "APISERVER__files__local__dir": str(tmp_path_factory.mktemp("unused"))})
    proc.start(tmp_path_factory.mktemp("grid-logs"))
    yield proc
    proc.stop()


def check_artifacts_and_model(server: ServerProcess, workdir: Path) -> dict:
    """Write with one SDK process, read back with another; returns what was written."""
    written = run_sdk(workdir, WRITE, "write.py")
    assert written["model_uri"].startswith(f"{server.base_url}/files/")
    read = run_sdk(workdir, READ, "read.py", written["task"], written["model"])
    assert read["config"] == {"lr": 0.1, "layers": [1, 2, 3]}
    assert read["metadata"] == {"origin": "e2e", "rows": "3"}  # artifact metadata, kept as ClearML keeps it
    assert read["blob"] == written["blob"] and read["blob_uri"].startswith(f"{server.base_url}/files/")
    assert read["weights"] == written["weights"]
    assert read["output_models"] == [written["model"]]
    admin = server.admin()
    listed = admin.call("models.get_all_ex", task=[written["task"]])["models"]
    assert [m["id"] for m in listed] == [written["model"]] and listed[0]["uri"] == written["model_uri"]
    task = admin.call("tasks.get_by_id", task=written["task"])["task"]
    assert [m["model"] for m in task["models"]["output"]] == [written["model"]]
    # the debug image's event URL downloads a valid image (with the caller's credentials)
    events = admin.call("events.debug_images", metrics=[{"task": written["task"], "metric": "samples"}])
    url = events["metrics"][0]["iterations"][0]["events"][0]["url"]
    assert read["images"] == [url] and url.startswith(f"{server.base_url}/files/")
    assert requests.get(url, timeout=30).status_code == 401  # files.public_read is off
    image = requests.get(url, headers={"Authorization": admin.auth}, timeout=30)
    assert image.status_code == 200 and image.headers["Content-Disposition"].startswith("inline")
    from PIL import Image

    assert Image.open(io.BytesIO(image.content)).size == (24, 16)
    return written


def test_sdk_artifacts_models_and_debug_images(server, workdir):
    written = check_artifacts_and_model(server, workdir)
    company_dirs = list(server.files_dir.iterdir())
    stored = [p for d in company_dirs for p in d.rglob("*") if p.is_file()]
    assert any(p.name == "blob.bin" and p.stat().st_size == 3 * 1024 * 1024 for p in stored)
    assert any(written["task"] in str(p) for p in stored)


def test_sdk_artifacts_and_models_on_gridfs(gridfs_server, mongo_uri, db_name, tmp_path):
    workdir = make_workdir(gridfs_server.base_url, tmp_path)
    written = check_artifacts_and_model(gridfs_server, workdir)
    files = MongoClient(mongo_uri)[f"{db_name}_grid"]["files.files"]
    names = [d["filename"] for d in files.find({}, {"filename": 1})]
    assert any(n.endswith("/blob.bin") and written["task"] in n for n in names)
    assert any(n.endswith("/weights.bin") for n in names)
    assert files.find_one({"filename": {"$regex": "blob.bin$"}})["length"] == 3 * 1024 * 1024


def test_clearml_data_dataset_round_trip(server, workdir):
    data = workdir / "data"
    (data / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
    (data / "top.txt").write_text("top level\n")
    (data / "nested" / "blob.bin").write_bytes(os.urandom(250_000))
    (data / "nested" / "deeper" / "table.csv").write_text("a,b\n1,2\n")
    result = run_sdk(workdir, DATASET, "dataset.py")
    assert result["mine"] == ["nested/blob.bin", "nested/deeper/table.csv", "top.txt"]
    assert result["theirs"] == result["mine"]
    assert result["match"] == result["mine"] and not result["mismatch"] and not result["errors"]
    admin = server.admin()
    task = admin.call("tasks.get_by_id", task=result["id"])["task"]
    assert task["status"] == "completed" and "dataset" in task["system_tags"]
    assert any(a["key"].startswith("data") and "/files/" in (a.get("uri") or "")
               for a in task["execution"]["artifacts"])
    # the dataset lives in hidden projects: listed only with search_hidden
    assert admin.call("projects.get_all", name="^files-e2e/\\.datasets")["projects"] == []
    hidden = admin.call("projects.get_all", name="^files-e2e/\\.datasets", search_hidden=True)["projects"]
    assert {p["name"] for p in hidden} >= {"files-e2e/.datasets", "files-e2e/.datasets/toy"}
    assert all("hidden" in p["system_tags"] for p in hidden)


def test_pipeline_controller_runs_two_function_steps(server, workdir):
    result = run_sdk(workdir, PIPELINE, "pipeline.py", timeout=420)
    assert "SECOND STEP GOT [0, 1, 2, 3]" in result["_stdout"]
    assert result["status"] == "completed"
    admin = server.admin()
    controller = admin.call("tasks.get_by_id", task=result["id"])["task"]
    assert controller["type"] == "controller" and controller["status"] == "completed"
    steps = admin.call("tasks.get_all", parent=result["id"], search_hidden=True)["tasks"]
    assert sorted(s["name"] for s in steps) == ["make", "total"]
    assert all(s["status"] == "completed" for s in steps)
    # the last step's return values: the int as its parameter, the dict as its artifact
    assert result["result"] == 6
    assert result["summary"] == {"count": 4, "numbers": [0, 1, 2, 3]}
