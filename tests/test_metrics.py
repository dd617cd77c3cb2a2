"""Stats, their Prometheus export, and what the library logs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from cluster import CONTROL, MASTER_AUTH, SECRET, MasterListServer, Server, wait_until
from flask_clustershazbot import ClusterShazbot
from flask_clustershazbot.metrics import register


def samples(text: str, node: str) -> dict[tuple[str, str], float]:
    """{(sample name, kind or state label): value} of one node's clustershazbot samples."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("clustershazbot_") and s.labels.get("node") == node:
                out[(s.name, s.labels.get("state") or s.labels.get("kind") or "")] = s.value
    return out


def test_counters_and_members_by_state_in_a_registry(make_node: Any) -> None:
    a, b = make_node(), make_node()
    registry = CollectorRegistry()
    assert register(registry) is True
    assert register(registry) is True  # twice is harmless
    urls = {a.base_url, b.base_url}
    wait_until(lambda: set(a.view(False)) == urls == set(b.view(False)), what="convergence")
    # Rounds count even while a knows no peer: wait for three that had b to talk to.
    converged = a.engine.stats.rounds
    wait_until(lambda: a.engine.stats.rounds >= converged + 3, what="three rounds with a peer")

    m = samples(generate_latest(registry).decode(), a.base_url)
    assert m[("clustershazbot_members", "online")] == 2
    assert m[("clustershazbot_members", "offline")] == 0
    assert m[("clustershazbot_gossip_rounds_total", "")] >= 3
    assert m[("clustershazbot_merge_seconds_count", "")] >= 1
    assert m[("clustershazbot_merge_seconds_sum", "")] > 0
    # Gossip in both directions: a's own rounds, and b's requests that a answered.
    assert m[("clustershazbot_bytes_sent_total", "")] > 0
    assert m[("clustershazbot_bytes_received_total", "")] > 0
    assert m[("clustershazbot_failures_total", "gossip")] == 0

    b.stop(graceful=False)  # b vanishes: a's exchanges with it fail
    wait_until(lambda: a.view().get(b.base_url) is False, what="a sees b offline")
    m = samples(generate_latest(registry).decode(), a.base_url)
    assert m[("clustershazbot_failures_total", "gossip")] >= 1
    assert (m[("clustershazbot_members", "online")], m[("clustershazbot_members", "offline")]) == (
        1,
        1,
    )


def test_master_list_failures_are_counted(
    make_node: Any, http_config: dict[str, Any], master_server: MasterListServer
) -> None:
    master_server.fail_with = 500
    node = make_node(base=http_config)
    wait_until(lambda: node.engine.stats.master_list_failures >= 1, what="a failed download")
    registry = CollectorRegistry()
    register(registry)
    m = samples(generate_latest(registry).decode(), node.base_url)
    assert m[("clustershazbot_failures_total", "master_list")] >= 1


def test_the_apps_metrics_endpoint_shows_them(config: dict[str, Any]) -> None:
    """An app serving prometheus_client's default registry at /metrics needs no extra code."""
    server = Server()
    app = Flask("with_metrics")
    app.config.update(config, SHAZBOT_BASE_URL=server.url)
    shazbot = ClusterShazbot(app)
    server.dispatch.app = DispatcherMiddleware(app, {"/metrics": make_wsgi_app()})
    server.start()
    wait_until(lambda: shazbot.engine(app).live, what="the node to go live")
    try:
        text = requests.get(server.url + "metrics", timeout=5).text
        m = samples(text, server.url)
        assert m[("clustershazbot_members", "online")] == 1
        assert ("clustershazbot_gossip_rounds_total", "") in m
    finally:
        shazbot.shutdown(app)
        server.stop()


def test_no_hard_dependency_on_prometheus_client(tmp_path: Any) -> None:
    code = f"""
import sys
sys.modules["prometheus_client"] = None  # as if it were not installed
from flask import Flask
from flask_clustershazbot import ClusterShazbot
from flask_clustershazbot.metrics import register
app = Flask("x")
app.config.update(SHAZBOT_SECRET={SECRET!r}, SHAZBOT_CONTROL_SECRET={CONTROL!r},
                  SHAZBOT_BASE_URL="http://127.0.0.1:9/", SHAZBOT_AUTOSTART=False,
                  SHAZBOT_MASTER_LIST={str(tmp_path / "m.json")!r})
ClusterShazbot(app)
print(register())
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr


def test_logs_transitions_at_info_failures_at_warning_never_secrets(
    make_node: Any, http_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_clustershazbot")
    a, b = make_node(base=http_config), make_node(base=http_config)
    urls = {a.base_url, b.base_url}
    wait_until(lambda: set(a.view(False)) == urls == set(b.view(False)), what="convergence")

    # A quiet stretch of several rounds: nothing at INFO.
    quiet_from = len(caplog.records)
    start = a.engine.stats.rounds
    wait_until(lambda: a.engine.stats.rounds >= start + 5, what="five more rounds")
    quiet = [r for r in caplog.records[quiet_from:] if r.name.startswith("flask_clustershazbot")]
    assert [r for r in quiet if r.levelno >= logging.INFO] == []

    b.stop(graceful=False)
    wait_until(lambda: a.view().get(b.base_url) is False, what="a sees b offline")
    ours = [r for r in caplog.records if r.name.startswith("flask_clustershazbot")]
    messages = [r.getMessage() for r in ours]
    assert f"peer offline: {b.base_url}" in messages
    assert any(
        r.levelno == logging.WARNING
        and b.base_url in r.getMessage()
        and "ConnectionRefusedError" in r.getMessage()
        for r in ours
    )
    for text in messages:
        for secret in (SECRET, CONTROL, MASTER_AUTH):
            assert secret not in text


DROPPED_APP = """
import gc, sys, weakref
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from flask_clustershazbot import ClusterShazbot
from flask_clustershazbot.metrics import register

registry = CollectorRegistry()
register(registry)
app = Flask("dropped")
app.config.update(
    SHAZBOT_SECRET="s" * 24, SHAZBOT_CONTROL_SECRET="c" * 24,
    SHAZBOT_BASE_URL="http://127.0.3.9:9/", SHAZBOT_MASTER_LIST=sys.argv[1], TESTING=True,
)
ClusterShazbot(app)
engine = weakref.ref(app.extensions["clustershazbot"])
before = b"127.0.3.9" in generate_latest(registry)
del app
gc.collect()
print(before, engine() is None, b"127.0.3.9" in generate_latest(registry))
"""


def test_an_app_that_is_dropped_is_no_longer_exported(tmp_path: Path) -> None:
    # The process holds its engines weakly (it used to register each one's shutdown with
    # atexit, which kept every engine, and its metrics, alive for good). In a process of
    # its own: what the suite's earlier tests left in this one is not the app's doing.
    done = subprocess.run(
        [sys.executable, "-c", DROPPED_APP, str(tmp_path / "master.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "False"]  # exported, freed, not exported
