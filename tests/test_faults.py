"""Faults with real in-process nodes behind fault-injecting proxies (tests/proxy.py)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cluster import SECRET, MakeNode, MasterListServer, Node, wait_until
from flask_clustershazbot.records import ServerList
from proxy import ProxiedCluster, Proxy, Recorder


@pytest.fixture
def cluster(config: dict[str, Any]) -> Iterator[ProxiedCluster]:
    # Master-list announcements off: the shared file would otherwise bridge partitions.
    c = ProxiedCluster({**config, "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 600})
    yield c
    c.stop()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def sees(node: Node, url: str, online: bool) -> bool:
    return node.view().get(url) is online


def all_online(nodes: list[Node], urls: list[str]) -> bool:
    return all(all(n.view().get(u) is True for u in urls) for n in nodes)


def test_hung_peer_is_marked_offline_without_stalling_rounds_or_requests(
    cluster: ProxiedCluster, recorder: Recorder
) -> None:
    a, b, c = (cluster.add() for _ in range(3))
    for node in (a, b):
        recorder.watch(node)
    wait_until(lambda: all_online([a, b, c], cluster.urls), what="convergence")

    cluster.proxies[2].set("hang")  # accepts connections, never answers
    hung_at = a.engine.clock()
    wait_until(
        lambda: sees(a, c.base_url, False) and sees(b, c.base_url, False),
        what="the hung peer marked offline",
    )
    # Rounds keep running on schedule: every completed round stamps last_round.
    wait_until(
        lambda: min(a.engine.last_round or 0, b.engine.last_round or 0) > hung_at + 1000,
        what="rounds after the hang",
    )
    # The host app's own requests are answered while rounds wait on the hung peer.
    for _ in range(10):
        assert requests.get(a.server.url + "hello", timeout=5).text == "hello"
    assert {e[2] for e in recorder.left()} == {c.base_url}, "only the hung peer was reported"
    assert sees(a, b.base_url, True) and sees(b, a.base_url, True)

    cluster.proxies[2].heal()
    wait_until(lambda: all_online([a, b, c], cluster.urls), what="recovery after the hang ends")


def test_partition_each_side_marks_the_other_offline_and_heals(
    cluster: ProxiedCluster, recorder: Recorder
) -> None:
    nodes = [cluster.add() for _ in range(4)]
    for node in nodes:
        recorder.watch(node)
    urls = cluster.urls
    wait_until(lambda: all_online(nodes, urls), what="convergence")

    cluster.partition([0, 1], [2, 3])
    side = {0: [0, 1], 1: [0, 1], 2: [2, 3], 3: [2, 3]}

    def split() -> bool:
        return all(
            n.view().get(urls[j]) is (j in side[i]) for i, n in enumerate(nodes) for j in range(4)
        )

    wait_until(split, timeout=20, what="each side marks the other offline")
    same_side_alarms = [
        e for e in recorder.left() if side[urls.index(e[1])] == side[urls.index(e[2])]
    ]
    assert same_side_alarms == []

    cluster.heal()  # no manual action beyond that: offline probing finds the other side
    wait_until(lambda: all_online(nodes, urls), timeout=30, what="everyone online after heal")


def test_flapping_node_ends_in_the_right_state_everywhere(cluster: ProxiedCluster) -> None:
    a, b, _ = (cluster.add() for _ in range(3))
    url = cluster.urls[2]
    wait_until(lambda: all_online([a, b], cluster.urls), what="convergence")
    for i in range(4):
        node = cluster.nodes[2]
        node.stop(graceful=bool(i % 2))  # crash, then clean shutdown, alternately
        if i % 2:
            wait_until(lambda: sees(a, url, False), what="shutdown seen")
        cluster.restart(2)
    # It ends up: it rejoined with the same base URL.
    wait_until(lambda: all_online([a, b, cluster.nodes[2]], cluster.urls), what="rejoined")
    # It ends down: everybody says so.
    cluster.nodes[2].stop(graceful=False)
    wait_until(lambda: sees(a, url, False) and sees(b, url, False), what="final crash detected")


def test_restarted_node_rejoins_with_the_same_base_url(make_node: MakeNode) -> None:
    a = make_node()
    b = make_node()
    wait_until(lambda: sees(a, b.base_url, True), what="join")
    port = b.port
    b.stop(graceful=False)
    wait_until(lambda: sees(a, b.base_url, False), what="crash detected")
    again = make_node(port=port)  # same port, same base URL
    assert again.base_url == b.base_url
    wait_until(
        lambda: sees(a, again.base_url, True) and sees(again, a.base_url, True), what="rejoined"
    )


def skewed(offset_ms: int) -> Any:
    return lambda: int(time.time() * 1000) + offset_ms


def test_clock_skew_of_minutes_neither_flaps_nor_loses_members(
    cluster: ProxiedCluster, recorder: Recorder
) -> None:
    offsets = [0, 3 * 60_000, -3 * 60_000]  # within the default 10 min SHAZBOT_MAX_CLOCK_SKEW
    nodes = [cluster.add(clock=skewed(offset)) for offset in offsets]
    for node in nodes:
        recorder.watch(node)
    wait_until(lambda: all_online(nodes, cluster.urls), what="convergence with skewed clocks")
    settled = time.monotonic()
    # Longer than the failure timeout (2.8 s here): a frozen heartbeat would be timed out.
    wait_until(lambda: time.monotonic() - settled > 5, timeout=10, what="5 s of running")
    assert all_online(nodes, cluster.urls)
    assert recorder.left() == []


def test_records_far_in_the_future_are_ignored_and_warned_once(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    a = make_node()
    b = make_node()
    wait_until(lambda: sees(a, b.base_url, True), what="join")
    future = a.engine.clock() + 3600_000  # 1 h ahead; SHAZBOT_MAX_CLOCK_SKEW is 10 min
    liar = "http://127.0.0.1:9/"
    message = {
        "message": "gossip",
        "online": [{"baseUrl": liar, "monitor": True, "lastUpdate": future}],
        "offline": [{"baseUrl": b.base_url, "monitor": False, "lastUpdate": future}],
    }
    for _ in range(3):
        r = requests.post(
            a.base_url + "clustershazbot/gossip",
            json=message,
            headers={"Authorization": SECRET},
            timeout=5,
        )
        assert r.status_code == 200
    # Neither pinned: b stays online, the liar never enters.
    assert sees(a, b.base_url, True)
    assert liar not in a.view()
    warnings = [r for r in caplog.records if "too far in the future" in r.getMessage()]
    assert sorted(r.args[0] for r in warnings) == sorted([liar, b.base_url])  # type: ignore[index, type-var]


def test_a_node_with_a_clock_hours_ahead_cannot_pin_its_records(cluster: ProxiedCluster) -> None:
    a, b = cluster.add(), cluster.add()
    ahead = cluster.add(clock=skewed(2 * 3600_000))
    # It hears from the others (their records are in its past); they ignore all it says.
    wait_until(
        lambda: sees(ahead, a.base_url, True) and sees(ahead, b.base_url, True),
        what="the skewed node learns the cluster",
    )
    since = a.engine.clock()
    wait_until(
        lambda: min(a.engine.last_round or 0, b.engine.last_round or 0) > since + 2000,
        what="2 s of rounds with the skewed node around",
    )
    assert ahead.base_url not in a.view() and ahead.base_url not in b.view()
    assert all_online([a, b], cluster.urls[:2])


def test_purged_record_is_not_brought_back_by_a_peer_that_still_holds_it(
    cluster: ProxiedCluster,
) -> None:
    # a forgets offline records after 3 s; b keeps them (24 h default).
    a = cluster.add(SHAZBOT_RETENTION=3, SHAZBOT_FAILURE_TIMEOUT=1.5)
    b = cluster.add(SHAZBOT_FAILURE_TIMEOUT=1.5)
    c = cluster.add(SHAZBOT_FAILURE_TIMEOUT=1.5)
    gone = c.base_url
    wait_until(lambda: all_online([a, b, c], cluster.urls), what="convergence")
    c.stop(graceful=False)
    wait_until(lambda: sees(a, gone, False) and sees(b, gone, False), what="crash detected")
    wait_until(lambda: gone not in a.view(), timeout=10, what="a purges the record")
    # b's own offline record of c may be stamped a little later than a's: let it age too.
    stamp = next(s.last_update for s in b.engine.server_list().offline if s.base_url == gone)
    wait_until(lambda: a.engine.clock() > stamp + 3000, what="b's record older than a's retention")

    # b still holds it and gossips it to a, in rounds and explicitly.
    assert sees(b, gone, False)
    held = b.engine.server_list().gossip_message()
    r = requests.post(
        a.base_url + "clustershazbot/gossip",
        json=held,
        headers={"Authorization": SECRET},
        timeout=5,
    )
    assert r.status_code == 200
    rounds = a.engine.last_round
    wait_until(lambda: a.engine.last_round > rounds + 1000, what="a few rounds of a")
    assert gone not in a.view()
    assert gone not in json.dumps(r.json())


# -- master list ---------------------------------------------------------------


def test_unreachable_master_list_at_start_node_serves_retries_and_joins(
    http_config: dict[str, Any],
    master_server: MasterListServer,
    make_node: MakeNode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    b = make_node(base=http_config)
    wait_until(lambda: master_server.puts > 0, what="b announces itself")
    gate = Proxy(master_server.server.port)
    gate.set("drop")
    try:
        a = make_node(base={**http_config, "SHAZBOT_MASTER_LIST": gate.url + "master.json"})
        # It serves at once, alone.
        assert requests.get(a.base_url + "hello", timeout=5).text == "hello"
        assert requests.get(a.base_url + "clustershazbot/list", timeout=5).status_code == 200
        wait_until(
            lambda: any("retrying in" in r.getMessage() for r in caplog.records),
            what="a logged download failure with its retry delay",
        )
        assert b.base_url not in a.view()
        gate.heal()
        wait_until(
            lambda: sees(a, b.base_url, True) and sees(b, a.base_url, True),
            timeout=20,
            what="a joins once the master list is back",
        )
    finally:
        gate.stop()


BAD_MASTER_LISTS = [
    ("404", 404, b"not here", "HTTP 404"),
    ("html", 200, b"<html><body>Bad gateway</body></html>", "not valid JSON"),
    ("truncated", 200, b'{"online": [{"baseUrl": "http://127.0.0.1:7/", "mon', "not valid JSON"),
    ("huge", 200, b'{"online": [], "pad": "' + b"x" * 8000 + b'"}', "larger than 4096 bytes"),
    ("array", 200, b"[]", "must be a JSON object"),
    ("online not a list", 200, b'{"online": {"a": 1}}', "online must be a list"),
    (
        "one bad record",
        200,
        b'{"online": [{"baseUrl": "http://127.0.0.1:7/", "monitor": false, "lastUpdate": 1},'
        b' {"baseUrl": "http://127.0.0.1:8/", "monitor": false, "lastUpdate": "soon"}]}',
        "online[1].lastUpdate",
    ),
]


def test_bad_master_lists_are_logged_and_change_nothing(
    http_config: dict[str, Any],
    master_server: MasterListServer,
    make_node: MakeNode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = {
        **http_config,
        "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 600,
        "SHAZBOT_MAX_BODY_BYTES": 4096,
    }
    b = make_node(base=settings)
    b.engine.announce()
    a = make_node(base=settings)
    wait_until(lambda: sees(a, b.base_url, True), what="a joins through the master list")
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    # Count the uploads this thread's announce() makes: both nodes' listing checks from their
    # start may still run in the background, and one that reads a list with a bad record
    # and finds itself unlisted claims its place again (the master server counts those too).
    uploads, write = [0], a.engine.master_list.publish

    def counted(servers: ServerList) -> None:
        write(servers)
        if threading.current_thread() is threading.main_thread():
            uploads[0] += 1

    a.engine.master_list.publish = counted
    for name, status, body, reason in BAD_MASTER_LISTS:
        before, puts = a.view(), uploads[0]
        with master_server.lock:
            master_server.body, master_server.fail_with = body, (status if status != 200 else None)
        caplog.clear()
        a.engine.announce()
        lines = [r.getMessage() for r in caplog.records if "master list" in r.getMessage()]
        assert any(reason in line for line in lines), (name, lines)
        assert a.view().keys() == before.keys(), name
        if name == "one bad record":
            # The list is still an object with a list: the update drops the bad record, so
            # that one bad entry cannot block the list for good.
            assert uploads[0] == puts + 1, name
            assert b'"soon"' not in master_server.body and a.base_url.encode() in master_server.body
        else:
            assert uploads[0] == puts, f"{name}: nothing uploaded after a failed download"
    assert "http://127.0.0.1:7/" not in a.view()


def test_concurrent_writers_never_leave_a_torn_master_list(
    config: dict[str, Any], make_node: MakeNode, tmp_path: Path
) -> None:
    path = tmp_path / "master.json"
    busy = {
        **config,
        "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 0.0,
        "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": 0.05,
    }
    nodes = [make_node(base=busy) for _ in range(6)]
    contents: set[bytes] = set()
    for _ in range(2000):  # bounded: about 10 s at most
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            continue
        ServerList.from_dict(json.loads(body))  # raises on a torn or invalid file
        contents.add(body)
        if len(contents) >= 50 and len(json.loads(body)["online"]) == len(nodes):
            break
        time.sleep(0.005)
    assert len(contents) >= 50, "the nodes kept rewriting the file meanwhile"
    for node in nodes:
        node.stop()
    # A write begun just before a stop still finishes (its job is not killed): then
    # its temp file must be gone, renamed over the list, not left behind.
    wait_until(
        lambda: not [p for p in tmp_path.iterdir() if p.name.startswith(".master.json")],
        timeout=5,
        what="no temp files left",
    )
    ServerList.from_dict(json.loads(path.read_bytes()))


@pytest.mark.parametrize("failure", ["401", "500"])
def test_rejected_master_list_upload_is_logged_and_retried(
    http_config: dict[str, Any],
    master_server: MasterListServer,
    make_node: MakeNode,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    settings = {
        **http_config,
        "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 0.2,
        "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": 0.2,
    }
    if failure == "401":
        settings["SHAZBOT_MASTER_LIST_UPDATE_AUTH"] = "wrong-token-that-must-not-be-logged"
    else:
        master_server.fail_puts_with = 500
    a = make_node(base=settings)
    wait_until(
        lambda: master_server.rejected_puts >= 3, what="the upload retried on later announcements"
    )
    lines = [r.getMessage() for r in caplog.records]
    expected = f"SHAZBOT_MASTER_LIST_UPDATE {master_server.url}: PUT answered HTTP {failure}"
    assert any(expected in line for line in lines)
    assert not any("wrong-token" in line for line in lines)
    assert master_server.puts == 0
    if failure == "500":
        master_server.fail_puts_with = None
        wait_until(lambda: master_server.puts > 0, what="upload succeeds once the server recovers")
        assert a.base_url in master_server.body.decode()


def test_hung_master_list_does_not_stop_gossip(
    http_config: dict[str, Any], master_server: MasterListServer, make_node: MakeNode
) -> None:
    gate = Proxy(master_server.server.port)
    try:
        settings = {
            **http_config,
            "SHAZBOT_MASTER_LIST": gate.url + "master.json",
            "SHAZBOT_MASTER_LIST_UPDATE": gate.url + "master.json",
            "SHAZBOT_MASTER_LIST_TIMEOUT": 1.0,
        }
        a, b = make_node(base=settings), make_node(base=settings)
        wait_until(lambda: sees(a, b.base_url, True) and sees(b, a.base_url, True), what="join")
        gate.set("hang")
        hung_at = a.engine.clock()
        done = threading.Event()
        threading.Thread(target=lambda: (a.engine.announce(), done.set()), daemon=True).start()  # type: ignore[func-returns-value]
        wait_until(done.is_set, what="announce gives up on the hung master list")
        wait_until(lambda: a.engine.last_round > hung_at + 1500, what="rounds keep running")
        assert sees(a, b.base_url, True) and sees(b, a.base_url, True)
    finally:
        gate.stop()
