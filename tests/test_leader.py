"""LeaderJobs: jobs run only in the process holding the host's lock file; another takes over."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from cluster import wait_until
from flask_clustershazbot.leader import LeaderJobs


class Recorder:
    def __init__(self) -> None:
        self.runs: list[str] = []
        self.lock = threading.Lock()

    def job(self, name: str) -> Callable[[], None]:
        def run() -> None:
            with self.lock:
                self.runs.append(name)

        return run


def test_only_the_lock_holder_runs_jobs_and_another_takes_over(tmp_path: Path) -> None:
    lock = str(tmp_path / "host.lock")
    done = Recorder()
    first = LeaderJobs(lock, poll=0.05)
    second = LeaderJobs(lock, poll=0.05)
    second.on_elected = lambda: second.after(0, done.job("second elected"))
    try:
        first.start()
        second.start()
        assert first.leader and not second.leader
        first.after(0, done.job("first"))
        second.after(0, done.job("second, not leading"))
        wait_until(lambda: "first" in done.runs, what="the leader's job")
        first.shutdown()
        wait_until(lambda: "second elected" in done.runs, what="the takeover")
        assert second.leader
        assert "second, not leading" not in done.runs
    finally:
        first.shutdown()
        second.shutdown()


def test_a_killed_leader_process_is_replaced(tmp_path: Path) -> None:
    lock = str(tmp_path / "host.lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import sys, time
from flask_clustershazbot.leader import LeaderJobs
jobs = LeaderJobs({lock!r}, poll=0.05)
jobs.start()
print("LEADER" if jobs.leader else "FOLLOWER", flush=True)
time.sleep(60)
""",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    elected = threading.Event()
    jobs = LeaderJobs(lock, poll=0.05, on_elected=elected.set)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "LEADER"
        jobs.start()
        assert not jobs.leader
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock
        holder.wait(10)
        wait_until(elected.is_set, what="the takeover after SIGKILL")
        assert jobs.leader
    finally:
        jobs.shutdown()
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()


def test_standby_never_competes_until_forked(tmp_path: Path) -> None:
    lock = str(tmp_path / "host.lock")
    master = LeaderJobs(lock, poll=0.05, standby=True)
    other = LeaderJobs(lock, poll=0.05)
    try:
        master.start()
        other.start()
        assert not master.leader and other.leader
        other.shutdown()
        master.reset_after_fork()  # what a forked worker does
        master.start()
        assert master.leader
    finally:
        master.shutdown()
        other.shutdown()
