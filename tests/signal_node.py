"""A node process that writes down what its app sees: one JSON line per signal.

``python tests/signal_node.py --master M [--port P] [--interval S] [--monitor]
[--base-url URL] [--source 127.0.0.N] [--signals FILE] [--refuse-port N]
[--option KEY=VALUE ...]`` serves a Flask app with ClusterShazbot on 127.0.0.1 under
werkzeug's threaded server, as ``demo node`` does, and prints ``READY <port>``.

- ``--signals``: each ``peer_joined`` / ``peer_left`` the app receives is appended,
  flushed at once, as ``{"t": time.time(), "kind": "joined" | "left", "peer": base_url,
  "stamp": lastUpdate}``: a test reads what a user's receiver would have seen, even of a
  process it killed.
- ``--base-url``: the node's identity when it sits behind a proxy (``tests/proxy.py``);
  ``--source``: every outgoing request leaves from that loopback address, so that the
  proxy in front of a peer can tell this node's requests from the others'.
- ``--refuse-port``: this process runs a stricter version of the record validation,
  which also refuses base URLs with that port (two versions of the library in one cluster).

Log lines (INFO, to stderr) start with ``time.time()``, to line them up with the signals.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


def refuse_port(port: int) -> None:
    """Make this process's record validation refuse base URLs whose port is ``port``."""
    from flask_clustershazbot import records

    original = records.check_url

    def check(url: str, base: bool) -> tuple[str, str | None]:
        canonical, problem = original(url, base)
        if problem is None and base and urlsplit(canonical).port == port:
            return "", f"must not use port {port} (this version's rule)"
        return canonical, problem

    records.check_url = check  # type: ignore[assignment]


def write_signals(app: Any, path: str) -> None:
    """Append every peer_joined / peer_left of ``app`` to ``path`` as a JSON line."""
    from flask_clustershazbot.signals import peer_joined, peer_left

    out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
    lock = threading.Lock()

    def receiver(kind: str) -> Callable[..., None]:
        def receive(sender: Any, server: Any, **kwargs: Any) -> None:
            record = {"t": time.time(), "kind": kind, "peer": server.base_url}
            record["stamp"] = server.last_update  # the record behind the signal
            line = json.dumps(record)
            with lock:
                out.write(line + "\n")
                out.flush()

        return receive

    peer_joined.connect(receiver("joined"), sender=app, weak=False)
    peer_left.connect(receiver("left"), sender=app, weak=False)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="signal_node")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--master", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--monitor", action="store_true")
    parser.add_argument("--base-url")
    parser.add_argument("--source")
    parser.add_argument("--signals")
    parser.add_argument("--refuse-port", type=int)
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE setting")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(created).3f %(name)s %(message)s")
    if args.refuse_port is not None:
        refuse_port(args.refuse_port)  # before the app exists: every record goes through it

    from flask import Flask
    from werkzeug.serving import WSGIRequestHandler, make_server

    from flask_clustershazbot import ClusterShazbot

    class Dispatch:
        app: Any = None

        def __call__(self, environ: Any, start_response: Any) -> Any:
            return self.app(environ, start_response)

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass  # one line per gossip request would bury the engine's lines

    dispatch = Dispatch()
    server = make_server(
        "127.0.0.1", args.port, dispatch, threaded=True, request_handler=QuietHandler
    )
    app = Flask(f"node{server.port}")
    app.config.update(
        SHAZBOT_BASE_URL=args.base_url or f"http://127.0.0.1:{server.port}/",
        SHAZBOT_MASTER_LIST=args.master,
        SHAZBOT_GOSSIP_INTERVAL=args.interval,
        SHAZBOT_MONITOR=args.monitor,
        SHAZBOT_AUTOSTART=False,  # started below, once its requests leave from --source
    )
    for option in args.option:
        key, _, value = option.partition("=")
        app.config[key] = value
    shazbot = ClusterShazbot(app)
    if args.source:
        from proxy import SourceAdapter  # tests/ is this script's directory: on sys.path

        adapter = SourceAdapter(args.source, pool_connections=32, pool_maxsize=32, max_retries=0)
        shazbot.engine(app).transport.session.mount("http://", adapter)  # type: ignore[attr-defined]
    if args.signals:
        write_signals(app, args.signals)
    dispatch.app = app

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    shazbot.start(app)
    print(f"READY {server.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        shazbot.shutdown(app)
        server.server_close()


if __name__ == "__main__":
    main(sys.argv[1:])
