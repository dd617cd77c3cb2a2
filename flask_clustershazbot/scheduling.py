"""APScheduler behind the small interface the engine needs: run ``fn`` after ``delay`` seconds.

Rounds and announcements are one-shot jobs that schedule their successor with a
fresh random delay, so that jitter comes from the engine's own random source
and a simulator can drive the same engine with a virtual clock.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

#: Our own executor alias, so that its per-job INFO lines can be quieted without touching
#: an APScheduler the host app may run itself.
EXECUTOR = "clustershazbot"
_quiet = logging.getLogger("flask_clustershazbot.apscheduler")
for _name in (_quiet.name, f"apscheduler.executors.{EXECUTOR}"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)


class _DaemonPool:
    """Just enough of a ``concurrent.futures`` pool for APScheduler, on daemon threads.

    ``concurrent.futures`` joins its pools' threads at interpreter exit, before ``atexit``
    stops the schedules. A job in flight then holds the exiting process for up to a
    request timeout: a gunicorn worker being recycled whose round was self-checking, i.e.
    calling its own host, which answers nobody until that worker is gone and replaced
    (measured: a one-worker host silent for the whole timeout). Daemon threads are
    abandoned at exit instead; a round cut short changes nothing (stores commit whole
    transactions or nothing).
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:  # stopped: a job due at that moment is dropped, as pending ones are
                future.cancel()
                return future
            self._queue.put((future, fn, args))
            if self._idle == 0 and self._threads < self.workers:
                self._threads += 1
                threading.Thread(target=self._work, name="clustershazbot-job", daemon=True).start()
            else:  # an idle thread takes it; at the limit it waits (idle goes below zero)
                self._idle -= 1  # counted now, so that two quick submits start two threads
        return future

    def _work(self) -> None:
        while True:
            future, fn, args = self._queue.get()
            if fn is _stop:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # reported through the future, as a pool does
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True) -> None:
        """Let the threads end once their current job is done; never waits (daemons)."""
        with self._lock:
            self._closed = True
            for _ in range(self._threads):
                self._queue.put((Future(), _stop, ()))


def _stop() -> None:
    """The sentinel that ends a pool thread."""


class _Executor(BasePoolExecutor):  # type: ignore[misc]  # apscheduler ships no types
    def __init__(self, workers: int) -> None:
        super().__init__(_DaemonPool(workers))


class Scheduler(Protocol):
    """The engine's clock for work: one-shot jobs (rounds reschedule themselves)."""

    def start(self) -> None:
        """Begin running jobs (again). Idempotent."""
        ...

    def after(self, delay: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` once, ``delay`` seconds from now; ignored while not started."""
        ...

    def shutdown(self) -> None:
        """Stop; pending jobs never run. Idempotent."""
        ...

    def reset_after_fork(self) -> None:
        """In a forked child: drop the parent's threads and locks (they are gone there)."""
        ...


class BackgroundJobs(Scheduler):
    """A daemon BackgroundScheduler; a new one after every start (threads do not survive fork)."""

    def __init__(self, workers: int = 10) -> None:
        self.workers = workers
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            return
        self._scheduler = BackgroundScheduler(
            executors={EXECUTOR: _Executor(self.workers)},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=timezone.utc,
            daemon=True,
            logger=_quiet,
        )
        self._scheduler.start()

    def after(self, delay: float, fn: Callable[[], Any]) -> None:
        scheduler = self._scheduler
        if scheduler is None or not scheduler.running:
            return
        run_date = datetime.now(timezone.utc) + timedelta(seconds=max(delay, 0.0))
        scheduler.add_job(fn, "date", run_date=run_date, executor=EXECUTOR)

    def shutdown(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            # APScheduler 3 races a plain shutdown: its loop, mid-way through due jobs, finds
            # the scheduler stopped and dies on JobLookupError. Pausing under the job-store
            # lock first means no pass is under way and none starts.
            with scheduler._jobstores_lock:
                scheduler.pause()
            try:
                scheduler.shutdown(wait=False)  # stops it, then joins its thread
            except Exception:  # gevent at exit: the join "would block forever"; it is a daemon
                _quiet.debug("the scheduler's thread was not joined", exc_info=True)

    def reset_after_fork(self) -> None:
        """Drop the scheduler of the parent process (in a forked child; its thread is gone)."""
        self._scheduler = None
