"""What a monitor costs: one real node, a monitor, fed the gossip of the N-1 other members.

Monitors get half of all rounds: with M monitors in an N-node cluster at interval T, each
serves about N / (2 M T) exchanges a second, each carrying the sender's whole table. The
node runs as in the endpoint benchmark (``benchmarks.endpoint_app`` under gunicorn, 1 gthread
worker x 8 threads, ``SHAZBOT_MONITOR=true``, interval T); this process plays the other
members and POSTs their exchanges at that rate, on a fixed schedule, over a few keep-alive
connections to 127.0.0.1. The monitor's CPU share is its own CPU time (user + system, all
its processes, from /proc) over a fixed window; the driver runs in this process and is not
counted.

The bodies are what members send: every member's record, online, with heartbeats advancing.
Each member beats once per interval, at its own phase; a member's view of another lags the
newest beat by 0 to 3 intervals (drawn anew for every body), so a body holds records the
monitor has, older ones and news, as in a running cluster. As our nodes do, bodies are
sent gzip-compressed and replies asked for gzip (``--plain``: plain JSON, as the
original's nodes send). Every member's address is a
loopback one nobody listens on (``http://127.0.x.y:9/``): the monitor's own rounds to them
fail at once, and its next exchange brings them back. ``python -m benchmarks.monitor
[--sizes 100,1000,5000] [--monitors 3] [--interval 1] [--seconds 20] [--plain] [--package DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from flask_clustershazbot._json import gzip_body

from .common import CONTROL, SECRET, environment, table
from .endpoint import ROOT, Server, cpu_seconds, free_port, gunicorn

#: Sub-steps of an interval: bodies are rebuilt at each, a tenth of the members beating.
STEPS = 10
#: Bodies built per sub-step, each with its own lags.
VARIANTS = 4
#: Keep-alive connections of the driver.
CONNECTIONS = 4
#: How far a member's view lags the newest beat, in intervals, and how often (monitors
#: pass news on within a round or two; the median dissemination at N = 1,000 is 4 rounds).
LAGS = (0, 0, 1, 1, 2, 3)


def member_url(i: int) -> str:
    return f"http://127.{3 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}:9/"


class Members:
    """The records of N-1 members beating once per interval at their own phase."""

    def __init__(
        self, count: int, interval: float, start_ms: int, monitor: str, gzip: bool = True
    ) -> None:
        self.count, self.interval, self.start, self.gzip = count, interval, start_ms, gzip
        self.urls = [json.dumps(member_url(i)).encode() for i in range(count)]
        # Members hold the monitor's record too; theirs lags its own (skipped, not refuted).
        self.extra = b'{"baseUrl":%b,"monitor":true,"lastUpdate":%d}' % (
            json.dumps(monitor).encode(),
            start_ms - 60_000,
        )
        self.rng = random.Random(25)
        self.step = -1
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()  # one connection builds a sub-step's bodies

    def beat(self, i: int, step: int) -> int:
        """Member ``i``'s newest beat at sub-step ``step``: it beats when step reaches its phase."""
        return (step - i % STEPS) // STEPS

    def body(self, now: float, k: int) -> bytes:
        step = int((now * 1000 - self.start) / (self.interval * 1000 / STEPS))
        with self.lock:
            if step > self.step:
                self.step, self.bodies = step, [self._build(step) for _ in range(VARIANTS)]
            return self.bodies[k % VARIANTS]

    def _build(self, step: int) -> bytes:
        lag, beat, period, start = self.rng.choice, self.beat, int(self.interval * 1000), self.start
        records = [
            b'{"baseUrl":%b,"monitor":false,"lastUpdate":%d}'
            % (url, start + max(beat(i, step) - lag(LAGS), 0) * period + i % period)
            for i, url in enumerate(self.urls)
        ]
        records.append(self.extra)
        body = b'{"online":[%b],"offline":[],"message":"gossip"}' % b",".join(records)
        return gzip_body(body) if self.gzip else body


class Driver:
    """POSTs exchanges at ``rate`` a second on a fixed schedule over a few connections."""

    def __init__(self, port: int, members: Members, rate: float) -> None:
        self.port, self.members, self.rate = port, members, rate
        self.latencies: list[float] = []
        self.errors = 0
        self.late = 0
        self.lock = threading.Lock()

    def run(self, seconds: float) -> int:
        """Send for ``seconds``; return the exchanges answered."""
        self.latencies, self.errors, self.late = [], 0, 0
        begin = time.monotonic() + 0.05
        threads = [
            threading.Thread(target=self._connection, args=(c, begin, seconds))
            for c in range(CONNECTIONS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        return len(self.latencies)

    def _connection(self, c: int, begin: float, seconds: float) -> None:
        head = (
            "POST /clustershazbot/gossip HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {SECRET}\r\nContent-Type: application/json\r\n"
            + ("Content-Encoding: gzip\r\nAccept-Encoding: gzip\r\n" if self.members.gzip else "")
            + "Content-Length: %d\r\n\r\n"
        )
        period = CONNECTIONS / self.rate
        sock, reader = None, None
        try:
            k = 0
            while k < seconds * self.rate / CONNECTIONS + 1:  # bounded: the window's share
                due = begin + (k + c / CONNECTIONS) * period
                if due > begin + seconds or time.monotonic() > begin + seconds:
                    break  # a monitor that cannot keep up gets fewer, not a backlog
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -period:
                    with self.lock:
                        self.late += 1
                k += 1
                body = self.members.body(time.time(), k * CONNECTIONS + c)
                try:
                    if sock is None or reader is None:
                        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                        reader = sock.makefile("rb")
                    sent = time.monotonic()
                    sock.sendall((head % len(body)).encode() + body)
                    status = reader.readline()
                    length = 0
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    reader.read(length)
                except OSError:  # the server closed the connection: a new one next time
                    status = b""
                    if reader is not None:
                        reader.close()
                    if sock is not None:
                        sock.close()
                    sock, reader = None, None
                with self.lock:
                    if status.startswith(b"HTTP/1.1 200"):
                        self.latencies.append(time.monotonic() - sent)
                    else:
                        self.errors += 1
        finally:
            if reader is not None:
                reader.close()
            if sock is not None:
                sock.close()


def run(
    n: int,
    monitors: int,
    interval: float,
    seconds: float,
    package: str | None = None,
    gzip: bool = True,
) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="shazbot-monitor-")
    try:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}/"
        master = Path(tmp, "master.json")
        master.write_text(json.dumps({"online": [], "offline": []}))
        env = {
            **os.environ,
            "SHAZBOT_SECRET": SECRET,
            "SHAZBOT_CONTROL_SECRET": CONTROL,
            "SHAZBOT_BASE_URL": base_url,
            "SHAZBOT_MONITOR": "true",
            "SHAZBOT_GOSSIP_INTERVAL": str(interval),
            "SHAZBOT_MASTER_LIST": str(master),
            "SHAZBOT_STATE_PATH": str(Path(tmp, "state.db")),
            "PYTHONPATH": os.pathsep.join([*([package] if package else []), str(ROOT)]),
        }
        members = Members(n - 1, interval, int(time.time() * 1000), base_url, gzip)
        rate = n / (2 * monitors * interval)
        server = Server(
            "monitor",
            gunicorn("benchmarks.endpoint_app:app", port, env),
            env,
            tmp,
            lambda s: requests.get(s.url + "clustershazbot/list", timeout=2).ok,
            port,
            cwd=package or ROOT,
        )
        try:
            driver = Driver(port, members, rate)
            driver.run(min(5.0, seconds))  # warm-up: the monitor learns every member
            known = requests.get(
                server.url + "clustershazbot/list",
                timeout=10,
                headers={"Authorization": CONTROL},
            ).json()
            cpu, began = cpu_seconds(server.proc.pid), time.monotonic()
            answered = driver.run(seconds)
            window = time.monotonic() - began
            cpu = cpu_seconds(server.proc.pid) - cpu
            load = os.getloadavg()[0]
        finally:
            server.stop()
        lat = sorted(driver.latencies) or [0.0]
        return {
            "n": n,
            "rate": rate,
            "answered": answered / window,
            "share": cpu / window,
            "cpu_ms": cpu * 1e3 / max(answered, 1),
            "p50": statistics.median(lat) * 1e3,
            "p99": lat[int(len(lat) * 0.99)] * 1e3,
            "errors": driver.errors,
            "late": driver.late,
            "known": len(known.get("online", [])),
            "body": len(members.body(time.time(), 0)),
            "load": load,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="cluster sizes N")
    parser.add_argument("--monitors", type=int, default=3, help="M, monitors in the cluster")
    parser.add_argument("--interval", type=float, default=1.0, help="T, the gossip interval (s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="plain JSON both ways, as the original's nodes send (ours: gzip both ways)",
    )
    parser.add_argument(
        "--package", metavar="DIR", help="serve the package of another checkout (e.g. before)"
    )
    args = parser.parse_args(argv)
    print(
        f"monitor: M = {args.monitors}, T = {args.interval:g} s, {args.seconds:g} s window; "
        f"{'plain JSON' if args.plain else 'gzip both ways'}; "
        f"gunicorn gthread 1 worker x 8 threads; package {args.package or ROOT} ({environment()})"
    )
    results = [
        run(int(n), args.monitors, args.interval, args.seconds, args.package, not args.plain)
        for n in args.sizes.split(",")
    ]
    print(
        table(
            [
                "N",
                "exchanges/s due",
                "answered/s",
                "CPU share of a core",
                "CPU ms/exchange",
                "p50 ms",
                "p99 ms",
                "errors",
                "late",
                "online known",
                "body bytes",
                "load",
            ],
            [
                [
                    r["n"],
                    r["rate"],
                    r["answered"],
                    f"{r['share']:.1%}",
                    r["cpu_ms"],
                    r["p50"],
                    r["p99"],
                    r["errors"],
                    r["late"],
                    r["known"],
                    r["body"],
                    r["load"],
                ]
                for r in results
            ],
        )
    )
    print("goal (issue 25): at most 25 % of one core at N = 1,000, M = 3, T = 1 s")
    print(f"after: {environment()}")
    return results


if __name__ == "__main__":
    main()
