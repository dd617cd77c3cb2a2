"""Real gunicorn hosts on 127.0.0.1: a host with many workers behaves exactly like one node.

One cluster for the module: three gunicorn hosts, each with another setup, and
one in-process observer node:
- A: 1 gthread worker x 8 threads, recycled every ~60 requests (--max-requests);
- B: 4 sync workers;
- C: 4 gthread workers x 2 threads with --preload.
All run tests/gunicorn_app.py with examples/gunicorn.conf.py and the default
state path (in the host's own $TMPDIR). The peers' failure timeout is long (30 s),
so anything a test sees go offline sooner was announced, not timed out.
Rates and takeover times are printed (run with -s), never asserted as timings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cluster import (
    CONTROL,
    SECRET,
    Node,
    ctrl_c_as_in_a_terminal,
    free_port,
    gunicorn_command,
    host_env,
    stop_process,
    wait_until,
)
from flask_clustershazbot import GossipServer

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 0.25
FAILURE_TIMEOUT = 30.0
#: A host is judged hung after being silent this long (docs/faults.md): these tests are about
#: workers and leaders, not detection speed, and a worker respawned on a loaded machine (CI
#: on 2 cores) was once silent for more than the default 5 s.
REQUEST_TIMEOUT = 15.0


class Host:
    """One server's master and its workers (gunicorn unless told otherwise), in a session of
    their own."""

    def __init__(
        self,
        name: str,
        root: Path,
        master_list: Path,
        args: list[str],
        extra_env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        """gunicorn with ``args``, or another server's ``command`` (``{port}`` filled in)."""
        self.name = name
        self.dir = root / name
        self.dir.mkdir()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/"
        self.signal_log = self.dir / "signals.log"
        self.round_log = self.dir / "rounds.log"
        self.stderr_path = self.dir / "gunicorn.log"
        env = host_env(
            {
                "TMPDIR": str(self.dir),  # the default state path lands here
                "SHAZBOT_SECRET": SECRET,
                "SHAZBOT_CONTROL_SECRET": CONTROL,
                "SHAZBOT_BASE_URL": self.base_url,
                "SHAZBOT_MASTER_LIST": str(master_list),
                "SHAZBOT_GOSSIP_INTERVAL": str(INTERVAL),
                "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": "0.5",
                "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": "1",
                "SHAZBOT_RETRY_DELAY": "0.5",
                "SHAZBOT_FAILURE_TIMEOUT": str(FAILURE_TIMEOUT),
                "SHAZBOT_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
                "TEST_SIGNAL_LOG": str(self.signal_log),
                "TEST_ROUND_LOG": str(self.round_log),
                **(extra_env or {}),
            }
        )
        if command is None:
            command = gunicorn_command(self.port, "gunicorn_app:create_app()", *args)
        command = [part.format(port=self.port) for part in command]
        self.stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=self.dir,
            stdout=self.stderr,
            stderr=self.stderr,
            start_new_session=True,
            preexec_fn=ctrl_c_as_in_a_terminal,  # tests stop some servers with SIGINT
        )

    def get(self, path: str, control: bool = False) -> requests.Response:
        headers = {"Connection": "close"}  # a new connection each time: any worker may answer
        if control:
            headers["Authorization"] = CONTROL
        return requests.get(self.base_url + path, headers=headers, timeout=10)

    def view(self) -> dict[str, bool] | None:
        try:
            data = self.get("clustershazbot/list", control=True).json()
        except (requests.RequestException, ValueError):
            return None
        view = {s["baseUrl"]: True for s in data["online"]}
        view.update({s["baseUrl"]: False for s in data["offline"]})
        return view

    def control(self, online: bool) -> None:
        response = requests.post(
            self.base_url + "clustershazbot/control",
            json={"message": "control", "online": online},
            headers={"Authorization": CONTROL, "Connection": "close"},
            timeout=10,
        )
        assert response.json() == {"success": True}

    def signals(self) -> Counter[str]:
        if not self.signal_log.exists():
            return Counter()
        return Counter(line.split(" ", 1)[1] for line in self.signal_log.read_text().splitlines())

    def rounds(self) -> list[tuple[int, float]]:
        if not self.round_log.exists():
            return []
        return [
            (int(p), float(t))
            for p, t in (line.split() for line in self.round_log.read_text().splitlines())
        ]

    def log_lines(self) -> list[str]:
        return self.stderr_path.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        stop_process(self.process)
        try:  # whatever it left in its session (the new master of an upgrade that failed)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.stderr.close()


def counted(observer: Counter[str], url: str, joined: int, left: int) -> bool:
    return observer[f"joined {url}"] == joined and observer[f"left {url}"] == left


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("gunicorn")
    master_list = root / "master.json"
    hosts = {
        "A": Host(
            "A",
            root,
            master_list,
            [
                "--workers",
                "1",
                "--threads",
                "8",
                "--max-requests",
                "60",
                "--max-requests-jitter",
                "10",
            ],
        ),
        "B": Host(
            "B",
            root,
            master_list,
            ["--workers", "4", "--worker-class", "sync", "--threads", "1", "--max-requests", "0"],
        ),
        "C": Host(
            "C",
            root,
            master_list,
            ["--workers", "4", "--threads", "2", "--preload", "--max-requests", "0"],
        ),
    }
    observer = Node(
        {
            "SHAZBOT_SECRET": SECRET,
            "SHAZBOT_CONTROL_SECRET": CONTROL,
            "SHAZBOT_MASTER_LIST": str(master_list),
            "SHAZBOT_GOSSIP_INTERVAL": INTERVAL,
            "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 0.5,
            "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": 1.0,
            "SHAZBOT_RETRY_DELAY": 0.5,
            "SHAZBOT_FAILURE_TIMEOUT": FAILURE_TIMEOUT,
            "SHAZBOT_REQUEST_TIMEOUT": REQUEST_TIMEOUT,
        }
    )
    seen: Counter[str] = Counter()
    from flask_clustershazbot import peer_joined, peer_left

    def joined(sender: Any, server: Any) -> None:
        seen[f"joined {server.base_url}"] += 1

    def left(sender: Any, server: Any) -> None:
        seen[f"left {server.base_url}"] += 1

    peer_joined.connect(joined, observer.app)
    peer_left.connect(left, observer.app)
    everyone = {h.base_url for h in hosts.values()} | {observer.base_url}
    try:
        for host in hosts.values():
            wait_until(
                lambda: host.process.poll() is not None or host.view() is not None,
                timeout=30,
                what=f"host {host.name} serving",
            )
            assert host.process.poll() is None, host.stderr_path.read_text()
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
        observer.stop()
        peer_joined.disconnect(joined, observer.app)
        peer_left.disconnect(left, observer.app)


def test_each_host_acts_as_one_node(cluster: dict[str, Any]) -> None:
    hosts, observer, seen = cluster["hosts"], cluster["observer"], cluster["seen"]
    everyone = cluster["everyone"]
    a, b, c = hosts["A"], hosts["B"], hosts["C"]

    # 200 list requests per host, each on a new connection: every worker answers the same.
    for host in hosts.values():
        answers, pids = set(), set()
        for _ in range(200):
            response = host.get("clustershazbot/list")
            answers.add(frozenset(s["baseUrl"] for s in response.json()["online"]))
            pids.add(response.headers["X-Worker-Pid"])
        assert answers == {frozenset(everyone)}, host.name
        assert len(pids) >= 2, f"{host.name}: one worker answered all 200 requests"  # A recycles

    # A control request taken by one worker takes the whole host offline, then online.
    b.control(False)
    for _ in range(40):
        listed = b.get("clustershazbot/list", control=True).json()
        assert b.base_url in {s["baseUrl"] for s in listed["offline"]}
    wait_until(
        lambda: (
            all((h.view() or {}).get(b.base_url) is False for h in (a, c))
            and observer.view().get(b.base_url) is False
        ),
        what="B offline everywhere",
    )
    b.control(True)
    for _ in range(40):
        listed = b.get("clustershazbot/list").json()
        assert b.base_url in {s["baseUrl"] for s in listed["online"]}
    wait_until(
        lambda: (
            all((h.view() or {}).get(b.base_url) for h in (a, c))
            and observer.view().get(b.base_url)
        ),
        what="B back online everywhere",
    )

    # Gossip rounds: each host runs one node's schedule, from one worker at a time. Counted
    # against the in-process observer, which has the same interval: over the same window a
    # host completes about as many rounds (two schedule runners would double them).
    observed_from = observer.engine.stats.rounds
    started = time.time()
    wait_until(
        lambda: observer.engine.stats.rounds >= observed_from + 24,
        timeout=60,
        what="24 rounds of the observer",
    )
    ended = time.time()
    observed = observer.engine.stats.rounds - observed_from
    for host in hosts.values():
        rounds = host.rounds()
        window = [r for r in rounds if started <= r[1] <= ended]
        print(
            f"\n{host.name}: {len(window)} rounds while the observer ran {observed}, "
            f"{len({p for p, _ in window})} worker(s) in the window"
        )
        assert observed / 2 <= len(window) <= observed * 3 / 2, (
            f"{host.name}: {len(window)} rounds while the observer ran {observed}"
        )
        leaders = [p for i, (p, _) in enumerate(rounds) if i == 0 or rounds[i - 1][0] != p]
        assert len(leaders) == len(set(leaders)), f"{host.name}: leaders interleaved {leaders}"

    # Signals: once per transition per host, whichever worker applied it.
    for name, host in hosts.items():
        peers = everyone - {host.base_url}
        expected_signals = Counter({f"joined {u}": 1 for u in peers})
        if host is not b:
            expected_signals.update({f"joined {b.base_url}": 1, f"left {b.base_url}": 1})
        assert host.signals() == expected_signals, name
    for host in hosts.values():
        assert counted(
            seen, host.base_url, joined=2 if host is b else 1, left=1 if host is b else 0
        )


def test_killing_the_schedule_runner_hands_over(cluster: dict[str, Any]) -> None:
    hosts, observer, seen = cluster["hosts"], cluster["observer"], cluster["seen"]
    b = hosts["B"]
    before = seen.copy()
    signals_before = {h.name: h.signals() for h in hosts.values()}

    def b_stamp() -> int:
        servers: tuple[GossipServer, ...] = observer.shazbot.server_list(app=observer.app).online
        return next(s.last_update for s in servers if s.base_url == b.base_url)

    leader = wait_until(lambda: b.rounds() and b.rounds()[-1][0], what="B's rounds")
    killed_at = time.time()
    os.kill(leader, signal.SIGKILL)
    first = wait_until(
        lambda: next((t for p, t in b.rounds() if p != leader and t > killed_at), None),
        what="another worker of B running rounds",
    )
    print(
        f"\ntakeover after SIGKILL of the leader: {first - killed_at:.2f} s "
        f"({(first - killed_at) / INTERVAL:.1f} gossip intervals)"
    )
    # B keeps beating: its heartbeat advances at the peers, and nobody saw it leave.
    stamp = b_stamp()
    wait_until(lambda: b_stamp() > stamp, what="B's heartbeat advancing after the takeover")
    assert all((h.view() or {}).get(b.base_url) for h in hosts.values())
    assert seen == before
    assert {h.name: h.signals() for h in hosts.values()} == signals_before


def test_sigterm_to_the_master_announces_the_shutdown_once(cluster: dict[str, Any]) -> None:
    hosts, observer, seen = cluster["hosts"], cluster["observer"], cluster["seen"]
    a = hosts["A"]
    before = seen.copy()
    # Recycling A's only worker (--max-requests) is not a shutdown: nobody sees A leave.
    for _ in range(150):
        a.get("clustershazbot/list")
    assert any("Autorestarting worker" in line for line in a.log_lines())
    assert seen == before

    stopped: list[Host] = []
    left_expected: dict[tuple[str, str], int] = {}
    for name in ("C", "A", "B"):  # --preload; one recycled worker; sync workers
        host = hosts[name]
        left = f"left {host.base_url}"
        running = [h for h in hosts.values() if h is not host and h.process.poll() is None]
        for other in running:
            left_expected[other.name, left] = other.signals()[left] + 1
        host.process.send_signal(signal.SIGTERM)
        stopped_at = time.time()
        wait_until(
            lambda: observer.view().get(host.base_url) is False,
            timeout=FAILURE_TIMEOUT / 3,
            what=f"{name} offline at the observer",
        )
        print(f"\n{name} seen offline {time.time() - stopped_at:.2f} s after SIGTERM")
        for other in running:
            wait_until(
                lambda: other.signals()[left] == left_expected[other.name, left],
                timeout=FAILURE_TIMEOUT / 3,
                what=f"{other.name} sees {name} leave",
            )
        host.process.wait(20)
        stopped.append(host)
        shutdowns = [
            line
            for line in host.log_lines()
            if line.startswith("flask_clustershazbot.engine ") and line.endswith(" shut down")
        ]
        assert shutdowns == [f"flask_clustershazbot.engine {host.process.pid} shut down"], name
    # Once: every peer saw every host leave exactly once, whichever worker took the news.
    assert {key: hosts[key[0]].signals()[key[1]] for key in left_expected} == left_expected
    for host in hosts.values():
        assert seen[f"left {host.base_url}"] == before[f"left {host.base_url}"] + 1, host.name
        assert seen[f"joined {host.base_url}"] == before[f"joined {host.base_url}"], host.name
