"""Session fixtures: one real MongoDB-protocol database and one real server process.

The database is SecantusDB started through the project's own launcher on a temp folder, or the
MongoDB at ``MONGODB_URI`` when that is set. Each test session uses a fresh database name.
"""

from __future__ import annotations

import os
from uuid import uuid4

import pytest

from apiserver.database.embedded import EmbeddedDatabase
from tests.find_browser import find_browser
from tests.helpers import (
    ADMIN_KEY,
    ADMIN_SECRET,
    ALLOW_LOOPBACK,
    ARTIFACTS,
    LOOPBACK_HOSTS,
    OTHER_KEY,
    OTHER_SECRET,
    STARTED_SERVERS,
    ApiClient,
    ServerProcess,
    with_bounded_waits,
)

pytest_plugins = ["tests.watchdog"]

OTHER_ADMIN = {"username": "other-admin", "name": "Other Admin", "company": "other-co", "role": "admin",
               "access_key": OTHER_KEY, "secret_key": OTHER_SECRET}
OTHER_COMPANY_USERS = "[{" + ", ".join(f'{k}: "{v}"' for k, v in OTHER_ADMIN.items()) + "}]"


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
        return
    db = EmbeddedDatabase(tmp_path_factory.mktemp("mongo"), start_timeout=60)
    yield with_bounded_waits(db.ensure_running())
    db.stop()


@pytest.fixture(scope="session")
def db_name() -> str:
    return f"apitest_{uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def server(mongo_uri, db_name, tmp_path_factory):
    """A real ``python -m apiserver`` with two gunicorn workers; a second company is configured; it may
    call anything on loopback (members and stand-ins that tests run)."""
    files = tmp_path_factory.mktemp("files")
    proc = ServerProcess(mongo_uri, db_name, workers=2,
                         extra_env={"APISERVER__auth__fixed_users": OTHER_COMPANY_USERS, **ALLOW_LOOPBACK,
                                    "APISERVER__files__local__dir": str(files),
                                    # the in-process app shares this database and queues the deletions
                                    # of its own store's files: this server's job must not take them
                                    # (it would delete them from its store and drop them from the queue)
                                    "APISERVER__files__delete_check_sec": "86400",
                                    # every test client comes from 127.0.0.1: throttle per account only
                                    "APISERVER__auth__sign_in_throttle__max_failures_per_address": "100000"})
    proc.files_dir = files
    proc.start(tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def admin(server) -> ApiClient:
    return server.admin()


@pytest.fixture(scope="session")
def other_admin(server) -> ApiClient:
    """Admin of another company."""
    return server.client().login(OTHER_KEY, OTHER_SECRET)


@pytest.fixture(scope="session")
def app(mongo_uri, db_name, tmp_path_factory):
    """The Flask app in this process (no scheduler), for fast API tests through the test client."""
    from apiserver.app import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APISERVER_ADMIN_ACCESS_KEY", ADMIN_KEY)
        mp.setenv("APISERVER_ADMIN_SECRET_KEY", ADMIN_SECRET)
        application = create_app(overrides={"database.uri": mongo_uri, "database.name": db_name,
                                            "auth.bcrypt_rounds": 4, "auth.fixed_users": [OTHER_ADMIN],
                                            "auth.sign_in_throttle.max_failures_per_address": 100000,
                                            "outbound.allow_hosts": LOOPBACK_HOSTS,
                                            "files.local.dir": str(tmp_path_factory.mktemp("app-files"))},
                                 start_scheduler=False)
    return application


@pytest.fixture()
def web(app):
    """A bare Flask test client of the in-process app (file-server bodies, raw requests)."""
    return app.test_client()


@pytest.fixture()
def files(app):
    """The in-process app's file store rules (FileBLL)."""
    from apiserver.state import get_state

    return get_state().files


@pytest.fixture()
def client(app) -> ApiClient:
    """Unauthenticated in-process client."""
    return ApiClient(flask_client=app.test_client())


@pytest.fixture(scope="session")
def api(app) -> ApiClient:
    """In-process client logged in as the default company's admin."""
    return ApiClient(flask_client=app.test_client()).login(ADMIN_KEY, ADMIN_SECRET)


@pytest.fixture(scope="session")
def other_api(app) -> ApiClient:
    """In-process client logged in as the admin of another company."""
    return ApiClient(flask_client=app.test_client()).login(OTHER_KEY, OTHER_SECRET)


@pytest.fixture(scope="session")
def mlflow_stack(tmp_path_factory):
    """One real MLflow for the session (tests/mlflow_env.py): a registered model with versions 1 and
    2, an explainer model "<name>-why" version 1, and a scoring server for version 1."""
    from tests.mlflow_env import MlflowStack

    stack = MlflowStack(tmp_path_factory.mktemp("mlflow"))
    try:
        stack.start_tracking()
        stack.model_name = f"credit-risk-{uuid4().hex[:6]}"
        assert stack.register_model(stack.model_name) == "1"
        assert stack.register_model(stack.model_name) == "2"
        assert stack.register_model(stack.model_name + "-why") == "1"
        stack.scoring_url = stack.serve(stack.model_name, "1")
        yield stack
    finally:
        stack.stop()


def pytest_collection_finish(session):
    """The MLflow venv takes a minute to build: build it while the tests before the first MLflow one run."""
    if any("mlflow_stack" in item.fixturenames for item in session.items):
        from tests.mlflow_env import build_in_background

        build_in_background()


# Under CI (``CI=true``, as .ci/run is run) a skip is a failure: every real part a test skips without
# (the browser, the web app build, the SDK, MLflow) is installed there, so a skip means a part went
# missing and the claim its tests stand for went unchecked. A local run still skips, saying why.
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _fail_skip_under_ci(report) -> None:
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which makes a skip a failure: {reason}"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the test item (browser fixtures keep a screenshot of a failure);
    under CI a skipped test fails."""
    outcome = yield
    report = outcome.get_result()
    _fail_skip_under_ci(report)
    setattr(item, f"rep_{report.when}", report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Under CI a module skipped at collection (``pytest.importorskip``) fails too."""
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())


BROWSER = find_browser()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's chromium-headless-shell, or Playwright's download: wherever
    scripts/install-browser.sh put it, tests/find_browser.py finds it) driven by Playwright."""
    if BROWSER is None:
        (pytest.fail if CI else pytest.skip)(
            "no Chromium: run scripts/install-browser.sh (it installs chromium-headless-shell)")
    from playwright import sync_api  # a requirement (requirements-test.txt): missing, it is a failure

    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=BROWSER, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, request):
    """A fresh browser page at 1280x800 whose ``api_log`` lists (status, endpoint, request body) of every
    API call; a screenshot is kept in test-artifacts/ when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.api_log = []
    page.on("response", lambda r: page.api_log.append((r.status, r.url.rsplit("/", 1)[-1], r.request.post_data))
            if "/api/" in r.url else None)
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture(scope="session", autouse=True)
def server_logs_hold_no_unexpected_error():
    """At the end of the run: no server this run started logged a traceback or a worker's death its
    test did not expect (an exception swallowed by a background job, a 500, or a worker killed under
    a request would otherwise pass unnoticed)."""
    yield
    problems = [(srv.log_path, block) for srv in STARTED_SERVERS for block in srv.unexpected_errors()]
    assert not problems, f"{len(problems)} unexpected errors in server logs:\n" + "\n\n".join(
        f"--- {path}:\n{block[-3000:]}" for path, block in problems[:5])


def pytest_terminal_summary(terminalreporter):
    """Name every request the test clients sent again (tests/helpers.send), so a run that needed it
    says so even when it passed."""
    from tests.helpers import RESENT

    if RESENT:
        terminalreporter.section(f"{len(RESENT)} requests sent again after their connection closed unanswered")
        for method, url, reason in RESENT:
            terminalreporter.line(f"{method} {url}: {reason}")
