"""Owns ``python -m apiserver [--data-dir D] import clearml|mlflow``: check the source, then join the running
server's database (the data folder's embedded one, or ``database.uri``) and run the import into the
default company, with a progress bar per kind and a summary at the end.

The source is checked (reached, signed in to) before anything here is opened, so wrong credentials or
an unreachable source write nothing. The import runs beside the server: with the embedded database it
joins the server's database process (``database.connection.join_or_start``), or starts one for the folder
when no server runs (a server started meanwhile waits for it, as for a restart)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from apiserver.config import Config, load_config


def add_import_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "import", help="import another server's work: a ClearML server or an MLflow tracking server",
        description="Copies another server's work into this one while it runs (same --data-dir or config). "
                    "Ids and times are kept; running it again changes nothing and finishes an interrupted run.")
    kinds = parser.add_subparsers(dest="source_kind", metavar="SOURCE", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--from", dest="source_url", required=True, help="the source server's URL")
    common.add_argument("--files-url", help="the URL this server's /files is reached at, for copied files "
                                            "(default: files.server_urls[0], else http://<listen address>/files)")
    common.add_argument("--source-files", action="append", default=[], metavar="URL",
                        help="another URL prefix of the source's file server whose files are copied (repeatable)")
    clearml = kinds.add_parser("clearml", parents=[common], help="a ClearML server (its API URL)",
                               description="Users (as owners), projects, tasks with all events, models, queues and "
                                           "the files the source's file server holds.")
    clearml.add_argument("--access-key", required=True)
    clearml.add_argument("--secret-key", required=True)
    clearml.add_argument("--project", action="append", default=[], metavar="NAME",
                         help="only this project and those nested below it (repeatable)")
    mlflow = kinds.add_parser("mlflow", parents=[common], help="an MLflow tracking server",
                              description="Experiments as projects, runs as tasks with params, tags, metric "
                                          "histories and artifacts, registered model versions as models.")
    mlflow.add_argument("--experiment", action="append", default=[], metavar="NAME",
                        help="only this experiment (repeatable)")


def _files_url(config: Config, given: str | None) -> str:
    from apiserver.database.embedded import connectable, host_port

    if given:
        return given
    urls = config["files.server_urls"]
    if urls:
        return str(urls[0])
    host = connectable(config["apiserver.listen.host"])
    return f"http://{host_port(host, int(config['apiserver.listen.port']))}/files"


def _source(args: argparse.Namespace) -> Any:
    if args.source_kind == "clearml":
        from apiserver.bll.transfer.clearml import ClearMLSource

        source = ClearMLSource(args.source_url, args.access_key, args.secret_key)
        source.sign_in()
        return source
    from apiserver.bll.transfer.mlflow import MlflowSource

    source = MlflowSource(args.source_url)
    source.check()
    return source


def run_import(config: Config, args: argparse.Namespace) -> int:
    from apiserver.bll.transfer.source import SourceError

    try:
        source = _source(args)
    except SourceError as exc:
        print(f"apiserver import: {exc}; nothing was imported", file=sys.stderr)
        return 1
    from apiserver.database.connection import join_or_start

    try:  # the running server's database (the folder's embedded one, or database.uri), else one started here
        uri, embedded = join_or_start(config)
    except RuntimeError as exc:
        print(f"apiserver import: {exc}", file=sys.stderr)
        return 1
    config = load_config(overrides={"database.uri": uri})  # not through the environment: it holds a password
    started = time.monotonic()
    try:
        writer = _writer(config, args, source)
        try:
            if args.source_kind == "clearml":
                from apiserver.bll.transfer.clearml import import_clearml

                import_clearml(source, writer, args.project)
            else:
                from apiserver.bll.transfer.mlflow import import_mlflow

                import_mlflow(source, writer, args.experiment)
        except SourceError as exc:
            print(writer.summary(), flush=True)
            print(f"apiserver import: {exc}; what was imported stays, run the import again to finish",
                  file=sys.stderr)
            return 1
        print(writer.summary(), flush=True)
        print(f"import from {args.source_url} finished in {time.monotonic() - started:.1f}s", flush=True)
        return 0
    finally:
        if embedded is not None:
            embedded.stop()


def _writer(config: Config, args: argparse.Namespace, source: Any) -> Any:
    from apiserver.app import create_app
    from apiserver.bll.transfer.writer import TransferWriter
    from apiserver.state import get_state

    create_app(config, start_scheduler=False, routes=False)
    state = get_state()
    default = state.settings.auth.default_company
    company = state.auth.ensure_company(default.get("id"), default.get("name", "default")).id
    admins = [u for u in state.auth.list_users(company) if u["role"] in ("admin", "root", "system")]
    owner = admins[0]["id"] if admins else ""
    return TransferWriter(state.auth, state.projects, state.tasks, state.events, state.models, state.queues,
                          state.files, company, owner, _files_url(config, args.files_url),
                          [*source.file_prefixes(), *args.source_files],
                          source.fetch, source.files_folder)
