"""A WSGI app for the dispatch and auth benchmarks: the real dispatcher over a tiny declared service,
next to a bare Flask route that returns the same JSON.

The declared endpoints go through the full pipeline (routing, version negotiation, auth where
declared, JSON-Schema validation, handler, envelope). With ``BENCH_MONGODB_URI`` set, tokens are
also re-checked against the database (key not revoked, role unchanged) as the server does.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Flask, jsonify

from apiserver.bll.auth.identity import Identity
from apiserver.bll.auth.tokens import TokenService
from apiserver.schema.loader import SERVICES_DIR, load_specs
from apiserver.service_repo.auth import Authenticator
from apiserver.service_repo.dispatcher import Dispatcher
from apiserver.service_repo.endpoint import Binding, bind_handlers

SECRET = os.environ.get("BENCH_TOKEN_SECRET", "bench-secret-0123456789abcdef0123456789")
SPEC = """
ping_open {
  authorize: false
  "2.1" {
    request { type: object, properties { text { type: string }, count { type: integer, minimum: 0 } } }
    response { type: object, properties { msg { type: string } } }
  }
}
ping_auth {
  "2.1" {
    request { type: object, properties { text { type: string }, count { type: integer, minimum: 0 } } }
    response { type: object, properties { msg { type: string } } }
  }
}
"""


def ping(call):
    return {"msg": "ping"}


BENCH_IDENTITY = Identity(user="u" * 32, company="c" * 32, role="user", user_name="bench",
                          credential="BENCHKEY0000000000000000")
RECHECK_SEC = 2.0  # the server's default auth.token_recheck_sec


def tokens() -> TokenService:
    still_valid = None
    if os.environ.get("BENCH_MONGODB_URI"):
        import mongoengine

        from apiserver.bll.auth.users import AuthBLL

        mongoengine.connect(db="bench_auth", host=os.environ["BENCH_MONGODB_URI"], alias="default")
        still_valid = AuthBLL(bcrypt_rounds=4).token_problem
    return TokenService(SECRET, 3600, 86400, "2.23", "bench", still_valid=still_valid, recheck_sec=RECHECK_SEC)


def seed_identity(uri: str) -> None:
    """The user and key the bench token names, so the database re-check finds them valid."""
    import pymongo

    db = pymongo.MongoClient(uri)["bench_auth"]
    ident = BENCH_IDENTITY
    db.users.replace_one({"_id": ident.user}, {"_id": ident.user, "company": ident.company, "name": "bench",
                                               "role": ident.role, "token_version": 0}, upsert=True)
    db.credentials.replace_one({"access_key": ident.credential}, {
        "access_key": ident.credential, "secret_hash": "x", "user": ident.user, "company": ident.company},
        upsert=True)


def bench_token() -> str:
    return TokenService(SECRET, 3600, 86400, "2.23", "bench").issue(BENCH_IDENTITY)


def observe(app: Flask) -> None:
    """bench/observability.py: the server's request metrics (BENCH_METRICS) and JSON log lines to a
    file (BENCH_JSON_LOGS, BENCH_LOG_FILE), as create_app installs them."""
    metrics_on, json_logs = bool(os.environ.get("BENCH_METRICS")), bool(os.environ.get("BENCH_JSON_LOGS"))
    if json_logs:
        import logging

        from apiserver.jsonlog import JsonLinesFormatter

        handler = logging.FileHandler(os.environ["BENCH_LOG_FILE"])
        handler.setFormatter(JsonLinesFormatter())
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
    if metrics_on or json_logs:
        from apiserver.service_repo.observe import RequestObserver

        RequestObserver(metrics_enabled=metrics_on, log_requests=json_logs).register(app)


def build() -> Flask:
    folder = Path(tempfile.mkdtemp(prefix="bench-specs-"))
    (folder / "_common.conf").write_text((SERVICES_DIR / "_common.conf").read_text())
    (folder / "bench.conf").write_text(SPEC)
    specs = load_specs(folder)
    handlers = bind_handlers(specs, [Binding("bench.ping_open", None, ping), Binding("bench.ping_auth", None, ping)])
    app = Flask("bench")
    observe(app)
    Dispatcher(specs, handlers, Authenticator(tokens(), users=None), max_version=(2, 23)).register(app)

    @app.route("/bare", methods=["GET", "POST"])
    def bare():
        return jsonify({"msg": "ping"})

    @app.route("/")
    def root():
        return "ok"

    return app


app = build()
