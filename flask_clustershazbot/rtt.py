"""Adaptive gossip timeouts from observed round-trip times (TCP's RTO, RFC 6298).

Every successful exchange is a sample. The estimate is kept for each peer (so a
slow peer keeps its longer timeout and does not lengthen the others') and for
the whole node (used for a peer without samples yet); it is raised to the floor
(``SHAZBOT_MIN_REQUEST_TIMEOUT``), doubled after each of the peer's timeouts
(backoff, as TCP does) and capped by the ceiling (``SHAZBOT_REQUEST_TIMEOUT``).
Until the first sample, the ceiling applies.
"""

from __future__ import annotations

import threading

#: RFC 6298's gains and variance factor.
ALPHA = 1 / 8
BETA = 1 / 4
K = 4
#: Peers whose estimates are kept; the oldest is dropped beyond this.
MAX_PEERS = 4096


class _Estimate:
    __slots__ = ("backoff", "rttvar", "srtt")

    def __init__(self, sample: float) -> None:
        self.srtt = sample
        self.rttvar = sample / 2
        self.backoff = 1

    def add(self, sample: float) -> None:
        self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - sample)
        self.srtt = (1 - ALPHA) * self.srtt + ALPHA * sample
        self.backoff = 1

    @property
    def rto(self) -> float:
        return self.srtt + K * self.rttvar


class RoundTrips:
    """Round-trip estimates of one node; thread-safe."""

    def __init__(self, floor: float, ceiling: float) -> None:
        self.floor = min(floor, ceiling)
        self.ceiling = ceiling
        self._node: _Estimate | None = None
        self._peers: dict[str, _Estimate] = {}
        self._lock = threading.Lock()

    def timeout(self, base_url: str) -> float:
        """Seconds to wait for ``base_url``'s reply."""
        with self._lock:
            if self._node is None:
                return self.ceiling
            peer = self._peers.get(base_url)
            rto, backoff = (peer.rto, peer.backoff) if peer else (self._node.rto, 1)
        return min(max(rto, self.floor) * backoff, self.ceiling)

    def sample(self, base_url: str, seconds: float) -> None:
        """A successful exchange with ``base_url`` took ``seconds``."""
        with self._lock:
            if self._node is None:
                self._node = _Estimate(seconds)
            else:
                self._node.add(seconds)
            peer = self._peers.pop(base_url, None)  # re-inserted last: the dict stays in age order
            if peer is None:
                peer = _Estimate(seconds)
            else:
                peer.add(seconds)
            self._keep(base_url, peer)

    def timed_out(self, base_url: str) -> None:
        """An attempt waited out its timeout: the next one waits twice as long (up to the ceiling).

        A peer without samples of its own backs off from the node's estimate: a slow peer
        never reached yet must not be tried with the same short timeout every time (which,
        the helpers probing with it too, would take it offline for being slow)."""
        with self._lock:
            peer = self._peers.get(base_url)
            if peer is None:
                if self._node is None:
                    return  # the ceiling applies already
                peer = _Estimate(self._node.srtt)
                peer.rttvar = self._node.rttvar
                self._keep(base_url, peer)
            if max(peer.rto, self.floor) * peer.backoff < self.ceiling:
                peer.backoff *= 2

    def _keep(self, base_url: str, peer: _Estimate) -> None:
        """Store ``peer``'s estimate as the newest; the oldest goes beyond MAX_PEERS."""
        if base_url not in self._peers and len(self._peers) >= MAX_PEERS:
            del self._peers[next(iter(self._peers))]
        self._peers[base_url] = peer
