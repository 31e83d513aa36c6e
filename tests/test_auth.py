"""Identity through real HTTP: login, tokens, credentials, roles, companies and bad headers."""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import stat
import sys
import time

import jwt
import pytest
import requests

from tests.helpers import ADMIN_KEY, ADMIN_SECRET, ApiError, ServerProcess, basic


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_login_returns_a_jwt_the_sdk_can_read(server):
    token = server.client(basic(ADMIN_KEY, ADMIN_SECRET)).call("auth.login")["token"]
    claims = claims_of(token)
    assert claims["api_version"] == "2.23" and claims["server_version"]
    assert set(claims["identity"]) == {"user", "company", "role", "user_name", "company_name"}
    assert claims["identity"]["role"] == "admin" and claims["identity"]["company_name"] == "default"
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


@pytest.mark.parametrize("header, subcode", [
    (None, 20), ("Digest abc", 10), ("Basic !!!notbase64", 21), ("Basic " + base64.b64encode(b"nocolon").decode(), 21),
    (basic(ADMIN_KEY, "wrong-secret"), 22), (basic("NOSUCHKEY", ADMIN_SECRET), 22), ("Bearer ", 21),
    ("Bearer not.a.jwt", 30),
])
def test_login_failures(server, header, subcode):
    err = server.client(header).error("auth.login")
    assert (err.status, err.code, err.subcode) == (401, 401, subcode)


def test_token_expiry_and_refresh(server):
    longer = server.client(basic(ADMIN_KEY, ADMIN_SECRET)).call("auth.login", expiration_sec=600)["token"]
    err = server.client(f"Bearer {longer}").error("auth.login")  # a token never renews itself
    assert (err.code, err.subcode) == (401, 10) and "Basic" in err.msg
    short = server.client(basic(ADMIN_KEY, ADMIN_SECRET)).call("auth.login", expiration_sec=1)["token"]
    client = server.client(f"Bearer {short}")
    assert client.call("debug.ping") == {"msg": "ping"}
    refreshed = server.client(basic(ADMIN_KEY, ADMIN_SECRET)).call("auth.login")["token"]
    time.sleep(2.1)
    err = client.error("debug.ping")
    assert (err.code, err.subcode) == (401, 30) and "expired" in err.msg
    assert server.client(f"Bearer {refreshed}").call("debug.ping") == {"msg": "ping"}
    err = server.client(basic(ADMIN_KEY, ADMIN_SECRET)).error("auth.login", expiration_sec=10**9)
    assert (err.code, err.subcode, err.meta["error_data"]) == (400, 12, {"field": "expiration_sec", "rule": "maximum"})


def test_credentials_lifecycle_and_revocation(admin, other_admin, server):
    new = admin.call("auth.create_credentials", label="ci")["credentials"]
    assert new["secret_key"] and new["label"] == "ci"
    listed = admin.call("auth.get_credentials")["credentials"]
    assert new["access_key"] in [c["access_key"] for c in listed]
    assert "secret" not in json.dumps(listed).replace("secret_key", "")  # no secret or hash comes back
    keyed = server.client(basic(new["access_key"], new["secret_key"]))
    assert keyed.call("debug.ping") == {"msg": "ping"}  # Basic works on any endpoint
    # The settings page renames a key; only the owner's own keys change.
    assert admin.call("auth.edit_credentials", access_key=new["access_key"], label="ci runner") == {"updated": 1}
    labels = {c["access_key"]: c["label"] for c in admin.call("auth.get_credentials")["credentials"]}
    assert labels[new["access_key"]] == "ci runner"
    assert keyed.call("auth.edit_credentials", access_key=ADMIN_KEY, label="taken") == {"updated": 1}
    assert other_admin.call("auth.edit_credentials", access_key=new["access_key"], label="x") == {"updated": 0}
    labels = {c["access_key"]: c["label"] for c in admin.call("auth.get_credentials")["credentials"]}
    assert labels[new["access_key"]] == "ci runner"
    assert admin.call("auth.revoke_credentials", access_key=new["access_key"]) == {"revoked": 1}
    assert admin.call("auth.revoke_credentials", access_key=new["access_key"]) == {"revoked": 0}
    for name in ("auth.login", "debug.ping"):
        err = keyed.error(name)
        assert (err.code, err.subcode) == (401, 22)
    assert new["access_key"] not in [c["access_key"] for c in admin.call("auth.get_credentials")["credentials"]]


@pytest.fixture(scope="module")
def plain_user(admin, server):
    made = admin.call("users.create", name="Pat", role="user", credentials=True)
    return made["id"], server.client().login(made["credentials"]["access_key"], made["credentials"]["secret_key"])


@pytest.fixture(scope="module")
def guest(admin, server):
    made = admin.call("users.create", name="Gil", role="guest", credentials=True)
    return server.client().login(made["credentials"]["access_key"], made["credentials"]["secret_key"])


def test_role_checks(admin, plain_user, guest):
    user_id, user = plain_user
    me = user.call("users.get_current_user")["user"]
    assert me["id"] == user_id and me["role"] == "user" and me["company"]["name"] == "default"
    for client, name, data in ((user, "users.create", {"name": "x"}), (user, "auth.edit_user", {"user": user_id,
                                                                                                   "role": "admin"}),
                               (guest, "auth.create_credentials", {}), (guest, "users.create", {"name": "x"})):
        err = client.error(name, **data)
        assert (err.status, err.code, err.subcode) == (403, 403, 20), name
    assert guest.call("users.get_current_user")["user"]["role"] == "guest"  # reads are fine
    err = admin.error("users.create", name="root wannabe", role="root")
    assert (err.code, err.subcode) == (403, 20) and "cannot grant" in err.msg
    assert admin.call("auth.edit_user", user=user_id, role="annotator")["updated"] == 1
    assert admin.call("users.get_by_id", user=user_id)["user"]["role"] == "annotator"
    admin.call("auth.edit_user", user=user_id, role="user")


def test_validation_of_identity_requests(admin):
    err = admin.error("users.create", name="x", role="wizard")
    assert err.code == 400 and err.meta["error_data"] == {"field": "role", "rule": "enum"}
    err = admin.error("users.get_all", name="([unclosed")
    assert (err.code, err.subcode) == (400, 21)
    err = admin.error("users.get_all", page=1)
    assert (err.code, err.subcode, err.meta["error_data"]) == (400, 12, {"field": "page_size", "rule": "dependencies"})


def test_companies_are_isolated(admin, other_admin, plain_user):
    user_id, _ = plain_user
    mine = {u["id"] for u in admin.call("users.get_all")["users"]}
    theirs = {u["id"] for u in other_admin.call("users.get_all")["users"]}
    assert user_id in mine and not mine & theirs
    err = other_admin.error("users.get_by_id", user=user_id)
    assert err.code == 400 and err.subcode == 302
    assert other_admin.error("auth.edit_user", user=user_id, role="guest").subcode == 302
    assert admin.call("users.get_by_id", user=user_id)["user"]["role"] == "user"


def test_registry_token_form(admin, server):
    admin.call("users.create", name="Reg", email="reg@example.com", password="correct-horse", role="user")
    resp = requests.post(server.base_url + "/api/auth/token/obtain",
                         json={"email": "reg@example.com", "password": "correct-horse"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["workspace"]["name"] == "default"
    bearer = {"Authorization": f"Bearer {body['access']}"}
    spaces = requests.get(server.base_url + "/api/auth/workspace", headers=bearer)
    assert spaces.status_code == 200 and spaces.json() == [{"id": body["workspace"]["id"], "name": "default",
                                                            "role": "user", "registry_role": "USER"}]
    for bad in ({"email": "reg@example.com", "password": "wrong"},
                {"email": "reg@example.com", "password": "correct-horse", "workspace": "other-co"},
                {"access_key": ADMIN_KEY, "secret_key": "nope"}):
        resp = requests.post(server.base_url + "/api/auth/token/obtain", json=bad)
        assert resp.status_code == 401 and resp.json()["message_code"] == "unauthorized.invalid_credentials"
    resp = requests.post(server.base_url + "/api/auth/token/obtain", json={"email": "reg@example.com"})
    assert resp.status_code == 400 and "message" in resp.json()
    resp = requests.post(server.base_url + "/api/auth/token/obtain",
                         json={"access_key": ADMIN_KEY, "secret_key": ADMIN_SECRET, "workspace": "default"})
    assert resp.status_code == 200
    admin_spaces = requests.get(server.base_url + "/api/auth/workspace",
                                headers={"Authorization": f"Bearer {resp.json()['access']}"}).json()
    assert admin_spaces[0]["registry_role"] == "SUPERVISOR"
    assert requests.get(server.base_url + "/api/auth/workspace").status_code == 401


def _same_jwt(a: str, b: str) -> bool:
    """Whether two JWT texts decode to the same bytes in every part."""
    def parts(text: str) -> list[bytes] | None:
        try:
            return [base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in text.split(".")]
        except (ValueError, binascii.Error):
            return None
    pa = parts(a)
    return pa is not None and pa == parts(b)


def _malformed_headers(token: str, n: int = 200) -> list[str]:
    rng = random.Random(1234)
    head, body, sig = token.split(".")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    forged_claims = claims_of(token)
    forged_claims["identity"]["role"] = "root"
    forged_body = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    fixed = [
        f"Bearer {none_header}.{body}.", f"Bearer {none_header}.{body}", f"Bearer {head}.{forged_body}.{sig}",
        f"Bearer {token[:-3]}", f"Bearer {token}x", f"Bearer {head}.{body}", f"Bearer {token} extra",
        "Bearer", "Basic", "Basic ", "Token " + token, "bearer" + token, token, "Bearer " + "A" * 5000,
        "Basic " + base64.b64encode(b":").decode(), "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
        "Bearer " + jwt.encode({"identity": {"user": "u", "company": "c", "role": "root"}, "iat": 0,
                                "exp": 2**33}, "wrong-secret-" * 4, algorithm="HS256"),
        "Bearer " + jwt.encode({"iat": 0, "exp": 2**33}, "x" * 40, algorithm="HS256"),
    ]
    out = list(fixed)
    alphabet = [chr(c) for c in range(32, 127)]
    while len(out) < n:
        kind = rng.randrange(4)
        if kind == 0:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 80))))
        elif kind == 1:
            pos = rng.randrange(len(token))
            mutated = token[:pos] + rng.choice("ABCxyz019-_.") + token[pos + 1:]
            if _same_jwt(mutated, token):
                continue  # only unused low bits of a final base64 character changed: the same token
            out.append("Bearer " + mutated)
        elif kind == 2:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            out.append("Basic " + base64.b64encode(raw).decode())
        else:
            out.append(rng.choice(["Bearer ", "Basic ", "", "JWT ", "bearer  "]) +
                       base64.b64encode(os.urandom(rng.randrange(1, 60))).decode())
    return out[:n]


def test_fuzzed_authorization_headers_are_all_401(admin, server):
    token = admin.auth.split(" ", 1)[1]
    session = requests.Session()
    statuses = {}
    for header in _malformed_headers(token):
        try:
            resp = session.post(server.base_url + "/debug.ping", headers={"Authorization": header})
        except (requests.exceptions.InvalidHeader, ValueError):
            continue  # not sendable as an HTTP header at all
        statuses[header] = resp.status_code
        assert resp.json()["meta"]["result_code"] == 401
    assert len(statuses) >= 190
    assert set(statuses.values()) == {401}


def test_first_start_generates_one_admin(tmp_path, mongo_uri):
    proc = ServerProcess(mongo_uri, f"fresh_{os.getpid()}", workers=2,
                         extra_env={"APISERVER__auth__generated_credentials_file": str(tmp_path / "admin.json")})
    proc.env.pop("APISERVER_ADMIN_ACCESS_KEY")
    proc.env.pop("APISERVER_ADMIN_SECRET_KEY")
    proc.start(tmp_path)
    try:
        path = tmp_path / "admin.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        creds = json.loads(path.read_text())
        admin = proc.client().login(creds["access_key"], creds["secret_key"])
        users = admin.call("users.get_all")["users"]
        assert [u["role"] for u in users] == ["admin"]  # two workers, still one admin
        assert proc.log_path.read_text().count(creds["secret_key"]) == 1  # printed once, by one worker
        with pytest.raises(ApiError):
            proc.client(basic(creds["access_key"], "not-the-secret")).call("debug.ping")
    finally:
        proc.stop()


def test_admin_re_key_and_token_secret_rotation_across_restarts(tmp_path, mongo_uri):
    """The README's claims: the admin from the environment is re-keyed when its secret changes, a
    token outlives a restart while auth.token_secret stays, and changing that secret logs everyone out."""
    db_name = f"rekey_{os.getpid()}_{time.time_ns()}"

    def start(secret: str, token_secret: str) -> ServerProcess:
        proc = ServerProcess(mongo_uri, db_name, workers=1,
                             extra_env={"APISERVER__auth__token_secret": token_secret})
        proc.env["APISERVER_ADMIN_SECRET_KEY"] = secret
        return proc.start(tmp_path)

    first = start(ADMIN_SECRET, "first-signing-secret-0123456789abcdef")
    try:
        token = first.client().login(ADMIN_KEY, ADMIN_SECRET).auth
        assert first.client(token).call("debug.ping") == {"msg": "ping"}
    finally:
        first.stop()
    same = start(ADMIN_SECRET, "first-signing-secret-0123456789abcdef")
    try:  # positive control: the same signing secret, so the token still works after the restart
        assert same.client(token).call("debug.ping") == {"msg": "ping"}
    finally:
        same.stop()
    new_secret = "re-keyed-admin-secret-00000000000000000"
    rotated = start(new_secret, "second-signing-secret-0123456789abcdef")
    try:
        err = rotated.client(token).error("debug.ping")
        assert (err.status, err.code, err.subcode) == (401, 401, 30)
        err = rotated.client(basic(ADMIN_KEY, ADMIN_SECRET)).error("auth.login")
        assert (err.status, err.code, err.subcode) == (401, 401, 22)  # the old secret no longer signs in
        admin = rotated.client().login(ADMIN_KEY, new_secret)
        assert [u["role"] for u in admin.call("users.get_all")["users"]] == ["admin"]  # re-keyed, not a second admin
    finally:
        rotated.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
