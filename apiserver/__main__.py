"""apiserver [OPTIONS] [COMMAND] (or python -m apiserver): run the server (the API, the ClearML web app
at / and the console), or only its embedded database for API hosts elsewhere to share."""

from __future__ import annotations

import argparse
import os
import sys

from apiserver.app import configure_logging
from apiserver.backup_commands import add_backup_parsers, run_backup, run_restore
from apiserver.config import ConfigError, load_config
from apiserver.importer import add_import_parser, run_import


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apiserver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="listen address of the API (default from config: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port of the API (default from config: 8008)")
    parser.add_argument("--data-dir", help="data folder: embedded database, local file store and the generated "
                                           "admin credentials (default ./data of the current folder)")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes")
    parser.add_argument("--webapp", help="serve this web app build at / instead of the packaged ClearML web app")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run the API server (the default)")
    database = commands.add_parser(
        "database", help="run only the embedded database and print the database.uri API hosts join with",
        description="Runs the embedded database of the data folder on its own, in the foreground, and prints "
                    "the database.uri that API hosts use (with files.backend: gridfs). It listens on "
                    "database.embedded.host (loopback by default) and always requires its generated credentials.")
    database.add_argument("--host", dest="db_host", help="listen address (default database.embedded.host)")
    database.add_argument("--port", dest="db_port", type=int,
                          help="listen port (default database.embedded.port, or 27017 when that is 0)")
    add_backup_parsers(commands)
    add_import_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Flags become env overrides so the gunicorn workers, which load config themselves, see them.
    for key, value in (("apiserver__listen__host", args.host), ("apiserver__listen__port", args.port),
                       ("database__embedded__data_dir", args.data_dir and os.path.abspath(args.data_dir)),
                       ("apiserver__workers", args.workers),
                       ("webapp__dir", args.webapp and os.path.abspath(args.webapp)),
                       ("webapp__enabled", args.webapp and "true")):
        if value is not None:
            os.environ[f"APISERVER__{key}"] = str(value)
    try:
        config = load_config()
    except ConfigError as exc:  # a broken or misspelled setting: say which, no traceback
        print(f"apiserver: {exc}", file=sys.stderr)
        return 2
    configure_logging(config["apiserver.log_level"], config["apiserver.log_format"])
    if args.command == "import":
        return run_import(config, args)
    if args.command in ("backup", "restore"):
        return (run_backup if args.command == "backup" else run_restore)(config, args)
    if args.command == "database":
        from apiserver.serve import run_database

        return run_database(config, args.db_host, args.db_port)
    from apiserver.app import build_dispatcher
    from apiserver.schema.loader import SpecError
    from apiserver.service_repo.webapp import WebApp, configured_build

    try:  # every spec and handler, and the web app build, checked before anything starts (the workers
        build_dispatcher(config, None)  # would each fail to boot)
        build = configured_build(config)
        if build is not None:
            WebApp(build)
    except (SpecError, ValueError) as exc:
        print(f"apiserver: {exc}", file=sys.stderr)
        return 2
    from apiserver.serve import run

    run(config)
    return 0


def entry() -> None:
    """The installed ``apiserver`` command."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
