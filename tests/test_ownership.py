"""Key ownership and cluster-singleton jobs on real in-process nodes (real werkzeug servers).

The multi-process checks (5 node processes, a gunicorn host, SIGKILL) are in
tests/test_ownership_process.py.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask, current_app, g

from cluster import MakeNode, MasterListServer, wait_until
from flask_clustershazbot import ClusterShazbot
from flask_clustershazbot.ownership import TICK_ORIGIN, Ring, job_runner_of

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = [f"http://127.0.0.{i}:8080/" for i in range(1, 6)]
KEYS = [f"key-{i}" for i in range(2000)]
#: Owners pinned once: every process and every Python version must agree with them.
GOLDEN: dict[str | bytes, str] = {
    "b": "http://127.0.0.3:8080/",
    "c": "http://127.0.0.5:8080/",
    "user-7": "http://127.0.0.4:8080/",
    "report": "http://127.0.0.2:8080/",
    b"\x00\xff": "http://127.0.0.3:8080/",
    "ключ": "http://127.0.0.2:8080/",
}


def test_owners_are_stable_across_processes_and_hash_seeds() -> None:
    ring = Ring(MEMBERS)
    assert {k: ring.owner(k) for k in GOLDEN} == GOLDEN
    # Another interpreter with another str hash seed and the members in another order.
    code = (
        "from flask_clustershazbot.ownership import TICK_ORIGIN, Ring; import json, sys;"
        f"r = Ring({list(reversed(MEMBERS))!r});"
        f"print(json.dumps([r.owner(k) for k in {KEYS[:200]!r}]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
        cwd=ROOT,
    )
    assert out.stdout.strip() == str([ring.owner(k) for k in KEYS[:200]]).replace("'", '"')


def test_a_leave_or_a_join_moves_only_that_members_keys() -> None:
    ring = Ring(MEMBERS)
    before = {k: ring.owner(k) for k in KEYS}
    shares = Counter(before.values())
    assert set(shares) == set(MEMBERS)
    assert all(300 <= n <= 500 for n in shares.values()), shares  # about a fifth each
    gone = MEMBERS[2]
    after_leave = {k: Ring(set(MEMBERS) - {gone}).owner(k) for k in KEYS}
    moved = {k for k in KEYS if after_leave[k] != before[k]}
    assert moved == {k for k in KEYS if before[k] == gone}
    newcomer = "http://127.0.0.9:8080/"
    after_join = {k: Ring([*MEMBERS, newcomer]).owner(k) for k in KEYS}
    moved = {k for k in KEYS if after_join[k] != before[k]}
    assert moved and all(after_join[k] == newcomer for k in moved)
    assert 200 <= len(moved) <= 470  # about a sixth


def test_no_members_no_owner_and_bad_keys_are_refused() -> None:
    assert Ring(()).owner("x") is None
    with pytest.raises(TypeError, match="str or bytes"):
        Ring(MEMBERS).owner(42)  # type: ignore[arg-type]


def test_converged_nodes_agree_and_each_owns_its_share(make_node: MakeNode) -> None:
    nodes = [make_node() for _ in range(3)]
    urls = {n.base_url for n in nodes}
    wait_until(
        lambda: all({u for u, on in n.view().items() if on} == urls for n in nodes),
        what="all three nodes see each other online",
    )
    owners = [[n.shazbot.owner(k, app=n.app) for k in KEYS[:300]] for n in nodes]
    assert owners[0] == owners[1] == owners[2]
    assert owners[0] == [Ring(urls).owner(k) for k in KEYS[:300]]
    for n in nodes:
        with n.app.app_context():
            mine = [k for k in KEYS[:300] if n.shazbot.owns(k)]
        assert mine == [k for k, o in zip(KEYS[:300], owners[0]) if o == n.base_url]
        assert 50 <= len(mine) <= 150


def test_a_stopped_node_owns_nothing_and_the_others_take_its_keys(make_node: MakeNode) -> None:
    a, b = make_node(), make_node()
    wait_until(lambda: a.view().get(b.base_url) and b.view().get(a.base_url), what="a and b meet")
    assert {a.shazbot.owner(k, app=a.app) for k in KEYS[:100]} == {a.base_url, b.base_url}
    b.stop()  # announces its shutdown
    wait_until(lambda: a.view().get(b.base_url) is False, what="a hears b left")
    assert {a.shazbot.owner(k, app=a.app) for k in KEYS[:100]} == {a.base_url}
    assert not any(b.shazbot.owns(k, app=b.app) for k in KEYS[:100])


def _append(lines: list[Any], lock: threading.Lock, line: Any) -> None:
    with lock:
        lines.append(line)


def test_singleton_job_runs_on_the_owner_only_in_an_app_context(make_node: MakeNode) -> None:
    runs: list[tuple[str, datetime]] = []
    lock = threading.Lock()
    nodes = [make_node() for _ in range(3)]
    urls = {n.base_url for n in nodes}
    wait_until(
        lambda: all({u for u, on in n.view().items() if on} == urls for n in nodes),
        what="all three nodes see each other online",
    )
    for n in nodes:

        def job(url: str = n.base_url) -> None:
            assert current_app.config["SHAZBOT_BASE_URL"] == url  # the app context of its node
            _append(runs, lock, (url, g.shazbot_tick))

        n.shazbot.add_singleton_job(job, "tick", seconds=0.2)
    owner = Ring(urls).owner("tick")
    wait_until(lambda: len(runs) >= 10, what="ten runs")
    assert {url for url, _ in runs} == {owner}
    ticks = [tick for _, tick in runs]
    assert len(set(ticks)) == len(ticks)  # each tick once
    # On the grid every node shares: multiples of 0.2 s since TICK_ORIGIN.
    assert all(round((t - TICK_ORIGIN).total_seconds() * 1000) % 200 == 0 for t in ticks)


def test_a_failing_job_is_logged_and_keeps_its_schedule(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    node = make_node()
    calls: list[float] = []

    @node.shazbot.singleton_job("boom", trigger=IntervalTrigger(seconds=0.2))
    def boom() -> None:
        calls.append(time.monotonic())
        raise RuntimeError("job failure on purpose")

    with caplog.at_level(logging.ERROR, logger="flask_clustershazbot"):
        wait_until(lambda: len(calls) >= 3, what="three runs despite failures")
    assert "singleton job 'boom' failed" in caplog.text
    assert "job failure on purpose" in caplog.text


def test_job_registered_before_init_app_runs_and_is_rearmed_by_a_restart(
    config: dict[str, Any],
) -> None:
    shazbot = ClusterShazbot()
    runs: list[int] = []

    @shazbot.singleton_job("early", seconds=0.2)
    def early() -> None:
        runs.append(1)

    app = Flask("early")
    # Nothing serves this app: no self-check, it acts at once.
    app.config.update(config, SHAZBOT_BASE_URL="http://127.0.0.1:9/", SHAZBOT_SELF_CHECK=False)
    shazbot.init_app(app)
    try:
        wait_until(lambda: len(runs) >= 2, what="the job runs on the only node")
        shazbot.shutdown(app)
        assert not shazbot.owns("early", app=app)  # offline: it owns nothing
        shazbot.start(app)
        restarted = len(runs)
        wait_until(lambda: len(runs) >= restarted + 2, what="the restart arms the job again")
    finally:
        shazbot.shutdown(app)


def test_bad_singleton_jobs_are_refused_and_change_nothing(make_node: MakeNode) -> None:
    node = make_node()
    node.shazbot.add_singleton_job(lambda: None, "once", seconds=5)
    with pytest.raises(ValueError, match="already a singleton job named 'once'"):
        node.shazbot.add_singleton_job(lambda: None, "once", seconds=5)
    with pytest.raises(ValueError, match="either seconds"):
        node.shazbot.add_singleton_job(
            lambda: None, "both", seconds=5, trigger=IntervalTrigger(seconds=5)
        )
    with pytest.raises(ValueError, match="either seconds"):
        node.shazbot.add_singleton_job(lambda: None, "neither")
    with pytest.raises(ValueError, match="greater than 0"):
        node.shazbot.add_singleton_job(lambda: None, "zero", seconds=0)
    with pytest.raises(TypeError, match="APScheduler trigger"):
        node.shazbot.add_singleton_job(lambda: None, "cron", trigger="0 3 * * *")
    with pytest.raises(ValueError, match="non-empty name"):
        node.shazbot.add_singleton_job(lambda: None, "", seconds=5)
    assert [name for name, _, _ in node.shazbot._singleton_jobs] == ["once"]
    assert len(node.engine.schedule_hooks) == 1


def test_a_node_runs_no_job_before_its_first_master_list_download(
    http_config: dict[str, Any], master_server: MasterListServer
) -> None:
    # Until then its view holds only itself, so it would believe it owns every job.
    master_server.fail_with = 503
    node = ClusterShazbot(
        **{**http_config, "SHAZBOT_BASE_URL": "http://127.0.0.1:9/", "SHAZBOT_SELF_CHECK": False}
    )  # nothing serves it
    app = Flask("lonely")
    runs: list[int] = []
    node.add_singleton_job(lambda: runs.append(1), "lonely", seconds=0.1)
    node.init_app(app)
    try:
        assert node.owns("lonely", app=app)  # its view: only itself
        # The retries wait 1 s, then 2 s: ten ticks and more have fired by the third download.
        wait_until(lambda: master_server.gets >= 3, what="three failed downloads")
        assert runs == []
        master_server.fail_with = None
        wait_until(lambda: len(runs) >= 2, what="runs once the list is read")
    finally:
        node.shutdown(app)


#: How long a crash may take to be seen with the fixture's settings: refused exchanges and
#: 5 retries 0.2 s apart (about 1.2 s), or the 2.4 s failure timeout of a 2-node cluster;
#: the margin is for a loaded machine.
DETECTION_BOUND = 5.0


def test_long_singleton_jobs_never_hold_up_the_protocol(make_node: MakeNode) -> None:
    # Issue 24: a node owning 10 singleton jobs of 25 s ran them on its protocol threads
    # and ran no rounds meanwhile: a killed peer was marked offline after 25.2 s, not 1.4 s.
    a, b = make_node(), make_node()
    wait_until(lambda: a.view().get(b.base_url) and b.view().get(a.base_url), what="a and b meet")
    ring = Ring([a.base_url, b.base_url])
    names = [n for n in (f"long-{i}" for i in range(200)) if ring.owner(n) == a.base_url][:10]
    assert len(names) == 10
    lock = threading.Lock()
    running: set[str] = set()
    release = threading.Event()

    def long_run(name: str) -> None:
        with lock:
            running.add(name)
        release.wait(60)  # runs until the test is done with it (a minute at most)

    try:
        for name in names:
            a.shazbot.add_singleton_job(lambda name=name: long_run(name), name, seconds=0.5)  # type: ignore[misc]
        wait_until(lambda: len(running) == 10, what="ten long runs under way on a")
        rounds = a.engine.stats.snapshot()["rounds"]
        crashed_at = time.monotonic()
        b.stop(graceful=False)
        wait_until(
            lambda: a.view().get(b.base_url) is False,
            timeout=DETECTION_BOUND,
            what="a marks the crashed b offline while its jobs run",
        )
        detected = time.monotonic() - crashed_at
        print(f"\ncrash seen after {detected:.2f} s with 10 long jobs under way")
        assert a.engine.stats.snapshot()["rounds"] > rounds
        # b's keys moved to a, the only member left.
        assert {a.shazbot.owner(k, app=a.app) for k in KEYS[:200]} == {a.base_url}
        assert not release.is_set() and len(running) == 10  # nothing waited for the runs
    finally:
        release.set()


def test_a_tick_that_finds_every_job_worker_busy_is_skipped_and_counted(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    node = make_node(SHAZBOT_JOB_WORKERS=2)
    started: list[str] = []
    release = threading.Event()

    def long_run(name: str) -> None:
        started.append(name)
        release.wait(60)

    try:
        with caplog.at_level(logging.WARNING, logger="flask_clustershazbot"):
            for name in ("one", "two", "three"):
                node.shazbot.add_singleton_job(lambda name=name: long_run(name), name, seconds=0.2)  # type: ignore[misc]
            runner = job_runner_of(node.engine)
            wait_until(lambda: len(started) == 2 and runner.skipped >= 3, what="skipped ticks")
            assert len(set(started)) == 2  # the third is skipped, never queued behind them
            assert "skipped a tick: all 2 job workers are busy" in caplog.text
            assert "skipped a tick: its previous run is not done" in caplog.text
    finally:
        release.set()
    wait_until(lambda: len(set(started)) == 3, what="the third runs once a worker is free")
