"""Health integration: py-healthcheck, flask-healthz, and an optional ``/happy`` endpoint.

All three report :meth:`Engine.health`, the original's section:
``{"status": "ok", "cluster": {"online": [...], "offline": [...]}}`` or
``{"status": "error", "error": "..."}`` (not started, shut down, or failing); and
``{"status": "degraded", "reason": "...", "cluster": {...}}`` for a node that knows no
peer online and cannot read the master list. A degraded node still serves (taking it out
of a load balancer would not bring the master list back): the checks pass and say why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app

from ._json import encode_json
from .config import Settings
from .engine import Engine
from .views import current_engine

#: Served at ``SHAZBOT_HAPPY_PATH`` (the blueprint's url_prefix) when that is set.
happy_blueprint = Blueprint("clustershazbot_happy", __name__)


@happy_blueprint.get("")
def happy() -> Response:
    """The original's ``/happy`` shape: 200 when the cluster section is ok (or degraded,
    as the body's ``status`` says), else 503."""
    section = current_engine().health()
    ok = section["status"] != "error"
    body = {"status": section["status"], "extensions": {"clustershazbot": section}}
    return current_app.response_class(
        encode_json(body),
        200 if ok else 503,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )


def register_happy(app: Flask, settings: Settings) -> None:
    if settings.happy_path is not None:
        app.register_blueprint(happy_blueprint, url_prefix=settings.happy_path)


def register_healthcheck(health: Any, engine: Callable[[], Engine]) -> None:
    """Add a ``clustershazbot`` check and section to a py-healthcheck ``HealthCheck``.

    The check passes while the engine reports ``ok`` or ``degraded``; its output says how
    many members are online and offline, and why the node is degraded. The section is the
    whole health report. ``engine`` is called at check time (inside the health request).
    """

    def clustershazbot() -> tuple[bool, str]:
        section = engine().health()
        if section["status"] == "error":
            return False, str(section["error"])
        cluster = section["cluster"]
        counts = f"{len(cluster['online'])} online, {len(cluster['offline'])} offline"
        if section["status"] == "degraded":
            return True, f"degraded: {section['reason']}; {counts}"
        return True, counts

    health.add_check(clustershazbot)
    health.add_section("clustershazbot", lambda: engine().health())


def healthz_check() -> None:
    """A flask-healthz check: fails (``HealthError``) when the current app's engine reports
    an error; passes while it is ok or degraded (see :func:`healthz_check_strict`).

    ``app.config["HEALTHZ"] = {"ready": "flask_clustershazbot.health.healthz_check"}``
    """
    from flask_healthz import HealthError

    section = current_engine().health()
    if section["status"] == "error":
        raise HealthError(f"clustershazbot: {section['error']}")


def healthz_check_strict() -> None:
    """:func:`healthz_check` that also fails while the node is degraded (alone, the master
    list unreadable), for deployments that would rather take such a node out of service."""
    from flask_healthz import HealthError

    section = current_engine().health()
    if section["status"] != "ok":
        why = section.get("error") or f"degraded: {section['reason']}"
        raise HealthError(f"clustershazbot: {why}")
