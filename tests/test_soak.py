"""Soak: 10 nodes, 0.2 s interval, random crashes and restarts (same base URL) and a partition.

``make test`` runs a short version (about 30 s); ``make soak`` the long one
(``SHAZBOT_SOAK_SECONDS``, default 300). Figures are printed (run with ``-s``):
false alarms, convergence time after each heal. A false alarm is a peer_left
signal about a node that was running, and reachable from the observer, for the
whole detection window before it (``WINDOW``): no fault can explain it.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from cluster import wait_until
from proxy import ProxiedCluster, Recorder

NODES = 10
#: The longest a real fault can take to surface as peer_left somewhere: failure timeout
#: (3.6 s for 10 nodes at 0.2 s), or the retries (two request timeouts end them), plus spreading.
WINDOW = 6.0
MAX_DOWN = 2


class Timeline:
    """When each node was down and which pairs were partitioned, in monotonic seconds."""

    def __init__(self) -> None:
        self.down: dict[int, list[list[float]]] = {}
        self.cut: list[tuple[set[int], set[int], float, float]] = []

    def kill(self, i: int) -> None:
        self.down.setdefault(i, []).append([time.monotonic(), float("inf")])

    def revive(self, i: int) -> None:
        self.down[i][-1][1] = time.monotonic()

    def explains(self, observer: int, peer: int, at: float) -> bool:
        """Whether a fault within WINDOW before ``at`` can explain ``observer`` losing ``peer``."""
        for start, end in self.down.get(peer, []) + self.down.get(observer, []):
            if start <= at and end + WINDOW >= at:
                return True
        for a, b, start, end in self.cut:
            if {observer, peer} & a and {observer, peer} & b and start <= at <= end + WINDOW:
                return True
        return False


class NodeLog(logging.Handler):
    """The library's log lines, with the node that wrote them and the soak's clock, so
    that a false alarm can be followed back to the verdict behind it
    (``SHAZBOT_SOAK_LOG=<dir>`` keeps them of a failing run)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        node = getattr(record, "node", "-")
        self.lines.append((time.monotonic(), node, record.getMessage()))

    def __enter__(self) -> NodeLog:
        logger = logging.getLogger("flask_clustershazbot")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("flask_clustershazbot")
        logger.removeHandler(self)
        logger.setLevel(self._level)

    def keep(self, figures: dict[str, Any], start: float, urls: list[str]) -> None:
        where = os.environ.get("SHAZBOT_SOAK_LOG")
        if not where or not figures.get("false_alarms"):
            return
        names = {url: f"n{i}" for i, url in enumerate(urls)}

        def short(text: str) -> str:
            for url, name in names.items():
                text = text.replace(url, name)
            return text

        path = Path(where) / f"soak-{int(time.time())}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as out:
            out.write(f"{short(repr(figures))}\n")
            for at, node, message in self.lines:
                out.write(f"{at - start:8.3f} {short(node):>4} {short(message)}\n")


def converged(c: ProxiedCluster, alive: set[int]) -> bool:
    live = {c.urls[i] for i in alive}
    for i in alive:
        view = c.nodes[i].view()
        if {u for u, online in view.items() if online} != live:
            return False
    return True


def run_soak(config: dict[str, Any], seconds: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    c = ProxiedCluster(
        {**config, "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 600, "SHAZBOT_REQUEST_TIMEOUT": 1.0}
    )
    recorder = Recorder()
    timeline = Timeline()
    node_log = NodeLog().__enter__()
    figures: dict[str, Any] = {"kills": 0, "restarts": 0, "convergence_s": []}
    try:
        for i in range(NODES):
            recorder.watch(c.add(SHAZBOT_MONITOR=(i == 0)))
        alive = set(range(NODES))
        wait_until(lambda: converged(c, alive), timeout=30, what="initial convergence")
        start = time.monotonic()

        def settle(what: str) -> None:
            t0 = time.monotonic()
            wait_until(lambda: converged(c, alive), timeout=60, what=what)
            figures["convergence_s"].append(round(time.monotonic() - t0, 2))

        def churn(until: float) -> None:
            while time.monotonic() < until:
                down = set(range(NODES)) - alive
                if down and (len(down) >= MAX_DOWN or rng.random() < 0.5):
                    i = rng.choice(sorted(down))
                    recorder.watch(c.restart(i))
                    timeline.revive(i)
                    alive.add(i)
                    figures["restarts"] += 1
                else:
                    i = rng.choice(sorted(alive))
                    timeline.kill(i)
                    c.nodes[i].stop(graceful=rng.random() < 0.3)
                    alive.discard(i)
                    figures["kills"] += 1
                pause, since = rng.uniform(1.0, 3.0), time.monotonic()
                wait_until(
                    lambda: time.monotonic() - since > pause,
                    timeout=pause + 5,
                    what="the next fault",
                )

        churn(start + seconds * 0.4)
        for i in sorted(set(range(NODES)) - alive):
            recorder.watch(c.restart(i))
            timeline.revive(i)
            alive.add(i)
            figures["restarts"] += 1
        settle("convergence after churn")

        side_a = set(rng.sample(range(NODES), NODES // 2))
        side_b = set(range(NODES)) - side_a
        cut_at = time.monotonic()
        c.partition(side_a, side_b)
        split_for = max(5.0, seconds * 0.15)
        wait_until(
            lambda: time.monotonic() - cut_at > split_for,
            timeout=split_for + 5,
            what="the partition to last",
        )
        c.heal()
        timeline.cut.append((side_a, side_b, cut_at, time.monotonic()))
        settle("convergence after the partition heals")

        churn(start + seconds * 0.9)
        settle("final convergence")
        figures["seconds"] = round(time.monotonic() - start, 1)
        figures["alive"] = len(alive)
        index = {url: i for i, url in enumerate(c.urls)}
        left = recorder.left()
        figures["peer_left"] = len(left)
        false = [e for e in left if not timeline.explains(index[e[1]], index[e[2]], e[3])]
        figures["false_alarms"] = len(false)
        figures["false_alarm_events"] = [(e[1], e[2], round(e[3] - start, 1)) for e in false]
        node_log.keep(figures, start, c.urls)
        return figures
    finally:
        node_log.__exit__()
        recorder.close()
        c.stop()


def test_soak_short(config: dict[str, Any]) -> None:
    figures = run_soak(config, float(os.environ.get("SHAZBOT_SOAK_SHORT_SECONDS", 25)), seed=1)
    print("\nsoak (short):", figures)
    assert figures["false_alarms"] == 0, figures["false_alarm_events"]
    assert figures["kills"] > 0 and figures["restarts"] > 0


@pytest.mark.soak
@pytest.mark.timeout(1200)
@pytest.mark.skipif(not os.environ.get("SHAZBOT_SOAK"), reason="long soak: run `make soak`")
def test_soak_long(config: dict[str, Any]) -> None:
    seconds = float(os.environ.get("SHAZBOT_SOAK_SECONDS", 300))
    figures = run_soak(config, seconds, seed=int(os.environ.get("SHAZBOT_SOAK_SEED", 2)))
    print("\nsoak (long):", figures)
    assert figures["false_alarms"] == 0, figures["false_alarm_events"]
