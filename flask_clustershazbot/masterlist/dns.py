"""Members found in DNS (``dns://name:port``): read-only discovery, as hints."""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

from ..config import Settings
from ..records import GossipServer, ServerList
from .base import (
    Location,
    log,
    now_ms,
)

#: DNS hints are stamped this long (ms) after the oldest stamp a node accepts.
HINT_MARGIN_MS = 60_000


class DnsMasterList(Location):
    """Read-only discovery: the A/AAAA records of a name (a Kubernetes headless service).

    ``dns://name:port?scheme=http&path=/&resolver=127.0.0.1:5353``: each address becomes
    ``scheme://address:port/path``, an online record with ``monitor`` false, stamped as
    old as a node still accepts (the merge ignores records older than the retention, so
    0 would be dropped): a hint that loses every merge against a real record of that
    member, yet is online in a fresh table, which is what a bootstrap needs.
    Without ``resolver`` the system resolver (``getaddrinfo``) answers; with it,
    dnspython (``pip install flask-clustershazbot[dns]``) asks that server.
    """

    def __init__(self, settings: Settings, setting: str, location: str) -> None:
        super().__init__(settings, setting, location)
        parts = urlsplit(location)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.name = parts.hostname or ""
        self.scheme = query.get("scheme", "http")
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.path = "/" + query.get("path", "/").strip("/")
        self.path += "" if self.path == "/" else "/"
        self.resolver = query.get("resolver")

    def _addresses(self) -> list[str]:
        if self.resolver is None:
            try:
                infos = socket.getaddrinfo(self.name, self.port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise self.error(f"lookup failed ({exc.strerror or exc})") from None
            return [str(info[4][0]) for info in infos]
        try:
            import dns.exception
            import dns.resolver
        except ImportError:
            raise self.error(
                "resolver= needs dnspython: pip install flask-clustershazbot[dns]"
            ) from None
        host, _, port = (
            self.resolver.rpartition(":") if ":" in self.resolver else (self.resolver, "", "53")
        )
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host.strip("[]")]
        resolver.port = int(port)
        resolver.lifetime = self.settings.master_list_timeout
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                found += [r.to_text() for r in resolver.resolve(self.name, rdtype)]
            except dns.resolver.NoAnswer:
                continue  # e.g. no AAAA records: the A records are the answer
            except dns.exception.DNSException as exc:
                raise self.error(f"{rdtype} lookup failed ({type(exc).__name__})") from None
        return found

    def read(self) -> ServerList:
        retention = self.settings.retention_ms
        stamp = max(0, now_ms() - retention + min(HINT_MARGIN_MS, retention // 2))
        servers: dict[str, GossipServer] = {}
        for address in self._addresses():
            host = f"[{address}]" if ":" in address else address
            url = f"{self.scheme}://{host}:{self.port}{self.path}"
            servers[url] = GossipServer(url, False, stamp)
        return ServerList(online=tuple(servers.values()))

    def publish(self, view: ServerList) -> None:
        log.debug("%s %s is read-only discovery: nothing to announce", self.setting, self.shown)
