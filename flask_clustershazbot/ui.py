"""The live cluster page at ``SHAZBOT_UI_PATH`` (default ``/clustershazbot/``).

One self-contained HTML page (no CDN, works offline) that polls ``state.json``
beside it every few seconds. Both answer only to HTTP Basic with the control
secret as the password (any user name).
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template, request

from ._json import encode_json
from .config import Settings
from .engine import Engine
from .formatting import format_age
from .views import current_engine

#: Registered at ``SHAZBOT_UI_PATH``; its routes are relative to that path.
ui_blueprint = Blueprint("clustershazbot_ui", __name__, template_folder="templates")
#: How often the page asks for fresh state.
REFRESH_SECONDS = 2


def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@ui_blueprint.before_request
def _require_control_secret() -> Response | None:
    auth = request.authorization
    password = auth.password if auth is not None and auth.type == "basic" else None
    if password is not None and current_engine().accepts(
        password, True, f"the live page's login from {request.remote_addr}"
    ):
        return None
    response = current_app.response_class(
        encode_json({"error": "this page needs the control secret as the HTTP Basic password"}),
        401,
        mimetype="application/json",
    )
    response.headers["WWW-Authenticate"] = 'Basic realm="clustershazbot", charset="UTF-8"'
    return _private(response)


def _ago(now: int, stamp: int | None) -> str | None:
    return None if stamp is None else format_age((now - stamp) / 1000)


def cluster_state(engine: Engine) -> dict[str, Any]:
    """What the page shows: this node's view, ages computed on the node's clock."""
    now = engine.clock()
    view = engine.server_list()
    members = [
        {
            **server.to_dict(),
            "state": state,
            "age": format_age((now - server.last_update) / 1000),
            "self": server.base_url == engine.settings.base_url,
        }
        for state, servers in (("online", view.online), ("offline", view.offline))
        for server in servers
    ]
    members.sort(key=lambda m: m["baseUrl"])
    health = engine.health()
    return {
        "node": engine.settings.base_url,
        "status": health["status"],
        "error": health.get("error"),
        "online": len(view.online),
        "offline": len(view.offline),
        "lastRound": engine.last_round,
        "lastRoundAge": _ago(now, engine.last_round),
        "lastMasterSync": engine.last_master_sync,
        "lastMasterSyncAge": _ago(now, engine.last_master_sync),
        "recordsRefused": int(engine.stats.snapshot()["records_refused"]),
        "members": members,
    }


@ui_blueprint.get("/")
def page() -> Response:
    nonce = secrets.token_urlsafe(16)
    html = render_template(
        "clustershazbot.html",
        node=current_engine().settings.base_url,
        nonce=nonce,
        refresh_ms=REFRESH_SECONDS * 1000,
    )
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return _private(response)


@ui_blueprint.get("/state.json")
def state() -> Response:
    return _private(
        current_app.response_class(
            encode_json(cluster_state(current_engine())), mimetype="application/json"
        )
    )


def register_ui(app: Flask, settings: Settings) -> None:
    if settings.ui_path is not None:
        app.register_blueprint(ui_blueprint, url_prefix=settings.ui_path)
