"""The original's function API (shazbot_*), configured from SHAZBOT_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import flask_clustershazbot.api as api
from cluster import CONTROL, SECRET
from flask_clustershazbot import (
    BadMessage,
    ConfigError,
    NotStarted,
    Unauthorized,
    shazbot_control_request,
    shazbot_gossip_request,
    shazbot_list_request,
    shazbot_shut_down,
    shazbot_start,
)
from flask_clustershazbot.engine import wall_clock_ms

ME = "http://127.0.0.1:1/"
PEER = "http://127.0.0.1:9/"  # nobody listens there


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A complete SHAZBOT_* environment with a file master list; the engine is shut down after."""
    for key in list(os.environ):
        if key.startswith("SHAZBOT_"):
            monkeypatch.delenv(key)
    values = {
        "SHAZBOT_SECRET": SECRET,
        "SHAZBOT_CONTROL_SECRET": CONTROL,
        "SHAZBOT_BASE_URL": ME.rstrip("/"),
        "SHAZBOT_MASTER_LIST": str(tmp_path / "master.json"),
        "SHAZBOT_GOSSIP_INTERVAL": "3600",
        "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": "3600",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(api, "_engine", None)
    yield values
    shazbot_shut_down()


def message(
    online: Sequence[dict[str, Any]] = (), offline: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    return {"message": "gossip", "online": list(online), "offline": list(offline)}


def urls(servers: list[dict[str, Any]]) -> set[str]:
    return {s["baseUrl"] for s in servers}


def test_every_request_raises_not_started_before_start(environment: dict[str, str]) -> None:
    call: Callable[[], object]
    shazbot_shut_down()  # nothing to shut down: a no-op
    for call in (
        lambda: shazbot_gossip_request(SECRET, message()),
        lambda: shazbot_list_request(""),
        lambda: shazbot_control_request(CONTROL, {"message": "control", "online": True}),
    ):
        with pytest.raises(NotStarted) as info:
            call()
        assert info.value.status == 503


def test_a_missing_variable_fails_start_and_names_it(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHAZBOT_CONTROL_SECRET")
    with pytest.raises(ConfigError, match="SHAZBOT_CONTROL_SECRET"):
        shazbot_start()
    with pytest.raises(NotStarted):
        shazbot_list_request("")


def test_start_reads_the_environment_and_is_idempotent(environment: dict[str, str]) -> None:
    engine = shazbot_start()
    assert shazbot_start() is engine
    assert engine.started
    assert engine.settings.base_url == ME
    assert engine.settings.gossip_interval == 3600
    assert urls(shazbot_list_request("")["online"]) == {ME}


def test_wrong_secrets_raise_unauthorized(environment: dict[str, str]) -> None:
    call: Callable[[], object]
    shazbot_start()
    for call in (
        lambda: shazbot_gossip_request("wrong", message()),
        lambda: shazbot_gossip_request(CONTROL, message()),
        lambda: shazbot_gossip_request("", message()),
        lambda: shazbot_control_request(SECRET, {"message": "control", "online": False}),
    ):
        with pytest.raises(Unauthorized) as info:
            call()
        assert info.value.status == 401
        assert SECRET not in str(info.value) and CONTROL not in str(info.value)
    assert urls(shazbot_list_request("")["online"]) == {ME}


def test_malformed_messages_raise_bad_message_and_change_nothing(
    environment: dict[str, str],
) -> None:
    call: Callable[[], object]
    shazbot_start()
    before = shazbot_list_request(CONTROL)
    good = {"baseUrl": PEER, "monitor": False, "lastUpdate": wall_clock_ms()}
    for call, field in (
        (lambda: shazbot_gossip_request(SECRET, {"message": "gossip", "online": "all"}), "online"),
        (lambda: shazbot_gossip_request(SECRET, {"online": [good]}), "message"),
        (
            lambda: shazbot_control_request(CONTROL, {"message": "control", "online": "false"}),
            "online",
        ),
    ):
        with pytest.raises(BadMessage) as info:
            call()
        assert info.value.status == 400
        assert field in str(info.value)
    assert shazbot_list_request(CONTROL) == before
    # One invalid record is skipped, not a reason to refuse the message: the rest merges.
    reply = shazbot_gossip_request(SECRET, message([{**good, "monitor": "yes"}, good]))
    assert PEER in urls(reply["online"])
    assert PEER in urls(shazbot_list_request(CONTROL)["online"])


def test_gossip_list_and_control_work_after_start(environment: dict[str, str]) -> None:
    shazbot_start()
    now = wall_clock_ms()
    peer = {"baseUrl": PEER, "monitor": True, "lastUpdate": now}
    reply = shazbot_gossip_request("Bearer " + SECRET, message([peer]))
    assert reply["message"] == "gossip"
    assert urls(reply["online"]) == {ME, PEER}
    assert reply["offline"] == []

    public = shazbot_list_request("")
    assert set(public) == {"online"} and urls(public["online"]) == {ME, PEER}
    assert peer in public["online"]

    assert shazbot_control_request(CONTROL, {"message": "control", "online": False}) == {
        "success": True
    }
    full = shazbot_list_request(CONTROL)
    assert urls(full["online"]) == {PEER} and urls(full["offline"]) == {ME}
    shazbot_gossip_request(SECRET, message())  # a heartbeat does not bring it back
    assert urls(shazbot_list_request(CONTROL)["offline"]) == {ME}
    assert shazbot_control_request(CONTROL, {"message": "control", "online": True}) == {
        "success": True
    }
    assert urls(shazbot_list_request("")["online"]) == {ME, PEER}


def test_after_shut_down_requests_raise_not_started(environment: dict[str, str]) -> None:
    engine = shazbot_start()
    shazbot_shut_down()
    shazbot_shut_down()  # idempotent
    assert not engine.started
    with pytest.raises(NotStarted):
        shazbot_gossip_request(SECRET, message())
    with pytest.raises(NotStarted):
        shazbot_list_request("")
    assert shazbot_start() is engine  # and it can start again
    assert urls(shazbot_list_request("")["online"]) == {ME}
