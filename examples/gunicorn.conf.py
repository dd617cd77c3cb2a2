"""gunicorn -c examples/gunicorn.conf.py 'examples.factory_app:create_app()'

One gunicorn host is one cluster member, however many workers it runs: they
share the member table in a SQLite file (SHAZBOT_STATE_PATH) and only one of
them runs the gossip schedules. See docs/gunicorn.md.
"""

import os

# The one hook clustershazbot needs: when the host stops (SIGTERM or SIGINT to the
# master), the master announces it to the cluster, once. With --preload it would
# happen without the hook; keeping it costs nothing.
from flask_clustershazbot.gunicorn import on_exit  # noqa: F401

bind = os.environ.get("BIND", "127.0.0.1:3000")  # SHAZBOT_BASE_URL must reach this address
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "gthread"
threads = 8
# Workers may be recycled freely: the host stays online while one worker restarts.
max_requests = 10000
max_requests_jitter = 1000
