"""``ClusterShazbot(app)``: config, blueprint, lifecycle. Per-app state lives in
``app.extensions["clustershazbot"]`` (the app's :class:`Engine`)."""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context

from .cli import shazbot_cli
from .config import load_settings
from .constants import EXTENSION_KEY
from .engine import Engine
from .errors import ConfigError
from .factory import make_engine
from .gunicorn import reported_as_app_load_errors
from .health import register_happy, register_healthcheck
from .lifecycle import (
    exit_on_sigterm,
    loaded_by_flask_command,
    patient_reloader_parent,
    reloader_parent,
)
from .membership import Changes
from .metrics import register as register_metrics
from .ownership import Key, attach_singleton_job, make_trigger, ownership_of
from .records import ServerList
from .signals import send_changes
from .ui import register_ui
from .views import FastGossip, blueprint

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[[], Any])


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
        #: Singleton jobs as registered: (name, function, trigger), armed on every app.
        self._singleton_jobs: list[tuple[str, Callable[[], Any], Any]] = []
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
        with reported_as_app_load_errors():  # under gunicorn: one line, not a traceback per worker
            # A testing app starts its node only when SHAZBOT_AUTOSTART is set explicitly.
            settings = load_settings(
                app.config, os.environ, self.options, defaults={"autostart": not app.testing}
            )
        app_ref = weakref.ref(app)

        def listener(changes: Changes) -> None:
            sender = app_ref()
            if sender is None:
                return
            if has_app_context():
                send_changes(sender, changes)
            else:  # a round's thread, or the fast gossip path: receivers get the app's context
                with sender.app_context():
                    send_changes(sender, changes)

        with reported_as_app_load_errors():  # another host serves the base URL
            engine = make_engine(settings, self_check=True, listener=listener)
        app.extensions[EXTENSION_KEY] = engine
        app.register_blueprint(blueprint)
        if settings.fast_gossip:
            app.wsgi_app = FastGossip(app.wsgi_app, engine, app)  # type: ignore[method-assign]
        exempt_from_request_guards(app)
        _exempt_at_first_request(app)
        register_ui(app, settings)
        register_happy(app, settings)
        register_metrics()  # in prometheus_client's default registry, when it is installed
        app.cli.add_command(shazbot_cli)
        self._apps.add(app)
        not_serving = loaded_by_flask_command() if settings.autostart else None
        if not_serving:
            log.info("not started: %s", not_serving)
            if reloader_parent():
                patient_reloader_parent()
        elif settings.autostart:
            _start(engine)
        for name, func, trigger in self._singleton_jobs:
            attach_singleton_job(app, engine, name, func, trigger)

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
        """``{"status": "ok", "cluster": {...}}`` or ``{"status": "error", "error": ...}``;
        ``{"status": "degraded", "reason": ..., "cluster": {...}}`` while this node knows no
        peer online and cannot read the master list."""
        return self.engine(app).health()

    def owner(self, key: Key, app: Flask | None = None) -> str | None:
        """The base URL of the online member that owns ``key`` (str or bytes) in this
        node's view, this node included while it is online; None if nobody is online.

        Rendezvous hashing: nodes with the same view agree, and a join or a leave
        moves only the keys of that member. Views differ for a while after every
        change, so two nodes may each own a key, or none; see docs/ownership.md.
        """
        return ownership_of(self.engine(app)).owner(key)

    def owns(self, key: Key, app: Flask | None = None) -> bool:
        """Whether this node owns ``key`` in its view (see :meth:`owner`)."""
        return ownership_of(self.engine(app)).owns(key)

    def add_singleton_job(
        self,
        func: Callable[[], Any],
        name: str,
        seconds: float | None = None,
        trigger: Any = None,
    ) -> None:
        """Run ``func()`` every ``seconds`` (ticks aligned to the wall clock, the same on
        every node) or at an APScheduler ``trigger``'s times, on the node that owns
        ``name`` when it fires: in an app context, in the one process of that host that
        runs its schedules, with the scheduled time (a UTC datetime, the same on every
        node) in ``flask.g.shazbot_tick``. An exception is logged and the schedule goes
        on. A node runs no job before its first master-list download.

        At most once per tick while the cluster is steady; during convergence or a
        partition a tick may run on two nodes, and after a crash be missed until it is
        detected: see docs/ownership.md. Applies to every app of this object.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a singleton job needs a non-empty name, got {name!r}")
        if any(name == known for known, _, _ in self._singleton_jobs):
            raise ValueError(f"there is already a singleton job named {name!r}")
        if not callable(func):
            raise TypeError(f"singleton job {name!r}: {func!r} is not callable")
        trigger = make_trigger(seconds, trigger)
        self._singleton_jobs.append((name, func, trigger))
        for app in list(self._apps):
            attach_singleton_job(app, app.extensions[EXTENSION_KEY], name, func, trigger)

    def singleton_job(
        self, name: str, seconds: float | None = None, trigger: Any = None
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`add_singleton_job`.

        .. code-block:: python

            @shazbot.singleton_job("nightly-report", trigger=CronTrigger(hour=3, timezone="UTC"))
            def nightly_report(): ...
        """

        def register(func: F) -> F:
            self.add_singleton_job(func, name, seconds=seconds, trigger=trigger)
            return func

        return register

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
