"""An HTTP client for nodes: their view (``/clustershazbot/list``) and control
(``/clustershazbot/control``), for the command-line tools. Every failure is a
:class:`NodeError` with the exit code scripts can rely on (see cli.py)."""

from __future__ import annotations

from typing import Any

import click
import requests

from .constants import CONTROL_PATH, LIST_PATH
from .errors import BadMessage
from .formatting import printable
from .records import ServerList
from .transport import apply_tls

EXIT_UNREACHABLE = 3
EXIT_UNAUTHORIZED = 4
EXIT_NODE_ERROR = 5
#: Seconds the CLI waits for a node.
TIMEOUT = 5.0
#: (CA bundle, client certificate, its key) for HTTPS nodes: SHAZBOT_TLS_CA/_CERT/_KEY.
TLS = tuple[str | None, str | None, str | None]
NO_TLS: TLS = (None, None, None)


class NodeError(click.ClickException):
    """A failure talking to a node; each subclass has the exit code scripts rely on.

    The message may quote the node (its ``error``), so its control characters are
    escaped here, for the text on stderr and the ``--json`` output alike."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


class Unreachable(NodeError):
    exit_code = EXIT_UNREACHABLE


class Refused(NodeError):
    """The node did not accept the control secret."""

    exit_code = EXIT_UNAUTHORIZED


class NodeFailed(NodeError):
    """The node answered with an error or a bad reply."""

    exit_code = EXIT_NODE_ERROR


def _request(method: str, url: str, secret: str | None, tls: TLS, **kw: Any) -> requests.Response:
    headers = {"Authorization": secret} if secret else {}
    with requests.Session() as session:
        session.trust_env = False  # nodes are addressed directly, as the nodes do
        apply_tls(session, *tls)
        try:
            return session.request(method, url, headers=headers, timeout=TIMEOUT, **kw)
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach {url}: {type(exc).__name__}") from None


def _check(response: requests.Response, base_url: str) -> Any:
    """The reply's JSON, or a NodeError that says what the node answered."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code == 401:
        raise Refused(f"{base_url} rejected the control secret (HTTP 401)")
    if response.status_code != 200 or data is None:
        reason = data.get("error") if isinstance(data, dict) else None
        raise NodeFailed(
            f"{base_url} answered HTTP {response.status_code}"
            + (f": {reason}" if reason else " without a JSON body")
        )
    return data


def fetch_view(base_url: str, secret: str | None, tls: TLS = NO_TLS) -> ServerList:
    """A node's view; offline members only with the right control secret."""
    response = _request("GET", base_url + LIST_PATH, secret, tls)
    data = _check(response, base_url)
    if secret and isinstance(data, dict) and "offline" not in data:
        # /list does not reject a wrong secret: it just leaves the offline members out.
        raise Refused(f"{base_url} did not accept the control secret")
    try:
        return ServerList.from_dict(data)
    except BadMessage as exc:
        raise NodeFailed(f"{base_url} sent a bad list: {exc}") from None


def send_control(base_url: str, secret: str, online: bool, tls: TLS = NO_TLS) -> None:
    response = _request(
        "POST",
        base_url + CONTROL_PATH,
        secret,
        tls,
        json={"message": "control", "online": online},
    )
    _check(response, base_url)
