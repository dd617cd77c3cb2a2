"""Key ownership by rendezvous hashing, and cluster-singleton jobs (docs/ownership.md).

The owner of a key is the online member with the highest weight
``blake2b(len(baseUrl) || baseUrl || key)``: every node with the same view of the
online members picks the same owner, in every process and Python version, and a
join or a leave moves only the keys of the member that came or went.

There is no consensus behind it: two nodes with different views (convergence, a
partition) may both believe they own a key, and after a crash nobody may until
the failure is detected. docs/ownership.md gives the windows.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import weakref
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from flask import g

from .hosting import after_fork_in_child

if TYPE_CHECKING:
    from flask import Flask

    from .engine import Engine
    from .membership import Membership

log = logging.getLogger(__name__)

#: Owners remembered per snapshot of the members (hot keys skip the O(members) scan).
CACHE_SIZE = 4096
#: Interval ticks are counted from this instant, so that every node fires at the same times.
TICK_ORIGIN = datetime(2000, 1, 1, tzinfo=timezone.utc)

Key = str | bytes


def _key_bytes(key: Key) -> bytes:
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes):
        return key
    raise TypeError(f"a key must be str or bytes, got {type(key).__name__}")


def _member_hash(base_url: str) -> Any:
    """The hash state after the member's part; each key continues a copy of it."""
    raw = base_url.encode()
    return hashlib.blake2b(len(raw).to_bytes(4, "big") + raw, digest_size=8)


class Ring:
    """An immutable snapshot of the online members that answers :meth:`owner`."""

    __slots__ = ("_states", "members", "owner")

    def __init__(self, members: Iterable[str], states: dict[str, Any] | None = None) -> None:
        #: The online members' base URLs, sorted.
        self.members: tuple[str, ...] = tuple(sorted(set(members)))
        states = states if states is not None else {}
        self._states = [(states.get(m) or _member_hash(m), m) for m in self.members]
        self.owner: Callable[[Key], str | None] = functools.lru_cache(CACHE_SIZE)(self._owner)

    def _owner(self, key: Key) -> str | None:
        """The member with the highest weight for ``key``; None when there is none."""
        data = _key_bytes(key)
        best, owner = b"", None
        for state, member in self._states:
            h = state.copy()
            h.update(data)
            weight = h.digest()
            if weight > best:
                best, owner = weight, member
        return owner


class Ownership:
    """One engine's owners, from a snapshot of its online members.

    With the in-memory store the snapshot is exact: it is rebuilt when the member
    table's version changes. A shared store (gunicorn's SQLite file) costs a
    transaction per read, so its snapshot is reused for ``refresh`` seconds.
    """

    def __init__(self, engine: Engine, refresh: float | None = None) -> None:
        self.engine = engine
        self.refresh = (
            refresh if refresh is not None else min(engine.settings.gossip_interval / 4, 0.25)
        )
        self._exact = engine.store.exact
        #: Hash states by member, kept across snapshots: a join hashes one new URL.
        self._states: dict[str, Any] = {}
        #: (table version or None, monotonic expiry, ring): replaced whole, never changed.
        self._snapshot: tuple[int | None, float, Ring] = (None, -math.inf, Ring(()))

    def ring(self) -> Ring:
        version, expires, ring = self._snapshot
        if self._exact:

            def read(m: Membership) -> tuple[int, list[str] | None]:
                if m.version == version:
                    return version, None
                return m.version, m.online_urls()

            new_version, online = self.engine.store.transact(read)
            if online is None:
                return ring
        else:
            now = self.engine.monotonic()
            if now < expires:
                return ring
            new_version = None
            online = self.engine.store.transact(lambda m: m.online_urls())
        if set(online) != set(ring.members):
            known = self._states  # replaced, never changed: safe for concurrent callers
            self._states = {u: known.get(u) or _member_hash(u) for u in online}
            ring = Ring(online, self._states)
        self._snapshot = (new_version, self.engine.monotonic() + self.refresh, ring)
        return ring

    def owner(self, key: Key) -> str | None:
        return self.ring().owner(key)

    def owns(self, key: Key) -> bool:
        return self.ring().owner(key) == self.engine.settings.base_url


_ownerships: weakref.WeakKeyDictionary[Engine, Ownership] = weakref.WeakKeyDictionary()


def ownership_of(engine: Engine) -> Ownership:
    """The engine's :class:`Ownership`, made on first use."""
    ownership = _ownerships.get(engine)
    if ownership is None:
        ownership = _ownerships.setdefault(engine, Ownership(engine))
    return ownership


# -- cluster-singleton jobs ------------------------------------------------------


class JobRunner:
    """Runs the app's singleton jobs apart from the protocol: each run on a thread of its
    own, at most ``workers`` at once, and never a job beside its own previous run.

    The engine's scheduler threads only fire ticks: they hand a run over and return, so a
    long job never holds back a gossip round, a retry or an announcement (when runs held
    them, ten jobs of 25 s delayed a killed peer's detection from 1.4 s to 25 s).
    A tick that finds no room is skipped, logged and counted (:attr:`skipped`), never
    queued: a queue behind long jobs would grow without bound and run ticks late.
    The threads are not daemons: a run under way when the process exits is finished first.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        #: Ticks skipped because the job's previous run, or ``workers`` runs, were under way.
        self.skipped = 0
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def run(self, name: str, fn: Callable[[], None]) -> bool:
        """Start ``fn()`` on a new thread and return at once; False if the tick was skipped."""
        with self._lock:
            if name in self._running:
                return self._skip(name, "its previous run is not done")
            if len(self._running) >= self.workers:
                return self._skip(
                    name, f"all {self.workers} job workers are busy (SHAZBOT_JOB_WORKERS)"
                )
            self._running.add(name)
        thread = threading.Thread(
            target=self._run, args=(name, fn), name=f"singleton job {name}", daemon=False
        )
        try:
            thread.start()
        except RuntimeError as exc:  # e.g. the interpreter is exiting and refuses new threads
            with self._lock:
                self._running.discard(name)
                return self._skip(name, str(exc))
        return True

    def _skip(self, name: str, why: str) -> bool:
        """Count and log a skipped tick. Called with ``_lock`` held."""
        self.skipped += 1
        log.warning(
            "singleton job %r skipped a tick: %s (%d skipped so far)", name, why, self.skipped
        )
        return False

    def _run(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        finally:
            with self._lock:
                self._running.discard(name)

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's runs are not here, and its lock may be held."""
        self._lock = threading.Lock()
        self._running = set()


_runners: weakref.WeakKeyDictionary[Engine, JobRunner] = weakref.WeakKeyDictionary()


def job_runner_of(engine: Engine) -> JobRunner:
    """The engine's :class:`JobRunner`, made on first use."""
    runner = _runners.get(engine)
    if runner is None:
        runner = _runners.setdefault(engine, JobRunner(engine.settings.job_workers))
    return runner


def _reset_runners() -> None:
    for runner in list(_runners.values()):
        runner.reset_after_fork()


# Through hosting: uWSGI forks its workers in C, where Python's own fork hooks never run.
after_fork_in_child(_reset_runners)


def make_trigger(seconds: float | None, trigger: BaseTrigger | None) -> BaseTrigger:
    """An APScheduler trigger from ``seconds`` (ticks aligned to :data:`TICK_ORIGIN`) or as given."""
    if (seconds is None) == (trigger is None):
        raise ValueError("give a singleton job either seconds=... or trigger=..., not both")
    if trigger is not None:
        if not isinstance(trigger, BaseTrigger):
            raise TypeError(f"trigger must be an APScheduler trigger, got {type(trigger).__name__}")
        return trigger
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not (math.isfinite(seconds) and seconds > 0)
    ):
        raise ValueError(f"seconds must be a number greater than 0, got {seconds!r}")
    return IntervalTrigger(seconds=seconds, start_date=TICK_ORIGIN, timezone=timezone.utc)


class SingletonJob:
    """A scheduled function that runs, at each fire time, only on the node owning its name.

    Every node arms the job on the engine's scheduler (so under gunicorn only the
    worker that runs the host's schedules fires it); when it fires, the node runs it
    if it owns ``name`` in its current view. The next fire time is taken first,
    from the trigger and the wall clock, so a slow or failing run never stops it.
    """

    def __init__(
        self, app: Flask, engine: Engine, name: str, func: Callable[[], Any], trigger: BaseTrigger
    ) -> None:
        self.name = name
        self.func = func
        self.trigger = trigger
        self.engine = engine
        self.ownership = ownership_of(engine)
        self.runner = job_runner_of(engine)
        self._app = weakref.ref(app)
        #: Bumped at each arming: only the newest chain of fire times goes on.
        self._generation = 0

    def arm(self) -> None:
        """Schedule the next fire time; called whenever the engine (re)creates its schedules."""
        self._generation += 1
        self._schedule_next(self._generation, None)

    def _schedule_next(self, generation: int, fired: datetime | None) -> None:
        now = datetime.now(timezone.utc)
        if fired is not None:
            now = max(now, fired + timedelta(microseconds=1))  # never the same tick twice
        try:
            when = self.trigger.get_next_fire_time(None, now)  # missed ticks are skipped
        except Exception:  # a broken trigger must not stop the engine's own schedules
            log.exception("singleton job %r: its trigger failed; it is not scheduled", self.name)
            return
        if when is None:
            return
        delay = (when - datetime.now(timezone.utc)).total_seconds()
        self.engine.scheduler.after(delay, lambda: self._fire(generation, when))

    def _fire(self, generation: int, when: datetime) -> None:
        if generation != self._generation or not self.engine.started:
            return
        self._schedule_next(generation, when)
        if self.engine.last_master_sync is None:
            # Before its first master-list download a node's view holds only itself, and
            # it would own every job: it waits until it knows the cluster.
            return
        if not self.ownership.owns(self.name):
            return
        app = self._app()
        if app is None:
            return
        # Handed over, never waited for: this is one of the protocol's scheduler threads.
        self.runner.run(self.name, lambda: self._run(app, when))

    def _run(self, app: Flask, when: datetime) -> None:
        try:
            with app.app_context():
                g.shazbot_tick = when  # the same on every node: a key for exactly-once
                self.func()
        except Exception:
            log.exception("singleton job %r failed", self.name)


def attach_singleton_job(
    app: Flask, engine: Engine, name: str, func: Callable[[], Any], trigger: BaseTrigger
) -> SingletonJob:
    """Arm ``func`` now if the engine runs, and again whenever it (re)creates its schedules."""
    job = SingletonJob(app, engine, name, func, trigger)
    engine.schedule_hooks.append(job.arm)
    if engine.started:
        job.arm()
    return job
