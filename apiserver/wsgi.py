"""gunicorn entry point: ``gunicorn -c python:apiserver.gunicorn_conf apiserver.wsgi:app``."""

from apiserver.app import create_app

app = create_app(wait_for_database=True)
