"""The console's pipeline workflow in a real browser (Debian's chromium-headless-shell driven by
Playwright) against a real server process with its heartbeat and real member processes (member_kit):
register members and see the server's errors at the field, create a pipeline of members in order
from the form, start it, follow its steps to completed without a reload, remove members; a guest
sees the pages and no control that changes anything, and the server refuses those calls to a guest.

Its own server and helpers (not test_console.py's), so the two files change independently."""

from __future__ import annotations

import re
from uuid import uuid4

import pytest
from playwright.sync_api import expect

from tests import test_pipelines
from tests.helpers import (
    ARTIFACTS,
    ApiClient,
    ServerProcess,
    console_context,
    free_port,
    sign_in_console,
    watch_console,
)
from tests.test_pipelines import FAST

ADMIN, USER, GUEST, OTHER = "pipes-admin", "pipes-user", "pipes-guest", "pipes-other"
PASSWORD = "pipes password 1"
USERS = ", ".join(f'{{username: "{name}", name: "{name}", password: "{PASSWORD}", role: {role}{extra}}}'
                  for name, role, extra in ((ADMIN, "admin", ""), (USER, "user", ""), (GUEST, "guest", ""),
                                            (OTHER, "admin", ', company: "pipes-other-co"')))
# Every control that changes something, by its accessible name (a pipeline's card says "created": not one).
CHANGING = re.compile(r"^(New pipeline|Create( and start)? pipeline|Start pipeline|Stop pipeline|Register|"
                      r"(Remove|Ask|Add|Move) .+)$")


@pytest.fixture(scope="module")
def leader(mongo_uri, tmp_path_factory):
    proc = ServerProcess(mongo_uri, f"console_pipes_{uuid4().hex[:8]}", workers=2,
                         extra_env={**FAST, "APISERVER__auth__fixed_users": f"[{USERS}]"})
    proc.start(tmp_path_factory.mktemp("console-pipes"))
    yield proc
    proc.stop()


context = pytest.fixture(console_context, name="context")
members = test_pipelines.members  # real member processes reporting to this module's leader


def api_as(server: ServerProcess, name: str) -> ApiClient:
    return server.client().login(name, PASSWORD)


def open_console(context, server: ServerProcess, name: str, path: str):
    """A page signed in as ``name`` through the console's sign-in form, at ``path``."""
    context.clear_cookies()
    page = context.new_page()
    watch_console(context, page)
    sign_in_console(page, server.base_url + path, name, PASSWORD)
    return page


def status_of(page, name: str, body: dict) -> int:
    """What the server answers the page's own script (its cookie and client header) for an RPC call."""
    return page.evaluate("""async ([name, body]) => (await fetch('/api/' + name, {method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-Clearml-Client': 'Console-1'},
        body: JSON.stringify(body)})).status""", [name, body])


def shoot(page, name: str) -> None:
    """Full-page screenshots at 1280 and 390 px wide, kept in test-artifacts/ to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"console-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def register_from_page(page, container_id: str, url: str) -> None:
    form = page.get_by_role("form", name="Register a member")
    form.get_by_label("Container id").fill(container_id)
    form.get_by_label("URL").fill(url)
    form.get_by_role("button", name="Register").click()


def step_cells(detail, i: int):
    return detail.get_by_role("table", name="Steps").locator("tbody tr").nth(i).locator("td")


def test_a_pipeline_is_made_from_the_form_started_and_followed_live(leader, members, context):
    for cid in ("labelling", "bms", "neck_nas"):
        members.start(cid, "3:success")
    admin = api_as(leader, ADMIN)
    admin.call("members.register", container_id="labelling", url=members.url("labelling"))
    page = open_console(context, leader, ADMIN, "/console/pipelines")
    page.evaluate("window.sameDocument = true")  # still there at the end: the page was never reloaded
    table = page.get_by_role("table", name="Members", exact=True)

    # Registering: the server's refusals land at their fields, then the right values register.
    register_from_page(page, "Neck-NAS", members.url("neck_nas"))
    expect(page.locator("#member-id-error")).to_contain_text("pattern")
    expect(page.get_by_label("Container id")).to_have_attribute("aria-invalid", "true")
    register_from_page(page, "neck_nas", "http://169.254.169.254:8089")  # link-local: never called
    expect(page.locator("#member-url-error")).to_contain_text("outbound.allow_hosts")
    expect(page.get_by_label("Container id")).not_to_have_attribute("aria-invalid", "true")
    assert next(m for m in admin.call("members.get_all")["members"] if m["container_id"] == "neck_nas")[
        "source"] == "config"  # neither refusal stored anything
    register_from_page(page, "neck_nas", members.url("neck_nas"))
    expect(table.locator("tbody tr").filter(has_text="neck_nas").locator("td").nth(2)).to_have_text("registered")
    expect(page.locator("#member-url-error")).to_have_count(0)
    register_from_page(page, "bms", members.url("bms"))
    expect(table.locator("tbody tr").filter(has_text="bms").locator("td").nth(1)).to_have_text(members.url("bms"))

    # The form: the project, members in order (with their readiness), an empty workflow refused at the steps.
    page.get_by_role("button", name="New pipeline").click()
    form = page.get_by_role("form", name="Create a pipeline")
    project = f"proj-{uuid4().hex[:6]}"
    form.get_by_label("Project id").fill(project)
    form.get_by_role("radio", name=re.compile("Create it now")).check()
    form.get_by_role("button", name="Create pipeline").click()
    expect(form.locator("#workflow-error")).to_contain_text("workflow")
    for cid in ("bms", "labelling", "neck_nas"):
        form.get_by_role("button", name=f"Add {cid}", exact=True).click()
    expect(form.locator("#workflow-error")).to_have_count(0)  # about the steps as they were sent
    form.get_by_role("button", name="Move step 2 up").click()
    steps = form.get_by_role("list", name="Steps in order").locator("li")
    expect(steps).to_have_count(3)
    assert [steps.nth(i).locator("code").inner_text() for i in range(3)] == ["labelling", "bms", "neck_nas"]
    expect(steps.nth(1)).to_contain_text("not asked")
    form.get_by_role("button", name=re.compile("Ask every member")).click()
    for i in range(3):
        expect(steps.nth(i)).to_contain_text("ready")
        expect(steps.nth(i)).not_to_contain_text("not")
    ready_row = form.get_by_role("table", name="Members to add").locator("tbody tr").filter(has_text="neck_nas")
    expect(ready_row.locator("td").nth(2)).to_have_text("ready")  # the last status_request answer
    form.get_by_role("radio", name=re.compile("Start at once")).check()
    shoot(page, "pipeline-create")
    form.get_by_role("button", name="Create and start pipeline").click()

    # The pipeline's page follows it: running, each step to completed, in order, without a reload.
    page.wait_for_url(re.compile(r"\?pipeline="))
    pid = page.url.split("pipeline=")[1]
    detail = page.get_by_role("region", name=f"Pipeline {pid}")
    expect(detail.get_by_role("heading", level=2)).to_contain_text("running")
    expect(step_cells(detail, 0).nth(2)).to_have_text("completed", timeout=60_000)
    expect(step_cells(detail, 1).nth(2)).to_have_text("running", timeout=60_000)
    expect(detail.get_by_role("table", name="Member call log")).to_contain_text("status_report")
    shoot(page, "pipeline-running")
    for i in (1, 2):
        expect(step_cells(detail, i).nth(2)).to_have_text("completed", timeout=60_000)
    expect(detail.get_by_role("heading", level=2)).to_contain_text("completed", timeout=30_000)
    assert [step_cells(detail, i).nth(1).inner_text() for i in range(3)] == ["labelling", "bms", "neck_nas"]
    expect(detail.locator("progress")).to_have_attribute("value", "3")
    assert page.evaluate("window.sameDocument") is True

    # Exactly one /start per member, as the member processes themselves counted.
    assert {cid: members.calls(cid).get("start", 0) for cid in ("labelling", "bms", "neck_nas")} == {
        "labelling": 1, "bms": 1, "neck_nas": 1}
    doc = admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]
    assert doc["project_id"] == project and doc["status"] == "completed"
    assert [(s["container_id"], s["start_calls"]) for s in doc["steps"]] == [
        ("labelling", 1), ("bms", 1), ("neck_nas", 1)]
    assert len(admin.call("workflows.get_all", project_id=project)["pipelines"]) == 1  # the refused try made none


def test_a_guest_sees_the_pipeline_and_no_control_and_is_refused(leader, members, context):
    members.start("bms", "30:success")
    admin = api_as(leader, ADMIN)
    admin.call("members.register", container_id="bms", url=members.url("bms"))
    pid = admin.call("workflows.create", project_id=f"proj-{uuid4().hex[:6]}", workflow=["bms"])["id"]
    admin.call("workflows.check_members", container_ids=["bms"])

    page = open_console(context, leader, GUEST, f"/console/pipelines?pipeline={pid}")
    detail = page.get_by_role("region", name=f"Pipeline {pid}")
    expect(detail.get_by_role("heading", level=2)).to_contain_text("created")
    bms = page.get_by_role("table", name="Members", exact=True).locator("tbody tr").filter(has_text="bms")
    expect(bms.locator("td").nth(3)).to_have_text("ready")  # the readiness is there to read
    assert page.get_by_role("button", name=CHANGING).count() == 0, page.get_by_role("button").all_inner_texts()
    assert page.get_by_role("form").count() == 0
    page.goto(leader.base_url + "/console/pipelines?new")  # no form even when asked for by address
    page.get_by_role("table", name="Members", exact=True).wait_for()
    assert page.get_by_role("form").count() == 0 and page.get_by_role("button", name=CHANGING).count() == 0

    refused = {name: status_of(page, name, body) for name, body in (
        ("workflows.create", {"project_id": "p", "workflow": ["bms"]}), ("workflows.start", {"pipeline": pid}),
        ("workflows.stop", {"pipeline": pid}), ("workflows.check_members", {}),
        ("members.register", {"container_id": "bms", "url": "http://127.0.0.1:1"}),
        ("members.remove", {"container_id": "bms"}))}
    assert refused == dict.fromkeys(refused, 403)
    assert admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]["status"] == "created"
    assert members.calls("bms").get("start", 0) == 0
    assert [m["url"] for m in admin.call("members.get_all")["members"] if m["container_id"] == "bms"] == [
        members.url("bms")]

    # A plain user creates and runs pipelines but manages no members.
    user = open_console(context, leader, USER, "/console/pipelines")
    user.get_by_role("button", name="New pipeline").wait_for()
    assert user.get_by_role("form", name="Register a member").count() == 0
    assert user.get_by_role("button", name="Remove bms").count() == 0
    assert status_of(user, "members.remove", {"container_id": "bms"}) == 403


def test_a_member_in_use_is_not_removed_and_the_error_is_at_its_row(leader, members, context):
    members.start("backbone_nas", "60:success")
    admin = api_as(leader, ADMIN)
    admin.call("members.register", container_id="backbone_nas", url=members.url("backbone_nas"))
    pid = admin.call("workflows.create", project_id=f"proj-{uuid4().hex[:6]}", workflow=["backbone_nas"])["id"]
    admin.call("workflows.start", pipeline=pid)

    page = open_console(context, leader, ADMIN, "/console/pipelines")
    row = page.get_by_role("table", name="Members", exact=True).locator("tbody tr").filter(has_text="backbone_nas")
    row.get_by_role("button", name="Remove backbone_nas").click()
    expect(row.get_by_role("alert")).to_contain_text(pid)
    err = admin.error("members.remove", container_id="backbone_nas")
    assert (err.status, err.meta["result_subcode"]) == (400, 1205)
    assert err.meta["error_data"] == {"field": "container_id", "rule": "not_in_use", "pipelines": [pid]}

    admin.call("workflows.stop", pipeline=pid)
    row.get_by_role("button", name="Remove backbone_nas").click()
    expect(row.get_by_role("cell").nth(2)).to_have_text("config")  # back to the operator's config URL
    assert row.get_by_role("button", name="Remove backbone_nas").count() == 0
    member = next(m for m in admin.call("members.get_all")["members"] if m["container_id"] == "backbone_nas")
    assert member["source"] == "config" and member["ready"] is None  # its readiness went with its URL

    # Nothing registered to remove: the operator's config member, or an id only another workspace knows.
    err = admin.error("members.remove", container_id="code_gen")
    assert (err.status, err.meta["result_subcode"], err.meta["error_data"]["field"]) == (400, 1203, "container_id")
    admin.call("members.register", container_id="custom_step", url=members.url("backbone_nas"))
    other = api_as(leader, OTHER)
    assert other.error("members.remove", container_id="custom_step").meta["result_subcode"] == 1203
    assert "custom_step" in {m["container_id"] for m in admin.call("members.get_all")["members"]}
    admin.call("members.remove", container_id="custom_step")
    assert "custom_step" not in {m["container_id"] for m in admin.call("members.get_all")["members"]}
    err = admin.error("members.remove", container_id="Not An Id")
    assert err.status == 400 and err.meta["error_data"]["field"] == "container_id"


def test_a_start_refused_for_a_member_not_ready_is_shown_on_the_created_pipeline(leader, context):
    admin = api_as(leader, ADMIN)
    admin.call("members.register", container_id="late_member", url=f"http://127.0.0.1:{free_port()}")  # nobody there
    page = open_console(context, leader, ADMIN, "/console/pipelines?new")
    row = page.get_by_role("table", name="Members", exact=True).locator("tbody tr").filter(has_text="late_member")
    expect(row.locator("td").nth(3)).to_have_text("not asked")
    row.get_by_role("button", name="Ask late_member").click()  # one member only
    expect(row.locator("td").nth(3)).to_have_text("not ready")
    expect(row.locator("td").nth(4)).to_contain_text("could not connect")
    form = page.get_by_role("form", name="Create a pipeline")
    form.get_by_label("Project id").fill(f"proj-{uuid4().hex[:6]}")
    form.get_by_role("button", name="Add late_member", exact=True).click()
    expect(form.get_by_role("list", name="Steps in order")).to_contain_text("not ready")  # as last asked
    form.get_by_role("button", name="Create and start pipeline").click()
    page.wait_for_url(re.compile(r"\?pipeline="))
    pid = page.url.split("pipeline=")[1]
    detail = page.get_by_role("region", name=f"Pipeline {pid}")
    expect(detail.get_by_role("alert")).to_contain_text("members not ready")
    expect(detail.locator("ul.not-ready")).to_contain_text("late_member")
    expect(detail.get_by_role("heading", level=2)).to_contain_text("created")
    expect(detail.get_by_role("button", name="Start pipeline")).to_be_visible()  # it can start later

    # A member removed while the form holds it: the server's error is at that step.
    page.get_by_role("button", name="New pipeline").click()
    form.get_by_label("Project id").fill(f"proj-{uuid4().hex[:6]}")
    form.get_by_role("button", name="Add late_member", exact=True).click()
    admin.call("members.remove", container_id="late_member")
    form.get_by_role("radio", name=re.compile("Create it now")).check()
    form.get_by_role("button", name="Create pipeline").click()
    expect(form.locator("#workflow-0-error")).to_contain_text("late_member")
    expect(form.get_by_role("list", name="Steps in order").locator("li.invalid")).to_have_count(1)
