"""gunicorn entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from apiserver.app import create_app

app = create_app()
