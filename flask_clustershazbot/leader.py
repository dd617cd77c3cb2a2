"""One schedule runner per host: the process holding the host's lock file.

:class:`LeaderJobs` is the engine's scheduler in each worker of a multi-process
host. Every worker answers requests, but jobs run only in the worker that holds
an exclusive ``flock`` on the lock file. The kernel releases the lock when that
process exits or is killed (SIGKILL included), and a daemon thread in every
other worker retries it every ``poll`` seconds, so another worker takes over
within ``poll`` plus the time to its first round.

A lock file deleted or replaced while the host runs (a tmp cleaner) would let a
new worker lock a new file beside the old leader. So a lock counts only while the
path still names the locked file: candidates reopen the path when it changed, and
the leader checks it every ``poll`` seconds, locks the new file at once if it is
free, and otherwise stops its schedules and competes again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from .scheduling import BackgroundJobs, Scheduler

log = logging.getLogger(__name__)


class LeaderJobs(Scheduler):
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

    def _holds_path(self) -> bool:
        """Whether our descriptor is the file the lock path names now."""
        if self._fd is None:
            return False
        try:
            here, there = os.fstat(self._fd), os.stat(self.lock_path)
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def _try_lock(self) -> bool:
        """Take the lock if it is free. Called with ``_mutex`` held, when not leading."""
        if self._fd is not None and not self._holds_path():
            self._release()  # a deleted file's lock would lead beside a new file's holder
        if self._fd is None:
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if not self._holds_path():  # replaced between open and flock: try again next time
            self._release()
            return False
        self.leader = True
        log.info("this process (pid %d) now runs the host's schedules", os.getpid())
        return True

    def start(self) -> None:
        """Lead at once if the lock is free; a daemon thread keeps competing, or checking
        that the lock file is still in place while this process leads."""
        if self.standby:
            return
        with self._mutex:
            self._stop.clear()
            if self.leader or self._try_lock():
                self.jobs.start()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._watch, name="clustershazbot-election", daemon=True
                )
                self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            with self._mutex:
                if self._stop.is_set():
                    return
                if self.leader:
                    if not self._holds_path():
                        self._lock_lost()
                    continue
                if not self._try_lock():
                    continue
                self.jobs.start()
            if self.on_elected is not None:
                try:
                    self.on_elected()
                except Exception:
                    log.exception("starting the schedules after an election failed")

    def _lock_lost(self) -> None:
        """The lock file was deleted or replaced: lock the new one, or stop leading."""
        log.warning("the lock file %s was deleted or replaced while in use", self.lock_path)
        self._release()
        if not self._try_lock():
            log.warning(
                "another process locked the new file; this one (pid %d) stops "
                "running the host's schedules",
                os.getpid(),
            )
            self.jobs.shutdown()

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

    def reset_after_fork(self) -> None:
        """In a forked child: compete afresh; an inherited lock descriptor is closed, which
        leaves the parent's lock alone (flock belongs to the parent's descriptor too)."""
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.standby = False
        self.jobs.reset_after_fork()
        self._release()
