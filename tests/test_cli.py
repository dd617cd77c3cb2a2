"""Real CLI processes (``flask shazbot ...`` and the ``clustershazbot`` console script)
against real nodes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import requests

from cluster import CONTROL, SECRET, wait_until

SCRIPT = Path(sysconfig.get_path("scripts")) / "clustershazbot"
APP = """
from flask import Flask
from flask_clustershazbot import ClusterShazbot

app = Flask(__name__)
ClusterShazbot(app)
"""


def run(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SHAZBOT_", "FLASK_"))}
    return subprocess.run(
        args, env={**base, **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def script(*args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"the console script is not installed at {SCRIPT} (pip install -e .)"
    return run([str(SCRIPT), *args], env={"SHAZBOT_CONTROL_SECRET": secret} if secret else None)


@pytest.fixture
def pair(make_node: Any) -> tuple[Any, Any]:
    a, b = make_node(SHAZBOT_MONITOR=True), make_node()
    urls = {a.base_url, b.base_url}
    wait_until(lambda: set(a.view(False)) == urls == set(b.view(False)), what="convergence")
    return a, b


@pytest.fixture
def flask_app(tmp_path: Path, pair: tuple[Any, Any]) -> Any:
    """``flask shazbot ...`` for an app configured (from the environment) as node ``a``."""
    (tmp_path / "cliapp.py").write_text(APP)
    cli_master = tmp_path / "cli-master.json"
    env = {
        "SHAZBOT_SECRET": SECRET,
        "SHAZBOT_CONTROL_SECRET": CONTROL,
        "SHAZBOT_BASE_URL": pair[0].base_url,
        "SHAZBOT_MASTER_LIST": str(cli_master),
        # A CLI process that joined the cluster would write this file when it exits.
        "SHAZBOT_UPDATE_MASTER_LIST_ON_SHUTDOWN": "true",
    }

    def flask(*args: str) -> subprocess.CompletedProcess[str]:
        return run(
            [sys.executable, "-m", "flask", "--app", "cliapp", "shazbot", *args],
            env=env,
            cwd=tmp_path,
        )

    flask.master = cli_master  # type: ignore[attr-defined]
    return flask


def test_flask_shazbot_members_status_and_json(flask_app: Any, pair: tuple[Any, Any]) -> None:
    a, b = pair
    table = flask_app("members")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["BASE", "URL", "STATE", "MONITOR", "LAST", "UPDATE"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:3]}
    assert rows == {a.base_url: ["online", "yes"], b.base_url: ["online", "no"]}
    assert "ago" in lines[1] and lines[3] == f"2 online, 0 offline (view of {a.base_url})"

    data = json.loads(flask_app("members", "--json").stdout)
    assert data["node"] == a.base_url and (data["online"], data["offline"]) == (2, 0)
    assert [m["baseUrl"] for m in data["members"]] == sorted([a.base_url, b.base_url])
    assert set(data["members"][0]) == {"baseUrl", "monitor", "lastUpdate", "state"}

    status = flask_app("status")
    assert status.returncode == 0, status.stderr
    assert f"SHAZBOT_BASE_URL = {a.base_url}" in status.stdout
    assert "2 online, 0 offline" in status.stdout
    # The failure timeout left unset shows what the node derives for its 2 members, not None.
    assert (
        "SHAZBOT_FAILURE_TIMEOUT = 360 (derived: 12 rounds of SHAZBOT_GOSSIP_INTERVAL for "
        "2 members)" in status.stdout.splitlines()
    )
    status_json = json.loads(flask_app("status", "--json").stdout)
    assert status_json["config"]["SHAZBOT_GOSSIP_INTERVAL"] == 30.0
    assert status_json["config"]["SHAZBOT_FAILURE_TIMEOUT"] == 360.0
    for out in (status.stdout + status.stderr, json.dumps(status_json)):
        assert SECRET not in out and CONTROL not in out
        assert "SHAZBOT_SECRET" not in out and "SHAZBOT_CONTROL_SECRET" not in out

    # The CLI processes asked the node over HTTP and never joined the cluster themselves.
    assert not flask_app.master.exists()
    assert b.view() == {a.base_url: True, b.base_url: True}


def test_flask_shazbot_offline_then_online(flask_app: Any, pair: tuple[Any, Any]) -> None:
    a, b = pair
    off = flask_app("offline")
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == f"{a.base_url} is now offline"
    assert a.view()[a.base_url] is False
    wait_until(lambda: b.view().get(a.base_url) is False, what="b sees a offline")
    on = flask_app("online", "--json")
    assert json.loads(on.stdout) == {"node": a.base_url, "state": "online", "success": True}
    wait_until(lambda: b.view().get(a.base_url) is True, what="b sees a online again")


def test_console_script_members(pair: tuple[Any, Any]) -> None:
    a, b = pair
    full = script("members", a.base_url, "--json", secret=CONTROL)
    assert full.returncode == 0, full.stderr
    data = json.loads(full.stdout)
    assert {m["baseUrl"]: m["state"] for m in data["members"]} == {
        a.base_url: "online",
        b.base_url: "online",
    }
    # Without the secret only the public online list is shown, and the output says so.
    public = script("members", a.base_url.rstrip("/"))
    assert public.returncode == 0, public.stderr
    assert public.stdout.splitlines()[-1] == (
        f"2 online, offline not shown: no control secret (view of {a.base_url})"
    )


def test_console_script_control_and_exit_codes(pair: tuple[Any, Any], make_node: Any) -> None:
    a, b = pair
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/"

    wrong = script("members", a.base_url, secret="not-the-secret")
    assert wrong.returncode == 4 and "did not accept the control secret" in wrong.stderr
    rejected = script("offline", a.base_url, "--json", secret="not-the-secret")
    assert rejected.returncode == 4
    assert json.loads(rejected.stdout)["exitCode"] == 4
    assert "not-the-secret" not in rejected.stdout + rejected.stderr
    no_secret = script("offline", a.base_url)
    assert no_secret.returncode == 2 and "SHAZBOT_CONTROL_SECRET" in no_secret.stderr
    unreachable = script("members", closed, secret=CONTROL)
    assert unreachable.returncode == 3 and "cannot reach" in unreachable.stderr
    bad_url = script("members", "ftp://127.0.0.1/", secret=CONTROL)
    assert bad_url.returncode == 2
    assert a.view()[a.base_url] is True  # none of the failed calls changed anything

    stopped = make_node()
    stopped.engine.shutdown()  # still serving, but not started: the node answers 503
    not_started = script("members", stopped.base_url, secret=CONTROL)
    assert not_started.returncode == 5 and "HTTP 503" in not_started.stderr

    off = script("offline", b.base_url, secret=CONTROL)
    assert off.returncode == 0 and off.stdout.strip() == f"{b.base_url} is now offline"
    wait_until(lambda: a.view().get(b.base_url) is False, what="a sees b offline")


def test_console_script_offline_reaches_peers_at_once_not_a_round_later(
    make_node: Any,
) -> None:
    """``clustershazbot offline`` took a round (30 s by default) to reach peers, while a
    shutdown reaches them in milliseconds: it is told at once, to the same peers."""
    a, b = make_node(SHAZBOT_GOSSIP_INTERVAL=30), make_node(SHAZBOT_GOSSIP_INTERVAL=30)
    urls = {a.base_url, b.base_url}
    wait_until(lambda: set(a.view(False)) == urls == set(b.view(False)), what="convergence")
    rounds = a.engine.stats.rounds + b.engine.stats.rounds
    assert script("offline", a.base_url, secret=CONTROL).returncode == 0
    wait_until(lambda: b.view().get(a.base_url) is False, timeout=5, what="b sees a offline")
    assert script("online", a.base_url, secret=CONTROL).returncode == 0
    wait_until(lambda: b.view().get(a.base_url) is True, timeout=5, what="b sees a online")
    assert a.engine.stats.rounds + b.engine.stats.rounds == rounds  # no round carried it


def test_console_script_runs_the_demo() -> None:
    demo = run(
        [str(SCRIPT), "demo", "--nodes", "2", "--interval", "0.2", "--duration", "30"], timeout=60
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "converged: every node lists all 2 online" in demo.stdout
    assert "detected: every live node lists" in demo.stdout


def test_flask_run_still_starts_the_node(tmp_path: Path) -> None:
    """Only commands other than `flask run` keep the engine stopped."""
    (tmp_path / "cliapp.py").write_text(APP)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SHAZBOT_", "FLASK_"))}
    env = {
        **base,
        "SHAZBOT_SECRET": SECRET,
        "SHAZBOT_CONTROL_SECRET": CONTROL,
        "SHAZBOT_BASE_URL": url,
        "SHAZBOT_MASTER_LIST": str(tmp_path / "master.json"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "cliapp", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Online once its self-check finds the base URL leading back to it.
        wait_until(lambda: _lists_itself(url), timeout=20, what="flask run to serve its node")
        members = script("members", url, secret=CONTROL)
        assert members.returncode == 0 and f"{url}  online" in members.stdout
    finally:
        proc.terminate()
        proc.wait(10)


def _lists_itself(url: str) -> bool:
    try:
        online = requests.get(url + "clustershazbot/list", timeout=2).json()["online"]
    except (requests.RequestException, ValueError, KeyError):
        return False
    return url in {s["baseUrl"] for s in online}


def test_console_script_prints_the_packaged_gunicorn_config(tmp_path: Path) -> None:
    """`clustershazbot gunicorn-conf` prints a config gunicorn reads, the same one that
    `-c python:flask_clustershazbot.gunicorn_conf` and examples/gunicorn.conf.py load."""
    from gunicorn.app.base import Application

    class Loader(Application):  # type: ignore[misc]
        def init(self, *args: Any) -> None:
            return None

        def load(self) -> Any:
            return None

    printed = script("gunicorn-conf")
    assert printed.returncode == 0, printed.stderr
    (tmp_path / "gunicorn.conf.py").write_text(printed.stdout)
    names = ("bind", "workers", "worker_class", "threads", "limit_request_line", "on_exit")
    settings = []
    for source in (
        str(tmp_path / "gunicorn.conf.py"),
        "python:flask_clustershazbot.gunicorn_conf",
        str(Path(__file__).parent.parent / "examples" / "gunicorn.conf.py"),
    ):
        loader = Loader.__new__(Loader)  # without __init__, which parses sys.argv
        loader.usage, loader.prog = None, "gunicorn"
        loader.load_default_config()
        loader.load_config_from_module_name_or_filename(source)
        settings.append({name: getattr(loader.cfg, name) for name in names})
    assert settings[0] == settings[1] == settings[2]
    assert settings[0]["worker_class"].__name__ == "ThreadWorker" and settings[0]["threads"] == 64
    on_exit = settings[0]["on_exit"]
    assert f"{on_exit.__module__}.{on_exit.__name__}" == "flask_clustershazbot.gunicorn.on_exit"
