"""APScheduler behind the small interface the engine needs: run ``fn`` after ``delay`` seconds.

Rounds and announcements are one-shot jobs that schedule their successor with a
fresh random delay, so that jitter comes from the engine's own random source
and a simulator can drive the same engine with a virtual clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

#: Our own executor alias, so that its per-job INFO lines can be quieted without touching
#: an APScheduler the host app may run itself.
EXECUTOR = "clustershazbot"
_quiet = logging.getLogger("flask_clustershazbot.apscheduler")
for _name in (_quiet.name, f"apscheduler.executors.{EXECUTOR}"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)


class _Executor(ThreadPoolExecutor):  # type: ignore[misc]  # apscheduler ships no types
    """APScheduler's thread pool, quiet at interpreter exit: the pool then refuses new jobs
    (``cannot schedule new futures after interpreter shutdown``) in the short moment before
    ``atexit`` stops the schedules, and a due job is simply dropped."""

    def _do_submit_job(self, job: Any, run_times: Any) -> None:
        try:
            super()._do_submit_job(job, run_times)
        except RuntimeError as exc:
            if "interpreter shutdown" not in str(exc):
                raise


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
            scheduler.shutdown(wait=False)

    def reset_after_fork(self) -> None:
        """Drop the scheduler of the parent process (in a forked child; its thread is gone)."""
        self._scheduler = None
