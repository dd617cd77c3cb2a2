"""Health integration with the real py-healthcheck and flask-healthz packages, and /happy."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask_healthz import Healthz
from healthcheck import HealthCheck

from cluster import MasterListServer, Server, wait_until
from flask_clustershazbot import ClusterShazbot, ConfigError


@pytest.fixture
def served(config: dict[str, Any]) -> Iterator[Callable[..., tuple[Flask, ClusterShazbot, str]]]:
    """``served(setup, **config)``: an app that ``setup`` equips before it serves."""
    servers: list[tuple[Server, ClusterShazbot, Flask]] = []

    def make(setup: Callable[[Flask, ClusterShazbot], None], **overrides: Any) -> Any:
        server = Server()
        app = Flask(f"health{server.port}")
        app.config.update({**config, **overrides, "SHAZBOT_BASE_URL": server.url})
        shazbot = ClusterShazbot(app)
        setup(app, shazbot)
        server.dispatch.app = app
        server.start()
        servers.append((server, shazbot, app))
        engine = shazbot.engine(app)
        if engine.started:  # ready once its base URL is found to lead back to it
            wait_until(lambda: engine.live, what="the node to go live")
        return app, shazbot, server.url

    yield make
    for server, shazbot, app in servers:
        shazbot.shutdown(app)
        server.stop()


def converged(shazbot: ClusterShazbot, app: Flask, urls: set[str]) -> None:
    wait_until(
        lambda: {s.base_url for s in shazbot.server_list(app=app).online} == urls,
        what="convergence",
    )


def test_py_healthcheck_gets_a_check_and_a_section(served: Any, make_node: Any) -> None:
    peer = make_node()

    def setup(app: Flask, shazbot: ClusterShazbot) -> None:
        health = HealthCheck(success_ttl=None, failed_ttl=None)  # no caching between calls
        shazbot.register_healthcheck(health)
        app.add_url_rule("/healthcheck", "healthcheck", view_func=lambda: health.run())

    app, shazbot, url = served(setup)
    converged(shazbot, app, {url, peer.base_url})
    r = requests.get(url + "healthcheck", timeout=5)
    assert r.status_code == 200
    body = r.json()
    (check,) = body["results"]
    assert (check["checker"], check["passed"], check["output"]) == (
        "clustershazbot",
        True,
        "2 online, 0 offline",
    )
    section = body["clustershazbot"]
    assert section["status"] == "ok"
    assert {s["baseUrl"] for s in section["cluster"]["online"]} == {url, peer.base_url}

    shazbot.shutdown(app)
    r = requests.get(url + "healthcheck", timeout=5)
    assert r.status_code == 500
    assert r.json()["results"][0]["passed"] is False
    assert r.json()["clustershazbot"] == {
        "status": "error",
        "error": "clustershazbot is not started",
    }


def test_flask_healthz_check(served: Any) -> None:
    def setup(app: Flask, shazbot: ClusterShazbot) -> None:
        app.config["HEALTHZ"] = {
            "live": lambda: None,
            "ready": "flask_clustershazbot.health.healthz_check",
        }
        Healthz(app)

    app, shazbot, url = served(setup)
    r = requests.get(url + "healthz/ready", timeout=5)
    assert (r.status_code, r.json()["title"]) == (200, "OK")
    shazbot.shutdown(app)
    r = requests.get(url + "healthz/ready", timeout=5)
    assert r.status_code == 503
    assert r.json()["title"] == "clustershazbot: clustershazbot is not started"
    assert requests.get(url + "healthz/live", timeout=5).status_code == 200


def test_happy_endpoint_is_off_by_default_and_answers_the_seed_shape(
    served: Any, make_node: Any
) -> None:
    peer = make_node()
    assert requests.get(peer.base_url + "happy", timeout=5).status_code == 404

    app, shazbot, url = served(lambda app, shazbot: None, SHAZBOT_HAPPY_PATH="/happy")
    converged(shazbot, app, {url, peer.base_url})
    r = requests.get(url + "happy", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert set(body) == {"status", "extensions"} and body["status"] == "ok"
    section = body["extensions"]["clustershazbot"]
    assert section["status"] == "ok"
    assert {s["baseUrl"] for s in section["cluster"]["online"]} == {url, peer.base_url}

    shazbot.shutdown(app)
    r = requests.get(url + "happy", timeout=5)
    assert r.status_code == 503
    assert r.json() == {
        "status": "error",
        "extensions": {
            "clustershazbot": {"status": "error", "error": "clustershazbot is not started"}
        },
    }


def test_bad_happy_path_is_refused(config: dict[str, Any]) -> None:
    app = Flask("bad")
    app.config.update(config, SHAZBOT_HAPPY_PATH="happy", SHAZBOT_AUTOSTART=False)
    with pytest.raises(ConfigError, match="SHAZBOT_HAPPY_PATH must be a path starting with '/'"):
        ClusterShazbot(app)


def test_a_node_alone_without_its_master_list_is_reported_degraded_everywhere(
    served: Any,
    make_node: Any,
    master_server: MasterListServer,
    http_config: dict[str, Any],
    tmp_path: Path,
) -> None:
    """It said "ok" while it ran alone, its master list unreachable: it is degraded, says
    why in health(), /happy and both health packages, and still serves (200)."""
    master_server.fail_with = 503

    def setup(app: Flask, shazbot: ClusterShazbot) -> None:
        health = HealthCheck(success_ttl=None, failed_ttl=None)
        shazbot.register_healthcheck(health)
        app.add_url_rule("/healthcheck", "healthcheck", view_func=lambda: health.run())
        app.config["HEALTHZ"] = {
            "live": lambda: None,
            "ready": "flask_clustershazbot.health.healthz_check",
            "strict": "flask_clustershazbot.health.healthz_check_strict",
        }
        Healthz(app)

    config = {k: v for k, v in http_config.items() if k != "SHAZBOT_BASE_URL"}
    app, shazbot, url = served(setup, **config, SHAZBOT_HAPPY_PATH="/happy")
    reason = (
        f"alone: no peer online, and the master list cannot be read (SHAZBOT_MASTER_LIST "
        f"{master_server.url}: GET answered HTTP 503)"
    )
    wait_until(lambda: shazbot.health(app)["status"] == "degraded", what="degraded")
    assert shazbot.health(app) == {
        "status": "degraded",
        "reason": reason,
        "cluster": {"online": [shazbot.server_list(app=app).online[0].to_dict()], "offline": []},
    }
    happy = requests.get(url + "happy", timeout=5)
    assert happy.status_code == 200
    assert happy.json()["status"] == "degraded"
    assert happy.json()["extensions"]["clustershazbot"]["reason"] == reason
    (check,) = requests.get(url + "healthcheck", timeout=5).json()["results"]
    assert check["passed"] and check["output"] == f"degraded: {reason}; 1 online, 0 offline"
    assert requests.get(url + "healthz/ready", timeout=5).status_code == 200
    strict = requests.get(url + "healthz/strict", timeout=5)
    assert (strict.status_code, strict.json()["title"]) == (
        503,
        f"clustershazbot: degraded: {reason}",
    )

    # A peer that finds it (its own master list names it) ends its solitude ...
    other_list = tmp_path / "other-master.json"
    other_list.write_text(
        json.dumps(
            {"online": [{"baseUrl": url, "monitor": False, "lastUpdate": int(time.time() * 1000)}]}
        )
    )
    peer = make_node(SHAZBOT_MASTER_LIST=str(other_list))
    wait_until(lambda: shazbot.health(app)["status"] == "ok", what="ok with a peer online")
    assert {s.base_url for s in shazbot.server_list(app=app).online} == {url, peer.base_url}
    peer.stop()
    wait_until(lambda: shazbot.health(app)["status"] == "degraded", what="alone again")

    # ... and so does a master list that can be read again.
    master_server.fail_with = None
    wait_until(lambda: shazbot.health(app)["status"] == "ok", timeout=20, what="ok again")
    assert requests.get(url + "healthz/strict", timeout=5).status_code == 200
