"""Slow clients against a real gunicorn host on 127.0.0.1 (issue 10, item 9).

N attacker connections trickle a request one byte at a time (the headers, or the
body after complete headers) and reconnect whenever the server drops them. Meanwhile
a probe asks ``/clustershazbot/list`` once a second (new connection, 10 s timeout)
and an in-process peer gossips with the host every second; the run reports how many
probes were answered within 3 s, their median and worst latency, how often the
peer's view showed the host offline (sampled twice per probe) and how many
``peer_left`` signals about it the peer sent. Setups:

- ``example``: examples/gunicorn.conf.py as shipped (``WEB_CONCURRENCY`` workers);
- ``threadsN``: the same with ``--threads N`` (what more threads buy);
- ``nginx``: the example config behind nginx (``client_header_timeout`` and
  ``client_body_timeout`` 5 s, request buffering on), when ``nginx`` is installed.

``python -m benchmarks.slowclients [--slow 64] [--seconds 30] [--workers 4]
[--setups threads8,example,nginx] [--modes headers,body]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from flask_clustershazbot import ClusterShazbot, peer_left
from flask_clustershazbot.demo import stop_nodes

from .common import CONTROL, SECRET, environment, table

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 1.0
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    client_header_timeout 5s;
    client_body_timeout 5s;
    send_timeout 10s;
    client_max_body_size 4m;
    server {{
        listen 127.0.0.1:{front};
        location / {{
            proxy_pass http://127.0.0.1:{back};
            proxy_request_buffering on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class Host:
    """A gunicorn host (examples/gunicorn.conf.py), optionally behind nginx."""

    def __init__(self, tmp: Path, workers: int, threads: int | None, nginx: bool) -> None:
        self.tmp = tmp
        self.back = free_port()
        self.front = free_port() if nginx else self.back
        self.url = f"http://127.0.0.1:{self.front}/"
        env = {
            **os.environ,
            "SHAZBOT_SECRET": SECRET,
            "SHAZBOT_CONTROL_SECRET": CONTROL,
            "SHAZBOT_BASE_URL": self.url,
            "SHAZBOT_MASTER_LIST": str(tmp / "master.json"),
            "SHAZBOT_GOSSIP_INTERVAL": str(INTERVAL),
            "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": "1",
            "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": "1",
            "SHAZBOT_STATE_PATH": str(tmp / "state"),
            "WEB_CONCURRENCY": str(workers),
            "BIND": f"127.0.0.1:{self.back}",
            "PYTHONPATH": str(ROOT),
        }
        extra = ["--threads", str(threads)] if threads else []
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "examples" / "gunicorn.conf.py"),
            "--log-level",
            "warning",
            *extra,
            "examples.factory_app:create_app()",
        ]
        self.log = open(tmp / "gunicorn.log", "wb")  # noqa: SIM115 - closed in stop()
        self.procs = [
            subprocess.Popen(
                cmd, env=env, stdout=self.log, stderr=self.log, cwd=ROOT, start_new_session=True
            )
        ]
        if nginx:
            conf = tmp / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, front=self.front, back=self.back))
            self.procs.append(
                subprocess.Popen(
                    ["nginx", "-c", str(conf), "-p", str(tmp)],
                    stdout=self.log,
                    stderr=self.log,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if probe(self.url) is not None:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the host did not serve; see {tmp}/gunicorn.log")

    def stop(self) -> None:
        stop_nodes(self.procs)  # type: ignore[arg-type]
        self.log.close()


def probe(url: str, timeout: float = 10.0) -> float | None:
    """Seconds to answer GET /clustershazbot/list on a new connection; None: no answer."""
    started = time.monotonic()
    try:
        r = requests.get(
            url + "clustershazbot/list", timeout=timeout, headers={"Connection": "close"}
        )
        return time.monotonic() - started if r.ok else None
    except requests.RequestException:
        return None


def attacker(host: str, port: int, mode: str, stop: threading.Event, opened: list[int]) -> None:
    """One slow client: trickle a byte every 0.5 s; reconnect when dropped."""
    head = f"POST /clustershazbot/gossip HTTP/1.1\r\nHost: {host}\r\n"
    if mode == "body":
        head += f"Authorization: {SECRET}\r\nContent-Type: application/json\r\n"
        head += "Content-Length: 100000\r\n\r\n"
    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                opened[0] += 1
                if mode == "body":
                    s.sendall(head.encode())
                else:
                    s.sendall(head[:20].encode())
                filler = b"X-Slow: " if mode == "headers" else b" "
                i = 0
                while not stop.wait(0.5):
                    s.sendall(filler[i % len(filler) : i % len(filler) + 1])
                    i += 1
        except OSError:
            stop.wait(0.2)


def run(setup: str, mode: str, slow: int, seconds: float, workers: int) -> list[Any]:
    tmp = Path(tempfile.mkdtemp(prefix="shazbot-slow-"))
    threads = int(setup[len("threads") :]) if setup.startswith("threads") else None
    host = Host(tmp, workers, threads, nginx=setup == "nginx")
    peer_app = Flask("peer")
    server = make_server("127.0.0.1", 0, peer_app, threaded=True, request_handler=Quiet)
    peer_url = f"http://127.0.0.1:{server.port}/"
    peer_app.config.update(
        SHAZBOT_SECRET=SECRET,
        SHAZBOT_CONTROL_SECRET=CONTROL,
        SHAZBOT_BASE_URL=peer_url,
        SHAZBOT_MASTER_LIST=str(tmp / "master.json"),
        SHAZBOT_GOSSIP_INTERVAL=INTERVAL,
        SHAZBOT_MASTER_ANNOUNCE_MINIMUM=1,
        SHAZBOT_MASTER_ANNOUNCE_INTERVAL=1,
    )
    shazbot = ClusterShazbot(peer_app)
    left: list[str] = []

    def on_left(sender: Flask, server: Any, **_: Any) -> None:
        if server.base_url == host.url:
            left.append(server.base_url)

    peer_left.connect(on_left, peer_app)
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    serving.start()
    stop, opened = threading.Event(), [0]
    attackers: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            view = shazbot.server_list(app=peer_app)
            if any(s.base_url == host.url for s in view.online):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("the peer never saw the host online")
        attackers = [
            threading.Thread(
                target=attacker, daemon=True, args=("127.0.0.1", host.front, mode, stop, opened)
            )
            for _ in range(slow)
        ]
        for t in attackers:
            t.start()
        latencies: list[float | None] = []
        offline_samples = samples = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.monotonic()
            latencies.append(probe(host.url))
            for _ in range(2):
                view = shazbot.server_list(include_offline=True, app=peer_app)
                samples += 1
                offline_samples += any(s.base_url == host.url for s in view.offline)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    finally:
        stop.set()
        for t in attackers:
            t.join(2)
        shazbot.shutdown(app=peer_app)
        server.shutdown()
        host.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    answered = [x for x in latencies if x is not None]
    fast = sum(x <= 3.0 for x in answered)
    return [
        setup,
        mode,
        slow,
        len(latencies),
        f"{fast}/{len(latencies)}",
        f"{statistics.median(answered):.2f}" if answered else "-",
        f"{max(answered):.2f}" if answered else "-",
        f"{100 * offline_samples / max(samples, 1):.0f} %",
        len(left),
        opened[0],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slowclients")
    parser.add_argument("--slow", type=int, default=64, help="slow connections")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--setups", default="threads8,example,nginx")
    parser.add_argument("--modes", default="headers,body")
    args = parser.parse_args(argv)
    setups = args.setups.split(",")
    if "nginx" in setups and shutil.which("nginx") is None:
        print("nginx is not installed: skipping the nginx setup")
        setups.remove("nginx")
    print(environment())
    rows = [
        run(setup, mode, args.slow, args.seconds, args.workers)
        for setup in setups
        for mode in args.modes.split(",")
    ]
    print(
        table(
            [
                "setup",
                "trickle",
                "slow conns",
                "probes",
                "answered <= 3 s",
                "median s",
                "worst s",
                "peer saw it offline",
                "peer_left",
                "attacker connects",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
