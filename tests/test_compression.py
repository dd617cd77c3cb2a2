"""Gzip on the gossip wire: between our nodes both ways, and with a plain-JSON (seed-like) peer."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response, request

from cluster import SECRET, MakeNode, Server, wait_until

STAMP = int(time.time() * 1000)
#: Enough offline records to put every node's whole state above the 1 KiB gzip threshold.
OFFLINE = [
    {"baseUrl": f"http://10.9.0.{i}:8080/", "monitor": False, "lastUpdate": STAMP - i}
    for i in range(1, 31)
]
OFFLINE_URLS = {r["baseUrl"] for r in OFFLINE}


class Recorder:
    """WSGI middleware that notes the encodings of each gossip request and its response."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[
            tuple[str, str]
        ] = []  # (request Content-Encoding, response Content-Encoding)
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != "/clustershazbot/gossip":
            return self.app(environ, start_response)
        sent = environ.get("HTTP_CONTENT_ENCODING", "")

        def note(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            got = {k.lower(): v for k, v in headers}.get("content-encoding", "")
            if status.startswith("200"):
                with self.lock:
                    self.seen.append((sent, got))
            return start_response(status, headers, *rest)

        return self.app(environ, note)


def write_master(path: str, online: list[dict[str, Any]]) -> None:
    with open(path, "w") as f:
        json.dump({"online": online, "offline": OFFLINE}, f)


def test_our_nodes_exchange_gzip_both_ways(make_node: MakeNode, config: dict[str, Any]) -> None:
    write_master(config["SHAZBOT_MASTER_LIST"], [])
    a = make_node()
    recorder = Recorder(None)
    b = make_node()
    recorder.app = b.app
    b.server.dispatch.app = recorder
    write_master(
        config["SHAZBOT_MASTER_LIST"],
        [{"baseUrl": n.base_url, "monitor": False, "lastUpdate": STAMP} for n in (a, b)],
    )
    wait_until(lambda: ("gzip", "gzip") in recorder.seen, what="a gzip request with a gzip reply")
    wait_until(lambda: a.view().get(b.base_url) and b.view().get(a.base_url), what="a and b online")
    assert OFFLINE_URLS <= {u for u, online in a.view().items() if not online}


def test_a_plain_json_peer_gets_gzip_requests_and_its_plain_replies_are_merged(
    make_node: MakeNode, config: dict[str, Any]
) -> None:
    peer_app, seen = Flask("plain-peer"), []
    peer = Server(peer_app)
    peer_record = {"baseUrl": peer.url, "monitor": False, "lastUpdate": STAMP}

    @peer_app.post("/clustershazbot/gossip")
    def gossip() -> Response:
        raw = request.get_data()
        encoding = request.headers.get("Content-Encoding", "")
        body = json.loads(
            gzip.decompress(raw) if encoding == "gzip" else raw
        )  # as body-parser does
        seen.append((encoding, body))
        peer_record["lastUpdate"] = int(time.time() * 1000)
        reply = {"message": "gossip", "online": [peer_record], "offline": OFFLINE}
        return Response(json.dumps(reply), mimetype="application/json")  # never compressed

    peer.start()
    try:
        write_master(config["SHAZBOT_MASTER_LIST"], [peer_record])
        node = make_node()
        wait_until(lambda: any(enc == "gzip" for enc, _ in seen), what="a gzip request to the peer")
        body = next(body for enc, body in seen if enc == "gzip")
        assert body["message"] == "gossip"
        assert OFFLINE_URLS <= {r["baseUrl"] for r in body["offline"]}
        view = node.view()
        assert view[peer.url] is True
        assert OFFLINE_URLS <= {u for u, online in view.items() if not online}
    finally:
        peer.stop()


def test_a_client_that_does_not_ask_for_gzip_gets_plain_json(
    make_node: MakeNode, config: dict[str, Any]
) -> None:
    write_master(config["SHAZBOT_MASTER_LIST"], [])
    node = make_node()
    wait_until(lambda: OFFLINE_URLS <= set(node.view()), what="the master list merged")
    message = json.dumps({"message": "gossip", "online": [], "offline": OFFLINE}).encode()
    for accept in ("identity", "gzip"):
        r = requests.post(
            node.base_url + "clustershazbot/gossip",
            data=gzip.compress(message),
            headers={
                "Authorization": SECRET,
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Accept-Encoding": accept,
            },
            timeout=5,
            stream=True,
        )
        raw = r.raw.read(decode_content=False)
        assert r.status_code == 200
        assert r.headers.get("Content-Encoding") == (None if accept == "identity" else "gzip")
        reply = json.loads(gzip.decompress(raw) if accept == "gzip" else raw)
        assert reply["message"] == "gossip"
        assert OFFLINE_URLS <= {s["baseUrl"] for s in reply["offline"]}


def test_a_seed_node_takes_our_gzip_requests(make_node: MakeNode, config: dict[str, Any]) -> None:
    seed_compat = pytest.importorskip("test_seed_compat")
    if seed_compat.NODE is None:
        pytest.skip("node (Node.js) is not installed")
    write_master(config["SHAZBOT_MASTER_LIST"], [])
    node = make_node()
    # Our state (30 offline records) is above the threshold: every request to the original is gzip.
    wait_until(lambda: OFFLINE_URLS <= set(node.view()), what="the master list merged")
    master = Path(config["SHAZBOT_MASTER_LIST"])
    wait_until(lambda: node.base_url in master.read_text(), what="announced")
    proc, seed = seed_compat.start_seed_peer(config["SHAZBOT_MASTER_LIST"], 0.2)
    try:
        wait_until(lambda: node.view().get(seed), what="the node of the original known")
        rounds = node.engine.stats.rounds
        wait_until(
            lambda: node.engine.stats.rounds >= rounds + 10, what="ten rounds with the original"
        )
        assert proc.poll() is None
        assert node.view()[seed] is True
        seen = seed_compat.seed_view(seed)
        assert seen[node.base_url] is True and OFFLINE_URLS <= set(seen)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
