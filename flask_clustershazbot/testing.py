"""Helpers for testing an app that uses ClusterShazbot, without a cluster.

``join(app, url)`` and ``leave(app, url)`` change the app's view as a peer's gossip
would: the table changes and ``peer_joined`` / ``peer_left`` fire with the app as
sender. They work whether or not the node was started (a ``TESTING`` app does not
start it). See docs/testing.md.
"""

from __future__ import annotations

from flask import Flask

from .constants import EXTENSION_KEY
from .engine import Engine
from .errors import BadMessage
from .records import GossipServer, ServerList

__all__ = ["join", "leave"]


def _engine(app: Flask) -> Engine:
    try:
        return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError("ClusterShazbot.init_app(app) was not called for this app") from None


def _record(engine: Engine, base_url: str, monitor: bool) -> GossipServer:
    if base_url == engine.settings.base_url:
        raise ValueError("join() and leave() are for peers, not for this node itself")
    known = engine.server_list(include_offline=True)
    last = max((s.last_update for s in known.online + known.offline if s.base_url == base_url),
               default=-1)
    record = {"baseUrl": base_url, "monitor": monitor, "lastUpdate": max(engine.clock(), last + 1)}
    try:
        return GossipServer.from_dict(record, "base_url")
    except BadMessage as exc:
        raise ValueError(str(exc)) from None


def join(app: Flask, base_url: str, monitor: bool = False) -> GossipServer:
    """Make ``base_url`` an online peer of ``app``'s node, as its gossip would."""
    engine = _engine(app)
    server = _record(engine, base_url, monitor)
    engine.merge(ServerList(online=(server,)))
    return server


def leave(app: Flask, base_url: str) -> GossipServer:
    """Make ``base_url`` an offline peer of ``app``'s node, as news of its shutdown would."""
    engine = _engine(app)
    known = {s.base_url: s for s in engine.server_list(include_offline=True).online}
    server = _record(engine, base_url, known[base_url].monitor if base_url in known else False)
    engine.merge(ServerList(offline=(server,)))
    return server
