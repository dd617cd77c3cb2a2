"""Settings, read once: constructor option > app.config > ``SHAZBOT_*`` environment > default."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import ConfigError
from .peers import parse_allowed_peers
from .records import base_url_problem

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Validated settings of one node. Secrets are left out of ``repr``."""

    secret: str = field(repr=False)
    control_secret: str = field(repr=False)
    base_url: str
    master_list: str
    master_list_update: str
    master_list_update_auth: str = field(repr=False)
    gossip_interval: float = 30.0
    master_announce_minimum: float = 300.0
    master_announce_interval: float = 600.0
    monitor: bool = False
    update_master_list_on_shutdown: bool = False
    autostart: bool = True
    #: Largest request or reply body, counted after decompression.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Records stamped further than this (s) in the future are ignored.
    max_clock_skew: float = 600.0
    #: Seconds without a heartbeat before a peer is moved offline; None: derived
    #: from the interval and the cluster size (see :meth:`failure_timeout_for`).
    failure_timeout: float | None = None
    #: Seconds before the one retry of a failed gossip exchange.
    retry_delay: float = 3.0
    #: Retries of a failed gossip exchange, ``retry_delay`` apart, before the peer is moved
    #: offline. The seed retries once; one retry lets transient failures alone take live
    #: peers offline (see docs/performance.md), so the default is 5. Two attempts that each
    #: wait out the request timeout end the retries early, as in the seed's rule.
    retries: int = 5
    #: Timeout of each gossip request, in seconds: the ceiling of the adaptive timeout.
    request_timeout: float = 5.0
    #: Floor of the adaptive gossip timeout (rtt.py); ``request_timeout`` or more: fixed timeout.
    min_request_timeout: float = 0.5
    #: Members asked to try a peer whose exchange failed (indirect probes); 0: retries only.
    probe_helpers: int = 3
    #: Timeout of each master-list request, in seconds.
    master_list_timeout: float = 10.0
    #: Offline records older than this (s) are dropped.
    retention: float = 86400.0
    #: Hosts, networks or URL prefixes that peers' base URLs must match; empty: any (peers.py).
    allowed_peers: tuple[str, ...] = ()
    #: SQLite file shared by the processes of one host (gunicorn workers); None: the default
    #: under gunicorn (sqlite_store.default_state_path), else the table stays in memory.
    state_path: str | None = None
    #: Path of the live cluster page; None disables it.
    ui_path: str | None = "/clustershazbot/"
    #: Path of a ``/happy`` health endpoint; None (the default) serves none.
    happy_path: str | None = None

    def failure_timeout_for(self, members: int) -> float:
        """The heartbeat-staleness timeout for a cluster of ``members``.

        A heartbeat reaches everyone in about log3(N) + ln(ln(N)) push-pull rounds;
        allowing 10 + 2*log2(N) rounds keeps live members clear of false alarms
        even with lost messages and jitter.
        """
        if self.failure_timeout is not None:
            return self.failure_timeout
        rounds = 10 + 2 * math.ceil(math.log2(max(members, 2)))
        return self.gossip_interval * rounds

    @property
    def master_list_is_file(self) -> bool:
        return is_file_location(self.master_list)


def is_file_location(location: str) -> bool:
    return not location.startswith(("http://", "https://"))


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string")
    return value


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _number(key: str, value: Any, minimum: float, strict: bool) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        raise ConfigError(f"{key} must be a number of seconds {bound}, got {value!r}")
    return number


def _seconds(key: str, value: Any) -> float:
    return _number(key, value, 0, strict=True)


def _seconds_or_zero(key: str, value: Any) -> float:
    return _number(key, value, 0, strict=False)


def _bytes(key: str, value: Any) -> int:
    number = _number(key, value, 1024, strict=False)
    if number != int(number):
        raise ConfigError(f"{key} must be a whole number of bytes, got {value!r}")
    return int(number)


def _count(key: str, value: Any) -> int:
    try:
        number = int(value) if not isinstance(value, (bool, float)) else None
    except (TypeError, ValueError):
        number = None
    if number is None or number < 1:
        raise ConfigError(f"{key} must be a whole number, at least 1, got {_shown(value)}")
    return number


def _count_or_zero(key: str, value: Any) -> int:
    if value in (0, "0") and not isinstance(value, bool):
        return 0
    try:
        return _count(key, value)
    except ConfigError:
        raise ConfigError(f"{key} must be a whole number, at least 0, got {_shown(value)}") from None


def _base_url(key: str, value: Any) -> str:
    url = _str(key, value)
    if not url.endswith("/"):
        url += "/"
    problem = base_url_problem(url)
    if problem:
        raise ConfigError(f"{key} {problem} (expected e.g. https://host:3000/), got {_shown(value)}")
    return url


def _shown(value: Any) -> str:
    """``repr(value)`` with any password in a URL masked: errors never carry secrets."""
    return re.sub(r"//[^/@\s]*@", "//***@", repr(value))


def _location(key: str, value: Any) -> str:
    location = _str(key, value)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", location) and not location.startswith(
        ("http://", "https://", "file://")
    ):  # e.g. ftp:// would otherwise be taken for a relative path
        raise ConfigError(f"{key} must be an http(s):// or file:// URL or a path, got {_shown(value)}")
    if not is_file_location(location):
        parts = base_url_problem(location)
        if parts:
            raise ConfigError(f"{key} {parts}, got {_shown(value)}")
    return location


def _path_or_off(key: str, value: Any) -> str | None:
    """A URL path such as ``/happy``; ``false``, ``off`` or an empty string turn it off."""
    if value is False or (isinstance(value, str) and value.strip().lower() in _FALSE):
        return None
    if not isinstance(value, str) or not value.startswith("/") or any(ch.isspace() for ch in value):
        raise ConfigError(f"{key} must be a path starting with '/' or false, got {value!r}")
    return value


_Parser = Callable[[str, Any], Any]
_PARSERS: dict[str, _Parser] = {
    "secret": _str,
    "control_secret": _str,
    "base_url": _base_url,
    "master_list": _location,
    "master_list_update": _location,
    "master_list_update_auth": _str,
    "gossip_interval": _seconds,
    "master_announce_minimum": _seconds_or_zero,
    "master_announce_interval": _seconds_or_zero,
    "monitor": _bool,
    "update_master_list_on_shutdown": _bool,
    "autostart": _bool,
    "max_body_bytes": _bytes,
    "max_clock_skew": _seconds,
    "failure_timeout": _seconds,
    "retry_delay": _seconds_or_zero,
    "retries": _count,
    "request_timeout": _seconds,
    "min_request_timeout": _seconds,
    "probe_helpers": _count_or_zero,
    "master_list_timeout": _seconds,
    "retention": _seconds,
    "allowed_peers": parse_allowed_peers,
    "state_path": _str,
    "ui_path": _path_or_off,
    "happy_path": _path_or_off,
}
#: Settings a file master list lets you leave out: the same file is updated.
_FILE_OPTIONAL = {"master_list_update", "master_list_update_auth"}


def config_key(name: str) -> str:
    return "SHAZBOT_" + name.upper()


def load_settings(
    config: MutableMapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Settings:
    """Read and validate every setting; write the effective values back into ``config``.

    ``options`` take lower-case names (``gossip_interval=0.2``) or config keys.
    Raises :class:`ConfigError` naming the first missing or invalid setting.
    """
    config = config if config is not None else {}
    environ = environ or {}
    given = {}
    for name, value in (options or {}).items():
        short = name.lower().removeprefix("shazbot_")
        if short not in _PARSERS:
            raise ConfigError(f"unknown option {name!r}; known: {', '.join(sorted(_PARSERS))}")
        given[short] = value

    raw: dict[str, Any] = {}
    for name in _PARSERS:
        key = config_key(name)
        if name in given:
            raw[name] = given[name]
        elif config.get(key) is not None:
            raw[name] = config[key]
        elif environ.get(key) is not None:
            raw[name] = environ[key]

    defaults = {f.name: f.default for f in fields(Settings) if f.default is not MISSING}
    file_list = isinstance(raw.get("master_list"), str) and is_file_location(raw["master_list"])
    if file_list:
        raw.setdefault("master_list_update", raw["master_list"])
        raw.setdefault("master_list_update_auth", "")

    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        key = config_key(name)
        if name not in raw or raw[name] is None:
            if name not in defaults:
                hint = " (or use a file master list)" if name in _FILE_OPTIONAL else ""
                raise ConfigError(f"{key} is required{hint}")
            values[name] = defaults[name]
        elif name == "master_list_update_auth" and file_list and raw[name] == "":
            values[name] = ""
        else:
            values[name] = parse(key, raw[name])
    settings = Settings(**values)
    for name in _PARSERS:
        config[config_key(name)] = getattr(settings, name)
    return settings

