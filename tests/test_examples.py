"""The apps of examples/ run as written (imported, and basic_app.py as a real process)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cluster import CONTROL, SECRET

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHAZBOT_SECRET", SECRET)
    monkeypatch.setenv("SHAZBOT_CONTROL_SECRET", CONTROL)
    monkeypatch.setenv("SHAZBOT_BASE_URL", "http://127.0.0.1:3000/")
    monkeypatch.setenv("SHAZBOT_MASTER_LIST", str(tmp_path / "master-list.json"))
    # Served by the test client, not at the base URL: the node need not look for itself.
    monkeypatch.setenv("SHAZBOT_SELF_CHECK", "false")


def test_basic_app_serves_its_peers_and_the_cluster_endpoints(env: None) -> None:
    module = load("basic_app")
    try:
        client = module.app.test_client()
        assert client.get("/").json == {"peers": ["http://127.0.0.1:3000/"]}
        listed = client.get("/clustershazbot/list").json
        assert [s["baseUrl"] for s in listed["online"]] == ["http://127.0.0.1:3000/"]
    finally:
        module.shazbot.shutdown()


def test_factory_app_config_wins_over_the_environment(env: None) -> None:
    module = load("factory_app")
    app = module.create_app(
        {"SHAZBOT_BASE_URL": "http://127.0.0.1:3001/", "SHAZBOT_AUTOSTART": False}
    )
    assert app.config["SHAZBOT_BASE_URL"] == "http://127.0.0.1:3001/"
    assert app.test_client().get("/peers").json["status"] == "error"
    module.shazbot.start(app)
    try:
        health = app.test_client().get("/peers").json
        assert health["status"] == "ok"
        assert [s["baseUrl"] for s in health["cluster"]["online"]] == ["http://127.0.0.1:3001/"]
    finally:
        module.shazbot.shutdown(app)


def test_singleton_job_example_names_owners_and_claims_each_tick_once(
    env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from datetime import datetime, timezone

    from flask import g

    monkeypatch.setenv("EXAMPLE_JOB_DB", str(tmp_path / "jobs.sqlite3"))
    module = load("singleton_job")
    try:
        client = module.app.test_client()
        assert client.get("/users/42").json == {"owner": "http://127.0.0.1:3000/", "here": True}
        assert [name for name, _, _ in module.shazbot._singleton_jobs] == [
            "nightly-report",
            "refresh-cache",
        ]
        tick = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
        with module.app.app_context():
            g.shazbot_tick = tick
            assert module.claim("nightly-report") is True
            assert module.claim("nightly-report") is False  # a second runner of the same tick
            g.shazbot_tick = tick.replace(day=3)
            assert module.claim("nightly-report") is True
    finally:
        module.shazbot.shutdown()


@pytest.mark.parametrize("how", ["--port", "PORT"])
def test_basic_app_serves_on_the_port_it_is_given(tmp_path: Path, how: str) -> None:
    """`python examples/basic_app.py --port N` (or PORT=N) serves its node on N, not 3000."""
    import os
    import signal
    import subprocess
    import sys

    import requests

    from cluster import ctrl_c_as_in_a_terminal, free_port, host_env, wait_until

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {
        "SHAZBOT_SECRET": SECRET,
        "SHAZBOT_CONTROL_SECRET": CONTROL,
        "SHAZBOT_BASE_URL": url,
        "SHAZBOT_MASTER_LIST": str(tmp_path / "master-list.json"),
    }
    args = ["--port", str(port)] if how == "--port" else []
    if how == "PORT":
        env["PORT"] = str(port)
    environ = {k: v for k, v in host_env(env).items() if k != "PORT" or how == "PORT"}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "basic_app.py"), *args],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )

    def peers() -> Any:
        try:
            return requests.get(url, timeout=5).json()["peers"]
        except requests.RequestException:
            return None

    try:
        assert wait_until(peers, 30, f"basic_app.py to serve on {port}") == [url]
    finally:
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(15) == 0
