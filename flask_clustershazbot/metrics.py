"""Counters of one node, and their optional Prometheus export.

Every engine keeps plain :class:`~flask_clustershazbot.stats.Stats`. When
``prometheus_client`` is installed, :func:`register` exports the stats of every engine
that the factory (factory.py) made and that is still alive, through one collector, labelled ``node=<base URL>``; the extension
registers it in the default registry, so that an app that already serves
``/metrics`` (``prometheus_client.make_wsgi_app()``, prometheus-flask-exporter)
shows them with no further code. Metrics:

- ``clustershazbot_members{node, state="online"|"offline"}``: members in this node's view
- ``clustershazbot_gossip_rounds_total{node}``: completed gossip rounds
- ``clustershazbot_failures_total{node, kind="gossip"|"master_list"|"self_check"|"identity_conflict"}``:
  failed exchanges, self-checks whose base URL did not lead back to the node (a healthy
  start counts none: its server not listening yet in the first 2 s is not a failure), and
  identity conflicts (another process serves the node's base URL)
- ``clustershazbot_merge_seconds{node}`` (summary): time spent merging records
- ``clustershazbot_bytes_sent_total{node}``, ``clustershazbot_bytes_received_total{node}``:
  gossip, control and master-list bodies, in both directions
- ``clustershazbot_member_cap_total{node, action="refused"|"evicted"}``: records of new
  members refused, and offline records evicted, because the member table was full
- ``clustershazbot_records_refused_total{node}``: invalid records skipped (never stored,
  contacted or forwarded) in gossip requests, peers' replies and master lists
- ``clustershazbot_older_secret_requests_total{node, secret="gossip"|"control"}``: requests
  let in by an older secret of a rotation: something still sends it, so it cannot be dropped yet
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any

from .process import engines

_registered: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()


class Collector:
    """A ``prometheus_client`` collector of every engine the process made (process.py),
    read at scrape time."""

    def describe(self) -> list[Any]:
        return []  # unchecked collector: the node labels are only known at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            SummaryMetricFamily,
        )

        members = GaugeMetricFamily(
            "clustershazbot_members",
            "Members in this node's view, by state",
            labels=["node", "state"],
        )
        rounds = CounterMetricFamily(
            "clustershazbot_gossip_rounds", "Completed gossip rounds", labels=["node"]
        )
        failures = CounterMetricFamily(
            "clustershazbot_failures",
            "Failed gossip exchanges and master-list syncs",
            labels=["node", "kind"],
        )
        merge = SummaryMetricFamily(
            "clustershazbot_merge_seconds", "Time spent merging records", labels=["node"]
        )
        sent = CounterMetricFamily("clustershazbot_bytes_sent", "Body bytes sent", labels=["node"])
        received = CounterMetricFamily(
            "clustershazbot_bytes_received", "Body bytes received", labels=["node"]
        )
        cap = CounterMetricFamily(
            "clustershazbot_member_cap",
            "Records refused or evicted by the member cap",
            labels=["node", "action"],
        )
        invalid = CounterMetricFamily(
            "clustershazbot_records_refused",
            "Invalid records skipped in gossip messages, replies and master lists",
            labels=["node"],
        )
        older = CounterMetricFamily(
            "clustershazbot_older_secret_requests",
            "Requests let in by an older secret of a rotation",
            labels=["node", "secret"],
        )
        for engine in engines():
            node = engine.settings.base_url
            s = engine.stats.snapshot()
            view = engine.server_list()
            members.add_metric([node, "online"], len(view.online))
            members.add_metric([node, "offline"], len(view.offline))
            rounds.add_metric([node], s["rounds"])
            failures.add_metric([node, "gossip"], s["gossip_failures"])
            failures.add_metric([node, "master_list"], s["master_list_failures"])
            failures.add_metric([node, "self_check"], s["self_check_failures"])
            failures.add_metric([node, "identity_conflict"], s["identity_conflicts"])
            merge.add_metric([node], count_value=int(s["merges"]), sum_value=s["merge_seconds"])
            sent.add_metric([node], s["bytes_sent"])
            received.add_metric([node], s["bytes_received"])
            cap.add_metric([node, "refused"], s["members_refused"])
            cap.add_metric([node, "evicted"], s["members_evicted"])
            invalid.add_metric([node], s["records_refused"])
            older.add_metric([node, "gossip"], s["older_gossip_secret_requests"])
            older.add_metric([node, "control"], s["older_control_secret_requests"])
        yield from (members, rounds, failures, merge, sent, received, cap, invalid, older)


#: The one collector of this process.
collector = Collector()


def register(registry: Any = None) -> bool:
    """Register :data:`collector` in ``registry`` (default: prometheus_client's ``REGISTRY``).

    The registry hook for apps that keep their own ``CollectorRegistry``. Returns
    False when ``prometheus_client`` is not installed; registering twice is harmless.
    """
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return False
    registry = REGISTRY if registry is None else registry
    with _lock:
        if registry in _registered:
            return True
        _registered.add(registry)
    registry.register(collector)
    return True
