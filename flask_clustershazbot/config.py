"""Settings, read once: constructor option > app.config > ``SHAZBOT_*`` environment > default."""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import ConfigError
from .settings_values import PARSERS, check_tls, parse_bool

log = logging.getLogger(__name__)


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
    #: under gunicorn (host_state.default_state_path), else the table stays in memory.
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
    known = [config_key(name) for name in PARSERS]
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
        if short not in PARSERS:
            raise ConfigError(f"unknown option {name!r}; known: {', '.join(sorted(PARSERS))}")
        given[short] = value
    read_env = given.get("read_env", config.get(config_key("read_env")))
    if read_env is not None and not parse_bool(config_key("read_env"), read_env):
        environ = {}  # a test app, say, that must not see the developer's shell
    environ = environ or {}

    _warn_unknown_keys(config, environ)
    raw: dict[str, Any] = {}
    for name in PARSERS:
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
    for name, parse in PARSERS.items():
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
    check_tls(values)
    for name in _ROTATED:  # the parser's tuple: the first is sent, all are accepted
        values[f"accepted_{name}s"] = values[name]
        values[name] = values[name][0]
    settings = Settings(**values)
    for name in PARSERS:
        value = getattr(settings, name)
        if name in _ROTATED and len(getattr(settings, f"accepted_{name}s")) > 1:
            value = list(getattr(settings, f"accepted_{name}s"))  # the whole rotation, as given
        config[config_key(name)] = value
    return settings
