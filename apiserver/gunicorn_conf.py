"""gunicorn settings from the server config: ``gunicorn -c python:apiserver.gunicorn_conf apiserver.wsgi:app``.

The master starts the embedded database (when no database URI is configured) before it forks the
workers, so all of them share one database process, and the folder their Prometheus metrics go to
(``apiserver/metrics.py``); it stops and removes them on exit.
"""

from apiserver.config import load_config
from apiserver.metrics import remove_multiprocess_dir
from apiserver.serve import gunicorn_options, prepare_master, start_database, stop_database

_config = load_config()
globals().update({k: v for k, v in gunicorn_options(_config).items() if v is not None})
_metrics_dir = ""


def on_starting(server):
    global _metrics_dir
    start_database(_config)
    _metrics_dir = prepare_master(_config)


def on_exit(server):
    stop_database()
    remove_multiprocess_dir(_metrics_dir)
