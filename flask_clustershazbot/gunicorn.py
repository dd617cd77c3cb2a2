"""Gunicorn: one consistent node per host, however many workers.

Under gunicorn (detected in-process, no configuration needed) every process of
the host shares one :class:`~flask_clustershazbot.sqlite_store.SqliteStore`
(``SHAZBOT_STATE_PATH``, default: a file per base URL in the temporary
directory) and a :class:`~flask_clustershazbot.leader.LeaderJobs` scheduler,
so that all workers answer from one table and exactly one runs the schedules.
Workers never announce a shutdown when they exit (recycling, reloads, scaling);
the master does, once, when the host stops: by itself with ``--preload``, and
through the :func:`on_exit` hook otherwise (``examples/gunicorn.conf.py``).

Outside gunicorn, setting ``SHAZBOT_STATE_PATH`` gives the same shared state and
election to any group of processes, each of which announces its own shutdown.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import weakref
from typing import Any

from .config import Settings
from .engine import Engine, wall_clock_ms
from .leader import LeaderJobs
from .membership import Membership

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


def _token(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def make_engine(settings: Settings, self_check: bool = False, **kwargs: Any) -> Engine:
    """This process's engine: sharing the host's state under gunicorn or with
    ``SHAZBOT_STATE_PATH``, else the plain in-memory engine (nothing imported, no file).

    ``self_check``: the node's endpoints are served by our blueprint, so the engine can
    check that its base URL leads back to it. A plain engine waits for that check before
    it acts as the node; the processes of a shared state are one node, whichever answers.
    """
    process = gunicorn_process()
    if process is None and settings.state_path is None:
        token = _token(os.urandom(16).hex()) if self_check else None
        return Engine(settings, instance=token, wait_for_self_check=True, **kwargs)
    from .sqlite_store import SqliteStore, default_state_path, run_id

    role, master_pid = process if process is not None else ("alone", 0)
    path = settings.state_path or default_state_path(settings.base_url)
    if self_check:
        # One token per run of the gunicorn host, or per shared state file.
        run = run_id(master_pid) if process else os.path.realpath(path)
        kwargs["instance"] = _token(run, settings.base_url)
    membership = Membership(settings.base_url, settings.monitor, wall_clock_ms(), time.monotonic())
    store = SqliteStore(path, membership, host_id=run_id(master_pid) if process else None)
    poll = min(settings.gossip_interval / 4, 1.0)
    jobs = LeaderJobs(path + ".lock", poll, standby=role == "master")
    engine = Engine(
        settings, store=store, scheduler=jobs, announces_shutdown=role != "worker", **kwargs
    )
    jobs.on_elected = engine.run_schedules
    if role == "master":
        _master_engines.add(engine)
        ref = weakref.ref(engine)
        os.register_at_fork(after_in_child=lambda: _become_worker(ref))
    log.debug("gunicorn %s: shared state in %s", role, path)
    return engine


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
