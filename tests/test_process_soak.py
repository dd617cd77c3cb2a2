"""Soak with one OS process per node: 6 nodes, crashes, restarts on the same port, partitions.

Each node is a ``tests/signal_node.py`` process behind its own fault proxy
(``tests/proxy.py``, in this process): its base URL is the proxy's, and its requests leave
from its own loopback address, so a partition is a matter of proxy rules. Cycles of 5 s
of churn (SIGKILL 75 %, else SIGTERM; at most 2 nodes down, one fault every 1 to 3 s;
restarts on the same port; all revived at the end) and a 3/3 partition of 4.5 to 7.5 s that
swallows traffic, then its heal. Every signal the nodes' apps receive is read
from their signals files. A false alarm is a ``peer_left`` about a node that was running,
and not cut off from the observer, for the whole ``WINDOW`` before it.

``make test`` runs a short version (about 45 s); ``make soak`` a long one
(``SHAZBOT_SOAK_SECONDS``, default 300; ``SHAZBOT_SOAK_SEED``). With
``SHAZBOT_SOAK_LOG=<dir>``, a run with false alarms leaves the nodes' logs and signals there.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from cluster import wait_until
from process_cluster import NodeProcess, complete, evidence, lasting_port, start_all, stop_all
from proxy import Proxy, source_ip

NODES = 6
INTERVAL = 0.2
OPTIONS = {
    "SHAZBOT_REQUEST_TIMEOUT": 1.0,
    "SHAZBOT_RETRY_DELAY": 0.2,
    "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 600,
}
#: The failure timeout of a 6-member cluster at this interval (10 + 2 log2(6) rounds).
FAILURE_TIMEOUT = INTERVAL * 16
#: The longest a real fault takes to surface as peer_left somewhere: the failure timeout
#: (or a judgement: two request timeouts and the helpers), plus a few rounds of spreading.
WINDOW = FAILURE_TIMEOUT + 3.0
MAX_DOWN = 2
#: Each cycle: this long of crashes and restarts, then a partition of a random length.
CHURN_SECONDS = 5.0
CUT_SECONDS = (4.5, 7.5)
#: A partition swallows traffic (connections accepted, never answered), as a firewall that
#: drops packets does: every exchange across it waits out its timeout.
CUT = "hang"


class Timeline:
    """When each node was down and which sides were cut apart, in time.time() seconds
    (the clock of the signals files)."""

    def __init__(self) -> None:
        self.down: dict[int, list[list[float]]] = {}
        self.cut: list[tuple[set[int], set[int], float, float]] = []

    def kill(self, i: int) -> None:
        self.down.setdefault(i, []).append([time.time(), float("inf")])

    def revive(self, i: int) -> None:
        self.down[i][-1][1] = time.time()

    def lag(self, observer: int, peer: int, at: float) -> float | None:
        """How long after the end of a fault that explains ``observer`` losing ``peer`` at
        ``at`` (0 during it); None if no fault within WINDOW before ``at`` explains it."""
        pair = {observer, peer}
        faults = self.down.get(peer, []) + self.down.get(observer, [])
        faults += [[start, end] for a, b, start, end in self.cut if pair & a and pair & b]
        lags = [max(0.0, at - end) for start, end in faults if start <= at <= end + WINDOW]
        return min(lags) if lags else None

    def across(self, observer: int, peer: int, at: float) -> bool:
        """Whether ``observer`` and ``peer`` were on two sides of a cut at ``at``."""
        pair = {observer, peer}
        return any(pair & a and pair & b and t0 <= at <= t1 for a, b, t0, t1 in self.cut)

    def describe(self, start: float) -> list[str]:
        """The faults, in seconds since ``start``."""
        lines = [
            f"n{i} down {a - start:.1f}-{b - start:.1f} s"
            for i, spans in sorted(self.down.items())
            for a, b in spans
        ]
        for a, b, t0, t1 in self.cut:
            lines.append(f"cut {sorted(a)} | {sorted(b)} {t0 - start:.1f}-{t1 - start:.1f} s")
        return lines


def run_soak(directory: Path, seconds: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    master = str(directory / "master.json")
    proxies = [Proxy() for _ in range(NODES)]
    ports: list[int] = []
    while len(ports) < NODES:  # distinct; not from rng, whose faults stay the same per seed
        port = lasting_port(random.Random())
        ports += [port] if port not in ports else []
    nodes = [
        NodeProcess(
            directory,
            f"n{i}",
            master,
            INTERVAL,
            OPTIONS,
            monitor=(i == 0),
            base_url=proxies[i].url,
            source=source_ip(i),
            port=ports[i],
        )
        for i in range(NODES)
    ]
    for proxy, node in zip(proxies, nodes, strict=True):
        proxy.target_port = node.port
    timeline = Timeline()
    figures: dict[str, Any] = {"kills": 0, "sigterms": 0, "restarts": 0, "convergence_s": []}
    alive = set(range(NODES))

    def converged() -> bool:
        return complete([nodes[i] for i in alive], {nodes[i].url for i in alive})

    try:
        start_all(nodes)
        wait_until(converged, timeout=30, what="initial convergence")
        start = time.time()

        def settle(what: str) -> None:
            t0 = time.monotonic()
            wait_until(converged, timeout=60, what=what)
            figures["convergence_s"].append(round(time.monotonic() - t0, 2))

        def revive(i: int) -> None:
            nodes[i].start()
            timeline.revive(i)
            alive.add(i)
            figures["restarts"] += 1

        def churn(until: float) -> None:
            while time.time() < until:
                down = set(range(NODES)) - alive
                if down and (len(down) >= MAX_DOWN or rng.random() < 0.5):
                    revive(rng.choice(sorted(down)))
                else:
                    i = rng.choice(sorted(alive))
                    crash = rng.random() < 0.75
                    timeline.kill(i)
                    nodes[i].kill(signal.SIGKILL if crash else signal.SIGTERM)
                    alive.discard(i)
                    figures["kills" if crash else "sigterms"] += 1
                pause, since = rng.uniform(1.0, 3.0), time.monotonic()
                wait_until(
                    lambda: time.monotonic() - since > pause,
                    timeout=pause + 5,
                    what="the next fault",
                )

        def partition() -> None:
            side_a = set(rng.sample(range(NODES), NODES // 2))
            side_b = set(range(NODES)) - side_a
            cut_at, split_for = time.time(), rng.uniform(*CUT_SECONDS)
            for mine, theirs in ((side_a, side_b), (side_b, side_a)):
                for i in mine:
                    proxies[i].set(CUT, sources=[source_ip(j) for j in theirs])
            wait_until(
                lambda: time.time() - cut_at > split_for,
                timeout=split_for + 5,
                what="the partition to last",
            )
            for proxy in proxies:
                proxy.heal()
            timeline.cut.append((side_a, side_b, cut_at, time.time()))
            settle("convergence after the partition heals")

        # Cycles of churn (all revived at the end) and a partition, until the time is up:
        # each heal comes at another moment of the judgements the cut began.
        end = start + seconds
        while time.time() < end:
            churn(min(end, time.time() + CHURN_SECONDS))
            for i in sorted(set(range(NODES)) - alive):
                revive(i)
            settle("convergence after churn")
            if time.time() < end:
                partition()

        figures["seconds"] = round(time.time() - start, 1)
        figures["partitions_s"] = [round(t1 - t0, 1) for _, _, t0, t1 in timeline.cut]
        index = {node.url: i for i, node in enumerate(nodes)}
        left = [(i, e) for i, node in enumerate(nodes) for e in node.signals("left")]
        figures["peer_left"] = len(left)
        lags = [(timeline.lag(i, index[e["peer"]], e["t"]), i, e) for i, e in left]
        false = [(i, e) for lag, i, e in lags if lag is None]
        # How close the explained ones came to the end of the window: the oracle's margin.
        figures["longest_lag_s"] = round(max((lag for lag, _, _ in lags if lag), default=0), 2)
        # Lost across a cut while it lasted: the partitions were real.
        figures["peer_left_across_cuts"] = sum(
            timeline.across(i, index[e["peer"]], e["t"]) for i, e in left
        )
        figures["false_alarms"] = len(false)
        figures["false_alarm_events"] = [
            f"n{i} lost n{index[e['peer']]} at {e['t'] - start:.1f} s ({e['t']:.3f}), "
            f"stamped {e['stamp']}"
            for i, e in false
        ]
        if false:
            names = [f"n{i} = {node.url}" for i, node in enumerate(nodes)]
            figures["faults"] = timeline.describe(start) + names
            times = [e["t"] for _, e in false]
            figures["evidence"] = evidence(nodes, min(times) - WINDOW, max(times) + 0.5)
            keep = os.environ.get("SHAZBOT_SOAK_LOG")
            if keep:
                shutil.copytree(directory, Path(keep) / f"process-soak-{int(start)}")
        return figures
    finally:
        stop_all(nodes)
        for proxy in proxies:
            proxy.stop()


def report(name: str, figures: dict[str, Any]) -> None:
    shown = {k: v for k, v in figures.items() if k not in ("evidence", "faults")}
    print(f"\nprocess soak ({name}):", shown)
    assert figures["false_alarms"] == 0, "\n".join(
        figures["false_alarm_events"]
        + figures["faults"]
        + ["-- logs --", figures.get("evidence", "")]
    )


@pytest.mark.timeout(300)
def test_process_soak_short(tmp_path: Path) -> None:
    seconds = float(os.environ.get("SHAZBOT_SOAK_SHORT_SECONDS", 35))
    figures = run_soak(tmp_path, seconds, seed=1)
    report("short", figures)
    assert figures["kills"] + figures["sigterms"] > 0 and figures["restarts"] > 0
    assert figures["peer_left_across_cuts"] > 0, "the partitions were not seen"


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.skipif(not os.environ.get("SHAZBOT_SOAK"), reason="long soak: run `make soak`")
def test_process_soak_long(tmp_path: Path) -> None:
    seconds = float(os.environ.get("SHAZBOT_SOAK_SECONDS", 300))
    figures = run_soak(tmp_path, seconds, seed=int(os.environ.get("SHAZBOT_SOAK_SEED", 2)))
    report("long", figures)
