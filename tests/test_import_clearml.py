"""`python -m apiserver import clearml` between two real servers: the source (the suite's shared server, two
projects of it named with --project) seeded by the real clearml SDK, the target on its embedded database (the
import joins the running server's database process). An import killed halfway and run again ends as one
whole run: the target answers the same through the API and serves the same bytes from its own /files; a
third run changes nothing, a fourth brings new work. A wrong secret or an unreachable source fails with a
message and writes nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import pytest
import requests

from apiserver.bll.transfer.clearml import selected_projects
from apiserver.bll.transfer.source import SourceError
from tests.helpers import ADMIN_KEY, ADMIN_SECRET, ROOT, ServerProcess, free_port
from tests.test_clearml_sdk_files import make_workdir, run_sdk

SEED = """
import hashlib, json, os, sys
import numpy as np
from clearml import OutputModel, Task

prefix = sys.argv[1]
task = Task.init(project_name=prefix + "-a", task_name="train", output_uri=True, reuse_last_task_id=False,
                 auto_connect_frameworks=False, auto_resource_monitoring=False)
task.connect({"lr": 0.1, "epochs": 5, "optimizer": "adam"})
task.connect_configuration({"layers": [64, 32], "dropout": 0.25}, name="net")
logger = task.get_logger()
for i in range(500):
    logger.report_scalar("loss", "train", 1.0 / (i + 1), i)
    logger.report_scalar("loss", "val", 2.0 / (i + 1), i)
for i in range(30):
    logger.report_text(f"console line {i}")
logger.report_scatter2d("curve", "roc", iteration=1, scatter=[[0, 0], [0.5, 0.8], [1, 1]])
image = np.zeros((16, 24, 3), dtype=np.uint8)
image[:, :12] = 255
logger.report_image("samples", "first", iteration=3, image=image)
task.upload_artifact("table", {"rows": [1, 2, 3]}, wait_on_upload=True)
with open("blob.bin", "wb") as f:
    f.write(os.urandom(200_000))
task.upload_artifact("blob", "blob.bin", wait_on_upload=True)
with open("weights.bin", "wb") as f:
    f.write(os.urandom(150_000))
model = OutputModel(task=task, name="net", framework="PyTorch")
model.update_weights(weights_filename="weights.bin")
task.flush(wait_for_uploads=True)
task.close()
queued = Task.create(project_name=prefix + "-b/nested", task_name="waiting", task_type="training")
queued.set_parameters({"Args/batch": 32})
Task.enqueue(queued, queue_name=prefix + "-queue")
print("RESULT", json.dumps({"task": task.id, "model": model.id, "queued": queued.id}))
"""

EVENT_TYPES = ("training_stats_scalar", "log", "plot", "training_debug_image", "training_stats_vector")
SAME_FIELDS = ("id", "name", "type", "status", "project", "user", "created", "started", "completed", "last_update",
               "status_changed", "hyperparams", "configuration", "tags", "system_tags", "last_iteration", "script",
               "parent", "comment", "last_metrics", "models", "container", "runtime", "output")


PREFIX = f"move-{uuid4().hex[:8]}"  # the source is the suite's shared server: the import takes these projects
OUTER = f"outer-{PREFIX}"  # outside counts()' projects: only OUTER/in is named


@pytest.fixture(scope="module")
def source(server):
    return server


@pytest.fixture(scope="module")
def seeded(source, tmp_path_factory):
    api = source.admin()
    api.call("queues.create", name=f"{PREFIX}-queue")
    # --project names a nested project: its parent comes for the hierarchy, the parent's own task does not
    above = api.call("projects.create", name=OUTER, description="")["id"]
    nested = api.call("projects.create", name=f"{OUTER}/in", description="")["id"]
    outer_tasks = {"above": api.call("tasks.create", name="above", type="training", project=above)["id"],
                   "nested": api.call("tasks.create", name="nested", type="training", project=nested)["id"]}
    seeded = run_sdk(make_workdir(source.base_url, tmp_path_factory.mktemp("import-sdk")), SEED, "seed.py", PREFIX)
    return {**seeded, "outer": outer_tasks}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    proc = ServerProcess(None, "apiserver", workers=1, data_dir=tmp_path_factory.mktemp("import-dst"))
    proc.data_dir = Path(proc.argv[proc.argv.index("--data-dir") + 1])
    proc.start(tmp_path_factory.mktemp("import-dst-logs"))
    yield proc
    proc.stop()


def run_import(data_dir: Path, env: dict, source_url: str, files_url: str, secret: str = ADMIN_SECRET,
               wait: bool = True, **kw) -> subprocess.CompletedProcess | subprocess.Popen:
    argv = [sys.executable, "-m", "apiserver", "--data-dir", str(data_dir), "import", "clearml", "--from", source_url,
            "--access-key", ADMIN_KEY, "--secret-key", secret, "--files-url", files_url,
            "--project", f"{PREFIX}-a", "--project", f"{PREFIX}-b", "--project", f"{OUTER}/in"]
    if not wait:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                **kw)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kw)


def projects_of_test(api) -> list[str]:
    return [p["id"] for p in api.call("projects.get_all_ex", name=f"^{PREFIX}", search_hidden=True)["projects"]]


def counts(api) -> dict:
    """What the test's projects hold, by kind, and each task's events by type."""
    projects = projects_of_test(api)
    tasks = api.call("tasks.get_all_ex", project=projects, search_hidden=True, only_fields=["id"])["tasks"]
    ids = {t["id"] for t in tasks}
    queued = [(q["name"], sum(e["task"]["id"] in ids for e in q["entries"]))
              for q in api.call("queues.get_all_ex")["queues"]]
    out = {"tasks": len(tasks), "projects": len(projects),
           "models": len(api.call("models.get_all_ex", project=projects, search_hidden=True)["models"]),
           "queues": sorted(q for q in queued if q[1])}
    for task in tasks:
        for kind in EVENT_TYPES:
            total = api.call("events.get_task_events", task=task["id"], event_type=kind, batch_size=1)["total"]
            out[f"{task['id']}:{kind}"] = total
    return out


def compare(src, dst, dst_files: str) -> None:
    """The target answers what the source answers, and serves the files from its own /files."""
    projects = projects_of_test(src)
    source_tasks = [t["id"] for t in src.call("tasks.get_all_ex", project=projects, search_hidden=True,
                                              only_fields=["id"])["tasks"]]
    assert len(source_tasks) == 2
    for task_id in source_tasks:
        want = src.call("tasks.get_by_id", task=task_id)["task"]
        got = dst.call("tasks.get_by_id", task=task_id)["task"]
        for field in SAME_FIELDS:
            assert got.get(field) == want.get(field), (task_id, field)
        src_art = {a["key"]: a for a in want["execution"].get("artifacts", [])}
        for art in got["execution"].get("artifacts", []):
            assert art["uri"].startswith(dst_files + "/"), art
            mine = requests.get(art["uri"], headers={"Authorization": dst.auth}, timeout=30)
            theirs = requests.get(src_art[art["key"]]["uri"], headers={"Authorization": src.auth}, timeout=30)
            assert mine.status_code == 200 and mine.content == theirs.content
        if want["execution"].get("queue"):  # queues are merged by name (the target has its own 'default')
            def queue_name(api, queue):
                return api.call("queues.get_by_id", queue=queue)["queue"]["name"]
            assert queue_name(dst, got["execution"]["queue"]) == queue_name(src, want["execution"]["queue"])
        for kind in EVENT_TYPES:
            def total(api, task=task_id, kind=kind):
                return api.call("events.get_task_events", task=task, event_type=kind, batch_size=1)["total"]
            assert total(dst) == total(src), (task_id, kind)
        hist = {"task": task_id, "samples": 5000, "key": "iter"}
        assert dst.call("events.scalar_metrics_iter_histogram", **hist) == \
            src.call("events.scalar_metrics_iter_histogram", **hist)
    for listed in src.call("models.get_all_ex", project=projects, search_hidden=True, only_fields=["id"])["models"]:
        model = src.call("models.get_by_id", model=listed["id"])["model"]
        got = dst.call("models.get_by_id", model=listed["id"])["model"]
        assert (got["name"], got["task"], got["created"]) == (model["name"], model["task"], model["created"])
        assert got["uri"].startswith(dst_files + "/")
        mine = requests.get(got["uri"], headers={"Authorization": dst.auth}, timeout=30)
        theirs = requests.get(model["uri"], headers={"Authorization": src.auth}, timeout=30)
        assert mine.status_code == 200 and mine.content == theirs.content and len(mine.content) == 150_000


def test_import_clearml_killed_run_again_copies_everything_then_changes_nothing_then_brings_new_work(
        source, seeded, target):
    src, dst = source.admin(), target.admin()
    files = f"{target.base_url}/files"
    first = run_import(target.data_dir, target.env, source.base_url, files, wait=False)
    lines = []
    for line in first.stdout:  # killed (-9) as it starts on the tasks: users, projects and queues are written
        lines.append(line)
        if line.startswith("tasks: 0/"):
            first.send_signal(signal.SIGKILL)
            break
    first.wait(30)
    assert first.returncode == -signal.SIGKILL and not any("finished in" in ln for ln in lines), lines
    assert counts(dst)["models"] == 0  # it stopped halfway
    result = run_import(target.data_dir, target.env, source.base_url, files)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "tasks:" in result.stderr and "files" in result.stdout, result.stdout + result.stderr
    compare(src, dst, files)
    assert counts(dst) == counts(src)
    # the named nested project's task came, with its parent project; the parent's own task did not
    assert dst.call("tasks.get_all_ex", id=[seeded["outer"]["nested"]])["tasks"]
    assert not dst.call("tasks.get_all_ex", id=[seeded["outer"]["above"]])["tasks"]
    assert dst.call("projects.get_all_ex", name=f"^{OUTER}$")["projects"]
    # the debug image's event points at this server's /files and downloads the same bytes
    images = dst.call("events.debug_images", metrics=[{"task": seeded["task"], "metric": "samples"}])
    url = images["metrics"][0]["iterations"][0]["events"][0]["url"]
    theirs = src.call("events.debug_images", metrics=[{"task": seeded["task"], "metric": "samples"}])
    src_url = theirs["metrics"][0]["iterations"][0]["events"][0]["url"]
    assert url.startswith(files + "/") and url != src_url
    assert requests.get(url, headers={"Authorization": dst.auth}, timeout=30).content == \
        requests.get(src_url, headers={"Authorization": src.auth}, timeout=30).content
    # the queued task waits in its queue here too; the source's default queue is this server's default one
    queue = dst.call("queues.get_all_ex", name=f"^{PREFIX}-queue$")["queues"][0]
    assert [e["task"]["id"] for e in queue["entries"]] == [seeded["queued"]]
    assert len(dst.call("queues.get_all_ex", name="^default$")["queues"]) == 1
    before = counts(dst)
    again = run_import(target.data_dir, target.env, source.base_url, files)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert counts(dst) == before
    table = {line.split()[0]: line.split()[1:] for line in again.stdout.splitlines()[1:8]}
    assert all(row[0] == "0" and row[1] == "0" for row in table.values()), again.stdout  # nothing new or updated
    # new work on the source: a new task, and more scalars of an imported one; the next run brings them
    project = src.call("tasks.get_by_id", task=seeded["task"])["task"]["project"]
    added = src.call("tasks.create", name="later", type="training", project=project)["id"]
    status, reply, _ = src.request("POST", "/events.add_batch", raw="\n".join(json.dumps(
        {"task": task, "type": "training_stats_scalar", "metric": "late", "variant": "v", "iter": i, "value": i}
        ) for task in (added, seeded["task"]) for i in range(5)), headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"]["added"] == 10, reply
    later = run_import(target.data_dir, target.env, source.base_url, files)
    assert later.returncode == 0, later.stdout[-3000:] + later.stderr[-3000:]
    assert counts(dst) == counts(src) and counts(dst)[f"{added}:training_stats_scalar"] == 5
    assert counts(dst)[f"{seeded['task']}:training_stats_scalar"] == 1005


@pytest.mark.parametrize("case", ["wrong secret", "unreachable"])
def test_a_wrong_secret_or_an_unreachable_source_fails_clearly_and_writes_nothing(source, tmp_path, case):
    folder = tmp_path / "data"
    url = source.base_url if case == "wrong secret" else f"http://127.0.0.1:{free_port()}"
    env = {**source.env, "APISERVER__database__name": "apiserver"}
    env.pop("APISERVER__database__uri", None)
    result = run_import(folder, env, url, "http://127.0.0.1:1/files", secret="not-the-secret")
    assert result.returncode == 1
    expected = "refused the access key" if case == "wrong secret" else "cannot reach the ClearML server"
    assert expected in result.stderr and "nothing was imported" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (folder / "db").exists()  # the source is checked before the database is opened


def test_project_selection_takes_the_named_projects_those_below_and_those_above():
    projects = [{"id": str(i), "name": name} for i, name in enumerate(["a", "a/b", "a/b/c", "ab", "x", "x/y", "z"])]
    assert [p["name"] for p in selected_projects(projects, ["a/b"])] == ["a", "a/b", "a/b/c"]
    assert [p["name"] for p in selected_projects(projects, ["x", "z"])] == ["x", "x/y", "z"]
    assert selected_projects(projects, []) == projects
    with pytest.raises(SourceError, match="no project named 'nope'"):
        selected_projects(projects, ["a", "nope"])


def _writer(api):
    """A writer into the in-process app's company of ``api``, as the import builds one."""
    from apiserver.bll.transfer.writer import TransferWriter
    from apiserver.state import get_state

    state = get_state()
    user = api.call("users.get_current_user")["user"]
    return TransferWriter(state.auth, state.projects, state.tasks, state.events, state.models, state.queues,
                          state.files, user["company"]["id"], user["id"], "http://127.0.0.1:1/files", [],
                          lambda url: iter(()))


def test_a_project_id_another_company_holds_is_named_by_nothing_imported(api, other_api):
    name = f"held-{uuid4().hex[:8]}"
    held = other_api.call("projects.create", name=name, description="")["id"]
    child, task = uuid4().hex, uuid4().hex
    writer = _writer(api)
    writer.put_projects([{"id": held, "name": name}, {"id": child, "name": f"{name}/c"}])
    writer.put_task({"id": task, "name": "t", "type": "training", "status": "created", "project": held})
    assert writer.tally["projects"].conflicts == 1
    stored = writer.projects.store.find_one({"_id": child})
    assert (stored["parent"], stored["path"]) == (None, [])  # not the other company's project
    assert writer.tasks.store.find_one({"_id": task})["project"] is None
    assert other_api.call("projects.get_by_id", project=held)["project"]["name"] == name  # untouched


def test_an_imported_queue_keeps_an_agents_dequeue_made_while_it_is_written(api):
    name = f"busy-{uuid4().hex[:8]}"
    queue = api.call("queues.create", name=name)["id"]
    tasks = [api.call("tasks.create", name=f"t{i}", type="training")["id"] for i in range(2)]
    for task in tasks:
        api.call("tasks.enqueue", task=task, queue=queue)
    writer = _writer(api)
    store = writer.queues.store

    class DequeueAfterRead:  # an agent takes the queue's first task just after the import read the queue
        done = False

        def find_one(self, flt, *args, **kwargs):
            found = store.find_one(flt, *args, **kwargs)
            if flt == {"_id": queue} and not self.done:
                self.done = True
                assert api.call("queues.get_next_task", queue=queue)["entry"]["task"] == tasks[0]
            return found

        def __getattr__(self, attr):
            return getattr(store, attr)

    writer.queues = SimpleNamespace(store=DequeueAfterRead(), entries=writer.queues.entries)
    writer.put_queue({"id": queue, "name": name, "tags": ["from-source"], "entries": [{"task": tasks[0]}]})
    got = api.call("queues.get_by_id", queue=queue)["queue"]
    assert [e["task"] for e in got["entries"]] == [tasks[1]]  # the dequeued task is not put back
    assert got["tags"] == ["from-source"] and writer.tally["queues"].updated == 1


def test_copied_files_default_to_the_listen_address_written_as_a_url():
    from apiserver.config import load_config
    from apiserver.importer import _files_url

    def files_url(host: str) -> str:
        return _files_url(load_config(overrides={"apiserver.listen.host": host, "apiserver.listen.port": 8010,
                                                 "files.server_urls": []}), None)

    assert files_url("::1") == "http://[::1]:8010/files"
    assert files_url("0.0.0.0") == files_url("::") == "http://127.0.0.1:8010/files"
    assert files_url("10.1.2.3") == "http://10.1.2.3:8010/files"
