"""Faults that need a real process: SIGKILL mid-gossip, SIGSTOP longer than the failure timeout."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cluster import CONTROL, SECRET, MakeNode, kill_processes, wait_until
from flask_clustershazbot.demo import start_node, view

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")

FAILURE_TIMEOUT = 2.0


@pytest.fixture
def spawn(
    config: dict[str, Any], tmp_path: Path
) -> Iterator[Callable[..., tuple[subprocess.Popen[str], str, Path]]]:
    """spawn() starts a node process sharing the in-process nodes' file master list."""
    procs: list[subprocess.Popen[str]] = []

    def start(log_name: str = "node.log") -> tuple[subprocess.Popen[str], str, Path]:
        log = tmp_path / log_name
        proc, port = start_node(
            config["SHAZBOT_MASTER_LIST"],
            0.2,
            env={"SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL},
            options={
                "SHAZBOT_RETRY_DELAY": 0.2,
                "SHAZBOT_REQUEST_TIMEOUT": 1.0,
                "SHAZBOT_FAILURE_TIMEOUT": FAILURE_TIMEOUT,
            },
            log_path=str(log),
        )
        procs.append(proc)
        return proc, f"http://127.0.0.1:{port}/", log

    yield start
    kill_processes(procs)


def port_of(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def test_sigkill_during_gossip_is_detected_and_nobody_hangs(
    make_node: MakeNode, spawn: Callable[..., tuple[subprocess.Popen[str], str, Path]]
) -> None:
    a = make_node(SHAZBOT_FAILURE_TIMEOUT=FAILURE_TIMEOUT)
    b = make_node(SHAZBOT_FAILURE_TIMEOUT=FAILURE_TIMEOUT)
    proc, url, _ = spawn()
    wait_until(lambda: a.view().get(url) and b.view().get(url), what="the process joins")
    # Traffic flows both ways every 0.2 s: the kill lands in the middle of exchanges.
    wait_until(lambda: (view(port_of(url), CONTROL) or {}).get(a.base_url), what="it knows a")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed_at = a.engine.clock()
    wait_until(
        lambda: a.view().get(url) is False and b.view().get(url) is False,
        what="both mark the killed node offline",
    )
    wait_until(
        lambda: min(a.engine.last_round or 0, b.engine.last_round or 0) > killed_at + 1000,
        what="rounds go on",
    )
    assert a.view().get(b.base_url) and b.view().get(a.base_url)
    assert requests.get(a.base_url + "hello", timeout=5).text == "hello"


@pytest.mark.xfail(
    "-fc-" in platform.release(),
    reason="on this Firecracker VM kernel the threads of a node process that sleep with a "
    "timeout when it is stopped (SIGSTOP) never wake again after SIGCONT: its rounds end, "
    "so it logs no stall. Seen identically on the code before this round (8251835); not "
    "reproduced by a plain werkzeug or APScheduler process; see the closing note",
    strict=False,
)
def test_paused_node_blames_nobody_and_refutes_its_offline_record(
    make_node: MakeNode, spawn: Callable[..., tuple[subprocess.Popen[str], str, Path]]
) -> None:
    a = make_node(SHAZBOT_FAILURE_TIMEOUT=FAILURE_TIMEOUT)
    b = make_node(SHAZBOT_FAILURE_TIMEOUT=FAILURE_TIMEOUT)
    proc, url, log = spawn()
    port = port_of(url)
    wait_until(lambda: a.view().get(url) and b.view().get(url), what="the process joins")
    wait_until(
        lambda: (v := view(port, CONTROL)) and v.get(a.base_url) and v.get(b.base_url),
        what="it knows both peers",
    )

    os.kill(proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    wait_until(
        lambda: a.view().get(url) is False and b.view().get(url) is False,
        what="the peers mark the paused node offline",
    )
    wait_until(lambda: time.monotonic() - stopped > FAILURE_TIMEOUT + 1.5, what="a long pause")
    mark = log.stat().st_size
    os.kill(proc.pid, signal.SIGCONT)

    wait_until(
        lambda: a.view().get(url) and b.view().get(url), what="it refutes its offline record"
    )
    woke = time.monotonic()
    wait_until(lambda: time.monotonic() - woke > FAILURE_TIMEOUT + 1, what="rounds after waking")
    after = log.read_bytes()[mark:].decode()
    assert "stalled" in after, "it noticed its own pause"
    assert "peer offline" not in after, f"it blamed a healthy peer:\n{after}"
    v = view(port, CONTROL)
    assert v is not None and v.get(a.base_url) and v.get(b.base_url)
