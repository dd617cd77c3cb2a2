"""gunicorn -c examples/gunicorn.conf.py 'examples.factory_app:create_app()'

The settings are the package's own, flask_clustershazbot/gunicorn_conf.py (also
``gunicorn -c python:flask_clustershazbot.gunicorn_conf ...`` without this file); to
edit them, ``clustershazbot gunicorn-conf > gunicorn.conf.py``. See docs/gunicorn.md.
"""

from flask_clustershazbot.gunicorn_conf import *  # noqa: F403  (bind, workers, on_exit, ...)
