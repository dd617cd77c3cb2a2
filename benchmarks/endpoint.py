"""POST /clustershazbot/gossip at the platform's limit, measured with wrk on 127.0.0.1.

Servers measured alternately in one run, each answering the same plain-JSON gossip
body of N records, all already known to it:
- ours: a node (``benchmarks.endpoint_app``) under gunicorn, 1 gthread worker x 8 threads;
- flask-route: the same node with ``SHAZBOT_FAST_GOSSIP=false`` (gossip through Flask's dispatch);
- ceiling: an empty Flask route that only reads the body (``benchmarks.ceiling_app``), same settings;
- bare: a bare WSGI callable that reads the body and answers ``{}`` (``benchmarks.bare_app``),
  same settings: the floor of any Python endpoint under gunicorn;
- original: the Node.js stand-in ``tests/seed_peer.js`` under Express (its merge), one process;
- before (with ``--before DIR``): the package of another checkout, served as ours.
wrk (2 threads, 16 connections) is not Python, so the client's own cost stays out of the
figures; it shares the machine's cores with the servers all the same. CPU ms/request is the
server's own CPU time (user + system, all its processes) over the requests it answered.
``python -m benchmarks.endpoint [--sizes 100,1000] [--seconds 5] [--rounds 3] [--codec json]
[--before DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from flask_clustershazbot.demo import stop_nodes
from flask_clustershazbot.records import GossipServer, ServerList

from .common import CONTROL, SECRET, environment, table

ROOT = Path(__file__).resolve().parent.parent
SEED_PEER = ROOT / "tests" / "seed_peer.js"
#: Where Debian's node-express puts the express package (a node from elsewhere does not look there).
NODE_PATH = "/usr/share/nodejs"

WRK_SCRIPT = """
wrk.method = "POST"
local f = assert(io.open(%(body)s, "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = %(secret)s

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake_members(n: int, stamp: int) -> list[GossipServer]:
    # Offline members at a closed local port: the servers never gossip off this machine.
    return [GossipServer(f"http://127.0.0.1:9/m{i}/", False, stamp - i) for i in range(n)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (gunicorn's workers), in seconds."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Server:
    """A server process answering POST /clustershazbot/gossip on 127.0.0.1."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        tmp: str,
        ready: Callable[[Server], bool],
        port: int | None = None,
        cwd: str | Path = ROOT,
    ) -> None:
        self.name, self.tmp = name, tmp
        self.log = open(Path(tmp, f"{name}.log"), "w+b")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stderr=self.log,
            text=True,
            stdout=subprocess.PIPE if port is None else self.log,
        )
        if port is None:  # the original's stand-in prints "READY <port>"
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            port = int(line.split()[1]) if line.startswith("READY ") else 0
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if ready(self):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.log.seek(0)
        tail = self.log.read().decode(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{name} did not serve; its log ends:\n{tail}")

    def stop(self) -> None:
        stop_nodes([self.proc])
        self.log.close()


def gunicorn(app: str, port: int, env: dict[str, str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "gthread",
        "-w",
        "1",
        "--threads",
        "8",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        app,
    ]


def knows(n: int) -> Callable[[Server], bool]:
    """Ready when the server's list holds the ``n`` members of the body."""

    def ready(server: Server) -> bool:
        r = requests.get(
            server.url + "clustershazbot/list", timeout=2, headers={"Authorization": CONTROL}
        )
        return r.ok and len(r.json().get("offline", [])) >= n

    return ready


def start_servers(n: int, tmp: str, master: Path, codec: str, before: str | None) -> list[Server]:
    env = {
        **os.environ,
        "SHAZBOT_SECRET": SECRET,
        "SHAZBOT_CONTROL_SECRET": CONTROL,
        "PYTHONPATH": str(ROOT),
    }
    servers = []
    try:
        nodes = [("ours", str(ROOT)), ("flask-route", str(ROOT))]
        nodes += [("before", before)] if before else []
        for name, package in nodes:  # benchmarks.endpoint_app from here, the package from there
            port = free_port()
            servers.append(
                Server(
                    name,
                    gunicorn("benchmarks.endpoint_app:app", port, env),
                    {
                        **env,
                        "SHAZBOT_BASE_URL": f"http://127.0.0.1:{port}/",
                        "BENCH_CODEC": codec,
                        "SHAZBOT_MASTER_LIST": str(master) + ("" if name == "ours" else f".{name}"),
                        "SHAZBOT_STATE_PATH": str(Path(tmp, f"{name}.db")),
                        "SHAZBOT_FAST_GOSSIP": str(name != "flask-route").lower(),
                        "PYTHONPATH": f"{package}{os.pathsep}{ROOT}",
                    },
                    tmp,
                    knows(n),
                    port,
                    cwd=package,
                )
            )  # python -m puts the working directory first on sys.path
        port = free_port()
        servers.append(
            Server(
                "bare",
                gunicorn("benchmarks.bare_app:app", port, env),
                env,
                tmp,
                lambda s: requests.post(s.url + "clustershazbot/gossip", data=b"{}", timeout=2).ok,
                port,
            )
        )
        port = free_port()
        servers.append(
            Server(
                "ceiling",
                gunicorn("benchmarks.ceiling_app:app", port, env),
                env,
                tmp,
                lambda s: requests.post(s.url + "clustershazbot/gossip", data=b"{}", timeout=2).ok,
                port,
            )
        )
        node = shutil.which("node")
        if node and Path(NODE_PATH, "express").is_dir():
            servers.append(
                Server(
                    "original",
                    [node, str(SEED_PEER), str(master) + ".seed", "86400"],
                    {**env, "SEED_PEER_EXPRESS": "1", "NODE_PATH": NODE_PATH},
                    tmp,
                    knows(n),
                )
            )
        else:
            print("(no stand-in for the original: needs node and Debian's node-express)")
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def wrk(server: Server, script: Path, seconds: float) -> dict[str, float]:
    cpu = cpu_seconds(server.proc.pid)
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c16",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            server.url + "clustershazbot/gossip",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    cpu = cpu_seconds(server.proc.pid) - cpu
    load_1m = os.getloadavg()[0]  # the machine's, over the last minute of runs
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    count, micros, p50, p99, bad_status, socket_errors = (int(x) for x in line.split()[1:])
    return {
        "rps": count / (micros / 1e6),
        "p50": p50 / 1e3,
        "p99": p99 / 1e3,
        "errors": bad_status + socket_errors,
        "cpu_ms": cpu * 1e3 / max(count, 1),
        "load": load_1m,
    }


def run(
    n: int, seconds: float, rounds: int, codec: str, before: str | None
) -> dict[str, dict[str, Any]]:
    tmp = tempfile.mkdtemp(prefix="shazbot-endpoint-")
    try:
        members = ServerList((), tuple(fake_members(n, int(time.time() * 1000))))
        master = Path(tmp, "master.json")
        master.write_text(json.dumps(members.to_dict()))
        for copy in (
            "seed",
            "before",
            "flask-route",
        ):  # each reads its own: our node rewrites its master list
            Path(tmp, f"master.json.{copy}").write_text(master.read_text())
        body = Path(tmp, "body.json")  # plain JSON, as the original's nodes send it
        body.write_text(json.dumps(members.gossip_message(), separators=(",", ":")))
        script = Path(tmp, "gossip.lua")
        script.write_text(
            WRK_SCRIPT % {"body": json.dumps(str(body)), "secret": json.dumps(SECRET)}
        )
        servers = start_servers(n, tmp, master, codec, before)
        try:
            for server in servers:  # warm up (imports, caches, the JIT of node)
                wrk(server, script, 1)
            runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
            for _ in range(rounds):  # alternated, so that a change in the load hits all alike
                for server in servers:
                    runs[server.name].append(wrk(server, script, seconds))
        finally:
            for server in servers:
                server.stop()
        return {
            name: {
                "n": n,
                "body": body.stat().st_size,
                "runs": r,
                **{k: statistics.median(x[k] for x in r) for k in r[0]},
                "errors": sum(x["errors"] for x in r),
            }
            for name, r in runs.items()
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict[str, dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs per server")
    parser.add_argument(
        "--codec",
        choices=["auto", "json"],
        default="auto",
        help="json: our node uses the standard library's codec",
    )
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also serve the package of another checkout (e.g. the last release) as 'before'",
    )
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("endpoint: needs wrk (Debian: apt-get install wrk)")
    print(
        f"endpoint: wrk -t2 -c16, {args.rounds} x {args.seconds:g} s per server, alternated; "
        f"gunicorn gthread 1 worker x 8 threads; our codec {args.codec} ({environment()})"
    )
    results = [
        run(int(n), args.seconds, args.rounds, args.codec, args.before)
        for n in args.sizes.split(",")
    ]
    rows = []
    for res in results:
        for name, r in res.items():
            rates = [x["rps"] for x in r["runs"]]
            rows.append(
                [
                    r["n"],
                    name,
                    r["rps"],
                    f"{min(rates):,.0f}-{max(rates):,.0f}",
                    r["p50"],
                    r["p99"],
                    r["cpu_ms"],
                    r["errors"],
                    r["body"],
                ]
            )
    print(
        table(
            [
                "N",
                "server",
                "req/s (median)",
                "range",
                "p50 ms",
                "p99 ms",
                "CPU ms/req",
                "errors",
                "body bytes",
            ],
            rows,
        )
    )
    ratios = []
    for res in results:
        ours, original, before = res["ours"], res.get("original"), res.get("before")

        def per(other: dict[str, Any] | None, key: str = "rps") -> float | str:
            return ours[key] / other[key] if other else "-"

        ratios.append(
            [
                ours["n"],
                per(res["bare"]),
                per(res["ceiling"]),
                res["flask-route"]["rps"] / res["bare"]["rps"],
                per(original),
                per(original, "p99"),
                per(before),
            ]
        )
    print(
        table(
            [
                "N",
                "ours / bare callable",
                "ours / empty Flask route",
                "flask-route / bare",
                "ours / original req/s",
                "ours / original p99",
                "ours / before req/s",
            ],
            ratios,
        )
    )
    loads = [x["load"] for res in results for r in res.values() for x in r["runs"]]
    print(f"load average (1 min) during the runs: {min(loads):.2f} to {max(loads):.2f}")
    print(
        "goals (issue 25): N = 100 ours / bare >= 0.85 and ours / original >= 0.75; "
        "N = 1,000 ours / original >= 1.25 with the p99 ratio <= 1"
    )
    print(f"after: {environment()}")
    return results


if __name__ == "__main__":
    main()
