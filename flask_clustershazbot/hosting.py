"""Where the app runs: which server, and the part this process plays in its host.

A *host* is the processes of one server that serve one base URL on one machine: a
gunicorn or uWSGI master and its workers, or a single process (``flask run``,
waitress). However many processes it has, a host is one cluster member: they
share one member table (:class:`~flask_clustershazbot.sqlite_store.SqliteStore`)
and the one holding a lock per base URL runs the schedules
(:class:`~flask_clustershazbot.leader.LeaderJobs`); see factory.py.

What a process cannot learn from the WSGI interface, the server tells: whether the
process is a master that forks workers, a worker, or alone; and how the host's stop
differs from a worker's exit (recycling, reloads), which only the server's own exit
path knows (docs/deployment.md).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from .gunicorn import gunicorn_process

log = logging.getLogger(__name__)

#: The first uWSGI release that runs Python threads without ``--enable-threads``.
UWSGI_THREADS_BY_DEFAULT = (2, 0, 27)


@dataclass(frozen=True)
class Process:
    """This process as its server sees it."""

    #: ``"gunicorn"``, ``"uwsgi"``, or None: a single process (``flask run``, waitress, a
    #: script), whose own interpreter exit is the host's stop.
    server: str | None
    #: ``"master"`` (loads the app, forks the workers, never acts as the node),
    #: ``"worker"``, or ``"alone"``.
    role: str
    #: The process whose run names the host: the master, or this process when alone.
    host_pid: int
    #: Why this process can never act as the node, or None.
    problem: str | None = None


def describe() -> Process:
    """This process, from the server that loaded the app (or none we know of)."""
    role_master = gunicorn_process()
    if role_master is not None:
        role, master = role_master
        return Process("gunicorn", role, master)
    uwsgi = _uwsgi()
    if uwsgi is not None:
        master, pid = int(uwsgi.masterpid()), os.getpid()
        if master == 0:  # no --master: this process serves, and forks the others if any
            role = "worker" if int(getattr(uwsgi, "numproc", 1)) > 1 else "alone"
        else:
            role = "master" if master == pid else "worker"
        return Process("uwsgi", role, master or pid, _uwsgi_threads_problem(uwsgi))
    return Process(None, "alone", os.getpid())


def _uwsgi() -> ModuleType | None:
    """uWSGI's embedded module: importable only in a process that uWSGI runs."""
    try:
        module = importlib.import_module("uwsgi")
    except ImportError:
        return None
    return module if hasattr(module, "masterpid") else None


def _uwsgi_threads_problem(uwsgi: ModuleType) -> str | None:
    """Before uWSGI 2.0.27 the Python plugin runs no thread of the app unless
    ``--enable-threads`` (or ``--threads``) is given: no schedule would ever run."""
    version = tuple(getattr(uwsgi, "version_info", (0,))[:3])
    options = getattr(uwsgi, "opt", {})
    if version >= UWSGI_THREADS_BY_DEFAULT or options.get("enable-threads"):
        return None
    threads = options.get("threads", b"1")
    try:
        if int(threads[-1] if isinstance(threads, list) else threads) > 1:
            return None
    except ValueError:
        return None
    shown = ".".join(str(part) for part in version)
    return (
        f"uWSGI {shown} runs no Python thread of the app without --enable-threads: this "
        "process could never run the node's gossip rounds, so it does not act as the node; "
        "add enable-threads = true to the uWSGI configuration"
    )


def uwsgi_worker_exit() -> str | None:
    """Why a uWSGI worker's exit leaves the host running, or None when the master stops it.

    uWSGI's master stops its workers with SIGINT whatever stopped it (SIGINT, SIGQUIT,
    or SIGTERM with ``--die-on-term``); it reloads them with SIGHUP (graceful) or SIGTERM
    (brutal), and a recycled worker (``--max-requests`` and the like) leaves by itself.
    A worker's exit handlers run inside uWSGI's signal handler, during which the signal
    is blocked: the thread's signal mask says which one it was.
    """
    if signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []):
        return None
    return "this uWSGI worker stopped (recycled or reloaded)"


def after_fork_in_child(fn: Callable[[], None]) -> None:
    """Call ``fn`` once in every child forked from this process.

    Python's fork hooks run after ``os.fork()`` (gunicorn, multiprocessing). uWSGI forks its
    workers in C, where they never run (unless told to with ``--py-call-osafterfork``):
    there ``fn`` joins uWSGI's post-fork hooks, through ``uwsgidecorators.postfork_chain``
    so that an app's own ``@postfork`` functions and ours all run.
    """
    forked_from = [os.getpid()]

    def in_child() -> None:
        if forked_from[0] != os.getpid():  # once per child, whichever hook comes first
            forked_from[0] = os.getpid()
            fn()

    os.register_at_fork(after_in_child=in_child)
    uwsgi = _uwsgi()
    if uwsgi is None:
        return
    previous = getattr(uwsgi, "post_fork_hook", None)
    try:
        decorators = importlib.import_module("uwsgidecorators")  # its chain becomes the hook
    except ImportError:  # a uWSGI without the module: chain by hand

        def hook() -> None:
            in_child()
            if callable(previous):
                previous()

        setattr(uwsgi, "post_fork_hook", hook)  # noqa: B010  (a module without type stubs)
        return
    chain = decorators.postfork_chain
    if callable(previous) and previous is not decorators.postfork_chain_hook:
        chain.append(previous)  # an app's hook set before ours keeps running
    chain.append(in_child)
