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
from dataclasses import fields
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from .client import NO_TLS, TLS, NodeError, fetch_view, send_control
from .config import Settings, config_key
from .constants import EXTENSION_KEY
from .formatting import members_data, members_table
from .records import canonical_base_url
from .settings_values import mask


def _base_url(url: str) -> str:
    try:
        return canonical_base_url(url)
    except ValueError as exc:
        raise click.BadParameter(f"the node URL {exc}", param_hint="URL") from None


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
    _emit(
        {"node": base_url, "state": state, "success": True}, as_json, f"{base_url} is now {state}"
    )


# -- the console script: any node over HTTP -----------------------------------

_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
_secret_option = click.option(
    "--secret",
    envvar="SHAZBOT_CONTROL_SECRET",
    show_envvar=True,
    help="The node's control secret (prefer the environment variable: argv is visible to others).",
)


def _tls_options(command: Any) -> Any:
    """--ca, --cert and --key, from SHAZBOT_TLS_CA/_CERT/_KEY like a node's settings."""
    file = click.Path(exists=True, dir_okay=True, readable=True)
    for name, env, text in reversed(
        (
            ("--ca", "SHAZBOT_TLS_CA", "CA bundle the node's HTTPS certificate must chain to."),
            (
                "--cert",
                "SHAZBOT_TLS_CERT",
                "Client certificate (PEM), for nodes that require mutual TLS.",
            ),
            ("--key", "SHAZBOT_TLS_KEY", "Private key of --cert, if not in its file."),
        )
    ):
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
        url: str,
        secret: str | None,
        ca: str | None,
        cert: str | None,
        key: str | None,
        as_json: bool,
    ) -> None:
        if not secret:
            raise click.UsageError(
                "the control secret is needed: --secret or SHAZBOT_CONTROL_SECRET"
            )
        set_state(_base_url(url), secret, online, as_json, (ca, cert, key))

    return command


main_group.add_command(_control_command(True))
main_group.add_command(_control_command(False))


@main_group.command(
    "demo",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo_command(args: tuple[str, ...]) -> None:
    """Run the local demo cluster (see `clustershazbot demo --help`)."""
    from .demo import main as demo_main

    sys.exit(demo_main(list(args)))


@main_group.command("gunicorn-conf")
def gunicorn_conf_command() -> None:
    """Print the package's gunicorn configuration (`> gunicorn.conf.py` to edit it)."""
    from importlib.resources import files

    click.echo((files(__package__) / "gunicorn_conf.py").read_text(encoding="utf-8"), nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``clustershazbot`` console script."""
    main_group.main(args=argv, prog_name="clustershazbot")


# -- flask shazbot: this app's node ------------------------------------------

shazbot_cli = AppGroup("shazbot", help="Look at and steer this app's clustershazbot node.")


def _settings() -> Settings:
    return current_app.extensions[EXTENSION_KEY].settings  # type: ignore[no-any-return]


def _tls(settings: Settings) -> TLS:
    return settings.tls_ca, settings.tls_cert, settings.tls_key


def public_config(settings: Settings, members: int | None = None) -> dict[str, Any]:
    """Every setting except the secrets (the fields kept out of ``repr``), URL tokens masked.
    A SHAZBOT_FAILURE_TIMEOUT left unset is given as the node derives it for a table of
    ``members`` records (:meth:`Settings.failure_timeout_for`); None when that is unknown."""
    config = {
        config_key(f.name): mask(value) if isinstance(value, str) else value
        for f in fields(settings)
        if f.repr
        for value in (getattr(settings, f.name),)
    }
    if settings.failure_timeout is None and members is not None:
        config[config_key("failure_timeout")] = settings.failure_timeout_for(members)
    return config


def _config_text(settings: Settings, config: dict[str, Any], members: int | None) -> str:
    """One ``KEY = value`` line per setting; a derived value says what it was derived from."""
    shown, key = dict(config), config_key("failure_timeout")
    if settings.failure_timeout is None:
        shown[key] = (
            f"{config[key]:g} (derived: {config[key] / settings.gossip_interval:g} rounds of "
            f"SHAZBOT_GOSSIP_INTERVAL for {members} members)"
            if members is not None
            else "derived from SHAZBOT_GOSSIP_INTERVAL and the number of members"
        )
    return "\n".join(f"{k} = {v}" for k, v in shown.items())


@shazbot_cli.command("status")
@_json_option
def status_command(as_json: bool) -> None:
    """This app's settings (secrets left out) and its node's view."""
    settings = _settings()
    try:
        view = fetch_view(settings.base_url, settings.control_secret, _tls(settings))
    except NodeError as exc:
        config = public_config(settings)
        if as_json:
            click.echo(
                json.dumps({"config": config, "error": exc.message}, indent=2, sort_keys=True)
            )
        else:
            click.echo(_config_text(settings, config, None))
        raise
    members = len(view.online) + len(view.offline)  # the node's whole table, as it counts
    config = public_config(settings, members)
    data = members_data(settings.base_url, view, True)
    text = _config_text(settings, config, members) + "\n\n" + members_table(data)
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
