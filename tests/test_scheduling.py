"""BackgroundJobs: the engine's scheduler outside simulators (APScheduler on daemon threads)."""

from __future__ import annotations

import threading

from cluster import wait_until
from flask_clustershazbot.scheduling import BackgroundJobs


def test_jobs_beyond_the_thread_limit_wait_their_turn_and_all_run() -> None:
    jobs = BackgroundJobs(workers=3)
    jobs.start()
    lock, release = threading.Lock(), threading.Event()
    running, peak, done = [0], [0], []

    def job(i: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
            done.append(i)

    try:
        for i in range(8):
            jobs.after(0, lambda i=i: job(i))  # type: ignore[misc]
        wait_until(lambda: running[0] == 3, 10, "three jobs running")
        release.set()
        wait_until(lambda: len(done) == 8, 10, "every job done")
    finally:
        release.set()
        jobs.shutdown()
    assert peak[0] == 3 and sorted(done) == list(range(8))


def test_after_shutdown_nothing_runs() -> None:
    jobs = BackgroundJobs()
    jobs.start()
    jobs.shutdown()
    ran = threading.Event()
    jobs.after(0, ran.set)
    assert not ran.wait(0.5)
