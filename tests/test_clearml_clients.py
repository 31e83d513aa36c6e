"""The real ClearML clients against a real server process: the SDK's normal script flow, task reuse,
Task.create + Task.enqueue pulled and run by a real clearml-agent, and Task.get_tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import clearml  # noqa: F401 - a requirement (requirements-test.txt): missing, it is a failure, not a skip
import pytest

from tests.helpers import ADMIN_KEY, ADMIN_SECRET

SCRIPT = """
from clearml import Task
task = Task.init(project_name="sdk-e2e", task_name="train", auto_connect_frameworks=False,
                 auto_resource_monitoring=False)
params = task.connect({"lr": 0.1})
logger = task.get_logger()
for i in range(5):
    logger.report_scalar("loss", "train", value=1.0 / (i + 1), iteration=i)
print("hello from the script")
task.close()
print("TASK_ID", task.id)
"""

JOB = """
from clearml import Task
task = Task.init()
print("agent job running", task.id)
task.get_logger().report_scalar("acc", "val", value=0.9, iteration=1)
"""

ENQUEUE = """
from clearml import Task
task = Task.create(project_name="sdk-e2e", task_name="agent-job", script="job.py", working_directory=".",
                   packages=[], add_task_init_call=False)
Task.enqueue(task, queue_name="default")
print("TASK_ID", task.id)
found = Task.get_tasks(project_name="sdk-e2e", task_name="agent-j")
print("FOUND", ",".join(t.id for t in found))
"""


@pytest.fixture(scope="module")
def workdir(server, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clearml")
    (folder / "clearml.conf").write_text(textwrap.dedent(f"""
        api {{
          api_server: {server.base_url}
          web_server: {server.base_url}
          files_server: {server.base_url}
          credentials {{ access_key: "{ADMIN_KEY}", secret_key: "{ADMIN_SECRET}" }}
        }}
        sdk.development.vcs_repo_detect_async: false
        agent {{
          package_manager.type: pip
          venvs_dir: {folder}/venvs
          vcs_cache.enabled: false
        }}
    """))
    (folder / "home").mkdir()
    return folder


def client_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "CLEARML_CONFIG_FILE": str(workdir / "clearml.conf"), "HOME": str(workdir / "home"),
            "CLEARML_AGENT_SKIP_PIP_VENV_INSTALL": sys.executable, "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1",
            "PYTHONUNBUFFERED": "1"}


def run_python(workdir: Path, source: str, name: str) -> str:
    path = workdir / name
    path.write_text(source)
    proc = subprocess.run([sys.executable, name], cwd=workdir, env=client_env(workdir), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def task_id_of(output: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith("TASK_ID"))


def test_sdk_script_runs_and_is_reused(admin, workdir):
    first = task_id_of(run_python(workdir, SCRIPT, "train.py"))
    task = admin.call("tasks.get_by_id", task=first)["task"]
    assert task["status"] == "completed"
    assert task["hyperparams"]["General"]["lr"]["value"] == "0.1"
    assert "development" in task["system_tags"]
    assert admin.call("projects.get_by_id", project=task["project"])["project"]["name"] == "sdk-e2e"
    scalars = admin.call("events.scalar_metrics_iter_histogram", task=first)
    assert scalars["loss"]["train"]["x"] == [0, 1, 2, 3, 4]
    assert scalars["loss"]["train"]["y"][-1] == pytest.approx(0.2)
    assert task["last_iteration"] == 4
    last = next(iter(next(iter(task["last_metrics"].values())).values()))
    assert (last["metric"], last["variant"], last["min_value"], last["max_value"]) == ("loss", "train", 0.2, 1.0)
    logs = [e["msg"] for e in admin.call("events.get_task_log", task=first)["events"]]
    assert any("hello from the script" in line for line in logs)

    second = task_id_of(run_python(workdir, SCRIPT, "train.py"))
    assert second == first  # the SDK reset and reused its task
    assert admin.call("tasks.get_by_id", task=first)["task"]["status"] == "completed"


def test_task_create_enqueue_and_a_real_agent_runs_it(admin, workdir):
    (workdir / "job.py").write_text(JOB)
    out = run_python(workdir, ENQUEUE, "enqueue.py")
    task_id = task_id_of(out)
    assert task_id in next(line for line in out.splitlines() if line.startswith("FOUND"))
    assert admin.call("tasks.get_by_id", task=task_id)["task"]["status"] == "queued"
    log = open(workdir / "agent.log", "wb")  # noqa: SIM115 - closed below
    agent = subprocess.Popen([sys.executable, "-m", "clearml_agent", "--config-file", str(workdir / "clearml.conf"),
                              "daemon", "--queue", "default", "--foreground"], cwd=workdir, env=client_env(workdir),
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        status = None
        while time.monotonic() < deadline:
            status = admin.call("tasks.get_by_id", task=task_id)["task"]["status"]
            if status in ("completed", "failed", "stopped"):
                break
            time.sleep(1)
        workers = admin.call("workers.get_all")["workers"]
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(30)
        log.close()
    agent_log = (workdir / "agent.log").read_text(errors="replace")
    assert status == "completed", agent_log[-3000:]
    assert "agent job running" in agent_log
    assert workers and any(w["queues"] and w["queues"][0]["name"] == "default" for w in workers)
    scalars = admin.call("events.get_task_latest_scalar_values", task=task_id)["metrics"]
    assert scalars == [{"name": "acc", "variants": [{"name": "val", "last_value": 0.9}]}]
