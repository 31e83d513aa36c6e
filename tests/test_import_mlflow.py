"""`python -m apiserver import mlflow` from a real `mlflow server` (the session's, tests/mlflow_env.py): a run
with three params, two metrics of 100 steps each, an artifact and a registered model version arrives
complete, with MLflow's ids and timestamps. The first import runs with no server on the folder (it starts
the folder's database itself), the second beside the server (it joins its database) and adds nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime
from uuid import uuid4

import requests

from tests.helpers import ROOT, ServerProcess, free_port

LOG_RUN = textwrap.dedent('''
    import json, os, sys
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    url, experiment, model_name = sys.argv[1:4]
    client = MlflowClient(url)
    exp_id = client.create_experiment(experiment)
    base = 1_700_000_000_000
    run = client.create_run(exp_id, run_name="mover", start_time=base, tags={"team": "vision"})
    run_id = run.info.run_id
    metrics = [Metric(key, value, base + 1000 * step + (7 if key == "acc" else 0), step)
               for step in range(100) for key, value in (("loss", 1.0 / (step + 1)), ("acc", step / 100))]
    client.log_batch(run_id, metrics=metrics,
                     params=[Param("lr", "0.01"), Param("epochs", "100"), Param("optimizer", "sgd")])
    os.makedirs("model", exist_ok=True)
    with open("model/weights.bin", "wb") as f:
        f.write(os.urandom(50_000))
    with open("notes.txt", "w") as f:
        f.write("imported from mlflow\\n")
    client.log_artifact(run_id, "notes.txt")
    client.log_artifacts(run_id, "model", artifact_path="model")
    client.set_terminated(run_id, "FINISHED", end_time=base + 200_000)
    client.create_registered_model(model_name)
    version = client.create_model_version(model_name, source=f"runs:/{run_id}/model", run_id=run_id)
    print("RESULT", json.dumps({"run": run_id, "experiment": exp_id, "version": version.version,
                                "created": version.creation_timestamp}))
''')


def ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def test_import_mlflow_brings_a_run_complete_with_mlflows_timestamps(mlflow_stack, tmp_path):
    experiment, model_name = f"moving-{uuid4().hex[:6]}", f"mover's-{uuid4().hex[:6]}"  # quoted in MLflow's filter
    (tmp_path / "log_run.py").write_text(LOG_RUN)
    out = subprocess.run([str(mlflow_stack.python), "log_run.py", mlflow_stack.tracking_url, experiment, model_name],
                         cwd=tmp_path, env=mlflow_stack.env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    logged = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    folder = tmp_path / "data"
    server = ServerProcess(None, "apiserver", workers=1, data_dir=folder, port=free_port())
    files = f"{server.base_url}/files"
    argv = [sys.executable, "-m", "apiserver", "--data-dir", str(folder), "import", "mlflow", "--from",
            mlflow_stack.tracking_url, "--experiment", experiment, "--files-url", files]
    first = subprocess.run(argv, cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    server.start(tmp_path)
    try:
        api = server.admin()
        run = logged["run"]
        task = api.call("tasks.get_by_id", task=run)["task"]
        assert (task["name"], task["status"], task["type"]) == ("mover", "completed", "training")
        assert ms(task["started"]) == ms(task["created"]) == 1_700_000_000_000
        assert ms(task["completed"]) == 1_700_000_200_000
        assert {k: v["value"] for k, v in task["hyperparams"]["Args"].items()} == \
            {"lr": "0.01", "epochs": "100", "optimizer": "sgd"}
        assert "team=vision" in task["tags"]
        project = api.call("projects.get_by_id", project=task["project"])["project"]
        assert project["name"] == experiment
        # every metric's history, with MLflow's steps and timestamps
        events = api.call("events.get_task_events", task=run, event_type="training_stats_scalar",
                          batch_size=1000)
        assert events["total"] == 200
        got = sorted((e["metric"], e["iter"], e["timestamp"], e["value"]) for e in events["events"])
        want = []
        for key in ("acc", "loss"):
            history = requests.get(f"{mlflow_stack.tracking_url}/api/2.0/mlflow/metrics/get-history",
                                   params={"run_id": run, "metric_key": key}, timeout=30).json()["metrics"]
            want += [(key, h["step"], h["timestamp"], h["value"]) for h in history]
        assert got == sorted(want)
        # artifacts copied into this server's /files, the same bytes
        proxy = f"{mlflow_stack.tracking_url}/api/2.0/mlflow-artifacts/artifacts/{logged['experiment']}/{run}/artifacts"
        artifacts = {a["key"]: a["uri"] for a in task["execution"]["artifacts"]}
        assert set(artifacts) == {"notes.txt", "model/weights.bin"}
        for key, uri in artifacts.items():
            assert uri.startswith(files + "/")
            mine = requests.get(uri, headers={"Authorization": api.auth}, timeout=30)
            assert mine.status_code == 200 and mine.content == requests.get(f"{proxy}/{key}", timeout=30).content
        # the registered model version: a model of the run, its file here
        models = api.call("models.get_all_ex", task=[run])["models"]
        assert len(models) == 1
        model = api.call("models.get_by_id", model=models[0]["id"])["model"]
        assert (model["name"], model["task"]) == (model_name, run)
        assert model["uri"] == artifacts["model/weights.bin"] and ms(model["created"]) == logged["created"]
        assert f"version:{logged['version']}" in model["tags"]
        # again, beside the running server: it joins the server's database and adds nothing
        second = subprocess.run(argv, cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        table = {line.split()[0]: line.split()[1:] for line in second.stdout.splitlines()[1:8]}
        assert all(row[0] == "0" and row[1] == "0" for row in table.values()), second.stdout
        assert api.call("events.get_task_events", task=run, event_type="training_stats_scalar",
                        batch_size=1)["total"] == 200
    finally:
        server.stop()
