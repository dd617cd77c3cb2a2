"""``POST /clustershazbot/probe`` (the indirect-probe extension) on real nodes.

A helper tries only members it knows, allowed by SHAZBOT_ALLOWED_PEERS: the endpoint
must not let anyone with the gossip secret make the node contact arbitrary addresses.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from cluster import SECRET, MakeNode, Node, wait_until
from flask_clustershazbot.engine import MAX_PROBES

PROBE = "clustershazbot/probe"


def probe(node: Node, body: Any, auth: str | None = SECRET) -> requests.Response:
    headers = {"Authorization": auth} if auth else {}
    return requests.post(node.base_url + PROBE, json=body, headers=headers, timeout=10)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket on 127.0.0.2 that accepts connections and counts them (it never answers)."""
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    yield sock
    sock.close()


def accepted(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return count
        conn.close()
        count += 1


def test_a_helper_reports_a_live_member_reachable_and_a_dead_one_unreachable(
    make_node: MakeNode,
) -> None:
    helper, target, doomed = make_node(), make_node(), make_node()
    wait_until(
        lambda: all(helper.view().get(n.base_url) for n in (target, doomed)),
        what="the helper knows both",
    )
    reply = probe(helper, {"message": "probe", "baseUrl": target.base_url, "timeout": 1})
    assert reply.status_code == 200 and reply.json() == {"reachable": True}
    doomed.stop(graceful=False)
    reply = probe(helper, {"message": "probe", "baseUrl": doomed.base_url})
    assert reply.status_code == 200 and reply.json() == {"reachable": False}


@pytest.mark.parametrize("auth", [None, "wrong-secret"])
def test_a_probe_without_the_gossip_secret_is_401(make_node: MakeNode, auth: str | None) -> None:
    helper = make_node()
    assert probe(helper, {"message": "probe", "baseUrl": helper.base_url}, auth).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"baseUrl": "http://127.0.0.1:9/"},
        {"message": "gossip", "baseUrl": "http://127.0.0.1:9/"},
        {"message": "probe"},
        {"message": "probe", "baseUrl": 9},
        {"message": "probe", "baseUrl": "http://127.0.0.1:9/", "timeout": 0},
        {"message": "probe", "baseUrl": "http://127.0.0.1:9/", "timeout": "1"},
        {"message": "probe", "baseUrl": "ftp://127.0.0.1:9/"},
    ],
)
def test_a_malformed_probe_is_400(make_node: MakeNode, body: Any) -> None:
    reply = probe(make_node(), body)
    assert reply.status_code == 400 and reply.json()["error"]


def test_an_unknown_address_is_refused_and_never_contacted(
    make_node: MakeNode, listener: socket.socket
) -> None:
    helper = make_node()
    url = f"http://127.0.0.2:{listener.getsockname()[1]}/"
    reply = probe(helper, {"message": "probe", "baseUrl": url, "timeout": 1})
    assert reply.status_code == 400 and "not a member" in reply.json()["error"]
    assert accepted(listener) == 0


def test_an_address_outside_the_allowed_peers_is_refused_and_never_contacted(
    make_node: MakeNode, listener: socket.socket
) -> None:
    helper = make_node(SHAZBOT_ALLOWED_PEERS="127.0.0.1")
    url = f"http://127.0.0.2:{listener.getsockname()[1]}/"
    reply = probe(helper, {"message": "probe", "baseUrl": url})
    assert reply.status_code == 400 and "allowed" in reply.json()["error"]
    assert accepted(listener) == 0


def test_probes_beyond_the_limit_get_503_until_one_ends(
    make_node: MakeNode, listener: socket.socket
) -> None:
    """A helper runs at most MAX_PROBES probes at once: more are refused with 503, not queued,
    so askers cannot pile threads up on a helper; the limit frees itself when probes end."""
    helper = make_node(SHAZBOT_REQUEST_TIMEOUT=6)
    silent = f"http://127.0.0.2:{listener.getsockname()[1]}/"  # accepts, never answers
    record = {"baseUrl": silent, "monitor": False, "lastUpdate": int(time.time() * 1000)}
    reply = requests.post(
        helper.base_url + "clustershazbot/gossip",
        json={"message": "gossip", "online": [record], "offline": []},
        headers={"Authorization": SECRET},
        timeout=10,
    )
    assert reply.status_code == 200
    body = {"message": "probe", "baseUrl": silent, "timeout": 6}
    # One more than the limit, all at once: each accepted one holds its slot for 6 s on the
    # silent member, so exactly one (the last to arrive) is refused.
    with ThreadPoolExecutor(MAX_PROBES + 1) as pool:
        answers = list(pool.map(lambda _: probe(helper, body), range(MAX_PROBES + 1)))
    refused = [a for a in answers if a.status_code == 503]
    assert len(refused) == 1 and "too many probes" in refused[0].json()["error"]
    assert [a.json() for a in answers if a.status_code != 503] == [
        {"reachable": False}
    ] * MAX_PROBES
    after = probe(helper, {**body, "timeout": 0.05})
    assert after.status_code == 200 and after.json() == {"reachable": False}
