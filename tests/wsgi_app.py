"""tests/gunicorn_app.py's app as a module-level ``app``, for servers that load a callable by
name (uWSGI's ``--module``, ``waitress-serve``)."""

from gunicorn_app import create_app

app = create_app()
