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
import socket
import subprocess
import threading
import unicodedata
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cluster import SECRET, Node, wait_until
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
