"""Wire records: parse and validate the JSON of the original's wire format, serialise it back.

Pure functions only. A message whose shape is wrong (not an object, a wrong
``message``, ``online``/``offline`` not lists) is refused whole with a :class:`BadMessage`
that says what is wrong. A bad *record* is skipped instead: counted in
:attr:`ServerList.skipped`, with the first one's problem in :attr:`ServerList.problem`.
A peer that holds a record this version refuses (the original, another version of ours)
must not fail its exchanges: that would split the cluster.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .errors import BadMessage

#: Longest ``baseUrl`` accepted; longer ones are not a server's address.
MAX_URL_LENGTH = 2048
#: ``lastUpdate`` is a JavaScript number on the original's nodes: integers beyond 2**53 are not exact there.
MAX_LAST_UPDATE = 2**53 - 1


def shown(value: Any) -> str:
    """A short, safe rendering of a rejected value for an error message."""
    try:
        text = repr(value)
    except RecursionError:  # orjson parses nesting that the standard library refuses
        return "a value nested too deeply"
    return text if len(text) <= 60 else text[:57] + "..."


# One DNS label (RFC 1035 with the underscore hosts files allow): 1 to 63 characters.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# URL parsers (WHATWG, inet_aton) take a host whose last label is a number for an IPv4 address.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
# What a base URL's path may hold (RFC 3986 pchar and "/"): anything else the client re-encodes.
_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@/%-]*")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_DOT_SEGMENTS = {".", "..", "%2e", "%2e%2e", ".%2e", "%2e."}


def _host(parts: SplitResult) -> tuple[str, str | None]:
    """The canonical host of ``parts`` (brackets kept), or ``("", why it is unusable)``."""
    host = parts.hostname or ""
    if not host:
        return "", "must name a host"
    if "[" in parts.netloc:
        if "%" in host:
            return "", "must not carry an IPv6 zone (%)"
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]", None
        except ValueError:
            return "", "has an invalid IPv6 address"
    if len(host) > 253:
        return "", "has a host name longer than 253 characters"
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        try:
            address = str(ipaddress.IPv4Address(host))
        except ValueError:
            address = ""
        if address != host:
            return "", "must write an IPv4 address in dotted-decimal form, without leading zeros"
        return host, None
    if host.endswith("."):
        return "", "must not end its host name with a dot"
    if not all(_LABEL.fullmatch(label) for label in labels):
        return "", (
            "has an unusable host name (labels of 1 to 63 letters, digits, '-' or '_', "
            "separated by single dots)"
        )
    return host, None


@lru_cache(maxsize=16384)
def check_url(url: str, base: bool) -> tuple[str, str | None]:
    """``(canonical form, None)``, or ``("", why url is unusable)``.

    ``base``: a member's base URL (no query or fragment, path ending in ``/``);
    otherwise any http(s) URL the client can use (a master list's).
    """
    if len(url) > MAX_URL_LENGTH:
        return "", f"is longer than {MAX_URL_LENGTH} characters"
    if not all("!" <= ch <= "~" for ch in url):
        # Also refuses lone surrogates, which no store or JSON encoder can write.
        return "", (
            "must be printable ASCII, without whitespace or control characters "
            "(punycode a host name, percent-encode a path)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        return "", f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "", "must be an http:// or https:// URL"
    if parts.username is not None or parts.password is not None:
        return "", "must not carry credentials"
    if port == 0:
        return "", "must not use port 0"
    host, problem = _host(parts)
    if problem:
        return "", problem
    if not base:
        return url, None
    netloc = host if port is None else f"{host}:{port}"  # the port without zero-padding
    if "?" in url or "#" in url:
        return "", "must not carry a query or fragment"
    path = parts.path
    if not _PATH.fullmatch(path) or "%" in _ESCAPE.sub("", path):
        return "", "has a path with characters that must be percent-encoded"
    path = _ESCAPE.sub(lambda m: m.group().upper(), path)
    if not path.endswith("/"):
        path += "/"
    if any(segment.lower() in _DOT_SEGMENTS for segment in path.split("/")):
        return "", "must not have '.' or '..' path segments"
    canonical = f"{parts.scheme}://{netloc}{path}"
    if len(canonical) > MAX_URL_LENGTH:  # the added "/"
        return "", f"is longer than {MAX_URL_LENGTH} characters"
    return canonical, None


def base_url_problem(url: str) -> str | None:
    """Why ``url`` is not a valid member identity, or None when it is."""
    return check_url(url, True)[1]


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL the client can use (a master list's), or None."""
    return check_url(url, False)[1]


def canonical_base_url(url: str) -> str:
    """The one form of a member's base URL: scheme and host lower-cased, port without
    zero-padding, IPv6 compressed, percent-escapes upper-cased, a final ``/``.

    An explicit default port (``http://h:80/``) is kept: the original's nodes compare base
    URLs as strings, and rewriting the form one of them uses for itself would make it a
    phantom member in its own view. Raises ValueError (saying why) for a URL no
    canonical form can stand for (a query, a fragment, '..' segments, ...).
    """
    canonical, problem = check_url(url, True)
    if problem:
        raise ValueError(problem)
    return canonical


@dataclass(frozen=True, slots=True)
class GossipServer:
    """One member as the wire describes it: identity, monitor flag, timestamp (ms)."""

    base_url: str
    monitor: bool
    last_update: int

    def to_dict(self) -> dict[str, Any]:
        return {"baseUrl": self.base_url, "monitor": self.monitor, "lastUpdate": self.last_update}

    @classmethod
    def from_dict(cls, data: Any, where: str = "server") -> GossipServer:
        if not isinstance(data, dict):
            raise BadMessage(f"{where} must be an object, got {shown(data)}")
        try:
            url = data["baseUrl"]
            monitor = data["monitor"]
            last_update = data["lastUpdate"]
        except KeyError as exc:
            raise BadMessage(f"{where} is missing {exc.args[0]!r}") from None
        if type(url) is not str:
            raise BadMessage(f"{where}.baseUrl must be a string, got {shown(url)}")
        url, problem = check_url(url, True)
        if problem:
            raise BadMessage(f"{where}.baseUrl {problem}: {shown(data['baseUrl'])}")
        if type(monitor) is not bool:
            raise BadMessage(f"{where}.monitor must be true or false, got {shown(monitor)}")
        if type(last_update) is not int or not 0 <= last_update <= MAX_LAST_UPDATE:
            raise BadMessage(
                f"{where}.lastUpdate must be an integer from 0 to {MAX_LAST_UPDATE}, "
                f"got {shown(last_update)}"
            )
        return cls(url, monitor, last_update)


def _servers(data: dict[str, Any], key: str) -> tuple[tuple[GossipServer, ...], int, str | None]:
    """The valid records of ``data[key]``, how many were skipped, and the first one's problem."""
    items = data.get(key, [])
    if not isinstance(items, list):
        raise BadMessage(f"{key} must be a list, got {shown(items)}")
    # The hot path of every gossip exchange: the checks of from_dict inlined for the
    # common valid record, and the frozen dataclass's slow __init__ skipped; any
    # record that fails them goes through from_dict, which says what is wrong.
    # Every base URL is stored in its canonical form, so aliases are one member.
    out: list[GossipServer] = []
    append, new, check = out.append, new_server, check_url
    skipped, problem = 0, None
    for i, item in enumerate(items):
        if type(item) is dict:
            url, monitor, stamp = item.get("baseUrl"), item.get("monitor"), item.get("lastUpdate")
            if (
                type(url) is str
                and (monitor is True or monitor is False)
                and type(stamp) is int
                and 0 <= stamp <= MAX_LAST_UPDATE
            ):
                canonical, why = check(url, True)
                if why is None:
                    append(new(canonical, monitor, stamp))
                    continue
        try:
            append(GossipServer.from_dict(item, f"{key}[{i}]"))
        except BadMessage as exc:
            skipped += 1
            problem = problem or str(exc)
    return tuple(out), skipped, problem


# The slot descriptors set a frozen instance's fields without the dataclass's checks.
_set_base_url = GossipServer.__dict__["base_url"].__set__
_set_monitor = GossipServer.__dict__["monitor"].__set__
_set_last_update = GossipServer.__dict__["last_update"].__set__


def rank(server: GossipServer, online: bool) -> tuple[int, bool, bool]:
    """Which record wins, the protocol's one rule: of two records of a member, the one of
    higher rank (the newer; on equal stamps the offline one, then the monitor). A total
    order, so that merges are idempotent, commutative and associative. The member table,
    the master lists and the Redis script (which tests check against this) all use it."""
    return server.last_update, not online, server.monitor


def new_server(url: str, monitor: bool, last_update: int) -> GossipServer:
    """``GossipServer(url, monitor, last_update)`` for validated values, twice as fast."""
    server = object.__new__(GossipServer)
    _set_base_url(server, url)
    _set_monitor(server, monitor)
    _set_last_update(server, last_update)
    return server


@dataclass(frozen=True, slots=True)
class ServerList:
    """Online and offline members, as in a gossip message, a reply or a master list."""

    online: tuple[GossipServer, ...] = ()
    offline: tuple[GossipServer, ...] = ()
    #: Invalid records left out when this list was parsed, and the first one's problem.
    skipped: int = field(default=0, compare=False)
    problem: str | None = field(default=None, compare=False)

    def to_dict(self, include_offline: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"online": [s.to_dict() for s in self.online]}
        if include_offline:
            data["offline"] = [s.to_dict() for s in self.offline]
        return data

    @classmethod
    def from_dict(cls, data: Any, message: str | None = None) -> ServerList:
        """Parse a server list; with ``message``, also require ``"message": message``.

        A ``message`` field present without being required must still be ``"gossip"``
        (a peer's reply is a GossipMessage).
        """
        if not isinstance(data, dict):
            raise BadMessage(f"the body must be a JSON object, got {shown(data)}")
        if "online" not in data:
            raise BadMessage("the body is missing 'online'")
        if message is not None or "message" in data:
            expected = message or "gossip"
            if data.get("message") != expected:
                raise BadMessage(
                    f"'message' must be {expected!r}, got {shown(data.get('message'))}"
                )
        online, skipped, problem = _servers(data, "online")
        offline, more, other = _servers(data, "offline")
        return cls(online, offline, skipped + more, problem or other)

    def gossip_message(self) -> dict[str, Any]:
        """This list as a GossipMessage, offline included."""
        data = self.to_dict()
        data["message"] = "gossip"
        return data


def parse_control(data: Any) -> bool:
    """Validate a ControlMessage; return the requested ``online`` state."""
    if not isinstance(data, dict):
        raise BadMessage(f"the body must be a JSON object, got {shown(data)}")
    if data.get("message") != "control":
        raise BadMessage(f"'message' must be 'control', got {shown(data.get('message'))}")
    online = data.get("online")
    if type(online) is not bool:
        raise BadMessage(f"'online' must be true or false, got {shown(online)}")
    return online


# -- msgspec: the endpoint's fast path ------------------------------------------------------
