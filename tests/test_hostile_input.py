"""Regression tests of issue 24 (items 8, 9, 10, 11): hostile input on real nodes and a real CLI.

Each test failed before its fix: a Content-Length of 5,000 digits answered with a
traceback, gzip bodies accepted without their trailer or with a second member or
garbage after them, a peer's control characters printed raw by the CLI, and secrets
that were accepted without a warning.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
import unicodedata
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client import make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from cluster import CONTROL, SECRET, Node, wait_until
from flask_clustershazbot import ClusterShazbot
from flask_clustershazbot.errors import ConfigError
from test_cli import SCRIPT


def raw_post(node: Node, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    """Send one request byte for byte (no client library tidies its headers): the status
    and the JSON body of the answer."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    head_part, _, payload = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head_part.lower(), reply[:300]
    return int(status_line.split()[1]), json.loads(payload)


@pytest.fixture
def nodes(make_node: Any) -> tuple[Node, Node]:
    """A node with the fast gossip path (the default) and one without (the Flask route)."""
    fast, route = make_node(), make_node(SHAZBOT_FAST_GOSSIP=False)
    wait_until(lambda: fast.engine.live and route.engine.live, 15, "the nodes going live")
    return fast, route


# -- item 8: a Content-Length that int() refuses ----------------------------------


def test_a_content_length_of_5000_digits_gets_the_routes_json_error_not_a_traceback(
    nodes: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    """The fast path called int() on it before the secret was checked: 500 and a traceback."""
    caplog.set_level(logging.INFO)
    fast, route = nodes
    huge = "5" * 5000
    cases = {
        "no secret": ({"Content-Length": huge}, 401, "missing or wrong gossip secret"),
        "the secret": (
            {"Content-Length": huge, "Authorization": SECRET},
            413,
            "the body is larger than 4194304 bytes",
        ),
        "not digits": (
            {"Content-Length": "+5", "Authorization": SECRET},
            400,
            "the Content-Length header is not a number of bytes",
        ),
        "no byte of the body": (  # werkzeug's own answer was an HTML page
            {"Content-Length": "5", "Authorization": SECRET},
            400,
            "the body ended before its Content-Length: the client hung up",
        ),
    }
    for name, (headers, status, error) in cases.items():
        for node in (fast, route):
            for path in ("/clustershazbot/gossip", "/clustershazbot/probe"):
                assert raw_post(node, path, headers) == (status, {"error": error}), (name, path)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "Traceback" not in caplog.text


def test_the_apps_max_content_length_is_a_json_413_on_every_path(make_node: Any) -> None:
    """Beyond the app's MAX_CONTENT_LENGTH werkzeug raised its HTML 413 under /clustershazbot/."""
    node = make_node(MAX_CONTENT_LENGTH=2000)
    wait_until(lambda: node.engine.live, 15, "the node going live")
    for path in ("/clustershazbot/gossip", "/clustershazbot/control"):
        headers = {"Content-Length": "3000", "Authorization": SECRET}
        if path.endswith("control"):
            headers["Authorization"] = node.engine.settings.control_secret
        status, body = raw_post(node, path, headers, b"x" * 3000)
        assert (status, body) == (413, {"error": "the body is larger than 2000 bytes"}), path


# -- item 10: lenient gzip -------------------------------------------------------

NEWS = "http://127.0.3.7:9/"  # a loopback member nobody listens on


def test_gzip_bodies_without_their_trailer_or_with_more_after_it_are_refused(
    nodes: tuple[Node, Node],
) -> None:
    """Each was inflated as far as it went and merged: 200, the record stored."""
    news = json.dumps(
        {
            "message": "gossip",
            "online": [],
            "offline": [{"baseUrl": NEWS, "monitor": False, "lastUpdate": nodes[0].engine.clock()}],
        }
    ).encode()
    whole = gzip.compress(news)
    cases = {
        "no trailer": (whole[:-8], "the gzip body is cut short: it ends before its CRC and length"),
        "half a trailer": (
            whole[:-3],
            "the gzip body is cut short: it ends before its CRC and length",
        ),
        "two members": (
            whole + gzip.compress(b" "),
            "the gzip body has data after its end (a second member or garbage)",
        ),
        "garbage": (
            whole + b"garbage",
            "the gzip body has data after its end (a second member or garbage)",
        ),
        "a wrong CRC": (whole[:-8] + b"\0" * 4 + whole[-4:], "the body is not valid gzip"),
        "a bomb": (
            gzip.compress(b" " * (5 << 20)),
            "the body is larger than 4194304 bytes after decompression",
        ),
    }
    headers = {
        "Authorization": SECRET,
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    for node in nodes:
        for path in ("/clustershazbot/gossip", "/clustershazbot/probe"):
            for name, (body, error) in cases.items():
                status = 413 if name == "a bomb" else 400
                sent = {**headers, "Content-Length": str(len(body))}
                assert raw_post(node, path, sent, body) == (status, {"error": error}), (name, path)
    assert all(NEWS not in node.view() for node in nodes)
    for node in nodes:
        status, reply = raw_post(
            node, "/clustershazbot/gossip", {**headers, "Content-Length": str(len(whole))}, whole
        )
        assert status == 200, reply
        assert node.view()[NEWS] is False  # the whole member is taken


# -- item 11: a node's text on the operator's terminal -----------------------------

#: What a hostile or broken node answered: retitle the terminal, clear it, a C1 CSI, a
#: right-to-left override, and a line of its own.
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202eevil\r\nfake: all nodes healthy"


class HostileNode(BaseHTTPRequestHandler):
    """Answers every request with ``reply`` (status, JSON): a node gone wrong."""

    reply: tuple[int, Any] = (503, {"error": HOSTILE})

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, data = self.reply
        body = json.dumps(data).encode()  # valid JSON: the control characters escaped in it
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileNode)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def raw_controls(data: bytes) -> list[str]:
    """The control and format characters in a process's output, its line ends aside."""
    return [c for c in data.decode() if unicodedata.category(c) in ("Cc", "Cf") and c != "\n"]


def test_the_cli_escapes_a_nodes_control_characters(
    hostile: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`clustershazbot members`/`offline` printed the node's error raw, --json included
    (on stderr): the terminal got retitled and cleared, and a fake line printed."""
    url = f"http://127.0.0.1:{hostile.server_address[1]}/"
    for args in (["members"], ["offline", "--secret", "x"]):
        for as_json in ([], ["--json"]):
            done = clustershazbot(*args, *as_json, url)
            what = (args[0], as_json, done.stdout, done.stderr)
            assert done.returncode == 5, what
            assert raw_controls(done.stdout) == raw_controls(done.stderr) == [], what
            stderr = done.stderr.decode()
            assert stderr.count("\n") == 1, what  # one line: "Error: ..."
            escaped = r"\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202eevil\r\nfake: all nodes healthy"
            assert stderr == f"Error: {url} answered HTTP 503: {escaped}\n", what
            if as_json:
                assert json.loads(done.stdout)["error"] == f"{url} answered HTTP 503: {escaped}"
    # A member's base URL is validated (printable ASCII): a node's list cannot carry one.
    record = {"baseUrl": HOSTILE, "monitor": False, "lastUpdate": 1}
    monkeypatch.setattr(HostileNode, "reply", (200, {"online": [record]}))
    done = clustershazbot("members", url)
    assert done.returncode == 0, done.stderr
    assert raw_controls(done.stdout) == raw_controls(done.stderr) == []
    assert b"PWNED" not in done.stdout + done.stderr  # the record was skipped


def clustershazbot(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The console script as an operator runs it; its output as bytes (text mode would
    turn a raw \\r into a line end)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHAZBOT_", "FLASK_"))}
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, timeout=30)


# -- item 9: secrets -----------------------------------------------------------------

OLD, OLD_CONTROL = "old-gossip-secret-0123456789", "old-control-secret-abcdefghij"


def test_a_comma_string_that_could_be_one_secret_is_refused_at_start(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`SHAZBOT_SECRET="<19 chars>,z"` was split: the node sent the 19 characters and
    accepted `z` too, silently; a secret with a comma, as the original library takes it,
    was split the same way."""
    for key, value in [
        ("SHAZBOT_SECRET", "nineteen-characters,z"),
        ("SHAZBOT_SECRET", "legacy,secret-with-a-comma-0123456789"),
        ("SHAZBOT_CONTROL_SECRET", f"ctl,{SECRET}"),
    ]:
        monkeypatch.setenv(key, value)  # the environment, as a deployment sets it
        app = Flask("comma")
        app.config.update({k: v for k, v in config.items() if k != key})
        app.config["SHAZBOT_BASE_URL"] = "http://127.0.0.1:9/"
        with pytest.raises(ConfigError) as refused:
            ClusterShazbot(app)
        message = str(refused.value)
        assert message.startswith(f"{key} has a comma") and "cannot be told apart" in message
        assert not any(part in message for part in re.split(",", value)), message
        monkeypatch.delenv(key)


def test_every_accepted_secret_is_checked_for_weakness(
    make_node: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the first secret of each setting was checked: an older one that is short, or
    one that is also the control secret (every member a controller), passed silently."""
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    node = make_node(
        SHAZBOT_SECRET=[SECRET, "q7#z"],  # a list: each item is one secret
        SHAZBOT_CONTROL_SECRET=f"{CONTROL},{SECRET}",  # the gossip secret, still accepted
    )
    wait_until(lambda: node.engine.live, 15, "the node going live")
    weak = [r.getMessage() for r in caplog.records if r.getMessage().startswith("weak secret")]
    assert weak == [
        "weak secret: SHAZBOT_SECRET is also SHAZBOT_CONTROL_SECRET's secret number 2 (older, "
        "still accepted): every peer can take this node offline and read its full state",
        "weak secret: SHAZBOT_SECRET's secret number 2 (older, still accepted) is shorter than "
        "16 characters; use a long random value (python -c 'import secrets; "
        "print(secrets.token_hex(32))')",
    ]
    # What the first warning is about: the gossip secret takes the node offline.
    reply = requests.post(
        node.base_url + "clustershazbot/control",
        json={"message": "control", "online": True},
        headers={"Authorization": SECRET},
        timeout=10,
    )
    assert reply.status_code == 200
    assert "q7#z" not in caplog.text and SECRET not in caplog.text


def test_requests_with_an_older_secret_are_counted_on_metrics_and_logged_once_a_minute(
    make_node: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Weeks after a rotation, nothing said whether any node or tool still sent the old
    secret, which step 3 of the rotation drops."""
    caplog.set_level(logging.INFO, logger="flask_clustershazbot")
    node = make_node(
        SHAZBOT_SECRET=f"{SECRET},{OLD}", SHAZBOT_CONTROL_SECRET=f"{CONTROL},{OLD_CONTROL}"
    )
    node.server.dispatch.app = DispatcherMiddleware(node.app, {"/metrics": make_wsgi_app()})
    wait_until(lambda: node.engine.live, 15, "the node going live")
    url = node.base_url
    body = {"message": "gossip", "online": [], "offline": []}

    def post(path: str, secret: str, data: dict[str, Any]) -> int:
        headers = {"Authorization": secret}
        return requests.post(url + path, json=data, headers=headers, timeout=10).status_code

    def older() -> dict[str, float]:
        text = requests.get(url + "metrics", timeout=10).text
        return {
            s.labels["secret"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "clustershazbot_older_secret_requests_total" and s.labels["node"] == url
        }

    assert post("clustershazbot/gossip", SECRET, body) == 200  # the current secrets: not counted

    def listed(secret: str) -> dict[str, Any]:
        headers = {"Authorization": secret}
        return requests.get(url + "clustershazbot/list", headers=headers, timeout=10).json()  # type: ignore[no-any-return]

    assert "offline" in listed(CONTROL)
    assert older() == {"gossip": 0, "control": 0}
    for _ in range(3):  # the fast path
        assert post("clustershazbot/gossip", OLD, body) == 200
    probe = {"message": "probe", "baseUrl": url, "timeout": 1}
    assert post("clustershazbot/probe", OLD, probe) == 200  # the route
    assert (
        post("clustershazbot/control", OLD_CONTROL, {"message": "control", "online": True}) == 200
    )
    assert "offline" in listed(OLD_CONTROL)
    page = requests.get(url + "clustershazbot/", auth=("ops", OLD_CONTROL), timeout=10)
    assert page.status_code == 200
    assert post("clustershazbot/gossip", "wrong-secret-0123456789", body) == 401  # not counted
    assert older() == {"gossip": 4, "control": 3}
    lines = [r.getMessage() for r in caplog.records if "carried an older" in r.getMessage()]
    assert lines == [
        "a gossip request from 127.0.0.1 carried an older gossip secret (number 2 of "
        "SHAZBOT_SECRET), still accepted: finish the rotation there before dropping it "
        "(1 so far; further ones are counted for a minute without a log line)"
    ]
    # A minute later (on the node's monotonic clock), the next one is logged again.
    node.engine.monotonic = lambda: time.monotonic() + 61
    assert (
        post("clustershazbot/control", OLD_CONTROL, {"message": "control", "online": True}) == 200
    )
    lines = [r.getMessage() for r in caplog.records if "carried an older" in r.getMessage()]
    assert len(lines) == 2 and lines[1].startswith(
        "a control request from 127.0.0.1 carried an older control secret (number 2 of "
        "SHAZBOT_CONTROL_SECRET)"
    )
    assert "(4 so far;" in lines[1]
    for secret in (SECRET, OLD, CONTROL, OLD_CONTROL):
        assert secret not in caplog.text
