"""gunicorn settings from the server config: ``gunicorn -c python:apiserver.gunicorn_conf apiserver.wsgi:app``.

The master starts the embedded database (when no database URI is configured) before it forks the
workers, so all of them share one database process, and the folder their Prometheus metrics go to
(``apiserver/metrics.py``); it stops and removes them on exit.
"""

from apiserver.config import load_config
from apiserver.serve import gunicorn_options, start_master, stop_master

_config = load_config()
globals().update({k: v for k, v in gunicorn_options(_config).items() if v is not None})


def on_starting(server):
    start_master(_config)


def on_exit(server):
    stop_master()
