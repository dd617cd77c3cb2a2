"""This node's own health, which stretches its patience with peers (Lifeguard's local health).

A node that is itself slow (its CPU starved, its rounds late, its requests unanswered by
every helper) sees every peer as slow, and would accuse live peers of hanging. So before
it accuses, it waits longer: the hang silence and the heartbeat-staleness timeout are
multiplied by ``1 + score``. The score rises on evidence that the trouble is here (a round
that ran late, helpers that did not answer us, peers that believe us offline, a stall of
this process) and falls by one with each successful exchange. A single crashed or hung peer
leaves it at 0, so detection of a real fault keeps its speed on a healthy node.
"""

from __future__ import annotations

import threading

#: The highest score: a node in the worst health waits at most this many times plus one longer.
MAX_SCORE = 8


class Awareness:
    """A score from 0 (healthy) to MAX_SCORE; thread-safe."""

    def __init__(self, maximum: int = MAX_SCORE) -> None:
        self.maximum = maximum
        self.score = 0
        self._lock = threading.Lock()

    def apply(self, delta: int) -> None:
        """Raise (evidence of trouble here) or lower (a successful exchange) the score."""
        with self._lock:
            self.score = min(max(self.score + delta, 0), self.maximum)

    def scale(self, seconds: float) -> float:
        """``seconds`` stretched by this node's health."""
        return seconds * (1 + self.score)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
