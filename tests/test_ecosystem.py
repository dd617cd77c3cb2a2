"""Common Flask extensions on the same app: gossip, list and control keep working.

Two real nodes whose apps use Flask-WTF's CSRFProtect and Flask-Limiter with
``default_limits=["5 per minute"]``: one registers them before ClusterShazbot, the
other after. The extensions still guard the app's own routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

import flask_clustershazbot
from cluster import CONTROL, SECRET, Server, wait_until
from flask_clustershazbot import ClusterShazbot


class GuardedNode:
    """A node whose app has CSRFProtect and a Limiter, registered before or after us."""

    def __init__(self, config: dict[str, Any], extensions_first: bool) -> None:
        self.server = Server()
        self.base_url = self.server.url
        self.app = Flask(f"guarded{self.server.port}")
        self.app.config.update(
            config, SECRET_KEY="test-session-key", SHAZBOT_BASE_URL=self.base_url
        )

        @self.app.get("/hello")
        def hello() -> str:
            return "hello"

        @self.app.post("/form")
        def form() -> str:
            return "posted"

        def extensions() -> None:
            CSRFProtect(self.app)
            Limiter(
                get_remote_address,
                app=self.app,
                default_limits=["5 per minute"],
                storage_uri="memory://",
            )

        if extensions_first:
            extensions()
        self.shazbot = ClusterShazbot(self.app)
        if not extensions_first:
            extensions()
        self.engine = self.app.extensions["clustershazbot"]
        self.server.dispatch.app = self.app
        self.server.start()

    def stop(self) -> None:
        self.engine.shutdown()
        self.server.stop()


@pytest.fixture
def guarded(config: dict[str, Any]) -> Iterator[Callable[[bool], GuardedNode]]:
    nodes: list[GuardedNode] = []

    def make(extensions_first: bool) -> GuardedNode:
        nodes.append(GuardedNode(config, extensions_first))
        return nodes[-1]

    yield make
    for node in nodes:
        node.stop()


def online(node: GuardedNode) -> set[str]:
    return {s.base_url for s in node.shazbot.server_list(app=node.app).online}


def test_gossip_list_and_control_pass_csrf_protection_and_default_rate_limits(
    guarded: Callable[[bool], GuardedNode],
) -> None:
    a, b = guarded(True), guarded(False)
    both = {a.base_url, b.base_url}
    wait_until(lambda: online(a) == both and online(b) == both, what="both nodes see each other")
    start = {n: n.engine.stats.rounds for n in (a, b)}
    # Many more gossip exchanges than 5 a minute from 127.0.0.1, in both directions.
    wait_until(
        lambda: all(n.engine.stats.rounds >= start[n] + 12 for n in (a, b)),
        what="12 more gossip rounds on each node",
    )
    assert a.engine.stats.gossip_failures == 0
    assert b.engine.stats.gossip_failures == 0
    assert online(a) == both and online(b) == both

    for node in (a, b):
        for _ in range(7):  # list: beyond the default limit
            listed = requests.get(node.base_url + "clustershazbot/list", timeout=5)
            assert listed.status_code == 200, listed.text
        control = requests.post(  # control: a POST without a CSRF token
            node.base_url + "clustershazbot/control",
            json={"message": "control", "online": True},
            headers={"Authorization": CONTROL},
            timeout=5,
        )
        assert control.status_code == 200, control.text
        assert control.json() == {"success": True}
        # Still authenticated by the secret: exempt from the extensions, not from the check.
        wrong = requests.post(
            node.base_url + "clustershazbot/gossip",
            json={},
            timeout=5,
            headers={"Authorization": SECRET + "x"},
        )
        assert wrong.status_code == 401

        # The extensions still guard the app's own routes.
        assert requests.post(node.base_url + "form", timeout=5).status_code == 400
        statuses = [requests.get(node.base_url + "hello", timeout=5).status_code for _ in range(6)]
        assert statuses.count(429) >= 1, statuses


def test_the_blueprint_is_public() -> None:
    assert flask_clustershazbot.blueprint is ClusterShazbot.blueprint
    assert ClusterShazbot.blueprint.name == "clustershazbot"
