"""Issue 2 end to end: real Flask nodes under threaded WSGI servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from flask import Flask

from cluster import CONTROL, SECRET, MakeNode, MasterListServer, Node, wait_until
from flask_clustershazbot import GossipServer, peer_joined, peer_left
from flask_clustershazbot.demo import start_node
from flask_clustershazbot.engine import wall_clock_ms


def online_everywhere(nodes: list[Node], urls: set[str]) -> bool:
    return all({u for u, on in n.view().items() if on} == urls for n in nodes)


def offline_everywhere(nodes: list[Node], url: str) -> bool:
    return all(n.view().get(url) is False for n in nodes)


def rounds_pass(node: Node, count: int) -> None:
    """Wait until ``node`` has completed ``count`` more gossip rounds."""
    seen = {node.engine.last_round}
    wait_until(lambda: seen.add(node.engine.last_round) or len(seen) > count, what="rounds")  # type: ignore[func-returns-value]


def test_five_nodes_converge_through_a_file_master_list(
    make_node: MakeNode, config: dict[str, Any]
) -> None:
    nodes = [make_node(SHAZBOT_MONITOR=(i == 0)) for i in range(5)]
    urls = {n.base_url for n in nodes}
    wait_until(lambda: online_everywhere(nodes, urls), what="all five online everywhere")
    # the same view is served over HTTP, and the master list file is valid JSON naming members
    assert {u for u, on in nodes[3].http_view().items() if on} == urls
    master = json.loads(Path(config["SHAZBOT_MASTER_LIST"]).read_text())
    assert {s["baseUrl"] for s in master["online"]} <= urls
    assert master["online"]


def test_http_master_list_bootstraps_a_late_joiner(
    make_node: MakeNode, http_config: dict[str, Any], master_server: MasterListServer
) -> None:
    nodes = [make_node(base=http_config) for _ in range(4)]
    urls = {n.base_url for n in nodes}
    wait_until(lambda: online_everywhere(nodes, urls), what="four nodes converge")
    wait_until(lambda: master_server.puts > 0, what="an authorised PUT of the master list")
    assert master_server.rejected_puts == 0
    listed = {s["baseUrl"] for s in json.loads(master_server.body)["online"]}
    assert listed and listed <= urls
    # a fifth node knows nobody but the master list URL, and joins everywhere
    late = make_node(base=http_config)
    nodes.append(late)
    urls.add(late.base_url)
    wait_until(lambda: online_everywhere(nodes, urls), what="the late joiner known by all")


def test_a_node_killed_with_sigkill_is_detected_by_all(
    make_node: MakeNode, config: dict[str, Any], tmp_path: Path
) -> None:
    nodes = [make_node(SHAZBOT_MONITOR=(i == 0)) for i in range(4)]
    env = {"SHAZBOT_SECRET": SECRET, "SHAZBOT_CONTROL_SECRET": CONTROL}
    proc, port = start_node(
        config["SHAZBOT_MASTER_LIST"],
        0.2,
        env=env,
        options={"SHAZBOT_RETRY_DELAY": 0.2},
        log_path=str(tmp_path / "victim.log"),
    )
    victim = f"http://127.0.0.1:{port}/"
    try:
        urls = {n.base_url for n in nodes} | {victim}
        wait_until(lambda: online_everywhere(nodes, urls), what="the process node joins")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(
            lambda: offline_everywhere(nodes, victim), what="the killed node offline everywhere"
        )
        assert online_everywhere(nodes, urls - {victim})
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_graceful_shutdown_is_announced_to_all(make_node: MakeNode) -> None:
    # Failure detection made very slow: only the shutdown announcement can explain what follows.
    slow = {"SHAZBOT_FAILURE_TIMEOUT": 300, "SHAZBOT_RETRY_DELAY": 300}
    nodes = [make_node(**slow) for _ in range(5)]
    urls = {n.base_url for n in nodes}
    wait_until(lambda: online_everywhere(nodes, urls), what="convergence")
    leaving = nodes.pop()
    leaving.stop(graceful=True)
    wait_until(
        lambda: offline_everywhere(nodes, leaving.base_url),
        timeout=10,
        what="the announced shutdown seen by all",
    )
    leaving.engine.shutdown()  # idempotent


def control(node: Node, online: bool, secret: str = CONTROL) -> requests.Response:
    return requests.post(
        node.base_url + "clustershazbot/control",
        timeout=5,
        json={"message": "control", "online": online},
        headers={"Authorization": secret},
    )


def test_control_offline_is_sticky_until_online_again(make_node: MakeNode) -> None:
    nodes = [make_node() for _ in range(4)]
    urls = {n.base_url for n in nodes}
    wait_until(lambda: online_everywhere(nodes, urls), what="convergence")
    target = nodes[1]
    assert control(target, False, secret="wrong").status_code == 401
    assert control(target, False).json() == {"success": True}
    wait_until(lambda: offline_everywhere(nodes, target.base_url), what="offline everywhere")
    # it keeps gossiping and answering, yet no heartbeat brings it back
    for node in nodes:
        rounds_pass(node, 5)
    assert offline_everywhere(nodes, target.base_url)
    assert control(target, True).json() == {"success": True}
    wait_until(lambda: online_everywhere(nodes, urls), what="online again everywhere")


def test_signals_fire_once_per_transition(make_node: MakeNode) -> None:
    events: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def record(kind: str) -> Callable[[Flask, GossipServer], None]:
        def receiver(app: Flask, server: GossipServer) -> None:
            assert isinstance(server, GossipServer)
            with lock:
                events.append((app.name, kind, server.base_url))

        return receiver

    on_join, on_leave = record("joined"), record("left")
    peer_joined.connect(on_join)
    peer_left.connect(on_leave)
    try:
        nodes = [make_node(SHAZBOT_FAILURE_TIMEOUT=300) for _ in range(4)]
        urls = {n.base_url for n in nodes}
        names = {n.app.name: n.base_url for n in nodes}
        wait_until(lambda: online_everywhere(nodes, urls), what="convergence")
        leaving = nodes.pop()
        leaving.stop(graceful=True)
        wait_until(lambda: offline_everywhere(nodes, leaving.base_url), what="leave seen")
        for node in nodes:
            rounds_pass(node, 5)  # time for any duplicate to show up
        with lock:
            counts = Counter(events)
        expected: Counter[tuple[str, str, str]] = Counter()
        for name, url in names.items():
            for peer in urls - {url}:
                expected[(name, "joined", peer)] = 1
        for node in nodes:
            expected[(node.app.name, "left", leaving.base_url)] = 1
        # the leaving node may or may not have seen others leave nothing; it saw joins only
        assert counts == expected
    finally:
        peer_joined.disconnect(on_join)
        peer_left.disconnect(on_leave)


def test_a_false_offline_rumour_is_refuted(make_node: MakeNode) -> None:
    nodes = [make_node(SHAZBOT_FAILURE_TIMEOUT=300) for _ in range(4)]
    urls = {n.base_url for n in nodes}
    wait_until(lambda: online_everywhere(nodes, urls), what="convergence")
    victim, liar_target = nodes[2], nodes[0]
    rumour_stamp = wall_clock_ms() + 2000
    rumour = {
        "message": "gossip",
        "online": [],
        "offline": [{"baseUrl": victim.base_url, "monitor": False, "lastUpdate": rumour_stamp}],
    }
    reply = requests.post(
        liar_target.base_url + "clustershazbot/gossip",
        json=rumour,
        timeout=5,
        headers={"Authorization": SECRET},
    )
    assert reply.status_code == 200
    assert liar_target.view()[victim.base_url] is False  # the rumour was believed for a moment
    wait_until(lambda: online_everywhere(nodes, urls), what="the rumour refuted everywhere")
    own = victim.shazbot.server_list(app=victim.app).online
    assert [s.last_update for s in own if s.base_url == victim.base_url][0] > rumour_stamp


FORK_SCRIPT = r"""
import os, sys, time
from flask import Flask
from flask_clustershazbot import ClusterShazbot
app = Flask("forked")
app.config.update(SHAZBOT_SECRET="s" * 20, SHAZBOT_CONTROL_SECRET="c" * 20,
                  SHAZBOT_BASE_URL="http://127.0.0.1:9/", SHAZBOT_MASTER_LIST=sys.argv[1],
                  SHAZBOT_GOSSIP_INTERVAL=0.1, SHAZBOT_MASTER_ANNOUNCE_MINIMUM=0.1,
                  SHAZBOT_MASTER_ANNOUNCE_INTERVAL=0.1,
                  SHAZBOT_SELF_CHECK=False)  # nothing serves its base URL
ClusterShazbot(app)
engine = app.extensions["clustershazbot"]
deadline = time.monotonic() + 10
while engine.last_round is None and time.monotonic() < deadline:
    time.sleep(0.05)
pid = os.fork()
if pid == 0:
    first = engine.last_round
    while engine.last_round == first and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    os._exit(0 if engine.last_round != first else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_rounds_keep_running_in_a_process_forked_after_start(tmp_path: Path) -> None:
    """gunicorn --preload forks after start: the child's schedules must run again."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(tmp_path / "m.json")],
        capture_output=True,
        timeout=60,
        env=os.environ,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
