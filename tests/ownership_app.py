"""The app that tests/test_ownership_process.py runs in real processes: under gunicorn,
or as one plain node (``python tests/ownership_app.py``: werkzeug's threaded server on
``TEST_PORT``).

Configured by ``SHAZBOT_*`` environment variables. ``GET /owners?n=1000`` answers
``{"pid": ..., "owners": [owner of key-0, key-1, ...]}``. The singleton job
``TEST_JOB_NAME`` runs every ``TEST_JOB_INTERVAL`` s and appends
``<baseUrl> <pid> <unix time> <scheduled unix time>`` to ``TEST_JOB_LOG`` per run.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Any

from flask import Flask, g, request

from flask_clustershazbot import ClusterShazbot
from gunicorn_app import append_line


def create_app() -> Flask:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(process)d %(message)s"
    )
    app = Flask("ownership_app")
    shazbot = ClusterShazbot(app)
    base_url = app.config["SHAZBOT_BASE_URL"]
    job_log = os.environ["TEST_JOB_LOG"]

    @shazbot.singleton_job(
        os.environ["TEST_JOB_NAME"], seconds=float(os.environ["TEST_JOB_INTERVAL"])
    )
    def tick() -> None:
        append_line(
            job_log, f"{base_url} {os.getpid()} {time.time():.3f} {g.shazbot_tick.timestamp()}"
        )

    @app.get("/owners")
    def owners() -> dict[str, Any]:
        n = int(request.args.get("n", "1000"))
        return {"pid": os.getpid(), "owners": [shazbot.owner(f"key-{i}") for i in range(n)]}

    return app


if __name__ == "__main__":
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    app = create_app()
    server = make_server(
        "127.0.0.1", int(os.environ["TEST_PORT"]), app, threaded=True, request_handler=Quiet
    )
    signal.signal(signal.SIGTERM, stop)
    print("READY", flush=True)
    try:
        server.serve_forever()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        app.extensions["clustershazbot"].shutdown()
        server.server_close()
