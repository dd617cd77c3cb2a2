"""A mixed cluster: Python nodes and Node.js nodes that speak the original's wire format."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cluster import CONTROL, SECRET, MakeNode, wait_until
from test_cluster import offline_everywhere, online_everywhere

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed")


def start_seed_peer(master: str, interval: float) -> tuple[subprocess.Popen[str], str]:
    assert NODE is not None  # the module is skipped without it
    proc = subprocess.Popen(
        [NODE, str(Path(__file__).with_name("seed_peer.js")), master, str(interval)],
        stdout=subprocess.PIPE,
        text=True,
        env={"SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL, "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY "), line
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/"


def seed_view(url: str) -> dict[str, bool]:
    import requests

    data = requests.get(
        url + "clustershazbot/list", headers={"Authorization": CONTROL}, timeout=5
    ).json()
    view = {s["baseUrl"]: True for s in data["online"]}
    view.update({s["baseUrl"]: False for s in data["offline"]})
    return view


def test_python_and_seed_nodes_gossip_in_one_cluster(
    make_node: MakeNode, config: dict[str, Any]
) -> None:
    nodes = [make_node(SHAZBOT_MONITOR=(i == 0)) for i in range(3)]
    urls = {n.base_url for n in nodes}
    wait_until(lambda: online_everywhere(nodes, urls), what="python nodes converge")
    seeds = [start_seed_peer(config["SHAZBOT_MASTER_LIST"], 0.2) for _ in range(2)]
    try:
        everyone = urls | {url for _, url in seeds}
        # Python nodes learn the nodes of the original (which only announce through gossip) ...
        wait_until(
            lambda: online_everywhere(nodes, everyone),
            what="nodes of the original known by python nodes",
        )
        # ... and the nodes of the original learn every Python node and each other.
        wait_until(
            lambda: all({u for u, on in seed_view(s).items() if on} == everyone for _, s in seeds),
            what="python nodes known by nodes of the original",
        )
        # a node of the original dies: the Python nodes detect it
        proc, dead = seeds[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(
            lambda: offline_everywhere(nodes, dead), what="dead node of the original detected"
        )
    finally:
        for proc, _ in seeds:
            proc.kill()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()


def test_a_crashed_python_node_is_detected_by_seed_and_python_nodes(
    make_node: MakeNode, config: dict[str, Any]
) -> None:
    # Python nodes ask nodes of the original for indirect probes too; a node of the original answers 404 ("no answer").
    nodes = [make_node() for _ in range(3)]
    urls = {n.base_url for n in nodes}
    master = Path(config["SHAZBOT_MASTER_LIST"])
    # Nodes of the original learn members from the master list only: wait until it names every node.
    wait_until(
        lambda: master.exists() and all(u in master.read_text() for u in urls),
        what="the master list names the python nodes",
    )
    seeds = [start_seed_peer(str(master), 0.2) for _ in range(2)]
    try:
        everyone = urls | {url for _, url in seeds}
        wait_until(lambda: online_everywhere(nodes, everyone), what="python nodes know everyone")
        wait_until(
            lambda: all({u for u, on in seed_view(s).items() if on} == everyone for _, s in seeds),
            what="nodes of the original know everyone",
        )
        dead = nodes[2]
        dead.stop(graceful=False)  # no announcement: connections are refused from now on
        wait_until(
            lambda: offline_everywhere(nodes[:2], dead.base_url),
            what="python nodes detect the crash",
        )
        wait_until(
            lambda: all(seed_view(s).get(dead.base_url) is False for _, s in seeds),
            what="nodes of the original detect the crash",
        )
    finally:
        for proc, _ in seeds:
            proc.kill()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()
