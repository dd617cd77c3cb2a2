"""``ClusterShazbot(app)``: config, blueprint, lifecycle. Per-app state lives in
``app.extensions["clustershazbot"]`` (the app's :class:`Engine`)."""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from typing import Any

from flask import Flask, current_app, has_app_context

from .cli import shazbot_cli
from .config import load_settings
from .engine import Engine
from .errors import ConfigError
from .gunicorn import make_engine
from .health import register_happy, register_healthcheck
from .lifecycle import exit_on_sigterm, loaded_by_flask_command
from .membership import Changes
from .metrics import register as register_metrics
from .records import ServerList
from .signals import send_changes
from .ui import register_ui
from .views import blueprint

EXTENSION_KEY = "clustershazbot"
log = logging.getLogger("flask_clustershazbot")


class ClusterShazbot:
    """Gossip cluster membership for a Flask app.

    ``options`` take precedence over ``app.config``, which takes precedence over
    ``SHAZBOT_*`` environment variables; see the configuration docs.
    """

    #: The blueprint of ``/clustershazbot/gossip``, ``/list`` and ``/control`` (named
    #: ``clustershazbot``), e.g. for ``request.blueprint`` checks in a login guard.
    blueprint = blueprint

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = options
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Make ``app`` a cluster member: read and validate its settings, register the
        ``/clustershazbot/`` routes (:data:`blueprint`), the live page and the ``flask
        shazbot`` commands, and start the node, unless ``SHAZBOT_AUTOSTART`` is false (its
        default in a ``TESTING`` app) or the ``flask`` CLI loaded the app without serving it
        (see the lifecycle docs).

        Raises :exc:`ConfigError` naming the first missing or invalid setting, or when
        ClusterShazbot is already registered on ``app``. An unknown ``SHAZBOT_*`` key in
        ``app.config`` or the environment is logged as a warning with the closest known key.
        """
        if EXTENSION_KEY in app.extensions:
            raise ConfigError("ClusterShazbot is already registered on this app")
        # A testing app starts its node only when SHAZBOT_AUTOSTART is set explicitly.
        settings = load_settings(
            app.config, os.environ, self.options, defaults={"autostart": not app.testing}
        )
        app_ref = weakref.ref(app)

        def listener(changes: Changes) -> None:
            sender = app_ref()
            if sender is not None:
                send_changes(sender, changes)

        engine = make_engine(settings, self_check=True, listener=listener)
        app.extensions[EXTENSION_KEY] = engine
        app.register_blueprint(blueprint)
        exempt_from_request_guards(app)
        _exempt_at_first_request(app)
        register_ui(app, settings)
        register_happy(app, settings)
        register_metrics()  # in prometheus_client's default registry, when it is installed
        app.cli.add_command(shazbot_cli)
        self._apps.add(app)
        atexit.register(engine.shutdown)
        engine_ref = weakref.ref(engine)
        os.register_at_fork(after_in_child=lambda: _reset(engine_ref))
        not_serving = loaded_by_flask_command() if settings.autostart else None
        if not_serving:
            log.info("not started: %s", not_serving)
        elif settings.autostart:
            _start(engine)

    def engine(self, app: Flask | None = None) -> Engine:
        """The engine of ``app``, the current app, or the only app this object was given."""
        if app is None:
            if has_app_context():
                app = current_app._get_current_object()  # type: ignore[attr-defined]
            elif len(self._apps) == 1:
                app = next(iter(self._apps))
            else:
                raise RuntimeError(
                    "pass app=..., or call this inside an app context: "
                    f"this ClusterShazbot serves {len(self._apps)} apps"
                )
        try:
            return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
        except KeyError:
            raise RuntimeError("ClusterShazbot.init_app(app) was not called for this app") from None

    def start(self, app: Flask | None = None) -> None:
        """Go online: bootstrap from the master list and run the schedules. Idempotent.

        The node acts once its base URL is found to lead back to this process; a process
        that is not the one serving it (a script, a worker) stays passive. See the
        lifecycle docs.
        """
        _start(self.engine(app))

    def shutdown(self, app: Flask | None = None) -> None:
        """Go offline and tell the cluster. Idempotent; also runs at interpreter exit."""
        self.engine(app).shutdown()

    def server_list(self, include_offline: bool = False, app: Flask | None = None) -> ServerList:
        """This node's view of the cluster."""
        return self.engine(app).server_list(include_offline)

    def health(self, app: Flask | None = None) -> dict[str, Any]:
        """``{"status": "ok", "cluster": {...}}`` or ``{"status": "error", "error": ...}``."""
        return self.engine(app).health()

    def register_healthcheck(self, health: Any, app: Flask | None = None) -> None:
        """Add a ``clustershazbot`` check and section to a py-healthcheck ``HealthCheck``."""
        register_healthcheck(health, lambda: self.engine(app))


def _start(engine: Engine) -> None:
    engine.start()
    if engine.wait_for_self_check:  # not under gunicorn, which handles SIGTERM itself
        exit_on_sigterm()


def exempt_from_request_guards(app: Flask) -> None:
    """Exempt the blueprint from Flask-WTF's CSRF check and Flask-Limiter's limits on ``app``.

    Gossip, list and control requests carry a shared secret, not a browser session: a CSRF
    token cannot apply, and a per-client rate limit would fail gossip (a peer sends a few
    requests per interval). Idempotent; an extension that is not registered is skipped.
    """
    csrf = app.extensions.get("csrf")  # flask_wtf.csrf.CSRFProtect
    if csrf is not None and hasattr(csrf, "exempt"):
        csrf.exempt(blueprint)
    limiters = app.extensions.get("limiter")  # flask_limiter.Limiter: a set of them
    for limiter in limiters if isinstance(limiters, (set, list, tuple)) else [limiters]:
        if limiter is not None and hasattr(limiter, "exempt"):
            limiter.exempt(blueprint)


def _exempt_at_first_request(app: Flask) -> None:
    """For extensions registered after ClusterShazbot: their ``before_request`` check was
    registered after this one, so exempting here, at the first request, precedes it."""
    done = False

    def exempt_once() -> None:
        nonlocal done
        if not done:
            exempt_from_request_guards(app)
            done = True

    app.before_request(exempt_once)


def _reset(engine_ref: weakref.ref[Engine]) -> None:
    engine = engine_ref()
    if engine is not None:
        engine.reset_after_fork()
