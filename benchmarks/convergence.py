"""Real node processes on 127.0.0.1: rounds and seconds until a joining node is listed
online by all, and until a killed (SIGKILL) node is listed offline by all.

Each node is ``python -m flask_clustershazbot.demo node`` (Flask under werkzeug's threaded
server) sharing a file master list, with a short gossip interval; rounds = seconds / interval.
``python -m benchmarks.convergence [--sizes 5,10] [--interval 0.5]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from flask_clustershazbot.demo import start_node, stop_nodes, view

from .common import CONTROL, SECRET, environment, table


def wait(condition: Any, timeout: float, poll: float) -> float | None:
    """Seconds until ``condition()`` holds, or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(poll)
    return None


def run(n: int, interval: float, timeout: float) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="shazbot-convergence-")
    master = os.path.join(tmp, "master.json")
    env = {"SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL}
    procs: dict[int, subprocess.Popen[str]] = {}
    poll = interval / 5

    def all_see(url: str, online: bool, ports: list[int]) -> bool:
        return all((view(p, CONTROL) or {}).get(url) is online for p in ports)

    try:
        for i in range(n - 1):
            proc, port = start_node(
                master, interval, monitor=(i == 0), env=env, log_path=os.path.join(tmp, "nodes.log")
            )
            procs[port] = proc
        ports = list(procs)
        everyone = [f"http://127.0.0.1:{p}/" for p in ports]
        if wait(lambda: all(all_see(u, True, ports) for u in everyone), timeout, poll) is None:
            raise RuntimeError(f"{n - 1} nodes did not converge in {timeout} s")
        proc, port = start_node(master, interval, env=env, log_path=os.path.join(tmp, "nodes.log"))
        started = time.monotonic()
        procs[port] = proc
        newcomer = f"http://127.0.0.1:{port}/"
        joined = wait(lambda: all_see(newcomer, True, ports), timeout, poll)
        joined = None if joined is None else time.monotonic() - started
        ports.append(port)
        wait(lambda: all(all_see(u, True, ports) for u in everyone + [newcomer]), timeout, poll)
        victim = ports[len(ports) // 2]
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
        killed = time.monotonic()
        alive = [p for p in ports if p != victim]
        gone = wait(lambda: all_see(f"http://127.0.0.1:{victim}/", False, alive), timeout, poll)
        gone = None if gone is None else time.monotonic() - killed
        return {"n": n, "join_s": joined, "kill_s": gone, "interval": interval}
    finally:
        stop_nodes(procs.values())
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5,10", help="cluster sizes (the issue's: 5,10,20,30)")
    parser.add_argument("--interval", type=float, default=0.5, help="gossip interval, s")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait per phase, s")
    args = parser.parse_args(argv)
    print(f"convergence: real node processes, interval {args.interval:g} s ({environment()})")
    results = [run(int(n), args.interval, args.timeout) for n in args.sizes.split(",")]

    def fmt(seconds: float | None) -> tuple[str, str]:
        if seconds is None:
            return "timeout", "-"
        return f"{seconds:.2f}", f"{seconds / args.interval:.1f}"

    rows = []
    for r in results:
        js, jr = fmt(r["join_s"])
        ks, kr = fmt(r["kill_s"])
        rows.append([r["n"], js, jr, ks, kr])
    print(table(["N", "join: s", "join: rounds", "kill -> offline everywhere: s", "rounds"], rows))
    print(f"after: {environment()}")
    return results


if __name__ == "__main__":
    main()
