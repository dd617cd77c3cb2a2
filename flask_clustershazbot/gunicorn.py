"""Gunicorn: one consistent node per host, however many workers.

Under gunicorn (detected in-process, no configuration needed) the engine factory
(factory.py) gives every process of the host one shared
:class:`~flask_clustershazbot.sqlite_store.SqliteStore`
(``SHAZBOT_STATE_PATH``, default: a file per base URL in the temporary
directory) and a :class:`~flask_clustershazbot.leader.LeaderJobs` scheduler,
so that all workers answer from one table and exactly one runs the schedules.
Workers never announce a shutdown when they exit (recycling, reloads, scaling);
the master does, once, when the host stops: by itself with ``--preload``, and
through the :func:`on_exit` hook otherwise (``flask_clustershazbot.gunicorn_conf``).

Outside gunicorn, setting ``SHAZBOT_STATE_PATH`` gives the same shared state and
election to any group of processes, each of which announces its own shutdown.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from typing import Any

from .engine import Engine

log = logging.getLogger(__name__)

#: Engines of this gunicorn master (``--preload``, or loaded by :func:`on_exit`).
_master_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def gunicorn_process() -> tuple[str, int] | None:
    """``("master" | "worker", master pid)`` when called from gunicorn's master or a
    worker while it loads or runs the app; None elsewhere.

    Gunicorn loads the app from ``Arbiter.setup`` (``--preload``), from
    ``Worker.init_process``, or in a request: the caller's stack says which.
    """
    arbiter_module = sys.modules.get("gunicorn.arbiter")
    worker_module = sys.modules.get("gunicorn.workers.base")
    if arbiter_module is None:
        return None
    master = None
    frame = sys._getframe(1)
    while frame is not None:
        obj = frame.f_locals.get("self")
        if worker_module is not None and isinstance(obj, worker_module.Worker):
            return "worker", int(obj.ppid)
        if isinstance(obj, arbiter_module.Arbiter):
            master = os.getpid()
        frame = frame.f_back  # type: ignore[assignment]
    return ("master", master) if master is not None else None


def adopt(engine: Engine) -> None:
    """Register ``engine`` as this master's: :func:`on_exit` announces it, and a forked
    worker's copy never does."""
    _master_engines.add(engine)
    ref = weakref.ref(engine)
    os.register_at_fork(after_in_child=lambda: _become_worker(ref))


def _become_worker(ref: weakref.ref[Engine]) -> None:
    engine = ref()
    if engine is not None:
        engine.announces_shutdown = False
    _master_engines.clear()


def on_exit(server: Any) -> None:
    """Gunicorn hook (master, after the workers stopped): announce the host's shutdown once.

    Without ``--preload`` the master has not loaded the app yet: it does so now,
    which creates this host's engine on the shared state.
    """
    try:
        server.app.wsgi()
    except Exception:
        log.exception("could not load the app to announce the host's shutdown")
    for engine in list(_master_engines):
        engine.start()  # in the master: marks the host running, runs no schedules
        engine.shutdown()
