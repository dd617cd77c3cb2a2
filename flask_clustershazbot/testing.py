"""The testing kit: for testing an app that uses ClusterShazbot, and the protocol itself.

- ``join(app, url)`` and ``leave(app, url)`` change the app's view as a peer's gossip
  would: the table changes and ``peer_joined`` / ``peer_left`` fire with the app as
  sender, whether or not the node was started (a ``TESTING`` app does not start it).
- :class:`EventLoop`, :class:`VirtualScheduler`, :class:`Network` and
  :class:`MemoryTransport` run many real engines in one process in virtual time, with
  message loss, partitions, one-way link faults and crashes (``Engine.crash()``): the
  simulator (benchmarks/simulate.py) and the project's own tests use them.

See docs/testing.md.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from ._json import decode_json, encode_json
from .constants import EXTENSION_KEY
from .engine import Engine
from .errors import TransportError
from .masterlist.base import NodeMasterList
from .records import GossipServer, ServerList, canonical_base_url
from .scheduling import Scheduler
from .settings_values import unreachable_base_url
from .transport import Transport, wire_body

__all__ = ["EventLoop", "MemoryTransport", "Network", "VirtualScheduler", "join", "leave"]

#: Virtual time 0 on the wall clock (ms): figures never depend on the date.
EPOCH_MS = 1_700_000_000_000


def _engine(app: Flask) -> Engine:
    try:
        return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError("ClusterShazbot.init_app(app) was not called for this app") from None


def _peer_url(engine: Engine, base_url: str) -> str:
    """``base_url`` in canonical form, if a peer could have it as its SHAZBOT_BASE_URL
    (the same checks as the setting's); ValueError saying why not."""
    try:
        url = canonical_base_url(base_url)
    except ValueError as exc:
        raise ValueError(f"baseUrl {base_url!r} {exc}") from None
    problem = unreachable_base_url(url)
    if problem:
        raise ValueError(f"baseUrl {base_url!r} {problem}")
    if url == engine.settings.base_url:
        raise ValueError("join() and leave() are for peers, not for this node itself")
    return url


def _record(engine: Engine, base_url: str, monitor: bool) -> GossipServer:
    known = engine.server_list(include_offline=True)
    last = max(
        (s.last_update for s in known.online + known.offline if s.base_url == base_url), default=-1
    )
    return GossipServer(base_url, monitor, max(engine.clock(), last + 1))


def join(app: Flask, base_url: str, monitor: bool = False) -> GossipServer:
    """Make ``base_url`` an online peer of ``app``'s node, as its gossip would."""
    engine = _engine(app)
    server = _record(engine, _peer_url(engine, base_url), monitor)
    engine.merge(ServerList(online=(server,)))
    return server


def leave(app: Flask, base_url: str) -> GossipServer:
    """Make ``base_url`` an offline peer of ``app``'s node, as news of its shutdown would."""
    engine = _engine(app)
    url = _peer_url(engine, base_url)
    known = {s.base_url: s for s in engine.server_list(include_offline=True).online}
    server = _record(engine, url, known[url].monitor if url in known else False)
    engine.merge(ServerList(offline=(server,)))
    return server


# -- many engines in virtual time ------------------------------------------------


class EventLoop:
    """Virtual time and a heap of pending callbacks."""

    def __init__(self, epoch_ms: int = EPOCH_MS) -> None:
        #: The wall clock (ms) at virtual time 0.
        self.epoch_ms = epoch_ms
        self.now = 0.0
        self._heap: list[tuple[float, int, VirtualScheduler, int, Callable[[], Any]]] = []
        self._seq = itertools.count()

    def clock_ms(self) -> int:
        return self.epoch_ms + int(self.now * 1000)

    def monotonic(self) -> float:
        return self.now

    def push(self, at: float, owner: VirtualScheduler, fn: Callable[[], Any]) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), owner, owner.generation, fn))

    def run_until(
        self, until: float, check: Callable[[], bool] | None = None, every: float = 1.0
    ) -> bool:
        """Run events up to time ``until``; with ``check``, stop as soon as it holds
        (tested every ``every`` virtual seconds). True if ``check`` held."""
        next_check = self.now
        while True:
            if check is not None and self.now >= next_check:
                if check():
                    return True
                next_check = self.now + every
            at = self._heap[0][0] if self._heap else math.inf
            if check is not None and min(at, until) > next_check:
                self.now = next_check  # nothing happens before the next test of the condition
                continue
            if at > until:
                self.now = until
                return check() if check is not None else False
            _, _, owner, generation, fn = heapq.heappop(self._heap)
            self.now = at
            if owner.running and owner.generation == generation:
                fn()


class VirtualScheduler(Scheduler):
    """The engine's scheduler interface on the shared event loop."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.running = False
        self.generation = 0

    def start(self) -> None:
        self.running = True

    def after(self, delay: float, fn: Callable[[], Any]) -> None:
        if self.running:
            self.loop.push(self.loop.now + max(delay, 0.0), self, fn)

    def shutdown(self) -> None:
        self.running = False
        self.generation += 1  # jobs scheduled before are dropped

    def reset_after_fork(self) -> None:
        pass  # no threads: nothing to drop


@dataclass
class Network:
    """Who is reachable, message loss, partitions, and what crossed the wire."""

    rng: random.Random
    loss: float = 0.0
    nodes: dict[str, Engine] = field(default_factory=dict)
    #: base_url -> partition group; nodes in different groups cannot talk.
    groups: dict[str, int] = field(default_factory=dict)
    master: ServerList = field(default_factory=ServerList)
    #: (a, b): a's requests to b are lost (one direction of the link is broken).
    cut: set[tuple[str, str]] = field(default_factory=set)
    count_bytes: bool = False
    plain_bytes: int = 0
    wire_bytes: int = 0
    exchanges: int = 0
    probes: int = 0

    def reachable(self, a: str, b: str) -> bool:
        return (
            b in self.nodes
            and self.groups.get(a, 0) == self.groups.get(b, 0)
            and (a, b) not in self.cut
        )

    def send(self, a: str, b: str, what: str) -> None:
        """One request from ``a`` to ``b``: raise as the HTTP transport would if it fails."""
        if b not in self.nodes:
            raise TransportError(f"{what}: ConnectionRefusedError", refused=True)
        if not self.reachable(a, b):
            raise TransportError(f"{what}: ReadTimeout")
        self.lose(what, "request")

    def lose(self, what: str, part: str) -> None:
        if self.loss and self.rng.random() < self.loss:
            raise TransportError(f"{what}: {part} lost")


class MemoryMasterList(NodeMasterList):
    """A master list held by a :class:`Network` (its ``master``): online records only, the
    last writer's, as the original's file list."""

    def __init__(self, net: Network) -> None:
        self.net = net

    def read(self) -> ServerList:
        return self.net.master

    def publish(self, view: ServerList) -> None:
        self.net.master = ServerList(view.online)

    def close(self) -> None:
        pass

    def reset_after_fork(self) -> None:
        pass


class MemoryTransport(Transport):
    """The engine's transport interface, delivering to other engines in this process."""

    def __init__(self, net: Network, base_url: str, secret: str) -> None:
        self.net = net
        self.base_url = base_url
        #: The gossip secret this node sends.
        self.secret = secret

    def gossip(
        self, base_url: str, message: dict[str, Any], timeout: float | None = None
    ) -> ServerList:
        net = self.net
        net.exchanges += 1
        what = f"gossip with {base_url}"
        net.send(self.base_url, base_url, what)
        # Bytes in, bytes out, through the peer's gossip entry: the decoding and the reply
        # production runs (the fast path's), not a shortcut with dicts.
        sent = encode_json(message)
        reply = net.nodes[base_url].handle_gossip_body(self.secret, sent)
        if net.count_bytes:
            for body in (sent, reply):
                net.plain_bytes += len(body)
                net.wire_bytes += len(wire_body(body)[0])  # replies are gzipped alike
        net.lose(what, "reply")
        # Validated as the HTTP transport does.
        return ServerList.from_dict(decode_json(reply, f"the reply of {base_url}"))

    def probe_many(
        self, helpers: list[str], target: str, timeout: float, waits: list[float]
    ) -> list[Any]:
        net = self.net
        answers: list[Any] = []
        for helper in helpers:
            net.probes += 1
            what = f"probe through {helper}"
            try:
                net.send(self.base_url, helper, what)
                body = {"message": "probe", "baseUrl": target, "timeout": timeout}
                reply = net.nodes[helper].handle_probe(self.secret, body)
                net.lose(what, "reply")
                answers.append(reply["reachable"])
            except TransportError as exc:
                answers.append(exc)
        return answers

    def gossip_many(self, base_urls: Any, message: dict[str, Any]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for url in dict.fromkeys(base_urls):
            try:
                results[url] = self.gossip(url, message)
            except TransportError as exc:
                results[url] = exc
        return results

    def identify(self, base_url: str) -> str | None:
        node = self.net.nodes.get(base_url)
        return None if node is None else node.instance

    def reset_after_fork(self) -> None:
        pass
