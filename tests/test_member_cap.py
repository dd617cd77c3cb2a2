"""The member cap (issue 10, item 2) on real nodes: a flood of records never makes a
node's whole-table reply larger than its peers accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from cluster import SECRET, Node, wait_until
from flask_clustershazbot._json import encode_json

FLOOD = 40_000  # records per message: about 3 MB, under the 4 MiB body limit


def flood(node: Node, second: int) -> requests.Response:
    """One accepted gossip message of FLOOD offline records, all of loopback members."""
    now = node.engine.clock()
    records = [
        {
            "baseUrl": f"http://127.{second}.{i // 250}.{i % 250 + 1}:9/",
            "monitor": False,
            "lastUpdate": now - 1000 - i,
        }
        for i in range(FLOOD)
    ]
    body = encode_json({"online": [], "offline": records, "message": "gossip"})
    return requests.post(
        node.base_url + "clustershazbot/gossip",
        data=body,
        timeout=60,
        headers={"Authorization": SECRET, "Content-Type": "application/json"},
    )


def test_a_flood_of_offline_records_never_breaks_exchanges(make_node: Callable[..., Node]) -> None:
    a = make_node(SHAZBOT_GOSSIP_INTERVAL=0.5)
    b = make_node(SHAZBOT_GOSSIP_INTERVAL=0.5)
    wait_until(lambda: a.view().get(b.base_url) and b.view().get(a.base_url), what="convergence")
    limit = a.engine.settings.max_body_bytes

    for second in (1, 2):  # two accepted messages: together more than a reply may carry
        assert flood(a, second).status_code == 200
    table = a.view()
    assert len(table) <= 10_000  # the default SHAZBOT_MAX_MEMBERS
    assert table[a.base_url] and table[b.base_url], "this node and live peers are never evicted"
    # Every reply, and the state sent in every request, fits in what peers accept.
    reply = requests.post(
        a.base_url + "clustershazbot/gossip",
        json={"online": [], "message": "gossip"},
        headers={"Authorization": SECRET},
        timeout=30,
    )
    assert reply.status_code == 200 and len(reply.content) <= limit
    assert len(encode_json(a.engine.table.state())) <= limit
    # Exchanges between the healthy nodes go on in both directions.
    assert b.engine.rounds.attempt(a.base_url) is None, "B could not read A's reply"
    assert a.engine.rounds.attempt(b.base_url) is None, "B refused A's state"
    stats = a.engine.stats.snapshot()
    assert stats["members_refused"] > 0
    rounds = b.engine.stats.snapshot()["rounds"]
    failures = (
        a.engine.stats.snapshot()["gossip_failures"] + b.engine.stats.snapshot()["gossip_failures"]
    )
    wait_until(
        lambda: b.engine.stats.snapshot()["rounds"] >= rounds + 6,
        timeout=60,
        what="six more rounds of B",
    )
    assert (
        a.engine.stats.snapshot()["gossip_failures"] + b.engine.stats.snapshot()["gossip_failures"]
        == failures
    )
    assert a.view()[b.base_url] and b.view()[a.base_url]


def test_the_cap_is_counted_in_the_metrics(make_node: Callable[..., Node]) -> None:
    a = make_node(SHAZBOT_MAX_MEMBERS=3)
    now = a.engine.clock()
    records: list[dict[str, Any]] = [
        {"baseUrl": f"http://127.0.9.{i}:9/", "monitor": False, "lastUpdate": now - 100 * i}
        for i in range(1, 6)
    ]
    response = requests.post(
        a.base_url + "clustershazbot/gossip",
        json={"online": [], "offline": records, "message": "gossip"},
        headers={"Authorization": SECRET},
        timeout=10,
    )
    assert response.status_code == 200
    # The two newest records were kept beside this node's own; the three older refused.
    assert set(a.view()) == {a.base_url, "http://127.0.9.1:9/", "http://127.0.9.2:9/"}
    assert a.engine.stats.snapshot()["members_refused"] == 3
    # A newer record evicts the oldest offline one.
    newer = {"baseUrl": "http://127.0.9.9:9/", "monitor": False, "lastUpdate": now}
    requests.post(
        a.base_url + "clustershazbot/gossip",
        json={"online": [newer], "message": "gossip"},
        headers={"Authorization": SECRET},
        timeout=10,
    )
    assert set(a.view()) == {a.base_url, "http://127.0.9.1:9/", "http://127.0.9.9:9/"}
    assert a.engine.stats.snapshot()["members_evicted"] == 1
    # Exported like the other counters.
    from prometheus_client import CollectorRegistry, generate_latest

    from flask_clustershazbot.metrics import register

    registry = CollectorRegistry()
    register(registry)
    exported = {
        (s.labels["action"]): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.name == "clustershazbot_member_cap_total" and s.labels["node"] == a.base_url
    }
    assert exported == {"refused": 3, "evicted": 1}
