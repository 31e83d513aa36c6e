"""Owns serving browser apps from the API server's own origin: a folder of static files under a mount
point, where a path with no file extension that names no file gets ``index.html`` (the app routes in
the browser).

The package carries the production build of the ClearML web app (``apiserver/webapp/clearml-web``),
served at ``/`` unless ``webapp.enabled`` is false; ``webapp.dir`` (or ``python -m apiserver --webapp
DIR``) names another build to serve instead. ``/configuration.json`` is written by the server so the
app calls this origin: API at ``/api``, files at ``/files``. One process, one origin, so the session cookie needs no
cross-site rules. The console (``apiserver/console``) is another such folder, at ``/console/``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, send_from_directory
from werkzeug.security import safe_join

# Prefixes that belong to the API, the file server and the console: never answered with the web app.
RESERVED = ("api/", "files/", "console/")
CONFIGURATION = {"apiBaseUrl": "/api", "fileBaseUrl": "/files"}
PACKAGED = Path(__file__).resolve().parent.parent / "webapp" / "clearml-web"


def configured_build(config: Mapping[str, Any]) -> Path | None:
    """The web app build the server serves at ``/``: ``webapp.dir``, else the packaged one; None when
    ``webapp.enabled`` is false."""
    if not config.get("webapp.enabled"):
        return None
    return Path(config.get("webapp.dir") or PACKAGED)


class StaticSite:
    """A folder with an ``index.html``, answered by path relative to its mount point."""

    def __init__(self, directory: str | Path, what: str):
        self.directory = Path(directory).resolve()
        if not (self.directory / "index.html").is_file():
            raise ValueError(f"{what} {self.directory} holds no index.html (not a web app build)")

    def answer(self, path: str) -> Response | None:
        """The site's answer for a GET of ``path``, or None when the path is not the site's."""
        target = safe_join(str(self.directory), path) if path else None
        if target is not None and Path(target).is_file():
            return self._send(path, cache=path != "index.html")
        if "." in posixpath.basename(path):
            return None  # a missing asset is a 404, not the app's HTML
        return self.index()

    def index(self) -> Response:
        return self._send("index.html", cache=False)

    def _send(self, path: str, cache: bool) -> Response:
        resp = send_from_directory(self.directory, path, max_age=3600 if cache else 0)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp


class WebApp(StaticSite):
    def __init__(self, directory: str | Path):
        super().__init__(directory, "webapp.dir")
        shipped = self.directory / "configuration.json"
        base = json.loads(shipped.read_text()) if shipped.is_file() else {}
        self.configuration = {**base, **CONFIGURATION}

    def register(self, app: Flask) -> None:
        app.add_url_rule("/", "webapp_index", self.index, methods=["GET"])
        app.add_url_rule("/<path:path>", "webapp_file", self.file, methods=["GET"])

    def file(self, path: str) -> Response:
        answer = self.answer(path)
        if answer is None:
            abort(404)
        return answer

    def answer(self, path: str) -> Response | None:
        if path.startswith(RESERVED):
            return None
        if path == "configuration.json":
            resp = Response(json.dumps(self.configuration), mimetype="application/json")
            resp.headers["Cache-Control"] = "no-cache"
            return resp
        return super().answer(path)
