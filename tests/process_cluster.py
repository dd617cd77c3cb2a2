"""Node processes (``tests/signal_node.py``) for fault tests, and what their apps saw.

:class:`NodeProcess` is one node in its own OS process, with its log and signals files;
it can be killed and restarted on the same port (so the same base URL). With a proxy
(``tests/proxy.py``) in front of it and its own source address, the test can cut it off
from chosen peers. Views are read over HTTP from the node's own port, with the control
secret, past any proxy.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

from cluster import CONTROL, SECRET, host_env

SCRIPT = Path(__file__).with_name("signal_node.py")
ENV = {"SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL}


class NodeProcess:
    """One ``signal_node.py`` process; ``start()`` again after a kill restarts it on its port."""

    def __init__(
        self,
        directory: Path,
        name: str,
        master: str,
        interval: float,
        options: dict[str, Any] | None = None,
        monitor: bool = False,
        base_url: str | None = None,
        source: str | None = None,
        refuse_port: int | None = None,
        port: int = 0,
    ) -> None:
        """``port``: 0 for any; a restart keeps the port the first start got."""
        self.name = name
        self.master = master
        self.interval = interval
        self.options = options or {}
        self.monitor = monitor
        self.base_url = base_url
        self.source = source
        self.refuse_port = refuse_port
        self.log_path = directory / f"{name}.log"
        self.signals_path = directory / f"{name}.signals"
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The node's base URL (its identity): the proxy's, or its own address."""
        return self.base_url or f"http://127.0.0.1:{self.port}/"

    def spawn(self) -> None:
        """Start the process; :meth:`ready` waits for it to serve."""
        cmd = [sys.executable, "-u", str(SCRIPT), "--master", self.master]
        cmd += ["--port", str(self.port), "--interval", str(self.interval)]
        if self.monitor:
            cmd.append("--monitor")
        for flag, value in (
            ("--base-url", self.base_url),
            ("--source", self.source),
            ("--refuse-port", self.refuse_port),
        ):
            if value is not None:
                cmd += [flag, str(value)]
        cmd += ["--signals", str(self.signals_path)]
        for key, value in self.options.items():
            cmd += ["--option", f"{key}={value}"]
        # Only the test's settings: none of the developer's or the soak's SHAZBOT_* variables.
        env = {k: v for k, v in host_env(ENV).items() if k in ENV or not k.startswith("SHAZBOT_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )

    def ready(self, timeout: float = 30.0) -> None:
        """Wait for ``READY <port>``; raise with the log's tail if it does not come."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([proc.stdout], [], [], left)[0]:
                break  # no line within the deadline: readline() alone could wait forever
            line = proc.stdout.readline()
            if line.startswith("READY "):
                self.port = int(line.split()[1])
                return
            if not line and proc.poll() is not None:
                break
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise AssertionError(f"{self.name} did not start (exit {proc.poll()}):\n{tail}")

    def start(self) -> NodeProcess:
        self.spawn()
        self.ready()
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL (a crash: no announcement) or SIGTERM (a clean shutdown), and reap it."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def raw_list(self, control: bool = True) -> str | None:
        """The body of its /clustershazbot/list (``control``: with the control secret, so
        offline records too); None if it does not answer within 5 s."""
        try:
            r = requests.get(
                f"http://127.0.0.1:{self.port}/clustershazbot/list",
                headers={"Authorization": CONTROL} if control else {},
                timeout=5,
            )
        except requests.RequestException:
            return None
        return r.text if r.status_code == 200 else None

    def view(self) -> dict[str, bool] | None:
        """Its view {base_url: online}, offline records included; None if it does not answer."""
        text = self.raw_list()
        if text is None:
            return None
        data = json.loads(text)
        view = {s["baseUrl"]: True for s in data["online"]}
        view.update({s["baseUrl"]: False for s in data["offline"]})
        return view

    def online(self) -> set[str] | None:
        """The members it lists online (the public list: small, whatever the offline ones);
        None if it does not answer."""
        text = self.raw_list(control=False)
        return None if text is None else {s["baseUrl"] for s in json.loads(text)["online"]}

    def signals(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every signal its app received (across restarts), oldest first."""
        if not self.signals_path.exists():
            return []
        lines = self.signals_path.read_text().splitlines()
        events = [json.loads(line) for line in lines if line.strip()]
        return [e for e in events if kind in (None, e["kind"])]

    def log_lines(self, *needles: str) -> list[str]:
        """Lines of its log holding any of ``needles``."""
        if not self.log_path.exists():
            return []
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if any(n in line for n in needles)]


def lasting_port(rng: random.Random) -> int:
    """A free port below the kernel's ephemeral range (32768 and up on Linux): a node restarted
    on it finds it free, as no outgoing connection of anyone is given it meanwhile."""
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port between 20000 and 32767")


def start_all(nodes: Iterable[NodeProcess]) -> None:
    """Start processes side by side (each takes a second or so to import Flask)."""
    nodes = list(nodes)
    for node in nodes:
        node.spawn()
    for node in nodes:
        node.ready()


def stop_all(nodes: Iterable[NodeProcess]) -> None:
    """At teardown: kill whatever still runs (a stopped one is continued first)."""
    for node in nodes:
        if node.running:
            assert node.proc is not None
            os.kill(node.proc.pid, signal.SIGCONT)
        node.kill(signal.SIGKILL)


def incomplete(nodes: Iterable[NodeProcess], expected: set[str]) -> str | None:
    """What keeps ``nodes`` from each listing exactly ``expected`` online, or None."""
    for node in nodes:
        online = node.online()
        if online is None:
            return f"{node.name} did not answer /list within 5 s"
        if online != expected:
            missing, extra = sorted(expected - online), sorted(online - expected)
            return f"{node.name} lists online {len(online)}: missing {missing}, extra {extra}"
    return None


def complete(nodes: Iterable[NodeProcess], expected: set[str]) -> bool:
    """Whether every one of ``nodes`` lists exactly ``expected`` online."""
    return incomplete(nodes, expected) is None


def evidence(nodes: Iterable[NodeProcess], since: float = 0.0, until: float = 1e12) -> str:
    """The verdict trail of the nodes' logs from ``since`` to ``until`` (time.time()), for a
    failure message (its last 200 lines): who judged whom and why, transitions, failed
    exchanges, refutations, stalls."""
    needles = ("does not answer", "peer o", "gossip with", "stalled", "refut", "reached it")
    out = []
    for node in nodes:
        for line in node.log_lines(*needles):
            try:
                at = float(line.split(" ", 1)[0])
            except ValueError:
                continue
            if since <= at <= until:
                out.append((at, f"{at:.3f} [{node.name} {node.url}] {line.split(' ', 1)[1]}"))
    return "\n".join(text for _, text in sorted(out)[-200:])
