"""POST /clustershazbot/gossip against a real node under gunicorn (gthread) on 127.0.0.1.

A Python load generator (threads, one pooled requests.Session each) sends gzip
gossip bodies with N records, as our nodes do, and measures requests/s and
latency; a second client measures the app's own trivial route meanwhile, and
once without load. The load generator shares the machine's cores with gunicorn.
``python -m benchmarks.endpoint [--sizes 10,100,1000] [--seconds 5] [--clients 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from flask_clustershazbot.demo import stop_nodes
from flask_clustershazbot.records import GossipServer, ServerList
from flask_clustershazbot.transport import gossip_body

from .common import CONTROL, SECRET, environment, percentile, table

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake_members(n: int, stamp: int) -> list[GossipServer]:
    # Offline members at a closed local port: the node never gossips off this machine.
    return [GossipServer(f"http://127.0.0.1:9/m{i}/", False, stamp - i) for i in range(n)]


class Gunicorn:
    """A real gunicorn (gthread) serving benchmarks.endpoint_app with ``n`` known members."""

    def __init__(self, n: int, workers: int = 1, threads: int = 8) -> None:
        self.tmp = tempfile.mkdtemp(prefix="shazbot-endpoint-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        master = Path(self.tmp, "master.json")
        stamp = int(time.time() * 1000)
        master.write_text(json.dumps(ServerList((), tuple(fake_members(n - 1, stamp))).to_dict()))
        env = {**os.environ, "SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL,
               "SHAZBOT_BASE_URL": self.url, "SHAZBOT_MASTER_LIST": str(master),
               "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(workers),
               "--threads", str(threads), "-b", f"127.0.0.1:{self.port}", "--log-level", "warning",
               "benchmarks.endpoint_app:app"]
        self.log = open(Path(self.tmp, "gunicorn.log"), "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=self.log, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                r = requests.get(self.url + "clustershazbot/list", timeout=1,
                                 headers={"Authorization": CONTROL})
                if r.ok and len(r.json().get("offline", [])) >= n - 1:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        log = Path(self.tmp, "gunicorn.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"gunicorn did not serve; its log ends:\n{log}")

    def stop(self) -> None:
        stop_nodes([self.proc])
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def bodies(n: int, count: int = 10) -> list[tuple[bytes, dict[str, str]]]:
    rng = random.Random(n)
    stamp = int(time.time() * 1000)
    members = fake_members(n, stamp)
    out = []
    for k in range(count):
        for i in rng.sample(range(n), max(1, n // 10)):  # a tenth of records newer each time
            s = members[i]
            members[i] = GossipServer(s.base_url, s.monitor, s.last_update + 1 + k)
        message = ServerList((), tuple(members)).gossip_message()
        out.append(gossip_body(message))
    return out


def ping_latencies(url: str, stop: threading.Event, out: list[float], limit: float) -> None:
    session = requests.Session()
    deadline = time.monotonic() + limit
    while not stop.is_set() and time.monotonic() < deadline:
        t0 = time.perf_counter()
        session.get(url + "ping", timeout=10)
        out.append(time.perf_counter() - t0)
        stop.wait(0.02)


def run(n: int, seconds: float, clients: int) -> dict[str, Any]:
    node = Gunicorn(n)
    try:
        url = node.url + "clustershazbot/gossip"
        payloads = bodies(n)
        idle: list[float] = []
        ping_latencies(node.url, threading.Event(), idle, 1.0)
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors = [0]
        stop = threading.Event()

        def client(i: int) -> None:
            session = requests.Session()
            k = i
            while not stop.is_set():
                data, extra = payloads[k % len(payloads)]
                k += 1
                t0 = time.perf_counter()
                r = session.post(url, data=data, timeout=30, headers={
                    "Authorization": SECRET, "Content-Type": "application/json",
                    "Accept-Encoding": "gzip", **extra})
                if r.status_code != 200:
                    errors[0] += 1
                latencies[i].append(time.perf_counter() - t0)

        pings: list[float] = []
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        pinger = threading.Thread(target=ping_latencies, args=(node.url, stop, pings, seconds + 5))
        started = time.perf_counter()
        for t in threads:
            t.start()
        pinger.start()
        stop.wait(seconds)
        stop.set()
        for t in threads + [pinger]:
            t.join(30)
        elapsed = time.perf_counter() - started
        all_lat = [x for lst in latencies for x in lst]
        return {"n": n, "requests": len(all_lat), "errors": errors[0], "rps": len(all_lat) / elapsed,
                "p50": percentile(all_lat, 0.5) * 1e3, "p99": percentile(all_lat, 0.99) * 1e3,
                "ping_idle": percentile(idle, 0.5) * 1e3,
                "ping_p50": percentile(pings, 0.5) * 1e3, "ping_p99": percentile(pings, 0.99) * 1e3,
                "body": len(payloads[0][0])}
    finally:
        node.stop()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per size")
    parser.add_argument("--clients", type=int, default=8, help="concurrent gossip clients")
    args = parser.parse_args(argv)
    print(f"endpoint: gunicorn gthread (1 worker, 8 threads), {args.clients} gossip clients, "
          f"{args.seconds:g} s per size ({environment()})")
    results = [run(int(n), args.seconds, args.clients) for n in args.sizes.split(",")]
    print(table(["N", "requests", "errors", "req/s", "p50 ms", "p99 ms", "body bytes (gzip)",
                 "app route idle p50 ms", "app route under load p50 ms", "p99 ms"],
                [[r["n"], r["requests"], r["errors"], r["rps"], r["p50"], r["p99"], r["body"],
                  r["ping_idle"], r["ping_p50"], r["ping_p99"]] for r in results]))
    print(f"after: {environment()}")
    return results


if __name__ == "__main__":
    main()
