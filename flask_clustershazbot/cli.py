"""Command line tools.

``flask shazbot status|members|online|offline`` acts on this app's node, and
``clustershazbot members|online|offline URL`` on any node. Both talk to the
running node over HTTP (``/clustershazbot/list`` and ``/clustershazbot/control``
with the control secret): the CLI process itself never joins the cluster.

Exit codes: 0 success, 2 usage error (e.g. no secret), 3 node unreachable,
4 wrong control secret, 5 the node answered with an error or a bad reply.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import fields
from typing import Any

import click
import requests
from flask import current_app
from flask.cli import AppGroup

from .config import Settings, config_key, mask
from .errors import BadMessage
from .records import ServerList, canonical_base_url
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
    """A failure talking to a node, with the exit code scripts can rely on."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def format_age(seconds: float) -> str:
    """``3 s ago``, ``5 min ago``, ``2 h ago``, ``4 d ago`` (``... ahead`` for a future stamp)."""
    if seconds < -1:
        return f"{format_age(-seconds).removesuffix(' ago')} ahead"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def _base_url(url: str) -> str:
    try:
        return canonical_base_url(url)
    except ValueError as exc:
        raise click.BadParameter(f"the node URL {exc}", param_hint="URL") from None


def _request(method: str, url: str, secret: str | None, tls: TLS, **kw: Any) -> requests.Response:
    headers = {"Authorization": secret} if secret else {}
    with requests.Session() as session:
        session.trust_env = False  # nodes are addressed directly, as the nodes do
        apply_tls(session, *tls)
        try:
            return session.request(method, url, headers=headers, timeout=TIMEOUT, **kw)
        except requests.RequestException as exc:
            raise NodeError(f"cannot reach {url}: {type(exc).__name__}", EXIT_UNREACHABLE) from None


def _check(response: requests.Response, base_url: str) -> Any:
    """The reply's JSON, or a NodeError that says what the node answered."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code == 401:
        raise NodeError(f"{base_url} rejected the control secret (HTTP 401)", EXIT_UNAUTHORIZED)
    if response.status_code != 200 or data is None:
        reason = data.get("error") if isinstance(data, dict) else None
        raise NodeError(
            f"{base_url} answered HTTP {response.status_code}"
            + (f": {reason}" if reason else " without a JSON body"),
            EXIT_NODE_ERROR,
        )
    return data


def fetch_view(base_url: str, secret: str | None, tls: TLS = NO_TLS) -> ServerList:
    """A node's view; offline members only with the right control secret."""
    response = _request("GET", base_url + "clustershazbot/list", secret, tls)
    data = _check(response, base_url)
    if secret and isinstance(data, dict) and "offline" not in data:
        # /list does not reject a wrong secret: it just leaves the offline members out.
        raise NodeError(f"{base_url} did not accept the control secret", EXIT_UNAUTHORIZED)
    try:
        return ServerList.from_dict(data)
    except BadMessage as exc:
        raise NodeError(f"{base_url} sent a bad list: {exc}", EXIT_NODE_ERROR) from None


def send_control(base_url: str, secret: str, online: bool, tls: TLS = NO_TLS) -> None:
    response = _request(
        "POST", base_url + "clustershazbot/control", secret, tls,
        json={"message": "control", "online": online},
    )
    _check(response, base_url)


def members_data(base_url: str, view: ServerList, with_offline: bool) -> dict[str, Any]:
    """The stable JSON shape of ``members --json``."""
    rows = [(s, "online") for s in view.online] + [(s, "offline") for s in view.offline]
    rows.sort(key=lambda row: row[0].base_url)
    return {
        "node": base_url,
        "online": len(view.online),
        "offline": len(view.offline) if with_offline else None,
        "members": [{**s.to_dict(), "state": state} for s, state in rows],
    }


def members_table(data: dict[str, Any], now_ms: int | None = None) -> str:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    header = ("BASE URL", "STATE", "MONITOR", "LAST UPDATE")
    rows = [
        (m["baseUrl"], m["state"], "yes" if m["monitor"] else "no",
         format_age((now_ms - m["lastUpdate"]) / 1000))
        for m in data["members"]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    offline = "offline not shown: no control secret" if data["offline"] is None \
        else f"{data['offline']} offline"
    lines.append(f"{data['online']} online, {offline} (view of {data['node']})")
    return "\n".join(lines)


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def _fail_json(exc: NodeError, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"error": exc.message, "exitCode": exc.exit_code}, sort_keys=True))


def show_members(base_url: str, secret: str | None, as_json: bool, tls: TLS = NO_TLS) -> None:
    try:
        view = fetch_view(base_url, secret, tls)
    except NodeError as exc:
        _fail_json(exc, as_json)
        raise
    data = members_data(base_url, view, bool(secret))
    _emit(data, as_json, members_table(data))


def set_state(base_url: str, secret: str, online: bool, as_json: bool, tls: TLS = NO_TLS) -> None:
    try:
        send_control(base_url, secret, online, tls)
    except NodeError as exc:
        _fail_json(exc, as_json)
        raise
    state = "online" if online else "offline"
    _emit({"node": base_url, "state": state, "success": True}, as_json,
          f"{base_url} is now {state}")


# -- the console script: any node over HTTP -----------------------------------

_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
_secret_option = click.option(
    "--secret", envvar="SHAZBOT_CONTROL_SECRET", show_envvar=True,
    help="The node's control secret (prefer the environment variable: argv is visible to others).",
)


def _tls_options(command: Any) -> Any:
    """--ca, --cert and --key, from SHAZBOT_TLS_CA/_CERT/_KEY like a node's settings."""
    file = click.Path(exists=True, dir_okay=True, readable=True)
    for name, env, text in reversed((
        ("--ca", "SHAZBOT_TLS_CA", "CA bundle the node's HTTPS certificate must chain to."),
        ("--cert", "SHAZBOT_TLS_CERT", "Client certificate (PEM), for nodes that require mutual TLS."),
        ("--key", "SHAZBOT_TLS_KEY", "Private key of --cert, if not in its file."),
    )):
        command = click.option(name, envvar=env, show_envvar=True, type=file, help=text)(command)
    return command


@click.group(name="clustershazbot", context_settings={"help_option_names": ["-h", "--help"]})
def main_group() -> None:
    """Look at and steer clustershazbot nodes over HTTP."""


@main_group.command("members")
@click.argument("url")
@_secret_option
@_tls_options
@_json_option
def members_command(
    url: str, secret: str | None, ca: str | None, cert: str | None, key: str | None, as_json: bool
) -> None:
    """List the members in the view of the node at URL (offline ones need the secret)."""
    show_members(_base_url(url), secret, as_json, (ca, cert, key))


def _control_command(online: bool) -> click.Command:
    state = "online" if online else "offline"

    @click.command(state, help=f"Take the node at URL {state}{' again' if online else ''}.")
    @click.argument("url")
    @_secret_option
    @_tls_options
    @_json_option
    def command(
        url: str, secret: str | None, ca: str | None, cert: str | None, key: str | None,
        as_json: bool,
    ) -> None:
        if not secret:
            raise click.UsageError("the control secret is needed: --secret or SHAZBOT_CONTROL_SECRET")
        set_state(_base_url(url), secret, online, as_json, (ca, cert, key))

    return command


main_group.add_command(_control_command(True))
main_group.add_command(_control_command(False))


@main_group.command(
    "demo", context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo_command(args: tuple[str, ...]) -> None:
    """Run the local demo cluster (see `clustershazbot demo --help`)."""
    from .demo import main as demo_main

    sys.exit(demo_main(list(args)))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``clustershazbot`` console script."""
    main_group.main(args=argv, prog_name="clustershazbot")


# -- flask shazbot: this app's node ------------------------------------------

shazbot_cli = AppGroup("shazbot", help="Look at and steer this app's clustershazbot node.")


def _settings() -> Settings:
    return current_app.extensions["clustershazbot"].settings  # type: ignore[no-any-return]


def _tls(settings: Settings) -> TLS:
    return settings.tls_ca, settings.tls_cert, settings.tls_key


def public_config(settings: Settings) -> dict[str, Any]:
    """Every setting except the secrets (the fields kept out of ``repr``), URL tokens masked."""
    return {
        config_key(f.name): mask(value) if isinstance(value, str) else value
        for f in fields(settings) if f.repr
        for value in (getattr(settings, f.name),)
    }


@shazbot_cli.command("status")
@_json_option
def status_command(as_json: bool) -> None:
    """This app's settings (secrets left out) and its node's view."""
    settings = _settings()
    config = public_config(settings)
    try:
        view = fetch_view(settings.base_url, settings.control_secret, _tls(settings))
    except NodeError as exc:
        if as_json:
            click.echo(json.dumps({"config": config, "error": exc.message}, indent=2, sort_keys=True))
        else:
            click.echo("\n".join(f"{k} = {v}" for k, v in config.items()))
        raise
    data = members_data(settings.base_url, view, True)
    text = "\n".join(f"{k} = {v}" for k, v in config.items()) + "\n\n" + members_table(data)
    _emit({"config": config, **data}, as_json, text)


@shazbot_cli.command("members")
@_json_option
def flask_members_command(as_json: bool) -> None:
    """The members in this node's view."""
    settings = _settings()
    show_members(settings.base_url, settings.control_secret, as_json, _tls(settings))


@shazbot_cli.command("online")
@_json_option
def flask_online_command(as_json: bool) -> None:
    """Take this node online again."""
    settings = _settings()
    set_state(settings.base_url, settings.control_secret, True, as_json, _tls(settings))


@shazbot_cli.command("offline")
@_json_option
def flask_offline_command(as_json: bool) -> None:
    """Take this node offline (it stays offline until `online`)."""
    settings = _settings()
    set_state(settings.base_url, settings.control_secret, False, as_json, _tls(settings))


if __name__ == "__main__":
    main()
