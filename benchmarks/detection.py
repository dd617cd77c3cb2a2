"""Failure detection on real node processes, the old rule against the new, side by side.

Crash and hang: 5 ``demo node`` processes on 127.0.0.1, gossip interval 1 s, the library's
defaults otherwise (``SHAZBOT_RETRY_DELAY`` 3 s, which the demo would shorten); one node
gets SIGKILL or SIGSTOP; seconds until every live node lists it offline. Any live node
listed offline by a live node meanwhile is counted as a false alarm.

Broken direction: 5 in-process nodes (real werkzeug servers) behind the fault proxy of
the tests (``tests/proxy.py``, which tells callers apart by source address); node 0's
requests to node 1 are dropped (closed at once) or hang; ``peer_left`` signals about
live nodes during the window are false alarms.

Old rule: ``SHAZBOT_PROBE_HELPERS=0`` and a fixed 5 s request timeout (retries only).
New rule: the defaults (3 helpers, adaptive timeout with a 0.5 s floor).

``python -m benchmarks.detection [--runs 3] [--window 30]``
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flask_clustershazbot.demo import start_node, stop_nodes, view

from .common import CONTROL, SECRET, environment, table

RULES: dict[str, dict[str, Any]] = {
    "old": {"SHAZBOT_PROBE_HELPERS": 0, "SHAZBOT_MIN_REQUEST_TIMEOUT": 5},
    "new": {},
}
INTERVAL = 1.0
NODES = 5


def detect(rule: str, fault: str, timeout: float) -> dict[str, Any]:
    """Start NODES processes, apply ``fault`` to one, time its detection by all others."""
    tmp = tempfile.mkdtemp(prefix="shazbot-detection-")
    master = os.path.join(tmp, "master.json")
    env = {"SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL}
    options = {"SHAZBOT_RETRY_DELAY": 3, **RULES[rule]}
    procs: dict[int, subprocess.Popen[str]] = {}
    try:
        for i in range(NODES):
            proc, port = start_node(
                master,
                INTERVAL,
                monitor=(i == 0),
                env=env,
                options=options,
                log_path=os.path.join(tmp, "nodes.log"),
            )
            procs[port] = proc
        ports = list(procs)
        urls = {p: f"http://127.0.0.1:{p}/" for p in ports}
        deadline = time.monotonic() + timeout
        while not all(
            {u for u, on in (view(p, CONTROL) or {}).items() if on} == set(urls.values())
            for p in ports
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{NODES} nodes did not converge in {timeout} s")
            time.sleep(0.1)
        time.sleep(5 * INTERVAL)  # round-trip samples for the adaptive timeout
        victim = ports[2]
        live = [p for p in ports if p != victim]
        os.kill(procs[victim].pid, signal.SIGKILL if fault == "SIGKILL" else signal.SIGSTOP)
        started = time.monotonic()
        false_alarms: set[tuple[int, int]] = set()
        found = None
        while time.monotonic() - started < timeout:
            views = {p: view(p, CONTROL) or {} for p in live}
            for p, v in views.items():
                false_alarms |= {(p, q) for q in live if v.get(urls[q]) is False}
            if all(v.get(urls[victim]) is False for v in views.values()):
                found = time.monotonic() - started
                break
            time.sleep(0.05)
        return {"rule": rule, "fault": fault, "seconds": found, "false_alarms": len(false_alarms)}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        stop_nodes(procs.values())
        keep = os.environ.get("DETECTION_KEEP_LOGS")  # a folder: each run's node logs go there
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(
                os.path.join(tmp, "nodes.log"),
                os.path.join(keep, f"{rule}-{fault}-{time.time():.0f}.log"),
            )
        shutil.rmtree(tmp, ignore_errors=True)


def broken_direction(rule: str, mode: str, window: float) -> dict[str, Any]:
    """False ``peer_left`` signals in ``window`` s with node 0 -> node 1 broken."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from cluster import CONTROL as TEST_CONTROL
    from cluster import SECRET as TEST_SECRET
    from proxy import ProxiedCluster, Recorder, source_ip

    # One warning per failed exchange would bury the table.
    logging.getLogger("flask_clustershazbot").setLevel(logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="shazbot-asym-")
    config = {
        "SHAZBOT_SECRET": TEST_SECRET,
        "SHAZBOT_CONTROL_SECRET": TEST_CONTROL,
        "SHAZBOT_BASE_URL": "http://127.0.0.1:1/",
        "SHAZBOT_MASTER_LIST": f"{tmp}/master.json",
        "SHAZBOT_GOSSIP_INTERVAL": INTERVAL,
        "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 600,
        **RULES[rule],
    }
    cluster = ProxiedCluster(config)
    recorder = Recorder()
    try:
        nodes = [cluster.add() for _ in range(NODES)]
        for node in nodes:
            recorder.watch(node)
        deadline = time.monotonic() + 60
        while not all(set(n.view(False)) == set(cluster.urls) for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the proxied nodes did not converge")
            time.sleep(0.1)
        time.sleep(3 * INTERVAL)
        before = len(recorder.left())
        failures = nodes[0].engine.stats.gossip_failures
        cluster.proxies[1].set(mode, sources=[source_ip(0)], direction="in")
        time.sleep(window)
        alarms = recorder.left()[before:]
        return {
            "rule": rule,
            "mode": mode,
            "window": window,
            "false_alarms": len(alarms),
            "observers": len({e[1] for e in alarms}),
            "failed_exchanges": nodes[0].engine.stats.gossip_failures - failures,
        }
    finally:
        recorder.close()
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per rule and fault")
    parser.add_argument("--window", type=float, default=30.0, help="broken-direction window, s")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait, s")
    parser.add_argument(
        "--only",
        default="SIGKILL,SIGSTOP,broken",
        help="which parts to run: SIGKILL, SIGSTOP, broken",
    )
    args = parser.parse_args(argv)
    only = args.only.split(",")
    print(f"detection: {NODES} real node processes, interval {INTERVAL:g} s ({environment()})")
    rows, raw = [], []
    for fault in [f for f in ("SIGKILL", "SIGSTOP") if f in only]:
        for rule in RULES:
            runs = [detect(rule, fault, args.timeout) for _ in range(args.runs)]
            raw += runs
            times = [r["seconds"] for r in runs if r["seconds"] is not None]
            rows.append(
                [
                    fault,
                    rule,
                    len(runs),
                    len(runs) - len(times),
                    statistics.median(times) if times else "-",
                    max(times) if times else "-",
                    sum(r["false_alarms"] for r in runs),
                ]
            )
            print(f"  {fault} {rule}: {[r['seconds'] for r in runs]}")
    print(table(["fault", "rule", "runs", "not found", "median s", "max s", "false alarms"], rows))
    asym = [
        broken_direction(rule, mode, args.window)
        for mode in ("drop", "hang")
        for rule in RULES
        if "broken" in only
    ]
    print(f"one direction broken (node 0 -> node 1), {args.window:g} s window:")
    print(
        table(
            ["mode", "rule", "failed exchanges 0 -> 1", "false peer_left", "observers"],
            [
                [a["mode"], a["rule"], a["failed_exchanges"], a["false_alarms"], a["observers"]]
                for a in asym
            ],
        )
    )
    print(f"after: {environment()}")
    return {"detection": raw, "asymmetric": asym}


if __name__ == "__main__":
    main()
