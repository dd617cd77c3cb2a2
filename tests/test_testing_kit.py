"""The testing kit as docs/testing.md shows it: real engines in virtual time."""

from __future__ import annotations

import logging
import random

from flask_clustershazbot.config import load_settings
from flask_clustershazbot.engine import Engine
from flask_clustershazbot.testing import EventLoop, MemoryTransport, Network, VirtualScheduler


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
