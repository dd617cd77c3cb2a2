"""Membership signals. Sender: the Flask app; keyword ``server``: the :class:`GossipServer`.

Each fires once per transition in this node's view, after the state lock is
released, inside the app's context. Receivers are held weakly by blinker unless
connected with ``weak=False``: a receiver defined inside a function needs a
reference kept elsewhere. A receiver that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

from .membership import Changes

log = logging.getLogger(__name__)
_signals = Namespace()

#: A peer (never this node) became online in this node's view: it joined, or came back.
peer_joined = _signals.signal("peer-joined")
#: A peer went offline in this node's view: it shut down, failed, or was taken offline.
peer_left = _signals.signal("peer-left")
#: An offline peer's record was dropped after the retention period (24 h).
peer_purged = _signals.signal("peer-purged")


def _send(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    for receiver in list(signal.receivers_for(sender)):
        try:
            receiver(sender, **kwargs)
        except Exception:
            log.exception("a %s receiver failed", signal.name)


def send_changes(sender: Any, changes: Changes) -> None:
    for server in changes.joined:
        _send(peer_joined, sender, server=server)
    for server in changes.left:
        _send(peer_left, sender, server=server)
    for server in changes.purged:
        _send(peer_purged, sender, server=server)
