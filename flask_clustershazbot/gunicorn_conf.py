"""A gunicorn configuration for a clustershazbot host, shipped with the package.

    gunicorn -c python:flask_clustershazbot.gunicorn_conf 'myapp:create_app()'

or, to edit it, ``clustershazbot gunicorn-conf > gunicorn.conf.py`` and
``gunicorn -c gunicorn.conf.py ...``. Options given on the command line (``--bind``,
``--workers``) override these. One gunicorn host is one cluster member, however many
workers it runs: they share the member table in a SQLite file (SHAZBOT_STATE_PATH)
and only one of them runs the gossip schedules (the gunicorn page of the docs).
"""

import os

# The one hook clustershazbot needs: when the host stops (SIGTERM or SIGINT to the
# master), the master announces it to the cluster, once. With --preload it would
# happen without the hook; keeping it costs nothing.
from flask_clustershazbot.gunicorn import on_exit  # noqa: F401

bind = os.environ.get("BIND", "127.0.0.1:3000")  # SHAZBOT_BASE_URL must reach this address
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "gthread"
# Slow clients: a gthread worker gives a thread to each connection from its first byte
# until the request is complete, and gunicorn has no timeout for reading a request, so
# workers x threads connections trickling bytes stall the host (its /list, its peers'
# gossip). Threads cost little here (requests are short), so many of them raise that
# number; only a buffering reverse proxy with header and body timeouts (nginx's
# client_header_timeout / client_body_timeout) ends the problem. Figures and an nginx
# example: the security page of the docs, "Slow clients".
threads = 64
keepalive = 2  # seconds an idle kept-alive connection is held (in the poller, not a thread)
# Bounds on a request's head: no legitimate clustershazbot request comes near them.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
# Workers may be recycled freely: the host stays online while one worker restarts.
max_requests = 10000
max_requests_jitter = 1000
