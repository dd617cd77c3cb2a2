"""The counters of one node (no dependency); metrics.py exports them to Prometheus."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Stats:
    """Counters since the engine was created. Increments are thread-safe."""

    rounds: int = 0
    gossip_failures: int = 0
    master_list_failures: int = 0
    #: Self-checks whose base URL did not lead back to this node (not those of a start's
    #: grace that found its server not listening yet: see Identity.check in engine/identity.py).
    self_check_failures: int = 0
    #: Times another process turned out to serve this node's base URL while it acted as the node.
    identity_conflicts: int = 0
    merges: int = 0
    merge_seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    #: Records of new members refused, and offline records evicted, by the member cap.
    members_refused: int = 0
    members_evicted: int = 0
    #: Invalid records skipped (a gossip request, a peer's reply, a master list): never
    #: stored, contacted or forwarded; the rest of their message merged.
    records_refused: int = 0
    #: Requests let in by an older secret of a rotation (not the first of its setting).
    older_gossip_secret_requests: int = 0
    older_control_secret_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (one held at fork stays held in the child)."""
        self._lock = threading.Lock()
