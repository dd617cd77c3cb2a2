"""An app as users write it, for tests/test_lifecycle.py: an app factory, settings from
``SHAZBOT_*`` environment variables, started by ``flask run``, ``python lifecycle_app.py``
(``app.run()``) or as a script.

- ``LIFECYCLE_SIGNAL_LOG``: one line per signal received, ``<pid> joined|left <baseUrl>``.
- ``python lifecycle_app.py serve PORT [debug]``: ``app.run()`` on PORT.
- ``python lifecycle_app.py script PORT STOPFILE``: a script that calls ``start()``, serves
  with werkzeug in a thread and returns (plain interpreter exit) once STOPFILE exists.
- ``python lifecycle_app.py load SECONDS``: a script that only builds the app (as a worker
  or a one-off job would) and ends after SECONDS.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from flask import Flask

from flask_clustershazbot import ClusterShazbot, GossipServer, peer_joined, peer_left

shazbot = ClusterShazbot()
logging.basicConfig(level=logging.INFO, format="%(process)d %(name)s %(levelname)s %(message)s")


def _log(kind: str, server: GossipServer) -> None:
    path = os.environ.get("LIFECYCLE_SIGNAL_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{os.getpid()} {kind} {server.base_url}\n".encode())
        finally:
            os.close(fd)


def on_joined(sender: Any, server: GossipServer) -> None:
    _log("joined", server)


def on_left(sender: Any, server: GossipServer) -> None:
    _log("left", server)


def create_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    shazbot.init_app(app)
    peer_joined.connect(on_joined, app)
    peer_left.connect(on_left, app)

    @app.get("/")
    def index() -> str:
        return f"served by {os.getpid()}\n"

    return app


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "serve":
        create_app().run(port=int(argv[1]), debug=len(argv) > 2)
    elif mode == "script":
        from werkzeug.serving import make_server

        app = create_app(SHAZBOT_AUTOSTART=False)
        server = make_server("127.0.0.1", int(argv[1]), app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        shazbot.start(app)
        deadline = time.monotonic() + 120
        while not os.path.exists(argv[2]) and time.monotonic() < deadline:
            time.sleep(0.05)
    elif mode == "load":
        create_app()
        time.sleep(float(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
