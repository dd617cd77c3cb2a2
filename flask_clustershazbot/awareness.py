"""This node's own health, which stretches its patience with peers (Lifeguard's local health).

A node that is itself slow (its CPU starved, its rounds late, its requests unanswered by
every helper) or cut off from part of the cluster sees many peers fail at once, and would
accuse live peers of hanging, also right after a partition heals, while the peers it could
not reach are still busy catching up. So before it accuses, it waits longer: the hang
silence and the heartbeat-staleness timeout are multiplied by ``1 + health``, where health
is a score plus the number of other peers this node failed to reach recently.

The score rises on evidence that the trouble is here (a round that ran late, helpers that
did not answer us, peers that believe us offline, a stall of this process) and falls by one
with each successful exchange. A peer counts as failed from a failed exchange until one
with it succeeds or the failure is older than the window (the staleness timeout). A single
crashed or hung peer counts for nothing in its own judgement, so detection of one fault
keeps its speed on a healthy node.
"""

from __future__ import annotations

import threading

#: The highest health: a node in the worst health waits at most this many times plus one longer.
MAX_SCORE = 8
#: Failed peers remembered; the oldest is forgotten beyond this.
MAX_FAILED = 4096


class Awareness:
    """A score from 0 (healthy) to ``maximum``, and recent failures per peer; thread-safe."""

    def __init__(self, maximum: int = MAX_SCORE) -> None:
        self.maximum = maximum
        self.score = 0
        #: Peer -> monotonic time of its last failed exchange, while none succeeded since.
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()

    def apply(self, delta: int) -> None:
        """Raise (evidence of trouble here) or lower (a successful exchange) the score."""
        with self._lock:
            self.score = min(max(self.score + delta, 0), self.maximum)

    def failed(self, base_url: str, mono: float) -> None:
        """An exchange with ``base_url`` failed at ``mono``."""
        with self._lock:
            self._failed.pop(base_url, None)  # re-inserted last: the dict stays in age order
            if len(self._failed) >= MAX_FAILED:
                del self._failed[next(iter(self._failed))]
            self._failed[base_url] = mono

    def reached(self, base_url: str) -> None:
        """An exchange with ``base_url`` succeeded: one less hint of trouble here."""
        with self._lock:
            self._failed.pop(base_url, None)
            self.score = max(self.score - 1, 0)

    def health(self, mono: float, window: float, suspect: str | None = None) -> int:
        """The score plus the peers other than ``suspect`` that failed within ``window`` s."""
        with self._lock:
            recent = sum(
                1 for url, at in self._failed.items() if url != suspect and mono - at <= window
            )
            return min(self.score + recent, self.maximum)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
