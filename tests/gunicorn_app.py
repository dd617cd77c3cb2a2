"""The app that tests/test_gunicorn.py serves with real gunicorn processes.

Configured by ``SHAZBOT_*`` environment variables like a deployment of the original; the
test reads what happened from files:
- ``TEST_SIGNAL_LOG``: one line per signal, ``<pid> joined|left <baseUrl>``;
- ``TEST_ROUND_LOG``: one line per gossip round, ``<pid> <unix time>``.
Every response carries ``X-Worker-Pid``, so a test sees which worker answered.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from flask import Flask, Response

from flask_clustershazbot import ClusterShazbot, GossipServer, peer_joined, peer_left


def append_line(path: str, line: str) -> None:
    """One line to ``path``: O_APPEND, so lines of concurrent processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def create_app() -> Flask:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(name)s %(process)d %(message)s"
    )
    app = Flask("gunicorn_app")
    signal_log = os.environ["TEST_SIGNAL_LOG"]
    round_log = os.environ["TEST_ROUND_LOG"]

    def joined(sender: Flask, server: GossipServer, **_: Any) -> None:
        append_line(signal_log, f"{os.getpid()} joined {server.base_url}")

    def left(sender: Flask, server: GossipServer, **_: Any) -> None:
        append_line(signal_log, f"{os.getpid()} left {server.base_url}")

    peer_joined.connect(joined, app, weak=False)
    peer_left.connect(left, app, weak=False)

    @app.after_request
    def worker_pid(response: Response) -> Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    ClusterShazbot(app)
    engine = app.extensions["clustershazbot"]
    gossip_round = engine.gossip_round

    def counted_round() -> None:
        append_line(round_log, f"{os.getpid()} {time.time():.3f}")
        gossip_round()

    engine.gossip_round = counted_round  # the scheduler calls the engine's attribute
    return app
