"""Lifecycle figures on real processes (docs/lifecycle.md, docs/starting.md).

- **stop**: ``flask run`` of examples/factory_app.py next to a peer whose own failure
  detection is slowed to minutes; the time from Ctrl-C (SIGINT) or SIGTERM to the peer
  listing the node offline, which only the shutdown announcement can explain.
- **cold start**: N nodes started at once with a master-list file that does not exist,
  every setting at its default (30 s gossip interval, announcements 5 to 15 minutes
  away) unless ``--interval`` says otherwise; the time until every node lists all N.

``python -m benchmarks.lifecycle [--runs 3] [--nodes 3,5] [--interval 30]``
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flask_clustershazbot.demo import start_node, stop_nodes, view

from .common import CONTROL, SECRET, environment

ROOT = Path(__file__).resolve().parent.parent
ENV = {"SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL}
SLOW_DETECTION = {"SHAZBOT_RETRY_DELAY": "120", "SHAZBOT_FAILURE_TIMEOUT": "600"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition: object, timeout: float) -> float | None:
    """Seconds until ``condition()`` holds, polled every 20 ms; None after ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - began
        time.sleep(0.02)
    return None


def stop_times(signum: int, runs: int, tmp: Path) -> list[float | None]:
    env = ENV
    master = str(tmp / "stop-master.json")
    peer, peer_port = start_node(master, 0.2, env=env, options=SLOW_DETECTION)
    times: list[float | None] = []
    try:
        for _ in range(runs):
            port = _free_port()
            url = f"http://127.0.0.1:{port}/"
            node_env = {
                **os.environ,
                **env,
                "SHAZBOT_BASE_URL": url,
                "SHAZBOT_MASTER_LIST": master,
                "SHAZBOT_GOSSIP_INTERVAL": "0.2",
                "PYTHONPATH": str(ROOT),
            }
            node = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flask",
                    "--app",
                    "examples.factory_app:create_app()",
                    "run",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=node_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # SIGINT at its default, as in a terminal, even when this runs in the background
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
            try:
                joined = _wait(lambda: (view(peer_port, CONTROL) or {}).get(url) is True, 30)
                if joined is None:
                    times.append(None)
                    continue
                began = time.monotonic()
                node.send_signal(signum)
                left = _wait(lambda: (view(peer_port, CONTROL) or {}).get(url) is False, 30)
                times.append(None if left is None else time.monotonic() - began)
            finally:
                stop_nodes([node])  # type: ignore[list-item]
    finally:
        stop_nodes([peer])
    return times


def cold_start(nodes: int, interval: float, tmp: Path) -> float | None:
    master = tmp / f"cold-{nodes}-{time.monotonic_ns()}" / "master.json"
    master.parent.mkdir()
    procs, ports = [], []
    began = time.monotonic()
    try:
        # All at once: every node's bootstrap finds the master list missing or incomplete.
        with ThreadPoolExecutor(nodes) as pool:
            for proc, port in pool.map(
                lambda _: start_node(str(master), interval, env=ENV), range(nodes)
            ):
                procs.append(proc)
                ports.append(port)
        urls = {f"http://127.0.0.1:{p}/" for p in ports}

        def full() -> bool:
            for port in ports:
                v = view(port, CONTROL) or {}
                if {u for u, online in v.items() if online} != urls:
                    return False
            return True

        if _wait(full, 20 * interval + 30) is None:
            return None
        return time.monotonic() - began  # from the first node's start
    finally:
        stop_nodes(procs)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.lifecycle")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", default="3,5")
    parser.add_argument(
        "--interval",
        type=float,
        default=30.0,
        help="gossip interval of the cold start (default: the library's)",
    )
    args = parser.parse_args(argv)

    def show(values: list[float | None]) -> str:
        return ", ".join("lost" if v is None else f"{v:.2f}" for v in values)

    print(environment())
    with tempfile.TemporaryDirectory(prefix="clustershazbot-lifecycle-") as tmp:
        for signum in (signal.SIGINT, signal.SIGTERM):
            times = stop_times(signum, args.runs, Path(tmp))
            print(
                f"flask run, {signal.Signals(signum).name}: offline at the peer after "
                f"{show(times)} s",
                flush=True,
            )
        for n in (int(x) for x in args.nodes.split(",")):
            took = cold_start(n, args.interval, Path(tmp))
            print(
                f"cold start, {n} nodes, {args.interval:g} s interval, missing master list: "
                f"full membership after {show([took])} s",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
