"""Members the master list names are hints until confirmed alive: real nodes on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cluster import Node, wait_until
from proxy import Proxy, Recorder


def test_a_second_address_of_a_member_never_becomes_a_member(
    config: dict[str, Any], tmp_path: Path, make_node: Any
) -> None:
    """A master list (a DNS name with a dual-stack pod's second address, say) names one node
    twice. The second address answers as the node under its own base URL: it is not a
    member under the other one, so it never enters the view, owns nothing and fires no
    signal (it used to be "confirmed" by gossip and own keys until its tombstone)."""
    master = tmp_path / "master.json"
    b = make_node(SHAZBOT_MASTER_LIST=str(master), SHAZBOT_MASTER_ANNOUNCE_MINIMUM=600)
    second = Proxy(b.port)  # another address that leads to b
    try:
        now = b.engine.clock()
        records = [
            {"baseUrl": u, "monitor": False, "lastUpdate": now} for u in (b.base_url, second.url)
        ]
        master.write_text(json.dumps({"online": records}))
        recorder = Recorder()
        a = Node({**config, "SHAZBOT_MASTER_LIST": str(master), "SHAZBOT_AUTOSTART": False})
        try:
            recorder.watch(a)
            a.engine.start()
            wait_until(lambda: a.view().get(b.base_url) is True, what="b joins a's view")
            # Every round tries the hint until it is settled: dropped, as it answered as b.
            wait_until(
                lambda: second.url not in a.engine.table.transact(lambda m: set(m.entries)),
                what="the second address dropped",
            )
            deadline = time.monotonic() + 2.0  # more rounds and master-list reads
            while time.monotonic() < deadline:
                assert second.url not in a.view(), "the second address became a member"
                time.sleep(0.05)
            assert [e[2] for e in recorder.events] == [b.base_url]  # one join, for b only
            assert second.url not in b.view()  # never forwarded either
        finally:
            recorder.close()
            a.stop()
    finally:
        second.stop()
