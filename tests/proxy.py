"""A fault-injecting TCP proxy on 127.0.0.1, and per-node source addresses.

Each node sits behind its own :class:`Proxy` (its base URL is the proxy's
address). A node's outgoing connections leave from its own loopback address
(``127.0.0.N``, see :func:`bind_source`), so the proxy in front of a peer
knows who is calling and can apply a rule per source and per direction:

- ``pass``: forward bytes;
- ``drop``: close the connection (new connections are closed at once);
- ``hang``: accept and swallow bytes, never forward, never answer.

Directions: ``"in"`` is caller -> node (requests), ``"out"`` node -> caller
(replies). Every loop polls with a short timeout and ends when the proxy stops.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from typing import Any

from requests.adapters import HTTPAdapter

MODES = ("pass", "drop", "hang")
DIRECTIONS = ("in", "out")
_POLL = 0.2  # seconds each blocking call waits before checking the rules again
_ANY = "*"


class Proxy:
    """Listen on 127.0.0.1, forward to ``target_port`` on 127.0.0.1, inject faults."""

    def __init__(self, target_port: int | None = None) -> None:
        self.target_port = target_port
        self._rules: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(_POLL)
        self.port: int = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        #: Connections accepted, per source address (for tests that check traffic happened).
        self.accepted: dict[str, int] = {}
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # -- rules -------------------------------------------------------------

    def set(self, mode: str, sources: Iterable[str] | None = None, direction: str = "both") -> None:
        """Apply ``mode`` to traffic from ``sources`` (default: everyone) in ``direction``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        directions = DIRECTIONS if direction == "both" else (direction,)
        if any(d not in DIRECTIONS for d in directions):
            raise ValueError(f"direction must be 'in', 'out' or 'both', got {direction!r}")
        with self._lock:
            for source in list(sources) if sources is not None else [_ANY]:
                for d in directions:
                    self._rules[(source, d)] = mode

    def heal(self) -> None:
        """Back to passing everything."""
        with self._lock:
            self._rules.clear()

    def mode(self, source: str, direction: str) -> str:
        with self._lock:
            return self._rules.get((source, direction)) or self._rules.get(
                (_ANY, direction), "pass"
            )

    # -- plumbing ----------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _close(self, *socks: socket.socket | None) -> None:
        for sock in socks:
            if sock is None:
                continue
            with self._lock:
                self._sockets.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, (source, _) = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted[source] = self.accepted.get(source, 0) + 1
            self._track(client)
            threading.Thread(target=self._serve, args=(client, source), daemon=True).start()

    def _serve(self, client: socket.socket, source: str) -> None:
        try:
            client.settimeout(_POLL)
        except OSError:  # stop() closed it before this thread began (CI saw EBADF here)
            return
        mode = self.mode(source, "in")
        if mode == "drop" or self.target_port is None:
            self._close(client)
            return
        if mode == "hang":
            self._pump(client, None, source, "in")
            self._close(client)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            self._close(client)
            return
        upstream.settimeout(_POLL)
        self._track(upstream)
        back = threading.Thread(
            target=self._pump, args=(upstream, client, source, "out"), daemon=True
        )
        back.start()
        self._pump(client, upstream, source, "in")
        back.join(5)
        self._close(client, upstream)

    def _pump(
        self, src: socket.socket, dst: socket.socket | None, source: str, direction: str
    ) -> None:
        """Copy ``src`` to ``dst`` under the rule of the moment; ``dst`` None swallows."""
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            mode = self.mode(source, direction) if dst is not None else "hang"
            if mode == "drop":
                break
            if mode == "hang":
                continue
            try:
                dst.sendall(data)  # type: ignore[union-attr]
            except OSError:
                break
        # Closing both ends ends the other pump of this connection too.
        self._close(src, dst)

    def stop(self) -> None:
        self._stop.set()
        self._close(self.listener)
        self._thread.join(5)
        with self._lock:
            socks = list(self._sockets)
        self._close(*socks)


class SourceAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections leave from a given loopback address."""

    def __init__(self, source_ip: str, **kwargs: Any) -> None:
        self.source_ip = source_ip
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


def bind_source(engine: Any, source_ip: str) -> None:
    """Make every outgoing request of ``engine`` leave from ``source_ip`` (127.0.0.N).

    The destination is still 127.0.0.1; only the caller's address differs, so that
    a :class:`Proxy` can tell nodes apart. Call it before the engine starts.
    """
    adapter = SourceAdapter(source_ip, pool_connections=32, pool_maxsize=32, max_retries=0)
    engine.transport.session.mount("http://", adapter)


def source_ip(index: int) -> str:
    """The loopback source address of node ``index`` (0-based): 127.0.0.2, 127.0.0.3, ..."""
    return f"127.0.0.{index + 2}"


class ProxiedCluster:
    """In-process nodes, each behind its own :class:`Proxy` and calling from its own address.

    A node's base URL is its proxy's address, so it survives restarts (a new
    server behind the same proxy) and partitions are a matter of proxy rules.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.nodes: list[Any] = []
        self.proxies: list[Proxy] = []
        self.overrides: list[dict[str, Any]] = []

    def add(self, clock: Any = None, **overrides: Any) -> Any:
        """Start one more node; it also writes itself into the master list, for the next ones."""
        proxy = Proxy()
        self.proxies.append(proxy)
        self.overrides.append(overrides)
        self.nodes.append(None)
        node = self.restart(len(self.nodes) - 1, clock)
        node.engine.announce()
        return node

    def restart(self, index: int, clock: Any = None) -> Any:
        """(Re)start node ``index`` behind its proxy, with the same base URL as before."""
        from cluster import Node

        old = self.nodes[index]
        if old is not None:
            old.stop(graceful=False)
        proxy = self.proxies[index]
        config = {**self.config, **self.overrides[index], "SHAZBOT_AUTOSTART": False}
        node = Node(config, base_url=proxy.url)
        proxy.target_port = node.port
        bind_source(node.engine, source_ip(index))
        if clock is not None:
            node.engine.clock = clock
        self.nodes[index] = node
        node.engine.start()
        return node

    def partition(self, side_a: Iterable[int], side_b: Iterable[int]) -> None:
        """Drop every connection between the two sides, both ways."""
        a, b = list(side_a), list(side_b)
        for mine, theirs in ((a, b), (b, a)):
            for i in mine:
                self.proxies[i].set("drop", sources=[source_ip(j) for j in theirs])

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.heal()

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.proxies]

    def stop(self) -> None:
        # In parallel: each server takes up to its poll interval (0.5 s) to stop.
        stoppers = [
            threading.Thread(target=n.stop, args=(False,)) for n in self.nodes if n is not None
        ]
        stoppers += [threading.Thread(target=p.stop) for p in self.proxies]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(10)


class Recorder:
    """Records every peer_joined / peer_left signal of some nodes: (kind, observer, peer, time)."""

    def __init__(self) -> None:
        from flask_clustershazbot.signals import peer_joined, peer_left

        self.events: list[tuple[str, str, str, float]] = []
        self._lock = threading.Lock()
        self._hooks: list[tuple[Any, Any, Any]] = []
        self._signals = {"joined": peer_joined, "left": peer_left}

    def watch(self, node: Any) -> None:
        import time

        for kind, signal in self._signals.items():

            def receiver(
                sender: Any, server: Any, kind: str = kind, who: str = node.base_url
            ) -> None:
                with self._lock:
                    self.events.append((kind, who, server.base_url, time.monotonic()))

            signal.connect(receiver, sender=node.app, weak=False)
            self._hooks.append((signal, receiver, node.app))

    def left(
        self, observer: str | None = None, peer: str | None = None
    ) -> list[tuple[str, str, str, float]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e[0] == "left" and observer in (None, e[1]) and peer in (None, e[2])
            ]

    def close(self) -> None:
        for signal, receiver, app in self._hooks:
            signal.disconnect(receiver, sender=app)
