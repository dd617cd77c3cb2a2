"""Rolling secret rotation on real nodes: no exchange is refused, no live peer is taken offline.

Three nodes run with the old gossip and control secrets. Each is restarted in turn (same
address) with ``old,new`` (still sending the old one, accepting both), then each with
``new,old`` (sending the new one), then each with ``new`` alone: the recipe of
docs/security.md. At every step some nodes are rotated and some are not; every node of the
last step still holds only the new secrets. Throughout, no gossip exchange is answered 401
and no running node is ever taken offline by a peer (only the one restarting leaves, and
it announces that itself).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import requests

from cluster import Node, wait_until
from flask_clustershazbot import peer_left

OLD, NEW = "old-gossip-secret-0123456789", "new-gossip-secret-9876543210"
OLD_CONTROL, NEW_CONTROL = "old-control-secret-abcdefghij", "new-control-secret-jihgfedcba"
STEPS = [  # (gossip secret setting, control secret setting) of each node, in turn
    (f"{OLD},{NEW}", f"{OLD_CONTROL},{NEW_CONTROL}"),
    (f"{NEW},{OLD}", f"{NEW_CONTROL},{OLD_CONTROL}"),
    (NEW, NEW_CONTROL),
]


def test_rolling_rotation_of_a_3_node_cluster(
    config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    base = {
        **config,
        "SHAZBOT_SECRET": OLD,
        "SHAZBOT_CONTROL_SECRET": OLD_CONTROL,
        "SHAZBOT_FAILURE_TIMEOUT": 60,
    }  # offline sooner: refused exchanges or announcements
    nodes = [Node(base) for _ in range(3)]
    restarting: list[str] = []
    false_offlines: list[str] = []
    lock = threading.Lock()

    def left(sender: Any, server: Any) -> None:
        with lock:
            if server.base_url not in restarting:
                false_offlines.append(f"{sender.name} saw {server.base_url} leave")

    peer_left.connect(left, weak=False)
    everyone = {n.base_url for n in nodes}

    def converged() -> bool:
        return all(n.view() == dict.fromkeys(everyone, True) for n in nodes)

    def rounds(n: int) -> None:
        start = [node.engine.stats.rounds for node in nodes]
        wait_until(
            lambda: all(node.engine.stats.rounds >= s + n for node, s in zip(nodes, start)),
            what=f"{n} more rounds on every node",
        )

    try:
        wait_until(converged, what="the cluster with the old secrets")
        rounds(5)
        for secret, control in STEPS:
            for i, node in enumerate(list(nodes)):
                with lock:
                    restarting[:] = [node.base_url]
                node.stop()
                nodes[i] = Node(
                    {**base, "SHAZBOT_SECRET": secret, "SHAZBOT_CONTROL_SECRET": control},
                    port=node.port,
                )
                wait_until(
                    converged, what=f"the cluster after restarting node {i} with step {secret}"
                )
                with lock:
                    restarting.clear()
                rounds(5)  # rotated and unrotated nodes gossip with each other
        rounds(5)

        refused = [r.getMessage() for r in caplog.records if "HTTP 401" in r.getMessage()]
        assert refused == []
        assert false_offlines == []
        assert all(n.engine.settings.accepted_secrets == (NEW,) for n in nodes)

        # The old secrets are refused now; the new ones work.
        target = nodes[0].base_url
        assert (
            requests.post(
                target + "clustershazbot/gossip", json={}, timeout=5, headers={"Authorization": OLD}
            ).status_code
            == 401
        )
        full = requests.get(
            target + "clustershazbot/list", timeout=5, headers={"Authorization": NEW_CONTROL}
        ).json()
        assert "offline" in full
        old = requests.get(
            target + "clustershazbot/list", timeout=5, headers={"Authorization": OLD_CONTROL}
        ).json()
        assert "offline" not in old
    finally:
        peer_left.disconnect(left)
        for node in nodes:
            node.stop()


def test_sending_the_new_secret_before_every_node_accepts_it_is_refused(
    config: dict[str, Any],
) -> None:
    """Why the recipe has three steps: a node sending a secret its peer does not accept yet
    is refused (401), which is what a one-step switch would do to half the cluster."""
    old = Node({**config, "SHAZBOT_SECRET": OLD})
    new = Node({**config, "SHAZBOT_SECRET": f"{NEW},{OLD}"})
    try:
        reply = requests.post(
            old.base_url + "clustershazbot/gossip",
            json={},
            timeout=5,
            headers={"Authorization": NEW},
        )
        assert reply.status_code == 401
        for secret in (NEW, OLD):  # the rotated node takes both
            reply = requests.post(
                new.base_url + "clustershazbot/gossip",
                timeout=5,
                json={"message": "gossip", "online": [], "offline": []},
                headers={"Authorization": secret},
            )
            assert reply.status_code == 200, reply.text
    finally:
        old.stop()
        new.stop()
