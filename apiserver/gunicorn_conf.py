"""gunicorn settings from the server config: ``gunicorn -c python:apiserver.gunicorn_conf apiserver.wsgi:app``.

The master starts the embedded database (when no database URI is configured) before it forks the
workers, so all of them share one database process; it stops it on exit.
"""

from apiserver.config import load_config
from apiserver.serve import gunicorn_options, prepare_master, start_database, stop_database

_config = load_config()
globals().update({k: v for k, v in gunicorn_options(_config).items() if v is not None})


def on_starting(server):
    start_database(_config)
    prepare_master(_config)


def on_exit(server):
    stop_database()
