"""Other WSGI servers on 127.0.0.1 (issue 21): waitress (one process, threads) and gunicorn's
gevent worker (monkey-patched), each host exactly one node.

One cluster for the module: a waitress host W, a gunicorn host G of 4 gevent workers
recycled every 50 to 100 requests (spread: replacing all four at once leaves the host
unanswered while they boot), and an in-process observer whose failure timeout is long
(30 s): anything seen offline sooner was announced. Stop times are printed (-s).
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

from cluster import wait_until
from test_gunicorn import FAILURE_TIMEOUT, Host
from test_uwsgi import INTERVAL, Seen, lines, observer_node, serving

TESTS = Path(__file__).resolve().parent
WAITRESS = shutil.which("waitress-serve", path=str(Path(sys.executable).parent))

pytest.importorskip("gevent")
pytestmark = pytest.mark.skipif(WAITRESS is None, reason="waitress is not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("servers")
    interval = {"SHAZBOT_GOSSIP_INTERVAL": str(INTERVAL)}
    assert WAITRESS is not None
    waitress = [WAITRESS, "--listen=127.0.0.1:{port}", "--threads=4", "wsgi_app:app"]
    hosts = {
        "W": Host(
            "W", root, root / "master.json", [], {**interval, "PYTHONPATH": str(TESTS)}, waitress
        ),
        "G": Host(
            "G",
            root,
            root / "master.json",
            [
                "--workers",
                "4",
                "--worker-class",
                "gevent",
                "--max-requests",
                "50",
                "--max-requests-jitter",
                "5",
            ],
            interval,
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
        for _ in range(40):
            response = host.get("clustershazbot/list")
            assert {s["baseUrl"] for s in response.json()["online"]} == everyone, name
        assert host.signals() == Counter({f"joined {u}": 1 for u in everyone - {host.base_url}})
        rounds = host.rounds()
        leaders = [p for i, (p, _) in enumerate(rounds) if i == 0 or rounds[i - 1][0] != p]
        assert len(leaders) == len(set(leaders)), f"{name}: leaders interleaved {leaders}"
    assert cluster["seen"].counts == Counter({f"joined {h.base_url}": 1 for h in hosts.values()})


def test_recycling_gevent_workers_raises_no_alarm(cluster: dict[str, Any]) -> None:
    g, seen = cluster["hosts"]["G"], cluster["seen"].counts
    before = seen.copy()
    for _ in range(300):
        assert g.get("clustershazbot/list").status_code == 200
    assert lines(g, "Autorestarting worker"), "no worker was recycled"
    rounds = len(g.rounds())
    wait_until(lambda: len(g.rounds()) > rounds + 4, what="G still gossiping")
    assert seen == before
    assert not [k for k in g.signals() if k.startswith("left")]


@pytest.mark.parametrize(("name", "signum"), [("W", signal.SIGINT), ("G", signal.SIGTERM)])
def test_stop_is_announced_once(cluster: dict[str, Any], name: str, signum: int) -> None:
    host, observer, seen = cluster["hosts"][name], cluster["observer"], cluster["seen"].counts
    host.process.send_signal(signum)
    stopped_at = time.monotonic()
    wait_until(
        lambda: observer.view().get(host.base_url) is False,
        timeout=FAILURE_TIMEOUT / 3,
        what=f"{name} offline at the observer",
    )
    offline = time.monotonic() - stopped_at
    host.process.wait(20)
    exited = time.monotonic() - stopped_at
    print(f"\n{name}: offline at a peer {offline:.2f} s, exited {exited:.2f} s after {signum!s}")
    assert seen[f"left {host.base_url}"] == 1
    assert len(lines(host, " shut down")) == 1
