"""The fast gossip path (views.FastGossip) on real servers: gunicorn and werkzeug.

tests/test_endpoints.py runs every request-handling test with and without the path, in
process; here, the parts only a real server shows: a body cut short by the client, the
app's request hooks, and the host's table afterwards.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import requests

from cluster import SECRET, Node, wait_until
from test_gunicorn import ROOT, Host

NEWS = "http://127.0.3.7:9/"  # a loopback member nobody listens on


def news(now: int, url: str = NEWS) -> bytes:
    record = {"baseUrl": url, "monitor": False, "lastUpdate": now}
    return json.dumps({"message": "gossip", "online": [], "offline": [record]}).encode()


def cut_short(base_url: str, body: bytes) -> bytes:
    """POST ``body`` with a Content-Length twice its size, then hang up: what comes back."""
    host, port = base_url.split("//")[1].rstrip("/").split(":")
    head = (
        f"POST /clustershazbot/gossip HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {SECRET}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {2 * len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_a_gunicorn_host_answers_gossip_and_refuses_a_body_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this checkout's package, not an installed one
    host = Host("F", tmp_path, tmp_path / "master.json", ["--workers", "1", "--threads", "4"])
    try:
        view = wait_until(host.view, timeout=30, what="the gunicorn host serving")
        assert view == {host.base_url: True}
        now = requests.get(host.base_url + "clustershazbot/list", timeout=10).json()["online"][0]
        stamp = int(now["lastUpdate"])
        reply = cut_short(host.base_url, news(stamp, "http://127.0.3.8:9/"))
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        ok = requests.post(
            host.base_url + "clustershazbot/gossip",
            data=news(stamp),
            timeout=10,
            headers={"Authorization": SECRET, "Content-Type": "application/json"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.headers["Content-Type"] == "application/json"
        assert ok.headers["X-Clustershazbot-Instance"]
        assert {r["baseUrl"] for r in ok.json()["offline"]} == {NEWS}
        assert host.view() == {host.base_url: True, NEWS: False}  # and not the cut-short one
        assert "Traceback" not in host.stderr_path.read_text(errors="replace")
    finally:
        host.stop()


def test_a_werkzeug_node_refuses_a_body_cut_short_through_the_apps_hooks(
    config: dict[str, Any],
) -> None:
    node = Node(config)
    hooks: list[int] = []
    node.app.after_request(lambda response: hooks.append(response.status_code) or response)  # type: ignore[func-returns-value]
    try:
        wait_until(lambda: node.engine.live, 15, "the node going live")
        hooks.clear()  # the self-check's request
        stamp = node.engine.clock()
        reply = cut_short(node.base_url, news(stamp, "http://127.0.3.8:9/"))
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        assert b'{"error":"the body ended before its Content-Length' in reply
        assert hooks == [400]  # refused: the app answered it
        ok = requests.post(
            node.base_url + "clustershazbot/gossip",
            data=news(stamp),
            timeout=10,
            headers={"Authorization": SECRET},
        )
        assert ok.status_code == 200, ok.text
        assert hooks == [400]  # accepted: answered before the app's dispatch
        assert node.view() == {node.base_url: True, NEWS: False}
    finally:
        node.stop()
