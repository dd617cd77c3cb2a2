"""The one place engines are made: store, transport, scheduler and counters, by where
the app runs (docs/ARCHITECTURE.md).

- Plain process (``flask run``, a script): the table in memory, APScheduler jobs, and
  a self-check before the node acts (lifecycle.py).
- Under gunicorn, or with ``SHAZBOT_STATE_PATH``: the host's SQLite table shared by
  all its processes, and a :class:`~flask_clustershazbot.leader.LeaderJobs` scheduler so
  that one of them runs the schedules (gunicorn.py).

Only engines made here are exported to Prometheus (metrics.py): a simulator's or a
test's engines built directly are not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable

from .config import Settings
from .engine import Engine, wall_clock_ms
from .gunicorn import adopt, gunicorn_process
from .leader import LeaderJobs
from .membership import Changes, Membership
from .metrics import track
from .scheduling import BackgroundJobs
from .stats import Stats
from .store import MemoryStore
from .transport import HttpTransport

log = logging.getLogger(__name__)


def _token(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def make_engine(
    settings: Settings,
    self_check: bool = False,
    listener: Callable[[Changes], None] | None = None,
) -> Engine:
    """This process's engine: sharing the host's state under gunicorn or with
    ``SHAZBOT_STATE_PATH``, else the plain in-memory engine (nothing imported, no file).

    ``self_check``: the node's endpoints are served by our blueprint, so the engine can
    check that its base URL leads back to it. A plain engine waits for that check before
    it acts as the node; the processes of a shared state are one node, whichever answers.
    """
    stats = Stats()
    transport = HttpTransport(settings, stats)
    membership = Membership(settings.base_url, settings.monitor, wall_clock_ms(), time.monotonic())
    process = gunicorn_process()
    if process is None and settings.state_path is None:
        engine = Engine(
            settings,
            store=MemoryStore(membership),
            transport=transport,
            scheduler=BackgroundJobs(),
            stats=stats,
            listener=listener,
            instance=_token(os.urandom(16).hex()) if self_check else None,
            wait_for_self_check=True,
        )
        track(engine)
        return engine
    from .sqlite_store import SqliteStore, default_state_path, run_id

    role, master_pid = process if process is not None else ("alone", 0)
    path = settings.state_path or default_state_path(settings.base_url)
    # One instance token per run of the gunicorn host, or per shared state file.
    run = run_id(master_pid) if process else os.path.realpath(path)
    store = SqliteStore(path, membership, host_id=run_id(master_pid) if process else None)
    jobs = LeaderJobs(
        path + ".lock", min(settings.gossip_interval / 4, 1.0), standby=role == "master"
    )
    engine = Engine(
        settings,
        store=store,
        transport=transport,
        scheduler=jobs,
        stats=stats,
        listener=listener,
        announces_shutdown=role != "worker",
        instance=_token(run, settings.base_url) if self_check else None,
    )
    jobs.on_elected = engine.run_schedules
    if role == "master":
        adopt(engine)
    track(engine)
    log.debug("gunicorn %s: shared state in %s", role, path)
    return engine
