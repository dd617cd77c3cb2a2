"""The testing kit as docs/testing.md shows it: real engines in virtual time."""

from __future__ import annotations

import logging
import random
import re

import pytest
from flask import Flask

from flask_clustershazbot import ClusterShazbot, peer_joined, testing
from flask_clustershazbot.config import load_settings
from flask_clustershazbot.engine import Engine
from flask_clustershazbot.testing import (
    EventLoop,
    MemoryMasterList,
    MemoryTransport,
    Network,
    VirtualScheduler,
)


def test_twenty_engines_converge_and_learn_of_a_crash_in_virtual_time() -> None:
    logging.getLogger("flask_clustershazbot").setLevel(logging.ERROR)  # lost messages
    try:
        loop, net = EventLoop(), Network(random.Random(1), loss=0.05)

        def node(port: int) -> Engine:
            url = f"http://127.0.3.1:{port}/"
            settings = load_settings({
                "SHAZBOT_SECRET": "s" * 24,
                "SHAZBOT_CONTROL_SECRET": "c" * 24,
                "SHAZBOT_BASE_URL": url,
                "SHAZBOT_MASTER_LIST": "/unused.json",  # the network's in-memory list
            })  # fmt: skip
            engine = Engine(
                settings,
                transport=MemoryTransport(net, url, settings.secret),
                master_list=MemoryMasterList(net),
                scheduler=VirtualScheduler(loop),
                clock=loop.clock_ms,
                monotonic=loop.monotonic,
                rng=random.Random(port),
            )
            net.nodes[url] = engine
            return engine

        nodes = [node(9000 + i) for i in range(20)]
        for engine in nodes:
            engine.start()
        everyone = {e.settings.base_url for e in nodes}
        assert loop.run_until(
            3600,
            lambda: all({s.base_url for s in e.server_list().online} == everyone for e in nodes),
        )
        victim = nodes.pop()
        del net.nodes[victim.settings.base_url]
        victim.crash()  # gone without a word, as SIGKILL would
        gone = victim.settings.base_url
        assert loop.run_until(
            loop.now + 3600,
            lambda: all(gone in {s.base_url for s in e.server_list(True).offline} for e in nodes),
        )
    finally:
        logging.getLogger("flask_clustershazbot").setLevel(logging.NOTSET)


@pytest.fixture
def test_app() -> Flask:
    """A test app configured as docs/testing.md's conftest.py configures it."""
    app = Flask("kit")
    app.config.update(
        TESTING=True,
        SHAZBOT_READ_ENV=False,
        SHAZBOT_SECRET="test-secret-0123456789",
        SHAZBOT_CONTROL_SECRET="test-control-0123456789",
        SHAZBOT_BASE_URL="http://127.0.0.1:5999/",
        SHAZBOT_MASTER_LIST="/nonexistent/master.json",
    )
    ClusterShazbot(app)
    return app


def test_a_test_apps_node_is_not_started(test_app: Flask) -> None:
    """docs/testing.md: no peers online, the node itself offline, the endpoints 503."""
    shazbot = test_app.extensions["clustershazbot"]
    assert shazbot.server_list().online == ()
    assert [s.base_url for s in shazbot.server_list(include_offline=True).offline] == [
        "http://127.0.0.1:5999/"
    ]
    client = test_app.test_client()
    assert client.get("/clustershazbot/list").status_code == 503
    assert shazbot.health()["status"] == "error"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://0.0.0.0:1/", "names 0.0.0.0, an address peers cannot reach"),
        ("http://[::]:1/", "names ::, an address peers cannot reach"),
        ("http://127.0.3.7:9/path/", "has the path '/path/'"),
        ("ftp://127.0.3.7/", "must be an http:// or https:// URL"),
        ("http://127.0.3.7:9/?q=1", "must not carry a query or fragment"),
        ("HTTP://127.0.0.1:5999", "for peers, not for this node itself"),
    ],
)
def test_join_and_leave_refuse_a_url_no_peer_could_have(
    test_app: Flask, url: str, why: str
) -> None:
    """The checks of SHAZBOT_BASE_URL: a base URL a peer's configuration would refuse is
    refused with the reason, and the view does not change."""
    joined: list[str] = []
    peer_joined.connect(lambda sender, server: joined.append(server.base_url), test_app, weak=False)
    for change in (testing.join, testing.leave):
        with pytest.raises(ValueError, match=re.escape(why)):
            change(test_app, url)
    assert test_app.extensions["clustershazbot"].server_list().online == () and joined == []


def test_join_stores_the_canonical_form(test_app: Flask) -> None:
    assert testing.join(test_app, "HTTP://127.0.3.7:09").base_url == "http://127.0.3.7:9/"
    assert testing.leave(test_app, "http://127.0.3.7:9").base_url == "http://127.0.3.7:9/"
    view = test_app.extensions["clustershazbot"].server_list(include_offline=True)
    assert "http://127.0.3.7:9/" in [s.base_url for s in view.offline]
