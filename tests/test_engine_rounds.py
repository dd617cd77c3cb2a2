"""The engine's own stall check, driven with an injected clock (no threads, no network).

A node that was paused (SIGSTOP, a long GC) must not blame peers for its own
silence: the integration test in test_fault_process.py shows the end result,
but there one exchange on waking refreshes every peer anyway. Here the peer
that answers knows nothing of the others, so only the stall check keeps them.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from flask_clustershazbot import Engine, GossipServer, ServerList
from flask_clustershazbot.config import load_settings

ME = "http://127.0.0.1:1001/"
PEERS = [f"http://127.0.0.1:{1002 + i}/" for i in range(3)]


class Clock:
    def __init__(self) -> None:
        self.mono = 1000.0

    def wall(self) -> int:
        return 1_700_000_000_000 + int(self.mono * 1000)


class NoJobs:
    def start(self) -> None: ...
    def after(self, delay: float, fn: Any) -> None: ...
    def shutdown(self) -> None: ...


class AnswersAboutItself:
    """A peer's reply that carries only its own fresh record."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def gossip(self, base_url: str, message: dict[str, Any]) -> ServerList:
        return ServerList((GossipServer(base_url, False, self.clock.wall()),))

    def gossip_many(self, urls: Any, message: Any) -> dict[str, Any]:
        return {}


@pytest.fixture
def engine() -> tuple[Engine, Clock]:
    clock = Clock()
    settings = load_settings({}, {}, {
        "secret": "s" * 20, "control_secret": "c" * 20, "base_url": ME,
        "master_list": "/nonexistent/master.json", "gossip_interval": 1, "failure_timeout": 10,
    })
    engine = Engine(settings, transport=AnswersAboutItself(clock), scheduler=NoJobs(),
                    clock=clock.wall, monotonic=lambda: clock.mono, rng=random.Random(1))
    engine.start()
    engine._merge(ServerList(tuple(GossipServer(u, False, clock.wall()) for u in PEERS)))
    return engine, clock


def online_peers(engine: Engine) -> set[str]:
    return {s.base_url for s in engine.server_list().online} - {ME}


def test_a_stalled_node_restarts_its_peer_timeouts(engine, caplog):
    engine, clock = engine
    engine.gossip_round()
    clock.mono += 30  # this node itself was frozen for 3 failure timeouts
    with caplog.at_level(logging.WARNING, "flask_clustershazbot"):
        engine.gossip_round()
    assert online_peers(engine) == set(PEERS)
    assert any("stalled" in r.getMessage() for r in caplog.records)


def test_a_running_node_times_out_silent_peers(engine):
    engine, clock = engine
    for _ in range(30):  # rounds every second: no stall, the silent peers really are silent
        clock.mono += 1
        engine.gossip_round()
    assert len(online_peers(engine)) < len(PEERS)
