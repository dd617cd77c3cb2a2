"""Real uWSGI hosts on 127.0.0.1 (issue 21): each host acts as exactly one node.

One cluster for the module: two uWSGI hosts of 4 processes and an in-process observer:
- A: preforking (the app loaded in the master, the default), no --enable-threads;
- B: --lazy-apps (each worker loads the app), --threads 2.
Both recycle their workers every 50 requests (--max-requests, from a worker's first second:
--min-worker-lifetime; 60 s by default) and stop on SIGTERM
(--die-on-term). The peers' failure timeout is long (30 s): anything a test sees go
offline sooner was announced, not timed out. Stop times are printed (run with -s).
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import CONTROL, SECRET, Node, wait_until
from flask_clustershazbot import peer_joined, peer_left
from test_gunicorn import FAILURE_TIMEOUT, Host

TESTS = Path(__file__).resolve().parent
UWSGI = shutil.which("uwsgi", path=str(Path(sys.executable).parent)) or shutil.which("uwsgi")
INTERVAL = 0.5

pytestmark = pytest.mark.skipif(UWSGI is None, reason="uwsgi is not installed")


def uwsgi_command(*args: str) -> list[str]:
    """uWSGI serving tests/wsgi_app.py on 127.0.0.1:{port}, 4 processes under a master."""
    assert UWSGI is not None
    return [
        UWSGI,
        "--http-socket", "127.0.0.1:{port}",
        "--master",
        "--processes", "4",
        "--die-on-term",
        "--disable-logging",  # no line per request
        "--pythonpath", str(TESTS),
        "--module", "wsgi_app:app",
        *args,
    ]  # fmt: skip


def uwsgi_host(name: str, root: Path, *args: str) -> Host:
    return Host(
        name,
        root,
        root / "master.json",
        [],
        {"SHAZBOT_GOSSIP_INTERVAL": str(INTERVAL)},
        command=uwsgi_command(*args),
    )


def serving(host: Host) -> None:
    wait_until(
        lambda: host.process.poll() is not None or host.view() is not None,
        timeout=60,
        what=f"host {host.name} serving",
    )
    assert host.process.poll() is None, host.stderr_path.read_text()


def observer_node(root: Path) -> Node:
    return Node(
        {
            "SHAZBOT_SECRET": SECRET,
            "SHAZBOT_CONTROL_SECRET": CONTROL,
            "SHAZBOT_MASTER_LIST": str(root / "master.json"),
            "SHAZBOT_GOSSIP_INTERVAL": INTERVAL,
            "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 0.5,
            "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": 1.0,
            "SHAZBOT_RETRY_DELAY": 0.5,
            "SHAZBOT_FAILURE_TIMEOUT": FAILURE_TIMEOUT,
        }
    )


class Seen:
    """The observer's peer_joined and peer_left signals, counted per base URL."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.counts: Counter[str] = Counter()
        peer_joined.connect(self.joined, node.app)
        peer_left.connect(self.left, node.app)

    def joined(self, sender: Any, server: Any) -> None:
        self.counts[f"joined {server.base_url}"] += 1

    def left(self, sender: Any, server: Any) -> None:
        self.counts[f"left {server.base_url}"] += 1

    def close(self) -> None:
        peer_joined.disconnect(self.joined, self.node.app)
        peer_left.disconnect(self.left, self.node.app)


def lines(host: Host, text: str) -> list[str]:
    return [line for line in host.log_lines() if text in line]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("uwsgi")
    hosts = {
        "A": uwsgi_host("A", root, "--max-requests", "50", "--min-worker-lifetime", "1"),
        "B": uwsgi_host(
            "B",
            root,
            *("--lazy-apps", "--threads", "2", "--master-fifo", str(root / "B" / "fifo")),
            *("--max-requests", "50", "--min-worker-lifetime", "1"),
        ),
    }
    observer = observer_node(root)
    seen = Seen(observer)
    everyone = {h.base_url for h in hosts.values()} | {observer.base_url}
    try:
        for host in hosts.values():
            serving(host)
        wait_until(
            lambda: (
                set(observer.view(False)) == everyone
                and all(set(h.view() or ()) == everyone for h in hosts.values())
            ),
            timeout=30,
            what="the cluster to converge",
        )
        yield {"hosts": hosts, "observer": observer, "seen": seen, "everyone": everyone}
    finally:
        for host in hosts.values():
            host.stop()
        seen.close()
        observer.stop()


def test_each_host_is_one_node(cluster: dict[str, Any]) -> None:
    hosts, everyone = cluster["hosts"], cluster["everyone"]
    for name, host in hosts.items():
        answers, pids = set(), set()
        for _ in range(40):  # a new connection each time: any worker may answer
            response = host.get("clustershazbot/list")
            answers.add(frozenset(s["baseUrl"] for s in response.json()["online"]))
            pids.add(response.headers["X-Worker-Pid"])
        assert answers == {frozenset(everyone)}, name  # exactly the three members
        assert len(pids) >= 2, f"{name}: one worker answered all 40 requests"
        # Each join signalled once per host, whichever worker merged it.
        assert host.signals() == Counter({f"joined {u}": 1 for u in everyone - {host.base_url}})
        # One schedule runner at a time.
        rounds = host.rounds()
        leaders = [p for i, (p, _) in enumerate(rounds) if i == 0 or rounds[i - 1][0] != p]
        assert len(leaders) == len(set(leaders)), f"{name}: leaders interleaved {leaders}"
    seen = cluster["seen"].counts
    assert seen == Counter({f"joined {h.base_url}": 1 for h in hosts.values()})


def test_recycling_workers_raises_no_alarm(cluster: dict[str, Any]) -> None:
    hosts, seen = cluster["hosts"], cluster["seen"].counts
    before = seen.copy()
    for host in hosts.values():
        for _ in range(250):  # steady traffic: every worker passes its 50 requests
            assert host.get("clustershazbot/list").status_code == 200
        assert lines(host, "The work of process"), f"{host.name}: no worker was recycled"
        rounds = len(host.rounds())
        wait_until(lambda: len(host.rounds()) > rounds + 4, what=f"{host.name} still gossiping")
    assert seen == before
    for host in hosts.values():
        assert not [k for k in host.signals() if k.startswith("left")], host.name
        assert all(cluster["observer"].view().values())


def test_chain_reload_raises_no_alarm(cluster: dict[str, Any]) -> None:
    """--lazy-apps hosts reload their workers one at a time (the master FIFO's "c"): the
    host answers throughout, and nobody sees it leave."""
    b, seen = cluster["hosts"]["B"], cluster["seen"].counts
    before = seen.copy()
    spawned = len(lines(b, "spawned uWSGI worker"))
    (b.dir / "fifo").write_bytes(b"c")
    wait_until(
        lambda: len(lines(b, "spawned uWSGI worker")) >= spawned + 4,
        timeout=60,
        what="B's four workers replaced",
    )
    rounds = len(b.rounds())
    wait_until(lambda: len(b.rounds()) > rounds + 4, what="B gossiping after the chain reload")
    assert seen == before
    assert not lines(b, " shut down")


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT], ids=["HUP", "QUIT"])
def test_reload_is_not_announced(cluster: dict[str, Any], signum: int) -> None:
    """SIGHUP reloads gracefully; SIGQUIT, under --die-on-term, brutally. Either way every
    worker stops, then the master loads the app again: no process announces a stop, and
    the host is back online everywhere (a peer whose probes went unanswered for the
    whole reload may have seen it leave and come back: printed)."""
    a, observer, seen = cluster["hosts"]["A"], cluster["observer"], cluster["seen"].counts
    before = seen[f"left {a.base_url}"]
    respawns = len(lines(a, "spawned uWSGI worker 1 "))
    a.process.send_signal(signum)
    wait_until(
        lambda: len(lines(a, "spawned uWSGI worker 1 ")) > respawns,
        timeout=30,
        what="A reloaded",
    )
    rounds = len(a.rounds())
    wait_until(lambda: len(a.rounds()) > rounds + 4, what="A gossiping again")
    wait_until(lambda: observer.view().get(a.base_url), what="A online at the observer")
    assert a.process.poll() is None
    assert not lines(a, " shut down"), "a reload was announced as a stop"
    print(
        f"\nreload by {signal.Signals(signum).name}: seen leaving {seen[f'left {a.base_url}'] - before} times"
    )


def test_sigint_stops_each_host_and_announces_it_once(cluster: dict[str, Any]) -> None:
    hosts, observer, seen = cluster["hosts"], cluster["observer"], cluster["seen"].counts
    for name in ("A", "B"):
        host = hosts[name]
        left_before = seen[f"left {host.base_url}"]
        wait_until(lambda: observer.view().get(host.base_url), what=f"{name} online")
        others = [h for h in hosts.values() if h is not host and h.process.poll() is None]
        others_left = {h.name: h.signals()[f"left {host.base_url}"] for h in others}
        host.process.send_signal(signal.SIGINT)
        stopped_at = time.monotonic()
        wait_until(
            lambda: observer.view().get(host.base_url) is False,
            timeout=FAILURE_TIMEOUT / 3,
            what=f"{name} offline at the observer",
        )
        offline = time.monotonic() - stopped_at
        host.process.wait(20)
        exited = time.monotonic() - stopped_at
        print(
            f"\nuWSGI {name}: offline at a peer {offline:.2f} s, exited {exited:.2f} s after SIGINT"
        )
        assert seen[f"left {host.base_url}"] == left_before + 1, name
        for other in others:
            wait_until(
                lambda: other.signals()[f"left {host.base_url}"] == others_left[other.name] + 1,
                timeout=FAILURE_TIMEOUT / 3,
                what=f"{other.name} sees {name} leave",
            )
        # One process announced; the others found it done.
        assert len(lines(host, " shut down")) == 1, name
