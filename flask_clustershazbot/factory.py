"""The one place engines are made: store, transport, scheduler and counters, by where
the app runs (docs/ARCHITECTURE.md, hosting.py).

- A process alone (``flask run``, waitress, a script): the table in memory, APScheduler
  jobs, and a self-check before the node acts (lifecycle.py).
- A process of a host with several (a gunicorn or uWSGI master or worker), or any
  process with ``SHAZBOT_STATE_PATH``: the host's SQLite table shared by all its
  processes, and a :class:`~flask_clustershazbot.leader.LeaderJobs` scheduler, so that
  the one process holding the lock of the base URL runs the schedules.

Only engines made here are exported to Prometheus (metrics.py): a simulator's or a
test's engines built directly are not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from .config import Settings
from .engine import Engine, wall_clock_ms
from .gunicorn import adopt
from .hosting import Process, describe, uwsgi_worker_exit
from .leader import LeaderJobs
from .masterlist import MasterLists
from .membership import Changes, Membership
from .process import adopt as adopt_in_process
from .scheduling import BackgroundJobs
from .stats import Stats
from .store import MemoryStore
from .transport import HttpTransport

if TYPE_CHECKING:
    from .sqlite_store import SqliteStore

log = logging.getLogger(__name__)


def _token(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def make_engine(
    settings: Settings,
    self_check: bool = False,
    listener: Callable[[Changes], None] | None = None,
) -> Engine:
    """This process's engine: sharing the host's state when the host has several processes
    or ``SHAZBOT_STATE_PATH`` is set, else the plain in-memory engine (no file).

    ``self_check``: the node's endpoints are served by our blueprint, so the engine can
    check that its base URL leads back to it. A plain engine waits for that check before
    it acts as the node; the processes of a shared state are one node, whichever answers.
    Raises :exc:`ConfigError` when another host on this machine already serves the base URL.
    """
    stats = Stats()
    transport = HttpTransport(settings, stats)
    membership = Membership(settings.base_url, settings.monitor, wall_clock_ms(), time.monotonic())
    process = describe()
    if process.role == "alone" and settings.state_path is None:
        engine = Engine(
            settings,
            store=MemoryStore(membership),
            transport=transport,
            master_list=MasterLists(settings, transport),
            scheduler=BackgroundJobs(),
            stats=stats,
            listener=listener,
            instance=_token(os.urandom(16).hex()) if self_check else None,
            wait_for_self_check=True,
        )
        _refuse_without_threads(engine, process)
        adopt_in_process(engine)
        return engine
    from .host_state import default_state_path, run_id
    from .sqlite_store import SqliteStore

    path = settings.state_path or default_state_path(settings.base_url)
    # One run of a host is its master's (a process alone with a state path has none).
    host_id = run_id(process.host_pid) if process.role != "alone" else None
    store = SqliteStore(path, membership, host_id=host_id)
    if host_id is not None:
        store.transact(lambda m: None)  # another host serving our base URL is refused here
    jobs = LeaderJobs(
        path + ".lock", min(settings.gossip_interval / 4, 1.0), standby=process.role == "master"
    )
    engine = Engine(
        settings,
        store=store,
        transport=transport,
        master_list=MasterLists(settings, transport),
        scheduler=jobs,
        stats=stats,
        listener=listener,
        # A gunicorn worker never announces: its master does when the host stops. A uWSGI
        # master cannot (uWSGI runs no Python at its exit): its workers do, when it stops them.
        announces_shutdown=process.role != "worker" or process.server == "uwsgi",
        # Every process of the host answers with one token, across masters (upgrades).
        instance=_token(_machine(), os.path.realpath(path), settings.base_url)
        if self_check
        else None,
    )
    engine.host_goes_on = partial(_host_goes_on, store, process.server)
    jobs.on_elected = engine.run_schedules
    if process.server == "gunicorn" and process.role == "master":
        adopt(engine)
    _refuse_without_threads(engine, process)
    adopt_in_process(engine)
    log.debug("%s %s: shared state in %s", process.server or "process", process.role, path)
    return engine


def _host_goes_on(store: SqliteStore, server: str | None) -> str | None:
    """Why this process's shutdown must not announce the host's, or None."""
    if store.successor is not None:
        return f"the host goes on under master pid {store.successor} (a binary upgrade)"
    return uwsgi_worker_exit() if server == "uwsgi" else None


def _refuse_without_threads(engine: Engine, process: Process) -> None:
    """Say so at once, and never act as the node (nor announce it): no round would run."""
    if process.problem is not None:
        log.error("%s", process.problem)
        engine.become_passive(process.problem, logged=True)


def _machine() -> str:
    """This machine's identity, so that one base URL and state path on two machines (a
    copied configuration) never share a token."""
    for path in ("/etc/machine-id", "/proc/sys/kernel/random/boot_id"):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return socket.gethostname()
