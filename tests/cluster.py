"""Real nodes for tests: Flask apps under threaded werkzeug servers on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from flask_clustershazbot import ClusterShazbot

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-gossip-secret-0123456789"
CONTROL = "test-control-secret-9876543210"
MASTER_AUTH = "test-master-auth-token-5555"


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on now (for a server started by a test, or nobody at all)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


#: Variables of a developer's shell that would move a test host's state or change gunicorn.
_HOST_ENV_DROPPED = (
    "SHAZBOT_STATE_PATH",
    "WEB_CONCURRENCY",
    "GUNICORN_CMD_ARGS",
    "RUNTIME_DIRECTORY",  # these two would beat TMPDIR for the default state path
    "XDG_RUNTIME_DIR",
)


def host_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a node process: ``env`` over ours (without the variables above),
    and this checkout's package first on the path (not whichever one is installed)."""
    merged = {k: v for k, v in os.environ.items() if k not in _HOST_ENV_DROPPED} | env
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), merged.get("PYTHONPATH")]))
    return merged


def ctrl_c_as_in_a_terminal() -> None:
    """For ``preexec_fn`` of a process a test will stop with SIGINT: SIGINT at its default in
    the child, as in a terminal. A runner started in the background (``cmd &`` in a script,
    many CI runners) ignores SIGINT, its children inherit that, and Python then never raises
    KeyboardInterrupt: Ctrl-C would be a no-op, not a test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def gunicorn_command(port: int, app: str, *args: str) -> list[str]:
    """gunicorn with examples/gunicorn.conf.py on 127.0.0.1:``port``, serving ``app`` from tests/."""
    return [
        sys.executable, "-m", "gunicorn",
        "-c", str(ROOT / "examples" / "gunicorn.conf.py"),
        "--bind", f"127.0.0.1:{port}",
        "--no-control-socket",
        "--graceful-timeout", "5",
        "--pythonpath", str(ROOT / "tests"),
        *args,
        app,
    ]  # fmt: skip


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM (a node announces its shutdown), then SIGKILL to its whole session after 15 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def kill_processes(procs: list[subprocess.Popen[str]]) -> None:
    """At teardown: kill node processes outright (a paused one is continued first)."""
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def wait_until(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns a truthy value or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Dispatch:
    """A WSGI app whose target is set after the socket is bound (the base URL needs the port)."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # one line per gossip request would drown the test output


class Server:
    """A threaded werkzeug server in a background thread."""

    def __init__(self, app: Any = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.dispatch = Dispatch()
        self.dispatch.app = app
        self.server: BaseWSGIServer = make_server(
            host, port, self.dispatch, threaded=True, request_handler=QuietHandler
        )
        self.port = self.server.port
        self.url = f"http://{host}:{self.port}/"
        # A short poll interval: shutdown() waits up to one interval, for every node of every test.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> Server:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class Node:
    """One cluster member in this process."""

    def __init__(
        self,
        config: dict[str, Any],
        port: int = 0,
        base_url: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """``base_url``: the node's identity when it differs from its own address (a proxy's)."""
        self.server = Server(port=port, host=host)
        self.port = self.server.port
        self.base_url = base_url or self.server.url
        self.app = Flask(f"node{self.port}")
        self.app.config.update(config)
        self.app.config["SHAZBOT_BASE_URL"] = self.base_url

        @self.app.get("/hello")
        def hello() -> str:
            return "hello"

        self.shazbot = ClusterShazbot(self.app)
        self.engine = self.app.extensions["clustershazbot"]
        self.server.dispatch.app = self.app
        self.server.start()
        self.alive = True

    def view(self, include_offline: bool = True) -> dict[str, bool]:
        """{base_url: online} in this node's view, read in process."""
        servers = self.shazbot.server_list(include_offline=include_offline, app=self.app)
        view = {s.base_url: True for s in servers.online}
        view.update({s.base_url: False for s in servers.offline})
        return view

    def http_view(self) -> dict[str, bool]:
        """The same, read over HTTP through /clustershazbot/list with the control secret."""
        data = requests.get(
            self.base_url + "clustershazbot/list", timeout=5, headers={"Authorization": CONTROL}
        ).json()
        view = {s["baseUrl"]: True for s in data["online"]}
        view.update({s["baseUrl"]: False for s in data["offline"]})
        return view

    def stop(self, graceful: bool = True) -> None:
        """Stop serving; graceful announces the shutdown, otherwise the node just vanishes."""
        if not self.alive:
            return
        self.alive = False
        if graceful:
            self.engine.shutdown()
        else:
            self.engine.crash()  # no announcement: like a crash, as seen from peers
        self.server.stop()


#: The ``make_node`` fixture (conftest.py): ``make_node(**overrides)`` starts a node.
MakeNode = Callable[..., Node]


class MasterListServer:
    """A real HTTP master-list server: GET returns the list, PUT (with auth) replaces it.

    With ``etags``, GET gives an ``ETag`` and a PUT whose ``If-Match`` names another
    version is refused with 412, as object stores and WebDAV servers do.
    """

    def __init__(self, auth: str = MASTER_AUTH, etags: bool = False) -> None:
        self.body = b'{"online": []}'
        self.version = 0  # the ETag is '"<version>"'
        self.etags = etags
        self.conflicts = 0  # PUTs refused with 412
        self.puts = 0
        self.rejected_puts = 0
        self.gets = 0
        self.fail_with: int | None = None  # answer every request with this status
        self.fail_puts_with: int | None = None  # answer only PUTs with this status
        self.lock = threading.Lock()
        app = Flask("master")

        @app.get("/master.json")
        def get_list() -> Response:
            with self.lock:
                self.gets += 1
                if self.fail_with:
                    return Response("failing on purpose", self.fail_with)
                response = Response(self.body, mimetype="application/json")
                if self.etags:
                    response.headers["ETag"] = f'"{self.version}"'
                return response

        @app.put("/master.json")
        @app.put("/upload.json")  # an update URL that takes PUTs only (GET: 405)
        def put_list() -> Response:
            with self.lock:
                failure = self.fail_with or self.fail_puts_with
                if request.headers.get("Authorization") != auth or failure:
                    self.rejected_puts += 1
                    return Response("no", failure or 401)
                expected = request.headers.get("If-Match")
                if self.etags and expected is not None and expected != f'"{self.version}"':
                    self.conflicts += 1
                    return Response("changed since you read it", 412)
                self.body = request.get_data()
                self.version += 1
                self.puts += 1
                return Response("{}", mimetype="application/json")

        self.server = Server(app).start()
        self.url = self.server.url + "master.json"
        self.upload_url = self.server.url + "upload.json"

    def stop(self) -> None:
        self.server.stop()
