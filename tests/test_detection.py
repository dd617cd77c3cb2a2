"""Failure detection with indirect probes, strong and weak evidence, adaptive timeouts.

Crash and hang use real node processes (``demo node``) with settings under which the
old rule could not reach the outcome: retries a minute apart, or a request timeout of
15 s, so only a confirmed refusal, or the adaptive timeout, can mark the node offline
before the test's deadline. The broken link uses in-process nodes behind the fault
proxy, because the proxy tells callers apart by their source address (tests/proxy.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cluster import CONTROL, SECRET, kill_processes, wait_until
from flask_clustershazbot.demo import start_node, view
from proxy import ProxiedCluster, Recorder, source_ip

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")

#: No retry and no staleness timeout within any test's deadline: only the new paths act.
SLOW_PATHS = {"SHAZBOT_RETRY_DELAY": 60, "SHAZBOT_FAILURE_TIMEOUT": 600}


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., list[tuple[subprocess.Popen[str], int]]]]:
    """processes(n, **options) starts n node processes sharing a file master list."""
    procs: list[subprocess.Popen[str]] = []

    def start(n: int, **options: Any) -> list[tuple[subprocess.Popen[str], int]]:
        started = []
        for i in range(n):
            proc, port = start_node(
                str(tmp_path / "master.json"),
                0.2,
                monitor=(i == 0),
                env={"SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL},
                options=options,
                log_path=str(tmp_path / "nodes.log"),
            )
            procs.append(proc)
            started.append((proc, port))
        ports = [p for _, p in started]
        urls = {f"http://127.0.0.1:{p}/" for p in ports}
        wait_until(lambda: all(online(p) == urls for p in ports), timeout=30, what="convergence")
        return started

    yield start
    kill_processes(procs)


def online(port: int) -> set[str]:
    return {u for u, on in (view(port, CONTROL) or {}).items() if on}


def offline_at_all(ports: list[int], url: str) -> bool:
    return all((view(p, CONTROL) or {}).get(url) is False for p in ports)


def test_a_killed_node_confirmed_by_helpers_goes_offline_without_retries(
    processes: Callable[..., list[tuple[subprocess.Popen[str], int]]],
) -> None:
    nodes = processes(5, **SLOW_PATHS)
    (victim, port), live = nodes[2], [p for i, (_, p) in enumerate(nodes) if i != 2]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    # A refused connection that the helpers confirm is enough: no retry (60 s away) is needed.
    wait_until(
        lambda: offline_at_all(live, f"http://127.0.0.1:{port}/"),
        timeout=20,
        what="every live node lists the killed node offline",
    )
    assert all(online(p) == {f"http://127.0.0.1:{q}/" for q in live} for p in live)


def test_a_hung_node_is_found_within_the_adaptive_timeout(
    processes: Callable[..., list[tuple[subprocess.Popen[str], int]]], tmp_path: Path
) -> None:
    # Two 15 s timeouts (30 s) would be the old rule's minimum; the adaptive attempts
    # (0.5 s, doubling) move it offline once it has been silent for the 15 s.
    nodes = processes(5, **{**SLOW_PATHS, "SHAZBOT_RETRY_DELAY": 0.5}, SHAZBOT_REQUEST_TIMEOUT=15)
    (victim, port), live = nodes[2], [p for i, (_, p) in enumerate(nodes) if i != 2]
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: offline_at_all(live, f"http://127.0.0.1:{port}/"),
            timeout=25,
            what="every live node lists the paused node offline",
        )
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    # Awake again, it refutes: everyone lists everyone online.
    everyone = {f"http://127.0.0.1:{p}/" for _, p in nodes}
    wait_until(
        lambda: all(online(p) == everyone for _, p in nodes),
        timeout=20,
        what="the woken node is back everywhere",
    )


@pytest.fixture
def cluster(config: dict[str, Any]) -> Iterator[ProxiedCluster]:
    # Master-list announcements off: the shared file would otherwise refresh records.
    c = ProxiedCluster({**config, "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 600})
    yield c
    c.stop()


@pytest.mark.parametrize("mode", ["drop", "hang"])
def test_one_broken_direction_raises_no_false_alarm(cluster: ProxiedCluster, mode: str) -> None:
    nodes = [cluster.add() for _ in range(5)]
    recorder = Recorder()
    try:
        for node in nodes:
            recorder.watch(node)
        wait_until(
            lambda: all(set(n.view(False)) == set(cluster.urls) for n in nodes), what="convergence"
        )
        a, b = nodes[0], nodes[1]
        # a's requests to b fail (closed at once, or never answered); b reaches a; everyone
        # else reaches both.
        cluster.proxies[1].set(mode, sources=[source_ip(0)], direction="in")
        failures = a.engine.stats.gossip_failures
        wait_until(
            lambda: a.engine.stats.gossip_failures >= failures + 8,
            timeout=60,
            what="a fails to reach b again and again",
        )
        assert recorder.left() == [], "a healthy node was reported offline"
        assert all(n.view().get(b.base_url) is True for n in nodes)
        assert requests.get(b.base_url + "hello", timeout=5).text == "hello"
    finally:
        recorder.close()
