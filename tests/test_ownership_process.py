"""Ownership and singleton jobs on 5 real hosts: 4 plain node processes (werkzeug) and one
gunicorn host with 2 workers, all running tests/ownership_app.py on 127.0.0.1.

One scenario, in order: converged, every host names the same owner for each of
1,000 keys; the singleton job runs once per tick on its owner (the gunicorn host,
in one of its workers); the gunicorn host is killed with SIGKILL (master and
workers): only its keys move, the others agree again, and the runner-up takes the
job over. Times are printed (run with -s), never asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cluster import CONTROL, SECRET, free_port, gunicorn_command, wait_until
from flask_clustershazbot.ownership import Ring

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 0.25  # gossip
RETRY_DELAY = 0.25
FAILURE_TIMEOUT = 5.0
JOB_INTERVAL = 1.0
KEYS = 1000


class Host:
    """One node process (or a gunicorn master with its workers) in a session of its own."""

    def __init__(self, root: Path, port: int, env: dict[str, str], gunicorn: bool) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/"
        self.dir = root / str(port)
        self.dir.mkdir()
        self.log_path = self.dir / "node.log"
        env = {
            **env,
            "TMPDIR": str(self.dir),
            "SHAZBOT_BASE_URL": self.base_url,
            "TEST_PORT": str(port),
        }
        if gunicorn:
            command = gunicorn_command(port, "ownership_app:create_app()", "--workers", "2")
        else:
            command = [sys.executable, str(ROOT / "tests" / "ownership_app.py")]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
            )

    def get(self, path: str, control: bool = False) -> Any:
        headers = {"Connection": "close"}  # a new connection each time: any worker may answer
        if control:
            headers["Authorization"] = CONTROL
        try:
            return requests.get(self.base_url + path, headers=headers, timeout=10).json()
        except (requests.RequestException, ValueError):
            return None

    def online(self) -> set[str] | None:
        data = self.get("clustershazbot/list", control=True)
        return None if data is None else {s["baseUrl"] for s in data["online"]}

    def owners(self) -> list[str] | None:
        data = self.get(f"owners?n={KEYS}")
        return None if data is None else data["owners"]

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def job_runs(path: Path) -> list[tuple[str, int, float, int]]:
    """(base URL, pid, unix time, tick number) per run."""
    if not path.exists():
        return []
    return [
        (url, int(pid), float(t), round(float(tick) / JOB_INTERVAL))
        for url, pid, t, tick in (line.split() for line in path.read_text().splitlines())
    ]


def agreed(hosts: list[Host], reads: int = 1) -> list[str] | None:
    """The owners every host names (each gunicorn host asked ``reads`` times), if all agree."""
    answers = [h.owners() for h in hosts for _ in range(reads)]
    if answers[0] is None or any(a != answers[0] for a in answers):
        return None
    return answers[0]


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[list[Host], Path, str]]:
    ports = [free_port() for _ in range(5)]
    urls = [f"http://127.0.0.1:{p}/" for p in ports]
    gunicorn_url = urls[0]
    # A job name owned by the gunicorn host while all five are online.
    ring = Ring(urls)
    name = next(f"tick-{i}" for i in range(1000) if ring.owner(f"tick-{i}") == gunicorn_url)
    job_log = tmp_path / "job.log"
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("SHAZBOT_STATE_PATH", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")
        },
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SHAZBOT_SECRET": SECRET,
        "SHAZBOT_CONTROL_SECRET": CONTROL,
        "SHAZBOT_MASTER_LIST": str(tmp_path / "master-list.json"),
        "SHAZBOT_GOSSIP_INTERVAL": str(INTERVAL),
        "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": "0.5",
        "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": "1",
        "SHAZBOT_RETRY_DELAY": str(RETRY_DELAY),
        "SHAZBOT_REQUEST_TIMEOUT": "2",
        "SHAZBOT_FAILURE_TIMEOUT": str(FAILURE_TIMEOUT),
        "TEST_JOB_LOG": str(job_log),
        "TEST_JOB_NAME": name,
        "TEST_JOB_INTERVAL": str(JOB_INTERVAL),
    }
    started = [Host(tmp_path, port, env, gunicorn=(i == 0)) for i, port in enumerate(ports)]
    try:
        yield started, job_log, name
    finally:
        for h in started:
            h.stop()


def test_five_hosts_agree_on_owners_and_run_the_singleton_job_once_per_tick(
    hosts: tuple[list[Host], Path, str],
) -> None:
    all_hosts, job_log, name = hosts
    gunicorn_host, others = all_hosts[0], all_hosts[1:]
    urls = {h.base_url for h in all_hosts}

    # Converged: every host lists all five online; then all name the same owners.
    wait_until(
        lambda: all(h.online() == urls for h in all_hosts), timeout=90, what="five hosts converge"
    )
    owners = wait_until(lambda: agreed(all_hosts, reads=1), timeout=30, what="owners agree")
    assert all(gunicorn_host.owners() == owners for _ in range(4))  # whichever worker answers
    assert owners == [Ring(urls).owner(f"key-{i}") for i in range(KEYS)]
    shares = Counter(owners)
    print(f"\nconverged: 5 hosts agree on {KEYS} keys; shares {sorted(shares.values())}")
    assert set(shares) == urls

    # Steady: the job runs on its owner, the gunicorn host, in one worker, once per tick.
    wait_until(
        lambda: any(u == gunicorn_host.base_url for u, *_ in job_runs(job_log)),
        timeout=30,
        what="the owner runs the job",
    )
    steady_from = len(job_runs(job_log))
    wait_until(
        lambda: len(job_runs(job_log)) >= steady_from + 8, timeout=60, what="eight more runs"
    )
    steady = job_runs(job_log)[steady_from:]
    assert {u for u, *_ in steady} == {gunicorn_host.base_url}
    assert len({pid for _, pid, _, _ in steady}) == 1  # one worker of the two
    ticks = Counter(tick for *_, tick in steady)
    span = max(ticks) - min(ticks) + 1
    print(
        f"steady: {len(steady)} runs over {span} ticks, all by pid {steady[0][1]} of the "
        f"gunicorn host"
    )
    assert set(ticks.values()) == {1}  # never twice
    assert len(ticks) >= span - 1  # a fire later than the next tick skips one (heavy load)

    # SIGKILL the gunicorn host (master and workers): only its keys move.
    runs_before_kill = len(job_runs(job_log))
    killed_at = time.time()
    gunicorn_host.kill()
    rest = urls - {gunicorn_host.base_url}
    wait_until(
        lambda: all(h.online() == rest for h in others),
        timeout=60,
        what="the four others mark the killed host offline",
    )
    detected = time.time() - killed_at
    after = wait_until(lambda: agreed(others), timeout=30, what="the four agree again")
    agreed_after = time.time() - killed_at
    moved = {i for i in range(KEYS) if after[i] != owners[i]}
    lost = {i for i in range(KEYS) if owners[i] == gunicorn_host.base_url}
    assert moved == lost
    assert after == [Ring(rest).owner(f"key-{i}") for i in range(KEYS)]
    print(
        f"kill: {len(moved)} of {KEYS} keys moved ({len(moved) / KEYS:.0%}), all the killed "
        f"host's; all offline everywhere after {detected:.1f} s, owners agreed after "
        f"{agreed_after:.1f} s (failure timeout {FAILURE_TIMEOUT} s)"
    )

    # The runner-up takes the job over.
    heir = Ring(rest).owner(name)
    settle = killed_at + agreed_after + JOB_INTERVAL  # a run under way then may straddle
    wait_until(
        lambda: sum(u == heir and t > settle for u, _, t, _ in job_runs(job_log)) >= 2,
        timeout=60,
        what="the runner-up runs the job",
    )
    later = job_runs(job_log)[runs_before_kill:]
    first = min(t for u, _, t, _ in later if u == heir)
    others_ran = Counter(u for u, *_ in later if u != heir)
    doubled = sum(n > 1 for n in Counter(tick for *_, tick in later).values())
    print(
        f"takeover: {heir} ran the job {first - killed_at:.1f} s after the kill (detection "
        f"{detected:.1f} s + one tick of {JOB_INTERVAL} s); runs by others meanwhile: "
        f"{dict(others_ran) or 'none'}; ticks run twice: {doubled}"
    )
    # After the survivors agreed, only the heir runs it.
    assert {u for u, _, t, _ in later if t > settle} == {heir}
