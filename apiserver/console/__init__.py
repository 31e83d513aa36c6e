"""Owns serving the console: the operator's pages for the pipeline leader, the model registry,
deployments and the render manager, at ``/console/``.

The pages are static files (``static/``): Preact components written with htm, no build step, every
library vendored from the npm registry (``static/vendor/VENDORED.md``). They sign in with the same
cookie sign-in as the ClearML web app (``auth.login``) and call the same API endpoints, so every
role check is the endpoint's own. The Content-Security-Policy runs scripts only from the console's
own folder: no inline script, nothing uploaded to ``/files/`` (same origin) ever runs here.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, abort, redirect, request

from apiserver.service_repo.webapp import StaticSite

MOUNT = "/console"
STATIC = Path(__file__).resolve().parent / "static"


def content_security_policy(host_url: str) -> str:
    """Scripts only from the console's own folder (a path-limited source: the origin's /files/ is
    excluded), no inline script or style, API calls to this origin only."""
    scripts = host_url.rstrip("/") + MOUNT + "/"
    return ("default-src 'none'; "
            f"script-src {scripts}; "
            "style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


class Console(StaticSite):
    def __init__(self, directory: str | Path = STATIC):
        super().__init__(directory, "console")

    def register(self, app: Flask) -> None:
        app.add_url_rule(MOUNT, "console_root", lambda: redirect(MOUNT + "/", code=308), methods=["GET"])
        app.add_url_rule(MOUNT + "/", "console_index", self.page, defaults={"path": ""}, methods=["GET"])
        app.add_url_rule(MOUNT + "/<path:path>", "console_file", self.page, methods=["GET"])

    def page(self, path: str) -> Response:
        answer = self.answer(path)
        if answer is None:
            abort(404)
        answer.headers["Content-Security-Policy"] = content_security_policy(request.host_url)
        answer.headers["Referrer-Policy"] = "same-origin"
        answer.headers["X-Frame-Options"] = "DENY"
        return answer
