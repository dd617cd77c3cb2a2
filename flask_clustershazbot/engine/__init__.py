"""The protocol's behaviour, independent of Flask: :class:`Engine` and its parts.

========================  ===========================================================
``node.py``               the facade, :class:`Engine`, and its lifecycle (:class:`Phase`)
``table.py``              merges into the store, and their log lines, counters, signals
``rounds.py``             gossip rounds: pace, choice of peer, one exchange, tidying
``suspicion.py``          the judgement of a peer whose exchange failed
``discovery.py``          bootstrap, telling peers at once, master-list announcements
``identity.py``           the self-check, and identity conflicts
``endpoints.py``          who may ask, and the answers the endpoints give
========================  ===========================================================
"""

from .common import wall_clock_ms
from .endpoints import MAX_PROBES, check_secret, parse_probe, secret_index
from .node import Engine, Phase
from .suspicion import Failure, Suspicion

__all__ = [
    "MAX_PROBES",
    "Engine",
    "Failure",
    "Phase",
    "Suspicion",
    "check_secret",
    "parse_probe",
    "secret_index",
    "wall_clock_ms",
]
