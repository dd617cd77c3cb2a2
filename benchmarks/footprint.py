"""Resident memory and CPU time of an idle node with N members.

Two real node processes (``flask_clustershazbot.demo node``) gossip with each other and
hold N members (the others offline, at a closed local port). The default 30 s interval
would need many minutes per figure, so the nodes run with a short interval (1 s, the
master-list announcement scaled alike) and the CPU time per round is scaled to the
default: CPU per minute at 30 s = CPU per round x 2. Each node sends one exchange per
round and answers about one, as in a cluster where peers pick uniformly.
``python -m benchmarks.footprint [--sizes 100,1000] [--seconds 20]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Any

from flask_clustershazbot.demo import start_node, stop_nodes, view

from .common import CONTROL, SECRET, environment, table
from .endpoint import fake_members

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(n: int, seconds: float, interval: float) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="shazbot-footprint-")
    master = os.path.join(tmp, "master.json")
    stamp = int(time.time() * 1000)
    with open(master, "w") as f:
        json.dump({"online": [], "offline": [s.to_dict() for s in fake_members(n - 2, stamp)]}, f)
    env = {"SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL}
    scale = interval / 30.0
    options = {
        "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 300 * scale,
        "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": 600 * scale,
    }
    procs = []
    try:
        for _ in range(2):
            procs.append(
                start_node(
                    master,
                    interval,
                    env=env,
                    options=options,
                    log_path=os.path.join(tmp, "nodes.log"),
                )
            )
        (a, pa), (_, pb) = procs
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            v = view(pa, CONTROL) or {}
            if len(v) >= n and v.get(f"http://127.0.0.1:{pb}/"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("the two nodes did not converge")
        time.sleep(3 * interval)  # let start-up work settle
        cpu0, t0 = cpu_seconds(a.pid), time.monotonic()
        time.sleep(seconds)
        cpu, elapsed = cpu_seconds(a.pid) - cpu0, time.monotonic() - t0
        per_round = cpu / (elapsed / interval)
        return {
            "n": n,
            "rss": rss_mib(a.pid),
            "cpu_per_round_ms": per_round * 1e3,
            "cpu_per_min_30s_ms": per_round * 2 * 1e3,
            "cpu_pct_30s": per_round / 30 * 100,
            "window": elapsed,
        }
    finally:
        stop_nodes(proc for proc, _ in procs)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per size")
    parser.add_argument("--interval", type=float, default=1.0, help="gossip interval used, s")
    args = parser.parse_args(argv)
    print(f"footprint: an idle node, interval {args.interval:g} s scaled to 30 s ({environment()})")
    results = [run(int(n), args.seconds, args.interval) for n in args.sizes.split(",")]
    print(
        table(
            [
                "N",
                "RSS MiB",
                "CPU ms per round",
                "CPU ms per minute at 30 s",
                "CPU % at 30 s",
                "window s",
            ],
            [
                [
                    r["n"],
                    r["rss"],
                    r["cpu_per_round_ms"],
                    r["cpu_per_min_30s_ms"],
                    r["cpu_pct_30s"],
                    r["window"],
                ]
                for r in results
            ],
        )
    )
    print(f"after: {environment()}")
    return results


if __name__ == "__main__":
    main()
