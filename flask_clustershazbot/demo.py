"""A local demo cluster: N real node processes on 127.0.0.1 sharing a file master list.

``python -m flask_clustershazbot.demo [--nodes 5] [--interval 0.5] [--duration 40]``
shows each node's view as the cluster converges, kills one node with SIGKILL,
shows its detection, then stops everything and removes its temp dir (also on Ctrl-C).

``python -m flask_clustershazbot.demo node ...`` runs one node (used by the demo and the tests).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import requests

from .constants import LIST_PATH

DEMO_SECRET_ENV = "SHAZBOT_SECRET"
DEMO_CONTROL_ENV = "SHAZBOT_CONTROL_SECRET"


class _Dispatch:
    """A WSGI app whose target is set after the socket is bound (the base URL needs the port)."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


def run_node(argv: list[str]) -> None:
    """One node: a Flask app with ClusterShazbot under werkzeug's threaded server."""
    from flask import Flask
    from werkzeug.serving import make_server

    from . import ClusterShazbot

    parser = argparse.ArgumentParser(prog="demo node")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--master", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--monitor", action="store_true")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE setting")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    dispatch = _Dispatch()
    server = make_server("127.0.0.1", args.port, dispatch, threaded=True)
    app = Flask(f"node{server.port}")
    app.config.update(
        SHAZBOT_BASE_URL=f"http://127.0.0.1:{server.port}/",
        SHAZBOT_MASTER_LIST=args.master,
        SHAZBOT_GOSSIP_INTERVAL=args.interval,
        SHAZBOT_MONITOR=args.monitor,
        # The announce settings keep their defaults (5 to 15 minutes): a fresh cluster
        # forms without them, as each node missing from the master list adds itself at once.
        SHAZBOT_RETRY_DELAY=min(3.0, args.interval),
    )
    for option in args.option:
        key, _, value = option.partition("=")
        app.config[key] = value

    @app.get("/")
    def index() -> str:
        return "hello from a demo node\n"

    shazbot = ClusterShazbot(app)
    dispatch.app = app

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"READY {server.port}", flush=True)
    try:
        server.serve_forever()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        shazbot.shutdown()
        server.server_close()


def start_node(
    master: str,
    interval: float,
    port: int = 0,
    monitor: bool = False,
    env: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
    log_path: str | None = None,
    timeout: float = 30.0,
) -> tuple[subprocess.Popen[str], int]:
    """Start a node process; return it and its port once it serves."""
    cmd = [
        sys.executable,
        "-u",
        "-m",
        "flask_clustershazbot.demo",
        "node",
        "--port",
        str(port),
        "--master",
        master,
        "--interval",
        str(interval),
    ]
    if monitor:
        cmd.append("--monitor")
    for key, value in (options or {}).items():
        cmd += ["--option", f"{key}={value}"]
    with open(log_path or os.devnull, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **(env or {})}
        )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([proc.stdout], [], [], left)[0]:
            break  # no line within the deadline: readline() alone could wait forever
        line = proc.stdout.readline()
        if line.startswith("READY "):
            return proc, int(line.split()[1])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"node did not start (exit code {proc.poll()})")


def stop_nodes(procs: Iterable[subprocess.Popen[str]], timeout: float = 10.0) -> None:
    """SIGTERM every node (each announces its shutdown), then SIGKILL the ones that linger."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def view(port: int, control_secret: str) -> dict[str, bool] | None:
    """A node's view {base_url: online}, or None if it does not answer."""
    try:
        r = requests.get(
            f"http://127.0.0.1:{port}/{LIST_PATH}",
            timeout=2,
            headers={"Authorization": control_secret},
        )
        data = r.json()
    except (requests.RequestException, ValueError):
        return None
    result = {s["baseUrl"]: True for s in data.get("online", [])}
    result.update({s["baseUrl"]: False for s in data.get("offline", [])})
    return result


def _table(ports: list[int], views: dict[int, dict[str, bool] | None], killed: set[int]) -> str:
    urls = [f"http://127.0.0.1:{p}/" for p in ports]
    head = "observer  " + " ".join(f"{p:>6}" for p in ports)
    rows = [head]
    for p in ports:
        v = views.get(p)
        if p in killed or v is None:
            rows.append(f"{p:>8}  " + ("(killed)" if p in killed else "(no answer)"))
            continue
        cells = ["on" if v.get(u) else ("off" if u in v else ".") for u in urls]
        rows.append(f"{p:>8}  " + " ".join(f"{c:>6}" for c in cells))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["node"]:
        run_node(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="clustershazbot demo", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=5, help="number of nodes (default 5)")
    parser.add_argument("--interval", type=float, default=0.5, help="gossip interval, s (0.5)")
    parser.add_argument("--duration", type=float, default=40, help="longest run, s (40)")
    args = parser.parse_args(argv)
    if not 2 <= args.nodes <= 50:
        parser.error("--nodes must be between 2 and 50")

    tmp = tempfile.mkdtemp(prefix="clustershazbot-demo-")
    control = secrets.token_hex(16)
    env = {DEMO_SECRET_ENV: secrets.token_hex(16), DEMO_CONTROL_ENV: control}
    master = os.path.join(tmp, "master-list.json")
    procs: dict[int, subprocess.Popen[str]] = {}
    start = time.monotonic()
    try:
        print(f"starting {args.nodes} nodes (interval {args.interval} s, master list {master})")
        for i in range(args.nodes):
            proc, port = start_node(
                master,
                args.interval,
                monitor=(i == 0),
                env=env,
                log_path=os.path.join(tmp, "nodes.log"),
            )
            procs[port] = proc
            print(f"  node {i + 1}: http://127.0.0.1:{port}/{' (monitor)' if i == 0 else ''}")
        ports = list(procs)
        urls = {f"http://127.0.0.1:{p}/" for p in ports}
        killed: set[int] = set()
        victim = ports[-1]
        phase, last, kill_time = "join", "", 0.0
        while time.monotonic() - start < args.duration:
            views = {p: view(p, control) for p in ports if p not in killed}
            table = _table(ports, views, killed)
            if table != last:
                print(
                    f"\n[{time.monotonic() - start:5.1f} s] each row: one node's view "
                    "(on = online, off = offline, . = unknown)\n" + table,
                    flush=True,
                )
                last = table
            alive = list(views.values())
            if phase == "join" and all(v and all(v.get(u) for u in urls) for v in alive):
                print(
                    f"\nconverged: every node lists all {len(urls)} online "
                    f"after {time.monotonic() - start:.1f} s"
                )
                print(f"killing node {victim} with SIGKILL")
                procs[victim].send_signal(signal.SIGKILL)
                procs[victim].wait()
                killed.add(victim)
                phase, kill_time = "detect", time.monotonic()
            elif phase == "detect":
                gone = f"http://127.0.0.1:{victim}/"
                if all(v and v.get(gone) is False for v in alive):
                    print(
                        f"\ndetected: every live node lists {victim} offline "
                        f"{time.monotonic() - kill_time:.1f} s after the kill"
                    )
                    phase = "done"
                    break
            time.sleep(min(0.5, args.interval))
        if phase != "done":
            print(f"\nstopped after {args.duration:.0f} s in phase '{phase}'")
        return 0 if phase == "done" else 1
    except KeyboardInterrupt:
        print("\ninterrupted")
        return 130
    finally:
        print("stopping all nodes")
        stop_nodes(procs.values())
        shutil.rmtree(tmp, ignore_errors=True)
        print("cleaned up", tmp)


if __name__ == "__main__":
    sys.exit(main())
