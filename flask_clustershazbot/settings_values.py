"""What each setting's value must be: one parser per kind of value, each raising
:class:`ConfigError` that names the key, the table of settings and their parsers, and
how secrets are kept out of what is shown (:func:`mask`)."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError
from .peers import MIN_SECRET_LENGTH, parse_allowed_peers
from .records import canonical_base_url, url_problem

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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


def parse_bool(key: str, value: Any) -> bool:
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


def check_tls(values: dict[str, Any]) -> None:
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
PARSERS: dict[str, _Parser] = {
    "secret": _secrets,
    "control_secret": _secrets,
    "base_url": _base_url,
    "master_list": _location,
    "master_list_update": _location,
    "master_list_update_auth": _header_value,
    "gossip_interval": _seconds,
    "master_announce_minimum": _seconds_or_zero,
    "master_announce_interval": _seconds_or_zero,
    "monitor": parse_bool,
    "update_master_list_on_shutdown": parse_bool,
    "autostart": parse_bool,
    "read_env": parse_bool,
    "self_check": parse_bool,
    "fast_gossip": parse_bool,
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
