"""The console at /console/ in a real browser (Debian's chromium-headless-shell driven by Playwright)
against a real server: member servers as real processes, render workers as HTTP clients reporting
progress, a real MLflow tracking and scoring server behind a deployment. Signed in through the
console's form, which is the ClearML web app's cookie sign-in (auth.login)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from uuid import uuid4

import pytest
import requests
from playwright.sync_api import expect

from tests.helpers import ARTIFACTS, ROOT, ApiClient, ServerProcess, console_context, sign_in_console, watch_console
from tests.test_pipelines import FAST, Members
from tests.test_registry import (
    DATABRICKS_PROXY,
    DATABRICKS_REGISTRY,
    FILE_IN,
    JSON_IN,
    JSON_OUT,
    MLFLOW_PROXY,
    MLFLOW_REGISTRY,
)

STATIC = ROOT / "apiserver" / "console" / "static"
ADMIN, GUEST, OTHER = "console-admin", "console-guest", "console-other"
PASSWORD = "console password 1"
USERS = ", ".join(f'{{username: "{name}", name: "{name}", password: "{PASSWORD}", role: {role}{extra}}}'
                  for name, role, extra in ((ADMIN, "admin", ""), (GUEST, "guest", ""),
                                            (OTHER, "admin", ', company: "console-other-co"')))
SECRET_PAT = "dapi-console-secret-4f1c9b27"


@pytest.fixture(scope="module")
def console(mongo_uri, tmp_path_factory):
    proc = ServerProcess(mongo_uri, f"console_{uuid4().hex[:8]}", workers=2,
                         extra_env={**FAST, "APISERVER__auth__fixed_users": f"[{USERS}]"})
    proc.start(tmp_path_factory.mktemp("console"))
    yield proc
    proc.stop()


def signed_in(server: ServerProcess, name: str) -> ApiClient:
    return server.client().login(name, PASSWORD)


@pytest.fixture()
def members(console, tmp_path):
    group = Members(console.base_url, tmp_path)
    yield group
    group.stop_all()


context = pytest.fixture(console_context, name="context")


def open_console(context, server: ServerProcess, name: str, path: str = "/console/"):
    """A page signed in as ``name`` through the console's own sign-in form, then at ``path``."""
    context.clear_cookies()  # one signed-in user per context at a time
    page = context.new_page()
    page.bodies, page.unread = [], []  # (url, text) of every fetch/XHR answer, read when it arrives

    def keep_body(resp) -> None:
        if resp.request.resource_type in ("fetch", "xhr"):
            try:
                page.bodies.append((resp.url, resp.text()))
            except Exception:  # noqa: BLE001 - counted: the secret scan fails on any body it could not read
                page.unread.append(resp.url)

    page.on("response", keep_body)
    watch_console(context, page)
    sign_in_console(page, server.base_url + path, name, PASSWORD)
    return page


def shoot(page, name: str) -> Path:
    """Screenshots at 1280 and 390 px wide (kept in test-artifacts/ to look at)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"console-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    return ARTIFACTS / f"console-{name}-1280.png"


def fetch_status(page, method: str, path: str, body: dict | None = None) -> int:
    """What the server answers the page's own script (cookie + client header) for a call."""
    return page.evaluate("""async ([method, path, body]) => (await fetch(path, {method,
        headers: {'Content-Type': 'application/json', 'X-Clearml-Client': 'Console-1'},
        body: body === null ? undefined : JSON.stringify(body)})).status""", [method, path, body])


# -- serving ----------------------------------------------------------------------------------


def test_the_console_is_served_with_a_strict_policy(console):
    root = requests.get(console.base_url + "/console", allow_redirects=False, timeout=10)
    assert root.status_code == 308 and root.headers["Location"].endswith("/console/")
    index = requests.get(console.base_url + "/console/", timeout=10)
    assert index.status_code == 200 and index.text == (STATIC / "index.html").read_text()
    csp = index.headers["Content-Security-Policy"]
    assert f"script-src {console.base_url}/console/;" in csp  # not 'self': /files/ never runs here
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp and "default-src 'none'" in csp
    assert index.headers["X-Content-Type-Options"] == "nosniff" and index.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in index.text  # no inline script at all
    deep = requests.get(console.base_url + "/console/render?x=1", timeout=10)
    assert deep.status_code == 200 and deep.text == index.text  # the page routes in the browser
    assert requests.get(console.base_url + "/console/missing.js", timeout=10).status_code == 404
    assert requests.get(console.base_url + "/console/../wsgi.py", timeout=10).status_code == 404
    lib = requests.get(console.base_url + "/console/vendor/preact-10.27.2/preact.umd.js", timeout=10)
    assert lib.status_code == 200 and "javascript" in lib.headers["Content-Type"]
    # The API next to it is untouched.
    assert requests.get(console.base_url + "/health", timeout=10).json()["status"] == "ok"


def test_every_vendored_file_is_the_one_listed(console):
    listing = (STATIC / "vendor" / "VENDORED.md").read_text()
    listed = dict((path, digest) for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", listing, re.M))
    files = sorted(str(p.relative_to(STATIC / "vendor")) for p in (STATIC / "vendor").rglob("*")
                   if p.is_file() and p.name != "VENDORED.md")
    assert sorted(listed) == files
    for path, digest in listed.items():
        served = requests.get(f"{console.base_url}/console/vendor/{path}", timeout=10)
        assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == digest, path


def test_permissions_follow_the_endpoints_own_roles(console):
    asked = ["workflows.start", "workflows.get_all", "deployments.create", "manager.update_task"]
    admin = signed_in(console, ADMIN).call("console.get_permissions", endpoints=asked)
    guest = signed_in(console, GUEST).call("console.get_permissions", endpoints=asked)
    assert admin["allowed"] == dict.fromkeys(asked, True) and admin["user"]["role"] == "admin"
    assert guest["allowed"] == {"workflows.start": False, "workflows.get_all": True, "deployments.create": False,
                                "manager.update_task": False}
    err = signed_in(console, GUEST).error("console.get_permissions", endpoints=["workflows.start", "nope.nothing"])
    assert err.code == 400 and err.meta["error_data"] == {"field": "endpoints.1", "rule": "enum"}


def test_sign_in_wrong_password_then_right_then_out(console, context):
    page = context.new_page()
    page.goto(console.base_url + "/console/pipelines")
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="Wrong user name or password").wait_for(timeout=10_000)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")  # the keyboard signs in too
    page.get_by_role("heading", name="Pipelines", exact=True).wait_for(timeout=10_000)
    cookie = next(c for c in context.cookies() if c["name"] == "clearml_token_basic")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    context.clear_cookies()  # the session ends under the page: its next poll leads back to sign-in
    page.get_by_role("button", name="Sign in").wait_for(timeout=10_000)
    page.get_by_label("User name").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for(timeout=10_000)
    assert not [c for c in context.cookies() if c["name"] == "clearml_token_basic"]


def test_an_uploaded_script_never_runs_in_the_console(console, context):
    admin = signed_in(console, ADMIN)
    name = f"evil-{uuid4().hex[:6]}.js"
    stored = requests.post(console.base_url + "/files/", headers={"Authorization": admin.auth}, timeout=10,
                           files={f"console/{name}": (name, b"window.pwned = 1;", "application/javascript")})
    assert stored.status_code == 200, stored.text
    served = requests.get(f"{console.base_url}/files/console/{name}", headers={"Authorization": admin.auth},
                          timeout=10)
    assert served.text == "window.pwned = 1;"  # it is there, and same-origin
    page = open_console(context, console, ADMIN)
    loaded = page.evaluate("""(src) => new Promise((done) => { const s = document.createElement('script');
        s.src = src; s.onload = () => done('loaded'); s.onerror = () => done('refused');
        document.head.appendChild(s); })""", f"/files/console/{name}")
    assert loaded == "refused" and page.evaluate("window.pwned === undefined")
    assert [p for p in context.problems if f"/files/console/{name}" in p], context.problems  # the CSP said no
    context.problems.clear()
    ours = page.evaluate("""(src) => new Promise((done) => { const s = document.createElement('script');
        s.src = src; s.onload = () => done('loaded'); s.onerror = () => done('refused');
        document.head.appendChild(s); })""", "/console/vendor/htm-3.1.1/htm.umd.js")
    assert ours == "loaded"  # positive control: the console's own folder runs


# -- pipelines --------------------------------------------------------------------------------


def test_pipelines_page_starts_and_follows_a_pipeline_and_a_guest_cannot(console, context, members):
    admin = signed_in(console, ADMIN)
    members.start("labelling", "0.5:success")
    members.start("bms", "0.5:success")
    for cid in ("labelling", "bms"):
        admin.call("members.register", container_id=cid, url=members.url(cid))
    project = f"proj-{uuid4().hex[:6]}"
    pid = admin.call("workflows.create", project_id=project, workflow=["labelling", "bms"])["id"]

    guest = open_console(context, console, GUEST, f"/console/pipelines?pipeline={pid}")
    guest.get_by_role("heading", name=re.compile(f"Pipeline {pid}")).wait_for(timeout=10_000)
    assert guest.get_by_role("button", name="Start pipeline").count() == 0
    assert guest.get_by_role("button", name="Stop pipeline").count() == 0
    assert guest.get_by_role("button", name=re.compile("Ask every member")).count() == 0
    assert fetch_status(guest, "POST", "/api/workflows.start", {"pipeline": pid}) == 403
    assert admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]["status"] == "created"

    page = open_console(context, console, ADMIN, f"/console/pipelines?pipeline={pid}")
    detail = page.get_by_role("region", name=f"Pipeline {pid}")
    detail.get_by_role("button", name="Start pipeline").click()
    detail.locator(".status-completed").first.wait_for(timeout=10_000)
    page.wait_for_function(f"""() => document.querySelector('[aria-label="Pipeline {pid}"] h2')
        .textContent.includes('completed')""", timeout=60_000)
    steps = detail.get_by_role("table", name="Steps").locator("tbody tr")
    assert steps.count() == 2
    for i, cid in enumerate(("labelling", "bms")):
        cells = steps.nth(i).locator("td").all_inner_texts()
        assert cells[1] == cid and cells[2] == "completed" and "UTC" in cells[3] and "UTC" in cells[4]
    log = detail.get_by_role("table", name="Member call log").locator("tbody tr").all_inner_texts()
    assert any("\tstart\tstarted" in row and "labelling" in row for row in log), log
    assert any("status_report" in row and "from member" in row for row in log), log
    assert any("\tstatus_request\tcompleted" in row and "bms" in row for row in log), log
    assert "progress" in detail.inner_html() and detail.locator("progress").get_attribute("value") == "2"
    # Members with the answer of the readiness check start made.
    labelling = page.get_by_role("table", name="Members").locator("tbody tr").filter(has_text="labelling")
    expect(labelling.locator("td").nth(3)).to_have_text("ready", timeout=10_000)  # polled every 5 s
    expect(labelling.locator("td").nth(4)).to_have_text("ready")  # the last status_request answer
    shoot(page, "pipelines")


def test_a_running_pipeline_is_stopped_from_the_page(console, context, members):
    admin = signed_in(console, ADMIN)
    members.start("neck_nas", "60:success")
    admin.call("members.register", container_id="neck_nas", url=members.url("neck_nas"))
    pid = admin.call("workflows.create", project_id=f"proj-{uuid4().hex[:6]}", workflow=["neck_nas"])["id"]
    page = open_console(context, console, ADMIN, f"/console/pipelines?pipeline={pid}")
    detail = page.get_by_role("region", name=f"Pipeline {pid}")
    detail.get_by_role("button", name="Start pipeline").click()
    detail.get_by_role("button", name="Stop pipeline").click()
    page.wait_for_function(f"""() => document.querySelector('[aria-label="Pipeline {pid}"] h2')
        .textContent.includes('stopped')""", timeout=20_000)
    doc = admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]
    assert doc["status"] == "stopped" and doc["steps"][0]["status"] == "stopped"
    assert members.calls("neck_nas")["stop"] == 1


# -- render farm ------------------------------------------------------------------------------


class Worker:
    """A render worker as the manager sees one: an HTTP client that registers and reports."""

    def __init__(self, server: ServerProcess, auth: str, hostname: str):
        self.base_url = server.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = auth
        resp = self.session.post(self.base_url + "/workers", json={"hostname": hostname, "system": "Linux"}, timeout=10)
        assert resp.status_code == 200, resp.text
        self.id = resp.json()[hostname]["id"]

    def report(self, **body) -> dict:
        resp = self.session.patch(f"{self.base_url}/workers/{self.id}", json=body, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()


def progress_of(page, task_id: int) -> str | None:
    return page.get_by_label(f"Frames rendered of task {task_id}").get_attribute("value")


def test_render_farm_progress_moves_without_a_reload_and_the_controls_work(console, context):
    admin = signed_in(console, ADMIN)
    rest = requests.Session()
    rest.headers["Authorization"] = admin.auth

    def task(priority: int, start: int, end: int) -> int:
        resp = rest.post(console.base_url + "/tasks", json={
            "type": "blender_render", "parser": "blender_render", "settings": '{"filepath": "/s/shot.blend"}',
            "priority": priority, "frame_start": start, "frame_end": end}, timeout=10)
        assert resp.status_code == 202, resp.text
        return resp.json()["id"]

    big, small = task(5, 1, 11), task(1, 1, 4)
    first, second = Worker(console, admin.auth, f"render-a-{uuid4().hex[:4]}"), \
        Worker(console, admin.auth, f"render-b-{uuid4().hex[:4]}")
    assert first.report(status="available") == {"task_id": big}  # highest priority first

    guest = open_console(context, console, GUEST, "/console/render")
    guest.get_by_label(f"Frames rendered of task {big}").wait_for(timeout=10_000)
    hostname = hostname_of(console, second)
    for name in (f"Cancel task {big}", f"Save the priority for task {big}", f"Disable {hostname}"):
        assert guest.get_by_role("button", name=name).count() == 0, name
    assert fetch_status(guest, "PATCH", f"/tasks/{big}", {"priority": 0}) == 403
    assert fetch_status(guest, "POST", f"/workers/{second.id}/setstatus", {"status": "disabled"}) == 403
    assert rest.get(f"{console.base_url}/tasks/{big}", timeout=10).json()["priority"] == 5

    page = open_console(context, console, ADMIN, "/console/render")
    page.get_by_label(f"Frames rendered of task {big}").wait_for(timeout=10_000)
    assert progress_of(page, big) == "0"
    page.evaluate("window.sameDocument = 'yes'")
    first.report(status="rendering", frame_current=4)
    page.wait_for_function(f"""() => document.querySelector('[aria-label="Frames rendered of task {big}"]')
        .getAttribute('value') === '3'""", timeout=10_000)
    shoot(page, "render")
    first.report(status="rendering", frame_current=9)
    page.wait_for_function(f"""() => document.querySelector('[aria-label="Frames rendered of task {big}"]')
        .getAttribute('value') === '8'""", timeout=10_000)
    assert page.evaluate("window.sameDocument") == "yes"  # moved while the page stayed loaded
    assert page.get_by_label(f"Frames rendered of task {big}").get_attribute("max") == "10"

    page.get_by_label(f"Priority of task {small}", exact=True).fill("9")
    page.get_by_label(f"Priority of task {small}", exact=True).press("Enter")  # the keyboard sets it
    expect(page.get_by_label(f"Priority of task {small}", exact=True)).to_have_value("9", timeout=10_000)
    assert rest.get(f"{console.base_url}/tasks/{small}", timeout=10).json()["priority"] == 9
    page.get_by_role("button", name=f"Cancel task {small}").click()
    expect(page.locator(f"tr[data-task='{small}'] .status")).to_have_text("canceled", timeout=10_000)
    assert rest.get(f"{console.base_url}/tasks/{small}", timeout=10).json()["status"] == "canceled"

    row = page.locator(f"tr[data-worker='{second.id}']")
    expect(row.locator("td").nth(2)).to_contain_text("s ago")  # last seen
    row.get_by_role("button", name=re.compile("^Disable")).click()
    expect(row.locator(".status")).to_have_text("disabled", timeout=10_000)
    assert second.report(status="available") == {"task_id": None}  # a disabled worker gets no work
    assert rest.get(f"{console.base_url}/workers/{second.id}", timeout=10).json()["status"] == "disabled"
    row.get_by_role("button", name=re.compile("^Enable")).click()
    expect(row.locator(".status")).to_have_text("enabled", timeout=10_000)
    assert rest.get(f"{console.base_url}/workers/{second.id}", timeout=10).json()["status"] == "enabled"


def hostname_of(server: ServerProcess, worker: Worker) -> str:
    resp = worker.session.get(f"{server.base_url}/workers/{worker.id}", timeout=10)
    return resp.json()["hostname"]


# -- model registry and deployments -----------------------------------------------------------


@pytest.mark.timeout(900)  # the session's MLflow (conftest.py) may start in this test's setup
def test_deployments_and_models_pages_with_a_real_mlflow(console, context, mlflow_stack):

    admin, other = signed_in(console, ADMIN), signed_in(console, OTHER)
    rest = requests.Session()
    rest.headers["Authorization"] = admin.auth
    api = console.base_url

    # A deployment made through the page, with the allowlisted MLflow classes.
    page = open_console(context, console, ADMIN, "/console/deployments")
    page.on("dialog", lambda dialog: dialog.accept())
    form = page.get_by_role("form", name="Create a deployment")
    key = f"mlflow-{uuid4().hex[:6]}"
    form.get_by_label("Deployment key").fill(key)
    options = form.get_by_label("Registry connector class").locator("option").all_inner_texts()
    assert MLFLOW_REGISTRY in options and DATABRICKS_REGISTRY in options
    form.get_by_label("Registry connector class").select_option(MLFLOW_REGISTRY)
    form.get_by_label("model_registry_url").fill(mlflow_stack.tracking_url)
    form.get_by_label("Server proxy class").select_option(MLFLOW_PROXY)
    form.get_by_label("server_proxy_url").fill(mlflow_stack.scoring_url)
    form.get_by_role("button", name="Create deployment").click()
    page.get_by_role("article", name=f"Deployment {key}").wait_for(timeout=10_000)
    assert rest.get(f"{api}/api/deployment/{key}", timeout=10).json()[0]["server_proxy_class"] == MLFLOW_PROXY
    # A second one with a secret: typed into a password field, never shown again.
    secret_key = f"dbx-{uuid4().hex[:6]}"
    form.get_by_label("Deployment key").fill(secret_key)
    form.get_by_label("Registry connector class").select_option(DATABRICKS_REGISTRY)
    assert form.get_by_label(re.compile("^tracking_server_pat")).get_attribute("type") == "password"
    form.get_by_label("model_registry_url").fill("http://127.0.0.1:9/registry")
    form.get_by_label(re.compile("^tracking_server_pat")).fill(SECRET_PAT)
    form.get_by_label("Server proxy class").select_option(DATABRICKS_PROXY)
    form.get_by_label("server_proxy_url").fill("http://127.0.0.1:9/serving")
    form.get_by_label(re.compile("^server_proxy_pat")).fill(SECRET_PAT + "-proxy")
    form.get_by_role("button", name="Create deployment").click()
    shown = page.get_by_role("article", name=f"Deployment {secret_key}")
    shown.wait_for(timeout=10_000)
    assert "********" in shown.inner_text() and SECRET_PAT not in page.content()
    assert form.get_by_label("Deployment key").input_value() == ""  # the form was emptied
    shoot(page, "deployments")

    # Models: registered through the API (as a registry client does), shown in the page.
    name = mlflow_stack.model_name
    base = {"name": "Credit risk", "description": "Scores a loan request", "input_schema": JSON_IN,
            "output_schema": JSON_OUT, "deployment_key": key}
    explainer = {**base, "model_code": f"{name}-why", "version": "1", "name": "Why", "input_schema": FILE_IN}
    assert rest.post(f"{api}/api/model", json={**base, "model_code": name, "version": "1", "explainer": explainer},
                     timeout=30).status_code == 201
    second = rest.post(f"{api}/api/model", json={**base, "model_code": name, "version": "2"}, timeout=30)
    assert second.status_code == 201, second.text
    assert rest.delete(f"{api}/api/model/{name}/version/2", timeout=10).status_code == 204
    theirs = f"theirs-{uuid4().hex[:6]}"
    other_resp = requests.post(f"{api}/api/model", headers={"Authorization": other.auth}, timeout=30, json={
        **{k: v for k, v in base.items() if k != "deployment_key"}, "model_code": theirs, "version": "1"})
    assert other_resp.status_code == 201, other_resp.text
    # Deleting through the page (after its confirmation dialog).
    page.get_by_role("button", name=f"Delete {secret_key}").click()
    shown.wait_for(state="detached", timeout=10_000)
    assert rest.get(f"{api}/api/deployment/{secret_key}", timeout=10).status_code == 404
    page.goto(api + "/console/models")
    model = page.get_by_role("region", name=f"Model {name}")
    model.wait_for(timeout=10_000)
    assert theirs not in page.content()  # another workspace's model never appears
    deleted = model.get_by_role("article", name=f"{name} version 2")
    assert "deleted" in deleted.locator(".badge").inner_text() and deleted.get_by_role("form").count() == 0
    version = model.get_by_role("article", name=f"{name} version 1")
    fields = version.get_by_role("table", name="Input fields").locator("tbody tr").all_inner_texts()
    assert fields == ["applicantId\tstring\tyes\t\t", "loanAmount\tnumber\tyes\t\t", "monthlyIncome\tnumber\tyes\t\t"]
    chain = version.locator(".chain li").first.inner_text()
    assert f"{name}-why" in chain and "Why" in chain
    version.locator(".chain summary").click()
    chain = version.locator(".chain").inner_text()
    assert "text/csv" in chain and "id, amount" in chain

    # Invoke: checked in the page first (no request for a payload the schema refuses), then by the server.
    form = version.get_by_role("form", name=f"Invoke {name} 1")
    invocations = []
    page.on("request", lambda r: invocations.append(r.url) if r.url.endswith("/invoke") else None)
    form.get_by_label(re.compile("^applicantId")).fill("a-1")
    form.get_by_label(re.compile("^monthlyIncome")).fill("1000")
    form.get_by_role("button", name="Invoke").click()
    expect(form.locator(".field-error")).to_have_count(1)
    assert "loanAmount" in form.locator(".field-error").inner_text() and invocations == []
    form.get_by_label("Check against the input schema in the page first").uncheck()
    form.get_by_role("button", name="Invoke").click()
    expect(form.locator(".field-error")).to_contain_text("server:", timeout=10_000)
    assert form.get_by_label(re.compile("^loanAmount")).get_attribute("aria-invalid") == "true"
    assert len(invocations) == 1
    form.get_by_label("Check against the input schema in the page first").check()
    form.get_by_label(re.compile("^loanAmount")).fill("10000")
    form.get_by_role("button", name="Invoke").click()
    answer = form.get_by_label("Answer")
    answer.wait_for(timeout=30_000)
    assert json.loads(answer.locator("pre").inner_text()) == {"riskScore": 0.2, "isApproved": True}  # MLflow's
    shoot(page, "models")

    # A guest sees the deployments but can change none; no answer ever held a secret.
    guest = open_console(context, console, GUEST, "/console/deployments")
    guest.get_by_role("article", name=f"Deployment {key}").wait_for(timeout=10_000)
    assert guest.get_by_role("form", name="Create a deployment").count() == 0
    assert guest.get_by_role("button", name=re.compile("^Delete")).count() == 0
    assert fetch_status(guest, "DELETE", f"/api/deployment/{key}") == 403
    assert fetch_status(guest, "POST", "/api/deployment", {
        "deployment_key": "guest-made", "registry_connector_class": MLFLOW_REGISTRY,
        "registry_connector_init": {"model_registry_url": mlflow_stack.tracking_url},
        "server_proxy_class": MLFLOW_PROXY, "server_proxy_init": {"server_proxy_url": mlflow_stack.scoring_url}}) == 403
    assert rest.get(f"{api}/api/deployment/{key}", timeout=10).status_code == 200
    # The scan reads every answer the pages got, as they arrived, and counts them: it must have read
    # the deployment listings that show the masked secret (the answers a leak would be in).
    bodies = [body for seen in (page, guest) for body in seen.bodies]
    assert not [url for seen in (page, guest) for url in seen.unread], "answers the secret scan could not read"
    listings = [url for url, text in bodies if "/api/deployment" in url and secret_key in text and "********" in text]
    assert listings, f"the secret scan read {len(bodies)} answers, none a deployment listing with the masked secret"
    leaked = [url for url, text in bodies if SECRET_PAT in text]
    assert not leaked, f"{len(leaked)} of {len(bodies)} answers hold the secret: {leaked}"
