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

import io
import logging
import os
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from .engine import Engine
from .engine.common import why as _why
from .errors import ConfigError

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


#: gunicorn's exit status of a worker that could not load the app (``Arbiter.APP_LOAD_ERROR``).
APP_LOAD_ERROR = 4


@cache
def _app_load_error() -> type[ConfigError]:
    """A ConfigError that gunicorn reports with its message alone: in a worker, as an app
    that cannot load (AppImportError); in the master (``--preload``), as a RuntimeError."""
    errors: Any = sys.modules["gunicorn.errors"]  # imported by gunicorn's arbiter
    namespace = {"__module__": ConfigError.__module__}
    return type("ConfigError", (ConfigError, errors.AppImportError, RuntimeError), namespace)


def _report_token() -> int:
    """A pipe holding one byte. Made when gunicorn's master imports this module (its config
    file does, for :func:`on_exit`), it is shared by the workers it forks: the first whose
    app cannot load takes the byte and says why, the others exit without a word (gunicorn
    would replace them, but it stops the host when the first one's exit is reaped)."""
    read, write = os.pipe()
    os.write(write, b".")
    os.close(write)
    os.set_blocking(read, False)
    return read


_token = _report_token() if "gunicorn" in sys.modules else None


def _first_to_report() -> bool:
    global _token
    if _token is None:  # imported by a worker only: each worker reports
        _token = _report_token()
    try:
        return os.read(_token, 1) == b"."
    except BlockingIOError:
        return False


@contextmanager
def reported_as_app_load_errors() -> Iterator[None]:
    """In a gunicorn process, a ConfigError raised within stops the host with one line,
    its message: raised as an app that cannot load (gunicorn prints just its message and
    stops at once) by the first worker, a silent exit by the others. Otherwise gunicorn
    logs a traceback in every worker, and each boots to fail alike."""
    try:
        yield
    except ConfigError as exc:
        if gunicorn_process() is None:
            raise
        if not _first_to_report():
            # Not APP_LOAD_ERROR: gunicorn stops on the first worker's, and one more while
            # it stops the others would end it in a traceback.
            raise SystemExit(0) from None
        # gunicorn prints the message, then its newline: two writes where stderr is
        # unbuffered (PYTHONUNBUFFERED, as in many containers), and the master's log line
        # about the next worker landed between them (CI). Buffered to the line: one write.
        if isinstance(sys.stderr, io.TextIOWrapper):
            sys.stderr.reconfigure(line_buffering=True, write_through=False)
        raise _app_load_error()(str(exc)) from None


def _app_never_loaded() -> bool:
    """Whether gunicorn stops because a worker could not load the app: then no worker of
    this host ever acted as the node (the same settings fail in each), and the master,
    loading it again, would only repeat the workers' error."""
    halt = sys.exc_info()[1]  # the hook runs in the handler of gunicorn's HaltServer
    return getattr(halt, "exit_status", None) == APP_LOAD_ERROR


def on_exit(server: Any) -> None:
    """Gunicorn hook (master, after the workers stopped): announce the host's shutdown once.

    Without ``--preload`` the master has not loaded the app yet: it does so now,
    which creates this host's engine on the shared state; not when the app could not
    load in the workers (a bad setting), whose error gunicorn has printed already.
    """
    if not _master_engines and _app_never_loaded():
        return
    try:
        server.app.wsgi()
    except Exception as exc:  # the workers' log has the traceback
        log.error("could not load the app to announce the host's shutdown: %s", _why(exc))
    for engine in list(_master_engines):
        engine.start()  # in the master: marks the host running, runs no schedules
        engine.shutdown()
