"""A node in a process of its own whose wall clock the test shifts (tests/test_clock_jump.py).

``python tests/clock_node.py PORT OFFSET_FILE``, configured by ``SHAZBOT_*`` variables.
The node's clock is the system clock plus the milliseconds in OFFSET_FILE (read on
every call), so a test can move it without touching the system clock.
"""

from __future__ import annotations

import sys

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from flask_clustershazbot import ClusterShazbot
from flask_clustershazbot.engine import wall_clock_ms


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def main() -> None:
    port, offset_file = int(sys.argv[1]), sys.argv[2]

    def clock() -> int:
        with open(offset_file) as f:
            return wall_clock_ms() + int(f.read().strip() or 0)

    app = Flask("clock_node")
    ClusterShazbot(app)
    app.extensions["clustershazbot"].clock = clock
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
