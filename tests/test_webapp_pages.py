"""Every page of the real ClearML web app, served by the server, with data the real SDK and agent
reported: a project, a finished task with hyperparameters, a configuration, scalars, a single value,
a plot, a debug image and console lines; a model; a queued task; a dataset; a pipeline run; a real
clearml-agent as a worker; a report. A password user signs in through the login page; each page must
show its data (every page names what it must show), no API call the app makes on it may answer an
error, and no script error may go uncaught on it. Screenshots of a failed page go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import clearml  # noqa: F401 - a requirement (requirements-test.txt): missing, it is a failure, not a skip
import pytest

from tests.helpers import ADMIN_KEY, ADMIN_SECRET, ARTIFACTS, ServerProcess, sign_in_page

# The packaged build, served at / with no flag; CLEARML_WEBAPP_DIR runs these pages on another build.
OTHER_BUILD = os.environ.get("CLEARML_WEBAPP_DIR")
USER, PASSWORD = "pages-user", "pages password 1"
PROJECT = "web-pages"

SEED = """
import json
import numpy as np
from clearml import OutputModel, Task

task = Task.init(project_name="web-pages", task_name="trainer", output_uri=True, reuse_last_task_id=False,
                 auto_connect_frameworks=False, auto_resource_monitoring=False)
task.connect({"lr": 0.25, "epochs": 7}, name="Args")
task.connect_configuration({"layers": [64, 32], "dropout": 0.1}, name="net-config")
logger = task.get_logger()
for i in range(20):
    logger.report_scalar("loss", "train", value=1.0 / (i + 1), iteration=i)
    logger.report_scalar("loss", "val", value=1.5 / (i + 1), iteration=i)
logger.report_single_value("best-acc", 0.93)
logger.report_scatter2d("scatter", "points", iteration=3, scatter=[(1, 2), (2, 3), (3, 5)])
image = np.zeros((16, 24, 3), dtype=np.uint8)
image[:, :12] = 255
logger.report_image("samples", "first", iteration=3, image=image)
for i in range(30):
    print(f"console line {i}")
with open("weights.bin", "wb") as f:
    f.write(b"w" * 1000)
model = OutputModel(task=task, name="pages-net", framework="PyTorch")
model.update_weights(weights_filename="weights.bin")
task.flush(wait_for_uploads=True)
task.close()
queued = Task.create(project_name="web-pages", task_name="queued-job", script="job.py", working_directory=".",
                     packages=[], add_task_init_call=False)
Task.enqueue(queued, queue_name="default")
print("RESULT", json.dumps({"task": task.id, "model": model.id, "queued": queued.id}))
"""

# A dataset and a pipeline run, for the datasets and pipelines pages (a process of their own: the
# controller is a task of its own).
SEED_MORE = """
import json
import os
from clearml import Dataset, PipelineController

os.makedirs("data", exist_ok=True)
with open("data/rows.csv", "w") as f:
    f.write("a,b\\n1,2\\n")
dataset = Dataset.create(dataset_name="pages-data", dataset_project="web-pages")
dataset.add_files("data")
dataset.upload()
dataset.finalize()

def make_numbers(n):
    return list(range(n))

pipe = PipelineController(name="pages-pipeline", project="web-pages", version="1.0.0", pool_frequency=0.01)
pipe.add_function_step(name="make", function=make_numbers, function_kwargs={"n": 4}, function_return=["numbers"],
                       cache_executed_step=False)
pipe.start_locally(run_pipeline_steps_locally=True)
print("RESULT", json.dumps({"dataset": dataset.id, "pipeline": pipe.id}))
"""


def _env(folder: Path) -> dict[str, str]:
    return {**os.environ, "CLEARML_CONFIG_FILE": str(folder / "clearml.conf"), "HOME": str(folder / "home"),
            "CLEARML_AGENT_SKIP_PIP_VENV_INSTALL": sys.executable, "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1",
            "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def site(mongo_uri, tmp_path_factory):
    """The server with the web app, seeded through the SDK, with a real agent serving queue 'gpu'."""
    users = f'[{{username: "{USER}", name: "Pages User", password: "{PASSWORD}", role: "admin"}}]'
    proc = ServerProcess(mongo_uri, f"pages_{time.time_ns()}", workers=2,
                         extra_env={"APISERVER__auth__fixed_users": users,
                                    "APISERVER__files__local__dir": str(tmp_path_factory.mktemp("pages-files"))})
    if OTHER_BUILD:
        proc.argv += ["--webapp", OTHER_BUILD]
    proc.start(tmp_path_factory.mktemp("pages-logs"))
    folder = tmp_path_factory.mktemp("pages-sdk")
    (folder / "home").mkdir()
    (folder / "job.py").write_text("print('job')\n")
    (folder / "clearml.conf").write_text(textwrap.dedent(f"""
        api {{
          api_server: {proc.base_url}
          web_server: {proc.base_url}
          files_server: {proc.base_url}/files
          credentials {{ access_key: "{ADMIN_KEY}", secret_key: "{ADMIN_SECRET}" }}
        }}
        sdk.development.vcs_repo_detect_async: false
        agent {{ package_manager.type: pip, venvs_dir: {folder}/venvs, vcs_cache.enabled: false }}
    """))
    (folder / "seed.py").write_text(SEED)
    agent = None
    try:
        out = subprocess.run([sys.executable, "seed.py"], cwd=folder, env=_env(folder), capture_output=True,
                             text=True, timeout=240)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        seeded = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))[7:])
        (folder / "seed_more.py").write_text(SEED_MORE)
        out = subprocess.run([sys.executable, "seed_more.py"], cwd=folder, env=_env(folder), capture_output=True,
                             text=True, timeout=240)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        seeded.update(json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))[7:]))
        log = open(folder / "agent.log", "wb")  # noqa: SIM115 - closed below
        agent = subprocess.Popen([sys.executable, "-m", "clearml_agent", "--config-file", str(folder / "clearml.conf"),
                                  "daemon", "--queue", "gpu", "--create-queue", "--foreground"], cwd=folder,
                                 env=_env(folder), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        admin = proc.admin()
        deadline = time.monotonic() + 90
        while not admin.call("workers.get_all")["workers"]:
            assert time.monotonic() < deadline, (folder / "agent.log").read_text()[-3000:]
            assert agent.poll() is None, (folder / "agent.log").read_text()[-3000:]
            time.sleep(0.5)
        seeded["worker"] = admin.call("workers.get_all")["workers"][0]["id"]
        seeded["project"] = admin.call("projects.get_all", name=f"^{PROJECT}$")["projects"][0]["id"]
        seeded["report"] = admin.call("reports.create", name="pages report", project=seeded["project"],
                                      report="# Pages report\nThe loss went down.")["id"]
        _seed_serving(admin, proc.base_url, seeded)
        proc.seeded = seeded
        yield proc
    finally:
        if agent is not None:
            agent.terminate()
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
        proc.stop()


def _seed_serving(admin, base_url: str, seeded: dict) -> None:
    """A serving container reporting on one endpoint (referring to the seeded model) and one loading,
    as clearml-serving's inference containers send them."""
    url = f"{base_url}/serve/pages-endpoint"
    serving = {"endpoint_name": "pages-endpoint", "model_name": "pages-net", "endpoint_url": url,
               "model_source": "ClearML", "preprocess_artifact": "py_code_pages", "input_type": "float32",
               "reference": [{"type": "model", "value": seeded["model"]}]}
    admin.call("serving.register_container", container_id="pages-serving-1", timeout=3600, **serving)
    admin.call("serving.container_status_report", container_id="pages-serving-1", uptime_sec=240, requests_num=42,
               requests_min=3.5, latency_ms=12, machine_stats={"cpu_usage": [10, 20]}, **serving)
    admin.call("serving.register_container", container_id="pages-serving-loading", endpoint_name="pages-loading",
               model_name="pages-net", timeout=3600)
    seeded["endpoint"] = str(uuid.uuid5(uuid.NAMESPACE_URL, url))  # the app's id of an endpoint: its URL's UUID5


@pytest.fixture(scope="module")
def session_page(site, browser):
    """One signed-in browser tab for all pages (signing in once keeps the module short)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    # The app asks ClearML's update service on every page; offline (here, and in CI) that call fails and
    # the app throws an uncaught Error("de") of its own, whatever the server answers. The service's
    # answer when there is no update keeps the page-error check below for what the server causes.
    context.route("https://updates.clear.ml/**",
                  lambda route: route.fulfill(status=200, content_type="application/json", body="{}"))
    page = context.new_page()
    page.api_log = []
    page.on("response", lambda r: page.api_log.append((r.status, r.url.rsplit("/", 1)[-1], r.request.post_data))
            if "/api/" in r.url else None)
    page.page_errors = []  # uncaught script errors: each fails the page it happened on
    page.on("pageerror", lambda exc: page.page_errors.append(f"{exc!r} at {exc.stack or 'no stack'}"))
    sign_in_page(page, site.base_url, USER, PASSWORD)
    assert page.page_errors == [], f"uncaught script errors while signing in: {page.page_errors}"
    yield page
    context.close()


@pytest.fixture()
def signed_in(session_page, request):
    yield session_page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        session_page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)


def _open(page, base_url: str, path: str, expected_texts: list[str], absent_texts: list[str]) -> None:
    """Open ``path``; every expected text (at least one) must show, no absent text may; no API call of
    the page may answer an error and no script error may go uncaught."""
    assert expected_texts, f"{path}: a page passes only on what it shows: name its expected text"
    page.api_log.clear()
    page.page_errors.clear()
    page.goto(base_url + path)
    for text in expected_texts:
        page.get_by_text(text, exact=False).filter(visible=True).first.wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle", timeout=30_000)
    failed = [(status, name, body) for status, name, body in page.api_log if status >= 400]
    assert failed == [], f"{path}: API calls that failed: {failed}"
    assert page.page_errors == [], f"{path}: uncaught script errors: {page.page_errors}"
    for text in absent_texts:
        assert page.get_by_text(text, exact=True).count() == 0, f"{path} shows {text!r}"


PAGES = {
    "dashboard": ("/dashboard", [PROJECT, "trainer"]),
    # Our own projects are not read-only examples (the app marks an entity whose company has no id).
    "projects": ("/projects", [PROJECT], ["EXAMPLE", "Example"]),
    "tasks table": ("/projects/{project}/tasks", ["trainer", "queued-job"]),
    "task execution": ("/projects/{project}/tasks/{task}/execution", ["trainer"]),
    "task hyperparameters": ("/projects/{project}/tasks/{task}/hyper-params/hyper-param/Args", ["lr", "0.25"]),
    "task configuration": ("/projects/{project}/tasks/{task}/hyper-params/configuration/net-config", ["dropout"]),
    "task artifacts": ("/projects/{project}/tasks/{task}/artifacts", ["pages-net"]),
    "task scalars": ("/projects/{project}/tasks/{task}/scalars", ["loss", "best-acc"]),
    "task plots": ("/projects/{project}/tasks/{task}/plots", ["scatter"]),
    "task debug images": ("/projects/{project}/tasks/{task}/debugImages", ["samples"]),
    "task console": ("/projects/{project}/tasks/{task}/log", ["console line 29"]),
    "compare tasks": ("/projects/{project}/compare-tasks;ids={task},{queued}/scalars/graph", ["loss"]),
    "models table": ("/projects/{project}/models", ["pages-net"]),
    "model details": ("/projects/{project}/models/{model}/general", ["pages-net"]),
    "workers": ("/workers-and-queues/workers", ["{worker}"]),
    "queues": ("/workers-and-queues/queues", ["default", "queued-job"]),
    "reports": ("/reports", ["pages report"]),
    "model endpoints": ("/endpoints/active", ["pages-endpoint", "/serve/pages-endpoint"]),
    "loading endpoints": ("/endpoints/loading", ["pages-serving-loading"]),
    # The instance column shows the model the container refers to.
    "endpoint details": ("/endpoints/active/{endpoint}/general", ["py_code_pages", "12ms", "pages-net"]),
    "endpoint monitor": ("/endpoints/active/{endpoint}/monitor", ["Number of Requests", "Requests per Minute"]),
    "pipelines": ("/pipelines", ["pages-pipeline"]),
    "datasets": ("/datasets", ["pages-data"]),
    "settings": ("/settings/profile", ["Pages User"]),
    "workspace settings": ("/settings/workspace-configuration", ["Create new credentials"]),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_page_shows_the_reported_data_and_no_call_fails(site, signed_in, name):
    path, texts, *absent = PAGES[name]
    _open(signed_in, site.base_url, path.format(**site.seeded), [t.format(**site.seeded) for t in texts],
          absent[0] if absent else [])


def test_the_tasks_table_shows_when_tasks_started_and_were_updated(site, signed_in):
    """The STARTED and UPDATED columns read each date through the app's 'time ago' pipe, which takes
    only dates ending in '+00:00' (as ClearML writes them) or none: the trainer's two dates and the
    queued task's update each show as '... ago' (with dates ending in 'Z' every cell was empty)."""
    _open(signed_in, site.base_url, "/projects/{project}/tasks".format(**site.seeded), ["trainer", "queued-job"],
          [])
    ago = signed_in.get_by_text(re.compile(r"(seconds?|minutes?|hours?) ago$")).filter(visible=True)
    ago.first.wait_for(timeout=30_000)
    assert ago.count() >= 3, [ago.nth(i).inner_text() for i in range(ago.count())]
