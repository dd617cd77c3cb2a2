"""Settings, read once: constructor option > app.config > ``SHAZBOT_*`` environment > default."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import os
import re
import ssl
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError
from .peers import MIN_SECRET_LENGTH, parse_allowed_peers
from .records import canonical_base_url, url_problem

log = logging.getLogger(__name__)

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
    #: Start the node in init_app (False by default in an app with ``TESTING`` set).
    autostart: bool = True
    #: Fill settings that options and app.config leave out from ``SHAZBOT_*`` environment
    #: variables (read from options and app.config only).
    read_env: bool = True
    #: Check that the base URL leads back to this process before acting as the node.
    self_check: bool = True
    #: Answer accepted gossip requests before Flask's dispatch (views.FastGossip).
    fast_gossip: bool = True
    #: Largest request or reply body, counted after decompression.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Most records in the member table, this node's own included (docs/faults.md,
    #: "Member cap"); the table also stays within max_body_bytes, so every reply fits.
    max_members: int = 10000
    #: Records stamped further than this (s) in the future are ignored.
    max_clock_skew: float = 600.0
    #: Seconds without a heartbeat before a peer is moved offline; None: derived
    #: from the interval and the cluster size (see :meth:`failure_timeout_for`).
    failure_timeout: float | None = None
    #: Seconds between the retries of a failed gossip exchange.
    retry_delay: float = 3.0
    #: Retries of a failed gossip exchange, ``retry_delay`` apart, before the peer is moved
    #: offline. The original retries once; one retry lets transient failures alone take live
    #: peers offline (see docs/performance.md), so the default is 5. Two attempts that each
    #: wait out the request timeout end the retries early, as in the original's rule.
    retries: int = 5
    #: Timeout of each gossip request, in seconds: the ceiling of the adaptive timeout.
    request_timeout: float = 5.0
    #: Floor of the adaptive gossip timeout (rtt.py); ``request_timeout`` or more: fixed timeout.
    min_request_timeout: float = 0.5
    #: Members asked to try a peer whose exchange failed (indirect probes); 0: retries only.
    probe_helpers: int = 3
    #: Singleton-job runs under way at once on this node, each on a thread of its own
    #: (never on the protocol's); a tick that finds them all busy is skipped (ownership.py).
    job_workers: int = 10
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
    #: CA bundle (PEM file or OpenSSL hashed directory) that peers' and the master list's
    #: HTTPS certificates must chain to; None: requests' bundle (certifi).
    tls_ca: str | None = None
    #: Client certificate (PEM) presented on every HTTPS request, for mutual TLS.
    tls_cert: str | None = None
    #: Private key of ``tls_cert`` (unencrypted PEM); None: it is in ``tls_cert``'s file.
    tls_key: str | None = None
    #: Every gossip secret a request may carry: ``secret`` (the one sent) first, then older
    #: ones still accepted during a rotation. Empty: just ``secret``.
    accepted_secrets: tuple[str, ...] = field(default=(), repr=False)
    #: The same for the control secret.
    accepted_control_secrets: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.accepted_secrets:
            object.__setattr__(self, "accepted_secrets", (self.secret,))
        if not self.accepted_control_secrets:
            object.__setattr__(self, "accepted_control_secrets", (self.control_secret,))

    @property
    def max_clock_skew_ms(self) -> int:
        """:attr:`max_clock_skew` in the wire's unit (ms)."""
        return int(self.max_clock_skew * 1000)

    @property
    def retention_ms(self) -> int:
        """:attr:`retention` in the wire's unit (ms)."""
        return int(self.retention * 1000)

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


def updated_in_place(location: str) -> bool:
    """Every master list but an HTTP(S) one is updated where it is read (a file, S3, Redis;
    DNS is read-only), so its update settings may be left out."""
    return not location.startswith(("http://", "https://"))


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string")
    return value


def _header_value(key: str, value: Any) -> str:
    """A value sent as an HTTP header as it is: no outer whitespace, visible ASCII and spaces.

    requests refuses outer whitespace and line breaks and sends Latin-1 at most; a node of
    the original compares bytes. Errors say what is wrong, never what the value is.
    """
    text = _str(key, value)
    if text != text.strip():
        raise ConfigError(f"{key} has leading or trailing whitespace (the value is not shown)")
    if not all(" " <= ch <= "~" for ch in text):
        raise ConfigError(
            f"{key} must be printable ASCII (letters, digits, punctuation, spaces), "
            "with no control characters (the value is not shown)"
        )
    return text


def _secret(key: str, value: Any) -> str:
    """A shared secret, sent bare in the Authorization header (as the original does)."""
    secret = _header_value(key, value)
    if secret[:7].lower() == "bearer ":
        raise ConfigError(
            f"{key} starts with 'Bearer ': give the bare secret (receivers strip the "
            "prefix, so every exchange would be refused) (the value is not shown)"
        )
    return secret


def _secrets(key: str, value: Any) -> tuple[str, ...]:
    """One secret, or several for a rotation: a list, or a comma-separated string. The
    first is the one sent; all are accepted. Each must be a valid secret (:func:`_secret`).

    A string with a comma is a rotation only if each part could be a secret of its own
    (not weak: MIN_SECRET_LENGTH characters or more). Otherwise it cannot be told apart
    from one secret that contains a comma, as the original library takes it (whole): it
    would be split, and this node would send a part of it that every peer refuses.
    """
    items = re.split(r"\s*,\s*", value) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(f"{key} must be a non-empty string or a list of them")
    if isinstance(value, str) and len(items) > 1 and min(map(len, items)) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{key} has a comma, which separates the secrets of a rotation, but a part of "
            f"it is shorter than {MIN_SECRET_LENGTH} characters: one secret that contains a "
            "comma cannot be told apart from a rotation. A secret cannot contain a comma "
            f"(choose another); for a rotation, give each secret in full ({MIN_SECRET_LENGTH} "
            "characters or more) or a list in app.config (the value is not shown)"
        )
    return tuple(dict.fromkeys(_secret(key, item) for item in items))


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
        raise ConfigError(
            f"{key} must be a whole number, at least 0, got {_shown(value)}"
        ) from None


def _base_url(key: str, value: Any) -> str:
    """The canonical form (records.canonical_base_url): the one peers store for this node."""
    try:
        url = canonical_base_url(_str(key, value))
    except ValueError as exc:
        raise ConfigError(
            f"{key} {exc} (expected e.g. https://host:3000/), got {_shown(value)}"
        ) from None
    problem = unreachable_base_url(url)
    if problem:
        raise ConfigError(
            f"{key} {problem} (expected e.g. https://host:3000/), got {_shown(value)}"
        )
    return url


_USERINFO = re.compile(r"//[^/@\s]*@")
_QUERY_VALUE = re.compile(r"([?&][^=&#\s'\"]*=)[^&#\s'\"]*")
#: A Redis master-list URL, or a query value anywhere else (mask() tells them apart).
_MASKED = re.compile(
    r"(?P<redis>\brediss?://[^\s'\"]*)|(?P<name>[?&][^=&#\s'\"]*=)[^&#\s'\"]*", re.IGNORECASE
)
#: Query parameters of a Redis URL shown as they are: the hash's name and the database
#: number say where the list is, not how to get in (redis-py takes any other parameter,
#: ``password=`` among them, as a connection option).
_PUBLIC_REDIS_PARAMETERS = frozenset({"key", "db"})


def _mask_query(match: re.Match[str]) -> str:
    if match["redis"] is None:
        return match["name"] + "***"

    def value(query: re.Match[str]) -> str:
        public = query[1][1:-1].lower() in _PUBLIC_REDIS_PARAMETERS
        return query[0] if public else query[1] + "***"

    return _QUERY_VALUE.sub(value, match["redis"])


def mask(text: str) -> str:
    """``text`` with URL credentials and query values masked (``?token=***``), except
    the hash's name (``?key=``) and database of a Redis URL, which are no secrets.

    The one masking function of the package: settings shown by the CLI, errors,
    log lines (urllib3's too, see transport.py) go through it, so a token in a
    master-list URL is never printed.
    """
    return _MASKED.sub(_mask_query, _USERINFO.sub("//***@", text))


#: "This network" (RFC 1122): no peer can reach a node there.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def unreachable_base_url(url: str) -> str | None:
    """Why peers could not reach this node at ``url``, or None.

    A bind-all address (``0.0.0.0``, ``::``) is where a server listens, not where it is
    reached; a path would send peers to ``<path>clustershazbot/...``, while the routes are
    at the root of the app (a node behind a path-prefix proxy uses its direct address).
    """
    parts = urlsplit(url)
    try:
        ip = ipaddress.ip_address((parts.hostname or "").split("%")[0])
    except ValueError:
        ip = None
    if ip is not None and (
        ip.is_unspecified
        or ip.is_multicast
        or ip in _THIS_NETWORK
        or ip == ipaddress.ip_address("255.255.255.255")
    ):
        return (
            f"names {parts.hostname}, an address peers cannot reach: use one of this "
            "host's addresses that they can (e.g. its or its pod's IP)"
        )
    if parts.path not in ("", "/"):
        return (
            f"has the path {parts.path!r}: the cluster's routes are served at "
            "/clustershazbot/ at the root of the app, so a base URL is a scheme, host and "
            "port only (behind a path-prefix proxy, use the node's direct address)"
        )
    return None


def _shown(value: Any) -> str:
    """``repr(value)`` masked: errors never carry secrets."""
    return mask(repr(value))


def _location(key: str, value: Any) -> str:
    location = _str(key, value)
    scheme = location.partition("://")[0].lower() if "://" in location else ""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", location) and scheme not in _SCHEMES:
        # e.g. ftp:// would otherwise be taken for a relative path
        raise ConfigError(
            f"{key} must be a path or a file://, http(s)://, s3://, redis(s):// or dns:// URL, "
            f"got {_shown(value)}"
        )
    problem = None
    if scheme in ("http", "https"):
        problem = url_problem(location)
    elif scheme in _SCHEMES and scheme != "file":
        problem = _SCHEMES[scheme](urlsplit(location))
    if problem:
        raise ConfigError(f"{key} {problem}, got {_shown(value)}")
    return location


def _file(key: str, value: Any) -> str:
    """A path to an existing, readable file (or directory: a CA directory)."""
    path = _str(key, value)
    if not os.path.exists(path):
        raise ConfigError(f"{key}: no such file: {path!r}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{key}: cannot read {path!r}")
    return path


def _check_tls(values: dict[str, Any]) -> None:
    """Load the CA bundle and the client certificate now: a bad file is a ConfigError at
    init_app, not a TLS failure on every request."""
    ca, cert, key = values["tls_ca"], values["tls_cert"], values["tls_key"]
    if key and not cert:
        raise ConfigError("SHAZBOT_TLS_KEY is set without SHAZBOT_TLS_CERT")
    context = ssl.create_default_context()
    if ca:
        try:
            if os.path.isdir(ca):
                context.load_verify_locations(capath=ca)
            else:
                context.load_verify_locations(cafile=ca)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"SHAZBOT_TLS_CA: {ca!r} is not a PEM CA bundle ({exc})") from None
    if cert:
        try:  # password="": an encrypted key fails here instead of prompting on the terminal
            context.load_cert_chain(cert, key or None, password="")
        except ssl.SSLError as exc:
            which = "SHAZBOT_TLS_CERT and SHAZBOT_TLS_KEY" if key else "SHAZBOT_TLS_CERT"
            raise ConfigError(
                f"{which}: {cert!r} is not a PEM certificate with its unencrypted private key"
                f"{' in ' + repr(key) if key else ''} ({exc.reason or exc})"
            ) from None


def _port_problem(parts: SplitResult) -> str | None:
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return "has an invalid port"
    return None


#: The master-list URL schemes (the masterlist package) and what each needs (see docs/masterlist.md).
_SCHEMES: dict[str, Callable[[SplitResult], str | None]] = {
    "file": lambda parts: None,
    "http": lambda parts: None,
    "https": lambda parts: None,
    "s3": lambda p: None if p.netloc and p.path.strip("/") else "must be s3://bucket/key",
    "redis": lambda p: _port_problem(p) or (None if p.hostname else "must name a host"),
    "rediss": lambda p: _port_problem(p) or (None if p.hostname else "must name a host"),
    "dns": lambda p: _port_problem(p) or (None if p.hostname else "must be dns://name[:port]"),
}


def _path_or_off(key: str, value: Any) -> str | None:
    """A URL path such as ``/happy``; ``false``, ``off`` or an empty string turn it off."""
    if value is False or (isinstance(value, str) and value.strip().lower() in _FALSE):
        return None
    if not isinstance(value, str) or not value.startswith("/") or any(ch.isspace() for ch in value):
        raise ConfigError(f"{key} must be a path starting with '/' or false, got {value!r}")
    return value


_Parser = Callable[[str, Any], Any]
_PARSERS: dict[str, _Parser] = {
    "secret": _secrets,
    "control_secret": _secrets,
    "base_url": _base_url,
    "master_list": _location,
    "master_list_update": _location,
    "master_list_update_auth": _header_value,
    "gossip_interval": _seconds,
    "master_announce_minimum": _seconds_or_zero,
    "master_announce_interval": _seconds_or_zero,
    "monitor": _bool,
    "update_master_list_on_shutdown": _bool,
    "autostart": _bool,
    "read_env": _bool,
    "self_check": _bool,
    "fast_gossip": _bool,
    "max_body_bytes": _bytes,
    "max_members": _count,
    "max_clock_skew": _seconds,
    "failure_timeout": _seconds,
    "retry_delay": _seconds_or_zero,
    "retries": _count,
    "request_timeout": _seconds,
    "min_request_timeout": _seconds,
    "probe_helpers": _count_or_zero,
    "job_workers": _count,
    "master_list_timeout": _seconds,
    "retention": _seconds,
    "allowed_peers": parse_allowed_peers,
    "state_path": _str,
    "ui_path": _path_or_off,
    "happy_path": _path_or_off,
    "tls_ca": _file,
    "tls_cert": _file,
    "tls_key": _file,
}
#: Secrets that take older values still accepted during a rotation (``accepted_*s``).
_ROTATED = ("secret", "control_secret")
#: Settings that only an HTTP(S) master list needs (see updated_in_place), and what they are.
_IN_PLACE_OPTIONAL = {
    "master_list_update": "the URL its updated list is PUT to",
    "master_list_update_auth": "the Authorization header value of that PUT",
}


def config_key(name: str) -> str:
    return "SHAZBOT_" + name.upper()


def _warn_unknown_keys(config: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """A misspelt key would be silently ignored: name it, and the closest known one."""
    known = [config_key(name) for name in _PARSERS]
    for source, keys in (("app.config", config), ("the environment", environ)):
        for key in sorted(k for k in keys if isinstance(k, str) and k.startswith("SHAZBOT_")):
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                log.warning("unknown setting %s in %s is ignored%s", key, source, hint)


def load_settings(
    config: MutableMapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Settings:
    """Read and validate every setting; write the effective values back into ``config``.

    ``options`` take lower-case names (``gossip_interval=0.2``) or config keys;
    ``defaults`` replace Settings' own defaults (e.g. ``autostart`` in a testing app).
    Raises :class:`ConfigError` naming the first missing or invalid setting.
    """
    config = config if config is not None else {}
    given = {}
    for name, value in (options or {}).items():
        short = name.lower().removeprefix("shazbot_")
        if short not in _PARSERS:
            raise ConfigError(f"unknown option {name!r}; known: {', '.join(sorted(_PARSERS))}")
        given[short] = value
    read_env = given.get("read_env", config.get(config_key("read_env")))
    if read_env is not None and not _bool(config_key("read_env"), read_env):
        environ = {}  # a test app, say, that must not see the developer's shell
    environ = environ or {}

    _warn_unknown_keys(config, environ)
    raw: dict[str, Any] = {}
    for name in _PARSERS:
        key = config_key(name)
        if name in given:
            raw[name] = given[name]
        elif config.get(key) is not None:
            raw[name] = config[key]
        elif environ.get(key) is not None:
            raw[name] = environ[key]

    defaults = {
        **{f.name: f.default for f in fields(Settings) if f.default is not MISSING},
        **(defaults or {}),
    }
    in_place = isinstance(raw.get("master_list"), str) and updated_in_place(raw["master_list"])
    if in_place:
        raw.setdefault("master_list_update", raw["master_list"])
        raw.setdefault("master_list_update_auth", "")

    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        key = config_key(name)
        if name not in raw or raw[name] is None:
            if name not in defaults:
                what = _IN_PLACE_OPTIONAL.get(name)
                hint = (
                    f" with an HTTP(S) master list: {what} (file, S3 and Redis master lists "
                    "are updated where they are read, DNS ones never: they need no such setting)"
                    if what
                    else ""
                )
                raise ConfigError(f"{key} is required{hint}")
            values[name] = defaults[name]
        elif name == "master_list_update_auth" and in_place and raw[name] == "":
            values[name] = ""
        else:
            values[name] = parse(key, raw[name])
    _check_tls(values)
    for name in _ROTATED:  # the parser's tuple: the first is sent, all are accepted
        values[f"accepted_{name}s"] = values[name]
        values[name] = values[name][0]
    settings = Settings(**values)
    for name in _PARSERS:
        value = getattr(settings, name)
        if name in _ROTATED and len(getattr(settings, f"accepted_{name}s")) > 1:
            value = list(getattr(settings, f"accepted_{name}s"))  # the whole rotation, as given
        config[config_key(name)] = value
    return settings
