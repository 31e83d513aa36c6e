"""Owns serving a web app build (the ClearML web app) from the API server's own origin.

``webapp.dir`` (or ``python -m apiserver --webapp DIR``) names a production build. Its files are
served at ``/``; a path with no file extension that names no file gets ``index.html`` (the app
routes in the browser); ``/configuration.json`` is written by the server so the app calls this
origin: API at ``/api``, files at ``/files``. One process, one origin, so the session cookie
needs no cross-site rules.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from flask import Flask, Response, abort, send_from_directory
from werkzeug.security import safe_join

# Prefixes that belong to the API and the file server: never answered with the app.
RESERVED = ("api/", "files/")
CONFIGURATION = {"apiBaseUrl": "/api", "fileBaseUrl": "/files"}


class WebApp:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory).resolve()
        if not (self.directory / "index.html").is_file():
            raise ValueError(f"webapp.dir {self.directory} holds no index.html (not a web app build)")
        shipped = self.directory / "configuration.json"
        base = json.loads(shipped.read_text()) if shipped.is_file() else {}
        self.configuration = {**base, **CONFIGURATION}

    def register(self, app: Flask) -> None:
        app.add_url_rule("/", "webapp_index", self.index, methods=["GET"])
        app.add_url_rule("/<path:path>", "webapp_file", self.file, methods=["GET"])

    def index(self) -> Response:
        return self._send("index.html", cache=False)

    def file(self, path: str) -> Response:
        answer = self.answer(path)
        if answer is None:
            abort(404)
        return answer

    def answer(self, path: str) -> Response | None:
        """The app's answer for a GET of ``path``, or None when the path is not the app's."""
        if path.startswith(RESERVED):
            return None
        if path == "configuration.json":
            resp = Response(json.dumps(self.configuration), mimetype="application/json")
            resp.headers["Cache-Control"] = "no-cache"
            return resp
        target = safe_join(str(self.directory), path)
        if target is not None and Path(target).is_file():
            return self._send(path, cache=path != "index.html")
        if "." in posixpath.basename(path):
            return None  # a missing asset is a 404, not the app's HTML
        return self.index()

    def _send(self, path: str, cache: bool) -> Response:
        resp = send_from_directory(self.directory, path, max_age=3600 if cache else 0)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp
