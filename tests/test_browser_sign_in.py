"""Browser sign-in as the ClearML web app does it: password sign-in sets an HttpOnly session cookie,
every endpoint accepts the cookie with the app's client header (CSRF), logout clears it."""

from __future__ import annotations

import time

import pytest
import requests

from tests.helpers import ServerProcess, basic

CLIENT = {"X-Clearml-Client": "Webapp-2.5.0"}
COOKIE = "clearml_token_basic"


@pytest.fixture(scope="module")
def person(admin):
    name = f"person-{time.time_ns()}"
    admin.call("users.create", name="A Person", username=name, password="a long password 1")
    return name, "a long password 1"


def _sign_in(base_url: str, name: str, password: str, **headers) -> requests.Session:
    session = requests.Session()
    resp = session.post(base_url + "/api/v999.0/auth.login", json={},
                        headers={"Authorization": basic(name, password), **CLIENT, **headers}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["token"]  # API clients still get the token in the body
    return session


def test_supported_modes_needs_no_credentials_and_offers_passwords(server):
    resp = requests.post(server.base_url + "/api/v999.0/login.supported_modes", json={}, timeout=10)
    data = resp.json()["data"]
    assert resp.status_code == 200
    assert data["basic"]["enabled"] is True and data["authenticated"] is False


def test_password_sign_in_sets_a_strict_http_only_cookie_that_every_endpoint_accepts(server, person):
    session = _sign_in(server.base_url, *person)
    raw = next(c for c in session.cookies if c.name == COOKIE)
    assert raw.has_nonstandard_attr("HttpOnly") and raw.get_nonstandard_attr("SameSite") == "Strict"
    assert raw.secure is False  # plain HTTP here; see the trusted-proxy test
    me = session.post(server.base_url + "/api/v999.0/users.get_current_user", json={}, headers=CLIENT, timeout=10)
    assert me.status_code == 200 and me.json()["data"]["user"]["name"] == "A Person"
    tasks = session.post(server.base_url + "/api/v999.0/tasks.get_all_ex", json={"page_size": 1}, headers=CLIENT,
                         timeout=10)
    assert tasks.status_code == 200
    modes = session.post(server.base_url + "/api/v999.0/login.supported_modes", json={}, timeout=10)
    assert modes.json()["data"]["authenticated"] is True


def test_a_cookie_only_request_without_the_client_header_or_json_is_refused(server, person):
    session = _sign_in(server.base_url, *person)
    url = server.base_url + "/api/v999.0/users.get_current_user"
    no_header = session.post(url, json={}, timeout=10)
    assert no_header.status_code == 401 and "X-Clearml-Client" in no_header.json()["meta"]["result_msg"]
    form = session.post(url, data={"a": "b"}, headers=CLIENT, timeout=10)  # what a cross-site form can send
    assert form.status_code == 401 and "application/json" in form.json()["meta"]["result_msg"]
    ok = session.post(url, json={}, headers=CLIENT, timeout=10)  # positive control
    assert ok.status_code == 200
    # The web app's own calls carry no client header: the browser's fetch metadata says same-origin.
    own = {"Sec-Fetch-Site": "same-origin", "Origin": server.base_url}
    assert session.post(url, json={}, headers=own, timeout=10).status_code == 200
    assert session.post(url, json={}, headers={"Origin": server.base_url}, timeout=10).status_code == 200
    for foreign in ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
                    {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.127.0.0.1.example"},
                    {"Origin": "https://evil.example"}):
        assert session.post(url, json={}, headers=foreign, timeout=10).status_code == 401, foreign


def test_key_and_secret_sign_in_sets_no_cookie(server):
    from tests.helpers import ADMIN_KEY, ADMIN_SECRET

    resp = requests.post(server.base_url + "/auth.login", headers={"Authorization": basic(ADMIN_KEY, ADMIN_SECRET)},
                         timeout=10)
    assert resp.status_code == 200 and COOKIE not in resp.cookies


def test_logout_clears_the_cookie_and_the_session_ends(server, person):
    session = _sign_in(server.base_url, *person)
    resp = session.post(server.base_url + "/api/v999.0/login.logout", json={}, headers=CLIENT, timeout=10)
    assert resp.status_code == 200
    assert COOKIE in resp.headers["Set-Cookie"] and ("Max-Age=0" in resp.headers["Set-Cookie"]
                                                     or "1970" in resp.headers["Set-Cookie"])
    assert COOKIE not in session.cookies
    after = session.post(server.base_url + "/api/v999.0/users.get_current_user", json={}, headers=CLIENT, timeout=10)
    assert after.status_code == 401


def test_wrong_passwords_are_rate_limited_per_user_name(server, admin):
    name = f"limited-{time.time_ns()}"
    admin.call("users.create", name="Limited", username=name, password="the right password")
    url = server.base_url + "/api/v999.0/auth.login"
    codes = [requests.post(url, json={}, headers={"Authorization": basic(name, f"wrong {i}"), **CLIENT},
                           timeout=10).status_code for i in range(11)]
    assert codes == [401] * 10 + [429]


def test_the_cookie_is_secure_behind_a_trusted_https_proxy(mongo_uri, tmp_path, admin):
    proc = ServerProcess(mongo_uri, f"cookie_{time.time_ns()}", workers=1,
                         extra_env={"APISERVER__apiserver__trusted_proxies": '["127.0.0.1"]'}).start(tmp_path)
    try:
        proc.admin().call("users.create", name="Proxied", username="proxied", password="proxied password")
        url = proc.base_url + "/auth.login"
        auth = {"Authorization": basic("proxied", "proxied password"), **CLIENT}
        behind = requests.post(url, json={}, headers={**auth, "X-Forwarded-Proto": "https"}, timeout=10)
        assert "Secure" in behind.headers["Set-Cookie"]
        direct = requests.post(url, json={}, headers=auth, timeout=10)  # positive control
        assert "Secure" not in direct.headers["Set-Cookie"]
    finally:
        proc.stop()
