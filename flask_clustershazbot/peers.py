"""Peer trust: which base URLs may be peers (``SHAZBOT_ALLOWED_PEERS``), and secret strength.

Every base URL this node will ever contact comes from a record it merged (a
gossip request, a peer's reply, the master list). Without an allow-list, anyone
holding the gossip secret could plant records such as
``http://10.0.0.7:6379/`` and make every node of the cluster send requests
there. With one, such records are dropped before they are merged: they are
never stored, contacted, forwarded or written to the master list.

A disallowed record is **dropped, the rest of the message is merged**: a
policy difference between nodes (one node allows a host another does not) must
not cut the two off from each other, which rejecting the whole message would.
Invalid records are skipped the same way (records.py).

Entries, separated by commas or whitespace:

- ``https://node.example.com:8443/``: a URL prefix (scheme, host and port
  compared case-insensitively; a prefix gets a final ``/``, so that it never
  matches ``https://node.example.com.evil.net/``);
- ``10.1.0.0/16`` or ``fd00::/8``: a network, matching base URLs whose host is an
  IP address literal inside it (a bare address is a one-address network);
- ``node1.example.com``: a host name, any port, either scheme;
  ``.example.com`` or ``*.example.com``: any host below that domain.

Host names are never resolved: a network entry matches only literal
addresses, so a name that resolves into the network must be listed itself.
Anything that does not match (including exotic address spellings such as
``http://2130706433/``) is refused.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .records import GossipServer, ServerList, canonical_base_url

log = logging.getLogger(__name__)

#: Secrets shorter than this are easy to guess; a warning says so at start.
MIN_SECRET_LENGTH = 16
#: Distinct refused base URLs that get their own warning; later ones are counted quietly.
MAX_WARNED = 100

_HOST = re.compile(
    r"^(\*?\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$"
)
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowed_peers(key: str, value: Any) -> tuple[str, ...]:
    """The setting's entries, validated and normalised; empty means every peer is allowed."""
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [part for v in value for part in v.replace(",", " ").split()]
    else:
        raise ConfigError(f"{key} must be a string or a list of strings, got {value!r}")
    entries = []
    for item in items:
        entry = _normalise(item)
        if entry is None:
            raise ConfigError(
                f"{key}: {item!r} is not a host name, a network (10.0.0.0/8) "
                "or an http(s) URL prefix"
            )
        entries.append(entry)
    return tuple(dict.fromkeys(entries))


def _normalise(item: str) -> str | None:
    if "://" in item:
        try:
            return canonical_base_url(item)  # compared with canonical base URLs
        except ValueError:
            return None
    if "/" in item or _ip(item) is not None:
        try:
            return str(ipaddress.ip_network(item, strict=False))
        except ValueError:
            return None
    host = item.lower()
    host = "." + host[2:] if host.startswith("*.") else host
    return host.rstrip(".") if _HOST.match(host) else None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class PeerPolicy:
    """Decides which base URLs may be merged, hence contacted. Thread-safe after construction."""

    def __init__(self, entries: Iterable[str], own_base_url: str) -> None:
        self.prefixes: list[str] = []
        self.networks: list[_Network] = []
        self.hosts: set[str] = set()
        self.domains: list[str] = []
        for entry in entries:
            if "://" in entry:
                self.prefixes.append(entry)
            elif "/" in entry:
                self.networks.append(ipaddress.ip_network(entry))
            elif entry.startswith("."):
                self.domains.append(entry)
            else:
                self.hosts.add(entry)
        self.enabled = bool(self.prefixes or self.networks or self.hosts or self.domains)
        self._refused: set[str] = set()
        #: Records dropped by the policy since start (for operators and tests).
        self.dropped = 0
        if not self.allows(own_base_url):
            raise ConfigError(
                f"SHAZBOT_ALLOWED_PEERS does not allow this node's own SHAZBOT_BASE_URL "
                f"{own_base_url!r}: peers would drop its records"
            )

    def allows(self, base_url: str) -> bool:
        if not self.enabled:
            return True
        try:
            base_url = canonical_base_url(base_url)  # merged records are already canonical
        except ValueError:
            return False
        if base_url.startswith(tuple(self.prefixes)):
            return True
        host = (urlsplit(base_url).hostname or "").rstrip(".")
        if host in self.hosts or host.endswith(tuple(self.domains)):
            return True
        address = _ip(host)
        return address is not None and any(address in n for n in self.networks)

    def filter(self, servers: ServerList) -> ServerList:
        """``servers`` without the records this policy refuses; each refused URL is logged once."""
        if not self.enabled:
            return servers
        refused: list[GossipServer] = []

        def keep(records: tuple[GossipServer, ...]) -> tuple[GossipServer, ...]:
            kept: list[GossipServer] = []
            for server in records:
                (kept if self.allows(server.base_url) else refused).append(server)
            return tuple(kept)

        allowed = ServerList(
            keep(servers.online), keep(servers.offline), servers.skipped, servers.problem
        )
        for server in refused:
            self.dropped += 1
            url = server.base_url
            if url not in self._refused and len(self._refused) < MAX_WARNED:
                self._refused.add(url)
                log.warning("dropping records of %s: not in SHAZBOT_ALLOWED_PEERS", url)
        return allowed


def open_master_list_warning(allowed_peers: tuple[str, ...], master_list: str) -> str | None:
    """The risk of an empty allow-list with a remote master list, or None.

    Whoever can write one record into that list (whoever controls its server or
    bucket, or can plant a record in it) makes every node send the gossip secret
    to a URL of their choice. No allow-list is derived by default:
    members rarely live on the master list's host (an S3 bucket, a web server), so
    such a default would cut nodes off from each other instead.
    """
    if allowed_peers or not master_list.startswith(("http://", "https://")):
        return None
    return (
        "SHAZBOT_ALLOWED_PEERS is empty and SHAZBOT_MASTER_LIST is remote: a URL planted in "
        "the master list would receive the gossip secret from every node; list your "
        "members' hosts or networks in SHAZBOT_ALLOWED_PEERS"
    )


def weak_secret_warnings(secrets: Sequence[str], control_secrets: Sequence[str]) -> list[str]:
    """Why the accepted secrets (the one sent first, then the older ones of a rotation) are
    weak, without ever quoting them: every accepted secret is checked, an older one lets
    a caller in as well as the one sent."""

    def name(key: str, index: int) -> str:
        return key if index == 0 else f"{key}'s secret number {index + 1} (older, still accepted)"

    problems = []
    for i, secret in enumerate(secrets):
        for j, control in enumerate(control_secrets):
            if secret == control:
                both = (
                    "SHAZBOT_SECRET and SHAZBOT_CONTROL_SECRET are equal"
                    if i == j == 0
                    else f"{name('SHAZBOT_SECRET', i)} is also {name('SHAZBOT_CONTROL_SECRET', j)}"
                )
                problems.append(
                    f"{both}: every peer can take this node offline and read its full state"
                )
    for key, values in (("SHAZBOT_SECRET", secrets), ("SHAZBOT_CONTROL_SECRET", control_secrets)):
        for i, value in enumerate(values):
            if len(value) < MIN_SECRET_LENGTH:
                problems.append(
                    f"{name(key, i)} is shorter than {MIN_SECRET_LENGTH} characters; use a long "
                    "random value (python -c 'import secrets; print(secrets.token_hex(32))')"
                )
    return problems
