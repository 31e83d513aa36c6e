"""The ClearML web app served by the server itself, signed in through its own login page in a real
browser (Debian's chromium-headless-shell driven by Playwright)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import ROOT, ServerProcess, sign_in_page

# The packaged build, served at / with no flag; CLEARML_WEBAPP_DIR serves another build (--webapp).
OTHER_BUILD = os.environ.get("CLEARML_WEBAPP_DIR")
WEBAPP = Path(OTHER_BUILD) if OTHER_BUILD else ROOT / "apiserver" / "webapp" / "clearml-web"
USER, PASSWORD = "webapp-user", "webapp password 1"


@pytest.fixture(scope="module")
def web(mongo_uri, tmp_path_factory):
    users = f'[{{username: "{USER}", name: "Web User", password: "{PASSWORD}", role: "admin"}}]'
    proc = ServerProcess(mongo_uri, f"web_{time.time_ns()}", workers=2,
                         extra_env={"APISERVER__auth__fixed_users": users},
                         argv=None)
    if OTHER_BUILD:
        proc.argv += ["--webapp", OTHER_BUILD]
    proc.start(tmp_path_factory.mktemp("web"))
    yield proc
    proc.stop()


def test_the_server_serves_the_app_with_its_configuration(web):
    index = requests.get(web.base_url + "/", timeout=10)
    assert index.status_code == 200 and index.text == (WEBAPP / "index.html").read_text()
    assert index.headers["X-Content-Type-Options"] == "nosniff"
    conf = requests.get(web.base_url + "/configuration.json", timeout=10).json()
    assert (conf["apiBaseUrl"], conf["fileBaseUrl"]) == ("/api", "/files")
    # Client-side routes get the app; a missing asset and the API's own prefixes do not.
    deep = requests.get(web.base_url + "/projects/abc/experiments", timeout=10)
    assert deep.status_code == 200 and deep.text == index.text
    assert requests.get(web.base_url + "/no-such-chunk.js", timeout=10).status_code == 404
    assert requests.get(web.base_url + "/api/nothing-here", timeout=10).status_code == 404
    assert requests.get(web.base_url + "/version.json", timeout=10).json()
    # The console keeps its own prefix next to the app's client-side routes.
    console = requests.get(web.base_url + "/console/pipelines", timeout=10)
    assert console.status_code == 200 and console.text != index.text and "/console/app.js" in console.text
    assert requests.get(web.base_url + "/console/no-such.js", timeout=10).status_code == 404
    # The API still answers next to the app.
    assert requests.get(web.base_url + "/health", timeout=10).json()["status"] == "ok"
    assert requests.post(web.base_url + "/debug.ping", timeout=10).status_code == 401


def test_sign_in_through_the_login_page_and_out_again(web, page):
    sign_in_page(page, web.base_url, USER, PASSWORD)
    page.get_by_text("Projects Dashboard", exact=False).first.wait_for(timeout=30_000)
    calls = {name: status for status, name, _ in page.api_log}
    assert calls["auth.login"] == 200 and calls["users.get_current_user"] == 200
    assert not [c for c in page.api_log if c[0] == 401], page.api_log
    cookie = next(c for c in page.context.cookies() if c["name"] == "clearml_token_basic")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # Signing out (what the app's menu calls) leads back to the login page.
    status = page.evaluate("""async () => (await fetch('/api/v999.0/login.logout', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: '{}'})).status""")
    assert status == 200
    assert not [c for c in page.context.cookies() if c["name"] == "clearml_token_basic"]
    page.goto(web.base_url + "/dashboard")
    page.locator("input[type=password]").wait_for(timeout=30_000)


def test_an_expired_session_leads_to_the_login_page(web, page):
    token = requests.post(web.base_url + "/auth.login", json={"expiration_sec": 1},
                          auth=(USER, PASSWORD), timeout=10).json()["data"]["token"]
    host = web.base_url.split("//", 1)[1].split(":")[0]
    page.context.add_cookies([{"name": "clearml_token_basic", "value": token, "domain": host, "path": "/",
                               "httpOnly": True, "sameSite": "Strict"}])
    time.sleep(1.5)  # the token's own expiry, not a wait for the server
    page.goto(web.base_url + "/dashboard")
    page.locator("input[type=password]").wait_for(timeout=30_000)
    assert "/login" in page.url
