"""The host's shared state files under real gunicorn (issue 10, items 5 and 6):
two hosts pointed at one SHAZBOT_STATE_PATH, and state and lock files deleted while
the host runs (what a tmp cleaner does to the default location)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import CONTROL, SECRET, Node, wait_until
from test_gunicorn import INTERVAL, Host


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    started: list[Host] = []
    yield started
    for host in started:
        host.stop()


@pytest.fixture
def observer(root: Path) -> Iterator[Node]:
    node = Node(
        {
            "SHAZBOT_SECRET": SECRET,
            "SHAZBOT_CONTROL_SECRET": CONTROL,
            "SHAZBOT_MASTER_LIST": str(root / "master.json"),
            "SHAZBOT_GOSSIP_INTERVAL": INTERVAL,
            "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 0.5,
            "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": 1.0,
            "SHAZBOT_RETRY_DELAY": 0.5,
            "SHAZBOT_FAILURE_TIMEOUT": 30.0,
        }
    )
    yield node
    node.stop()


def serving(host: Host) -> None:
    wait_until(
        lambda: host.process.poll() is not None or host.view() is not None,
        timeout=60,
        what=f"host {host.name} serving",
    )
    assert host.process.poll() is None, host.stderr_path.read_text()


def test_two_hosts_sharing_one_state_path_are_refused(
    root: Path, hosts: list[Host], observer: Node
) -> None:
    state = {"SHAZBOT_STATE_PATH": str(root / "shared.sqlite3")}
    a = Host("A", root, root / "master.json", ["--workers", "2"], state)
    hosts.append(a)
    serving(a)
    wait_until(lambda: observer.view().get(a.base_url), timeout=30, what="A online")

    b = Host("B", root, root / "master.json", ["--workers", "2"], state)  # a copied unit file
    hosts.append(b)
    wait_until(lambda: b.process.poll() is not None, timeout=60, what="B refused at start")
    log = b.stderr_path.read_text(errors="replace")
    assert "SHAZBOT_STATE_PATH" in log and a.base_url in log
    # A went on undisturbed: still online, its table whole.
    rounds = len(a.rounds())
    wait_until(lambda: len(a.rounds()) >= rounds + 8, timeout=30, what="more rounds of A")
    view = a.view()
    assert view is not None and view[a.base_url] and view[observer.base_url]
    assert b.base_url not in view and observer.view()[a.base_url]


def workers(master: int) -> set[int]:
    """The gunicorn master's worker pids, read from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                found.add(int(entry))
    return found


def listed(host: Host, online: bool) -> bool:
    view = host.view()
    return view is not None and view.get(host.base_url) is online


def start_host(root: Path, hosts: list[Host], observer: Node) -> tuple[Host, Path]:
    path = root / "host" / "state.sqlite3"
    (root / "host").mkdir()
    host = Host(
        "A",
        root,
        root / "master.json",
        ["--workers", "3", "--threads", "2"],
        {"SHAZBOT_STATE_PATH": str(path)},
    )
    hosts.append(host)
    serving(host)
    wait_until(
        lambda: observer.view().get(host.base_url) and len(host.rounds()) > 4,
        timeout=30,
        what="the host online, running rounds",
    )
    return host, path


def delete_and_recycle(host: Host, path: Path, suffixes: tuple[str, ...]) -> None:
    """Delete the files as a tmp cleaner would, then restart one worker (as recycling
    does): it opens the paths afresh."""
    for suffix in suffixes:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    leader = host.rounds()[-1][0]
    others = sorted(workers(host.process.pid) - {leader})
    os.kill(others[0], signal.SIGTERM)
    wait_until(
        lambda: len(workers(host.process.pid) - {leader} - set(others)) == 1,
        timeout=30,
        what="the replacement worker",
    )
    wait_until(
        lambda: all(Path(f"{path}{s}").exists() for s in suffixes if s in ("", ".lock")),
        timeout=30,
        what="the files recreated",
    )
    # Every worker notices within one poll or transaction: wait until the rounds come from
    # one process again (the tests then check a fresh window of rounds).
    noticed = time.time()

    def one_runner_again() -> bool:
        last = [pid for pid, t in host.rounds() if t > noticed][-8:]
        return len(last) == 8 and len(set(last)) == 1

    wait_until(one_runner_again, timeout=30, what="8 rounds in a row from one worker")


def test_deleting_the_lock_file_mid_run_leaves_one_schedule_runner(
    root: Path, hosts: list[Host], observer: Node
) -> None:
    host, path = start_host(root, hosts, observer)
    delete_and_recycle(host, path, (".lock",))
    since = time.time()
    wait_until(lambda: sum(t > since for _, t in host.rounds()) >= 16, timeout=30, what="16 rounds")
    runners = {pid for pid, t in host.rounds() if t > since}
    assert len(runners) == 1, f"rounds ran in {len(runners)} processes: {runners}"


def test_deleting_every_state_file_mid_run_keeps_one_table(
    root: Path, hosts: list[Host], observer: Node
) -> None:
    host, path = start_host(root, hosts, observer)
    delete_and_recycle(host, path, ("", "-wal", "-shm", ".lock"))
    # A control request shows in every /list answer, whichever worker answers.
    host.control(False)
    answers = [listed(host, False) for _ in range(24)]
    assert all(answers), f"offline in {sum(answers)} of 24 answers"
    host.control(True)
    answers = [listed(host, True) for _ in range(24)]
    assert all(answers), f"online in {sum(answers)} of 24 answers"
    # One process runs the schedules, and peers see the host online.
    since = time.time()
    wait_until(lambda: sum(t > since for _, t in host.rounds()) >= 16, timeout=30, what="16 rounds")
    assert len({pid for pid, t in host.rounds() if t > since}) == 1
    wait_until(lambda: observer.view().get(host.base_url), timeout=30, what="online for peers")
