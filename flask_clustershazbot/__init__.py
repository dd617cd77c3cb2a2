"""Gossip cluster membership for Flask services, wire-compatible with the TypeScript clustershazbot."""

from .api import (
    shazbot_control_request,
    shazbot_gossip_request,
    shazbot_list_request,
    shazbot_shut_down,
    shazbot_start,
)
from .engine import Engine
from .errors import BadMessage, ConfigError, NotStarted, ShazbotError, TooLarge, Unauthorized
from .extension import ClusterShazbot
from .records import GossipServer, ServerList
from .signals import peer_joined, peer_left, peer_purged
from .views import blueprint

__version__ = "0.2.0.dev0"

__all__ = [
    "BadMessage",
    "ClusterShazbot",
    "ConfigError",
    "Engine",
    "GossipServer",
    "NotStarted",
    "ServerList",
    "ShazbotError",
    "TooLarge",
    "Unauthorized",
    "blueprint",
    "peer_joined",
    "peer_left",
    "peer_purged",
    "shazbot_control_request",
    "shazbot_gossip_request",
    "shazbot_list_request",
    "shazbot_shut_down",
    "shazbot_start",
]
