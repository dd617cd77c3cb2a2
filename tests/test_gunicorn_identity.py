"""Which gunicorn host is the node (issue 24): a second host given a copied base URL is
refused and the real one never notices; a binary upgrade (USR2, WINCH, TERM to the old
master) keeps the host in the cluster throughout. Real gunicorn processes, real signals."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import gunicorn_command, wait_until
from test_gunicorn import Host
from test_uwsgi import Seen, observer_node, serving


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    started: list[Host] = []
    yield started
    for host in started:
        host.stop()


@pytest.fixture
def seen(tmp_path: Path) -> Iterator[Seen]:
    node = observer_node(tmp_path)
    watch = Seen(node)
    yield watch
    watch.close()
    node.stop()


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def answers_online(host: Host, times: int = 30) -> set[str]:
    """The workers that answered ``times`` list requests, each listing the host online."""
    pids = set()
    for _ in range(times):
        response = host.get("clustershazbot/list")
        assert response.status_code == 200, response.text
        assert host.base_url in {s["baseUrl"] for s in response.json()["online"]}
        pids.add(response.headers["X-Worker-Pid"])
    return pids


def test_a_copied_base_url_is_refused_and_the_real_host_never_notices(
    tmp_path: Path, hosts: list[Host], seen: Seen
) -> None:
    real = Host("real", tmp_path, tmp_path / "master.json", ["--workers", "2"])
    hosts.append(real)
    serving(real)
    wait_until(lambda: seen.node.view().get(real.base_url), timeout=30, what="the host online")

    # A second host on another port, given the first one's base URL and temporary directory.
    copy = Host(
        "copy",
        tmp_path,
        tmp_path / "master.json",
        ["--workers", "2"],
        {"SHAZBOT_BASE_URL": real.base_url, "TMPDIR": str(real.dir)},
    )
    hosts.append(copy)
    wait_until(lambda: copy.process.poll() is not None, timeout=60, what="the copy refused")
    log = copy.stderr_path.read_text(errors="replace")
    assert "SHAZBOT_BASE_URL" in log and real.base_url in log
    assert " shut down" not in log  # its master's exit announced nothing
    assert copy.process.returncode != 0

    rounds = len(real.rounds())
    wait_until(lambda: len(real.rounds()) > rounds + 8, timeout=30, what="more rounds")
    answers_online(real)
    assert seen.counts[f"left {real.base_url}"] == 0
    assert seen.node.view()[real.base_url]
    assert not [line for line in real.log_lines() if "identity conflict" in line]


def test_a_binary_upgrade_keeps_the_host_in_the_cluster(
    tmp_path: Path, hosts: list[Host], seen: Seen
) -> None:
    # The console script: USR2 re-executes the master's command line, and under `python -m
    # gunicorn` that puts gunicorn's own package first on the path (its `http` shadows the
    # standard library's), so the new master cannot start.
    command = gunicorn_command(0, "gunicorn_app:create_app()", "--workers", "2")
    command = [str(Path(sys.executable).parent / "gunicorn"), *command[3:]]
    command[command.index("--bind") + 1] = "127.0.0.1:{port}"
    host = Host("up", tmp_path, tmp_path / "master.json", [], command=command)
    hosts.append(host)
    serving(host)
    wait_until(lambda: seen.node.view().get(host.base_url), timeout=30, what="the host online")
    old = host.process.pid

    os.kill(old, signal.SIGUSR2)  # a new master, forked and exec'd by the old one
    new = wait_until(
        lambda: next(
            (
                int(line.rsplit("(", 1)[1].rstrip(")"))
                for line in host.log_lines()
                if "Listening at:" in line and not line.endswith(f"({old})")
            ),
            None,
        ),
        timeout=30,
        what="the new master",
    )
    assert parent_of(new) == old
    wait_until(
        lambda: any(parent_of(int(p)) == new for p in answers_online(host, 10)),
        timeout=60,
        what="a new worker answering",
    )
    # WINCH stops the old workers of a daemonized master only; here gunicorn ignores it, and
    # TERM stops the old workers and then the old master.
    os.kill(old, signal.SIGWINCH)
    os.kill(old, signal.SIGTERM)
    host.process.wait(30)
    assert all(parent_of(int(p)) == new for p in answers_online(host, 10))
    rounds = len(host.rounds())
    wait_until(lambda: len(host.rounds()) > rounds + 8, timeout=30, what="rounds after the upgrade")
    answers_online(host)
    assert seen.counts[f"left {host.base_url}"] == 0
    assert seen.node.view()[host.base_url]
    log = host.stderr_path.read_text(errors="replace")
    assert "identity conflict" not in log and "stays passive" not in log
    assert "the host goes on under master pid" in log

    # The new master stops the host as usual: announced once.
    os.kill(new, signal.SIGTERM)
    wait_until(
        lambda: seen.node.view().get(host.base_url) is False, timeout=10, what="the host offline"
    )
    assert seen.counts[f"left {host.base_url}"] == 1
