"""One schedule runner per host: the process holding the host's lock file.

:class:`LeaderJobs` is the engine's scheduler in each worker of a multi-process
host. Every worker answers requests, but jobs run only in the worker that holds
an exclusive ``flock`` on the lock file. The kernel releases the lock when that
process exits or is killed (SIGKILL included), and a daemon thread in every
other worker retries it every ``poll`` seconds, so another worker takes over
within ``poll`` plus the time to its first round.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from .scheduling import BackgroundJobs

log = logging.getLogger(__name__)


class LeaderJobs:
    """A :class:`~flask_clustershazbot.scheduling.Scheduler` whose jobs run only while this
    process leads the host.

    ``on_elected`` is called (from the election thread) when this process becomes
    the leader after ``start()``; it should (re)create the schedules.
    ``standby=True`` (the gunicorn master) never competes; a forked child does.
    """

    def __init__(
        self,
        lock_path: str,
        poll: float,
        on_elected: Callable[[], None] | None = None,
        jobs: BackgroundJobs | None = None,
        standby: bool = False,
    ) -> None:
        self.lock_path = lock_path
        self.poll = poll
        self.on_elected = on_elected
        self.jobs = jobs or BackgroundJobs()
        self.standby = standby
        self.leader = False
        self._fd: int | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _try_lock(self) -> bool:
        """Take the lock if it is free. Called with ``_mutex`` held."""
        if self.leader:
            return True
        if self._fd is None:
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.leader = True
        log.info("this process (pid %d) now runs the host's schedules", os.getpid())
        return True

    def start(self) -> None:
        """Lead at once if the lock is free, else keep trying in a daemon thread."""
        if self.standby:
            return
        with self._mutex:
            self._stop.clear()
            if self._try_lock():
                self.jobs.start()
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._elect, name="clustershazbot-election", daemon=True
                )
                self._thread.start()

    def _elect(self) -> None:
        while not self._stop.wait(self.poll):
            with self._mutex:
                if self._stop.is_set():
                    return
                if not self._try_lock():
                    continue
                self.jobs.start()
            if self.on_elected is not None:
                try:
                    self.on_elected()
                except Exception:
                    log.exception("starting the schedules after an election failed")
            return

    def after(self, delay: float, fn: Callable[[], Any]) -> None:
        if self.leader:
            self.jobs.after(delay, fn)

    def shutdown(self) -> None:
        """Stop the jobs and the election, and give up the lock. The thread ends within ``poll``."""
        with self._mutex:
            self._stop.set()
            self.jobs.shutdown()
            self._release()

    def _release(self) -> None:
        fd, self._fd, self.leader = self._fd, None, False
        if fd is not None:
            os.close(fd)  # closing our only descriptor releases the flock

    def forget(self) -> None:
        """In a forked child: compete afresh; an inherited lock descriptor is closed, which
        leaves the parent's lock alone (flock belongs to the parent's descriptor too)."""
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.standby = False
        self.jobs.forget()
        self._release()
