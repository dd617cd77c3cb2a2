"""The cached wire form of the table always equals a fresh serialisation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask_clustershazbot._json import encode_json
from flask_clustershazbot.membership import Membership
from flask_clustershazbot.records import GossipServer, ServerList

NOW = 1_700_000_000_000
DAY = 86_400_000


def fresh(m: Membership) -> dict[str, Any]:
    # The reply's bytes, joined from cached pieces, are the encoding of the same message.
    assert m.gossip_body() == encode_json(m.server_list().gossip_message())
    return m.server_list().gossip_message()


def test_every_change_shows_in_the_next_message() -> None:
    m = Membership("http://me:1/", False, NOW, 0.0)
    m.running = True
    m.heartbeat(NOW, 0.0)
    assert m.gossip_message() == fresh(m)
    peers = [GossipServer(f"http://p{i}:1/", i == 0, NOW + i) for i in range(5)]
    m.merge(ServerList(tuple(peers[:3]), tuple(peers[3:])), NOW + 10, 1.0, 600_000, DAY)
    assert m.gossip_message() == fresh(m)
    first = m.gossip_message()
    m.heartbeat(NOW + 20, 2.0)  # our own record changes
    m.merge(
        ServerList((GossipServer("http://p1:1/", False, NOW + 30),)), NOW + 40, 3.0, 600_000, DAY
    )
    m.mark_offline("http://p2:1/", NOW + 50, 4.0)
    after = m.gossip_message()
    assert after == fresh(m)
    assert after != first
    assert {"baseUrl": "http://p2:1/", "monitor": False, "lastUpdate": NOW + 50} in after["offline"]
    m.cleanup(NOW + 2 * DAY, DAY)
    assert m.gossip_message() == fresh(m)
    assert [s["baseUrl"] for s in m.gossip_message()["offline"]] == []


def test_the_reply_follows_changes_another_process_made(tmp_path: Path) -> None:
    from flask_clustershazbot.sqlite_store import SqliteStore

    def store() -> SqliteStore:
        return SqliteStore(
            str(tmp_path / "state"), Membership("http://me:1/", False, NOW, 0.0), host_id="run"
        )

    one, two = store(), store()
    one.transact(
        lambda m: m.merge(
            ServerList((GossipServer("http://p1:1/", False, NOW),)), NOW, 1.0, 600_000, DAY
        )
    )
    assert b"http://p1:1/" in two.transact(lambda m: (fresh(m), m.gossip_body())[1])
    # An incremental reload replaces entries in place: the cached reply must follow.
    one.transact(lambda m: m.mark_offline("http://p1:1/", NOW + 5, 2.0))
    body = json.loads(two.transact(lambda m: (fresh(m), m.gossip_body())[1]))
    assert {"baseUrl": "http://p1:1/", "monitor": False, "lastUpdate": NOW + 5} in body["offline"]
    one.transact(lambda m: m.cleanup(NOW + 2 * DAY, DAY))  # a purge: a full reload
    assert b"http://p1:1/" not in two.transact(lambda m: (fresh(m), m.gossip_body())[1])
