"""A WSGI app for the dispatch and auth benchmarks: the real dispatcher over a tiny declared service,
next to a bare Flask route that returns the same JSON.

The declared endpoints go through the full pipeline (routing, version negotiation, auth where
declared, JSON-Schema validation, handler, envelope); the database is not involved.
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


def tokens() -> TokenService:
    return TokenService(SECRET, 3600, 86400, "2.23", "bench")


def bench_token() -> str:
    return tokens().issue(Identity(user="u" * 32, company="c" * 32, role="user", user_name="bench"))


def build() -> Flask:
    folder = Path(tempfile.mkdtemp(prefix="bench-specs-"))
    (folder / "_common.conf").write_text((SERVICES_DIR / "_common.conf").read_text())
    (folder / "bench.conf").write_text(SPEC)
    specs = load_specs(folder)
    handlers = bind_handlers(specs, [Binding("bench.ping_open", None, ping), Binding("bench.ping_auth", None, ping)])
    app = Flask("bench")
    Dispatcher(specs, handlers, Authenticator(tokens(), users=None), max_version=(2, 23)).register(app)

    @app.route("/bare", methods=["GET", "POST"])
    def bare():
        return jsonify({"msg": "ping"})

    @app.route("/")
    def root():
        return "ok"

    return app


app = build()
