"""``python -m apiserver [--host H] [--port P] [--data-dir DIR] [--workers N] [--webapp DIR]``: run the server."""

from __future__ import annotations

import argparse
import os
import sys

from apiserver.app import configure_logging
from apiserver.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apiserver", description=__doc__)
    parser.add_argument("--host", help="listen address (default from config: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default from config: 8008)")
    parser.add_argument("--data-dir", help="data folder: embedded database and the local file store (default ./data)")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes")
    parser.add_argument("--webapp", help="serve this web app build (e.g. the ClearML web app) at /")
    args = parser.parse_args(argv)
    # Flags become env overrides so the gunicorn workers, which load config themselves, see them.
    for key, value in (("apiserver__listen__host", args.host), ("apiserver__listen__port", args.port),
                       ("database__embedded__data_dir", args.data_dir), ("apiserver__workers", args.workers),
                       ("webapp__dir", args.webapp and os.path.abspath(args.webapp))):
        if value is not None:
            os.environ[f"APISERVER__{key}"] = str(value)
    try:
        config = load_config()
    except ConfigError as exc:  # a broken or misspelled setting: say which, no traceback
        print(f"apiserver: {exc}", file=sys.stderr)
        return 2
    configure_logging(config["apiserver.log_level"])
    from apiserver.app import build_dispatcher
    from apiserver.schema.loader import SpecError

    try:  # every spec and handler, checked before anything starts (the workers would each fail to boot)
        build_dispatcher(config, None)
    except SpecError as exc:
        print(f"apiserver: {exc}", file=sys.stderr)
        return 2
    from apiserver.serve import run

    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
