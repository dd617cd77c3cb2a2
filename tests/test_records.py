"""Wire records: parsing, every rejection (naming the field), serialising back in camelCase."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from flask_clustershazbot import BadMessage, GossipServer, ServerList
from flask_clustershazbot.records import MAX_LAST_UPDATE, MAX_URL_LENGTH, parse_control

GOOD: dict[str, Any] = {
    "baseUrl": "https://node-1.example:3000/",
    "monitor": False,
    "lastUpdate": 1_700_000_000_000,
}


def record(**changes: Any) -> dict[str, Any]:
    data = dict(GOOD)
    data.update(changes)
    return data


def message(*online: Any, **extra: Any) -> dict[str, Any]:
    return {"message": "gossip", "online": list(online), **extra}


def rejected(data: Any, expected: str, message: str | None = "gossip") -> str:
    """The whole message is refused, and the error says why."""
    with pytest.raises(BadMessage) as info:
        ServerList.from_dict(data, message=message)
    text = str(info.value)
    assert expected in text, text
    return text


def skipped(data: Any, expected: str) -> str:
    """One record of ``data`` is skipped, counted and explained; the valid ones are kept."""
    servers = ServerList.from_dict(data, message="gossip")
    valid = [r for key in ("online", "offline") for r in data.get(key, []) if is_valid(r)]
    assert servers.skipped == 1
    assert [s.to_dict() for s in servers.online + servers.offline] == valid
    assert servers.problem is not None and expected in servers.problem, servers.problem
    return servers.problem


def is_valid(data: Any) -> bool:
    try:
        GossipServer.from_dict(data)
    except BadMessage:
        return False
    return True


# -- round trip ----------------------------------------------------------------


def test_gossip_server_round_trips_in_camel_case() -> None:
    server = GossipServer("http://127.0.0.1:8001/", True, 1_700_000_000_123)
    data = server.to_dict()
    assert data == {
        "baseUrl": "http://127.0.0.1:8001/",
        "monitor": True,
        "lastUpdate": 1_700_000_000_123,
    }
    assert GossipServer.from_dict(json.loads(json.dumps(data))) == server


def test_server_list_round_trips_through_json() -> None:
    servers = ServerList(
        online=(GossipServer("http://a:1/", True, 5), GossipServer("https://b/", False, 6)),
        offline=(GossipServer("http://c:3/", False, 7),),
    )
    wire = json.loads(json.dumps(servers.gossip_message()))
    assert wire["message"] == "gossip"
    assert [s["baseUrl"] for s in wire["online"]] == ["http://a:1/", "https://b/"]
    assert wire["offline"] == [{"baseUrl": "http://c:3/", "monitor": False, "lastUpdate": 7}]
    assert ServerList.from_dict(wire, message="gossip") == servers


def test_to_dict_without_offline_has_only_online() -> None:
    servers = ServerList(
        (GossipServer("http://a/", False, 1),), (GossipServer("http://b/", False, 2),)
    )
    assert servers.to_dict(include_offline=False) == {
        "online": [GossipServer("http://a/", False, 1).to_dict()]
    }


def test_records_are_immutable() -> None:
    server = GossipServer("http://a/", False, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        server.last_update = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ServerList().online = ()  # type: ignore[misc]


def test_offline_may_be_left_out_as_the_seed_does() -> None:
    assert ServerList.from_dict(message(GOOD), message="gossip").offline == ()


def test_limits_are_inclusive() -> None:
    for stamp in (0, MAX_LAST_UPDATE):
        assert GossipServer.from_dict(record(lastUpdate=stamp)).last_update == stamp
    url = "http://h/" + "x" * (MAX_URL_LENGTH - len("http://h/") - 1) + "/"
    assert GossipServer.from_dict(record(baseUrl=url)).base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/",
        "https://example.com/",
        "http://[::1]:3000/",
        "https://host:65535/api/",
    ],
)
def test_valid_base_urls_are_accepted(url: str) -> None:
    assert GossipServer.from_dict(record(baseUrl=url)).base_url == url


def test_unknown_extra_fields_are_accepted_and_ignored() -> None:
    data = message(
        record(region="eu", weight=3), offline=[record(baseUrl="http://x/", note=None)], hops=2
    )
    servers = ServerList.from_dict(data, message="gossip")
    assert servers.online == (GossipServer.from_dict(GOOD),)
    assert servers.offline == (GossipServer("http://x/", False, GOOD["lastUpdate"]),)
    assert "region" not in servers.online[0].to_dict()


# -- one bad record: skipped, the rest kept --------------------------------------------------


@pytest.mark.parametrize("bad", [None, 1, "http://a/", ["http://a/", False, 1], True])
def test_record_must_be_an_object(bad: Any) -> None:
    skipped(message(GOOD, bad), "online[1] must be an object")


@pytest.mark.parametrize("key", ["baseUrl", "monitor", "lastUpdate"])
def test_record_missing_a_key(key: str) -> None:
    data = record()
    del data[key]
    skipped(message(data), f"online[0] is missing '{key}'")


@pytest.mark.parametrize("bad", [None, 42, True, ["http://a/"], {"href": "http://a/"}])
def test_base_url_must_be_a_string(bad: Any) -> None:
    skipped(message(record(baseUrl=bad)), "online[0].baseUrl must be a string")


@pytest.mark.parametrize("bad", [1, 0, "true", None, 1.0])
def test_monitor_must_be_a_boolean_not_an_int_or_string(bad: Any) -> None:
    skipped(message(record(monitor=bad)), "online[0].monitor must be true or false")


@pytest.mark.parametrize(
    "bad",
    [
        True,
        False,
        -1,
        MAX_LAST_UPDATE + 1,
        2**64,
        1.5,
        1_700_000_000_000.0,
        "1700000000000",
        None,
        float("nan"),
        float("inf"),
        float("-inf"),
    ],
)
def test_last_update_must_be_a_safe_non_negative_integer(bad: Any) -> None:
    skipped(message(GOOD, GOOD, record(lastUpdate=bad)), "online[2].lastUpdate must be an integer")


def test_nan_and_infinity_from_json_text_are_rejected() -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = json.loads(
            '{"message": "gossip", "online": [{"baseUrl": "http://a/", '
            f'"monitor": false, "lastUpdate": {literal}}}]}}'
        )
        skipped(body, "online[0].lastUpdate")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://host/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("host:3000/", "http:// or https://"),
        ("//host:3000/", "http:// or https://"),
        ("", "http:// or https://"),
        ("http:///path", "must name a host"),
        ("http://:3000/", "must name a host"),
        ("http://user:pass@host/", "credentials"),
        ("http://user@host/", "credentials"),
        ("http://host:99999/", "not a valid URL"),
        ("http://host:port/", "not a valid URL"),
        ("http://host:-1/", "not a valid URL"),
        ("http://[::1/", "not a valid URL"),
        ("http://host:0/", "port 0"),
        ("http://ho st/", "whitespace"),
        ("http://host/\n", "whitespace"),
        ("http://host/\t", "whitespace"),
        ("http://host/\x00", "control characters"),
        ("http://host/" + "a" * MAX_URL_LENGTH, f"longer than {MAX_URL_LENGTH}"),
    ],
)
def test_bad_base_urls_are_rejected_with_the_reason(url: str, why: str) -> None:
    text = skipped(message(GOOD, offline=[GOOD, record(baseUrl=url)]), "offline[1].baseUrl")
    assert why in text
    assert len(text) < 300  # an overlong value is cut short in the message


def test_whitespace_around_a_url_is_rejected() -> None:
    for url in (" http://host/", "http://host/ "):
        skipped(message(record(baseUrl=url)), "online[0].baseUrl")


def test_one_bad_record_is_skipped_and_the_rest_of_the_message_kept() -> None:
    servers = ServerList.from_dict(
        message(
            GOOD,
            record(baseUrl="http://127.0.0.1:9/?tenant=a"),
            record(baseUrl="http://ok/"),
            offline=[record(monitor="no"), record(baseUrl="http://off/")],
        ),
        message="gossip",
    )
    assert [s.base_url for s in servers.online] == [GOOD["baseUrl"], "http://ok/"]
    assert [s.base_url for s in servers.offline] == ["http://off/"]
    assert servers.skipped == 2
    assert servers.problem is not None and servers.problem.startswith("online[1].baseUrl")


def test_from_dict_of_one_record_names_the_record() -> None:
    with pytest.raises(BadMessage, match=r"^server\.lastUpdate"):
        GossipServer.from_dict(record(lastUpdate=-5))


# -- rejections of a whole list ------------------------------------------------


@pytest.mark.parametrize("bad", [None, [], "gossip", 3, [message(GOOD)]])
def test_body_must_be_an_object(bad: Any) -> None:
    rejected(bad, "must be a JSON object")


def test_online_is_required() -> None:
    rejected({"message": "gossip", "offline": []}, "missing 'online'")


@pytest.mark.parametrize("bad", [None, {}, "[]", 1, {"baseUrl": "http://a/"}])
def test_online_must_be_a_list(bad: Any) -> None:
    rejected({"message": "gossip", "online": bad}, "online must be a list")


@pytest.mark.parametrize("bad", [None, {}, "[]", 1])
def test_offline_must_be_a_list(bad: Any) -> None:
    rejected(message(GOOD, offline=bad), "offline must be a list")


@pytest.mark.parametrize("bad", ["control", "Gossip", "", None, 1, ["gossip"]])
def test_gossip_message_needs_message_gossip(bad: Any) -> None:
    rejected({"message": bad, "online": [GOOD]}, "'message' must be 'gossip'")


def test_gossip_message_without_message_is_rejected() -> None:
    rejected({"online": [GOOD]}, "'message' must be 'gossip'")


def test_plain_list_needs_no_message_but_a_present_one_must_be_gossip() -> None:
    assert ServerList.from_dict({"online": [GOOD]}).online == (GossipServer.from_dict(GOOD),)
    assert ServerList.from_dict(message(GOOD)).online == (GossipServer.from_dict(GOOD),)
    rejected({"message": "control", "online": [GOOD]}, "'message' must be 'gossip'", message=None)


# -- control messages ----------------------------------------------------------


def test_parse_control_returns_the_requested_state() -> None:
    assert parse_control({"message": "control", "online": True}) is True
    assert parse_control({"message": "control", "online": False, "extra": 1}) is False


@pytest.mark.parametrize("bad", ["false", "true", 0, 1, None])
def test_control_online_must_be_a_boolean(bad: Any) -> None:
    with pytest.raises(BadMessage, match="'online' must be true or false"):
        parse_control({"message": "control", "online": bad})


def test_control_online_is_required() -> None:
    with pytest.raises(BadMessage, match="'online' must be true or false"):
        parse_control({"message": "control"})


@pytest.mark.parametrize("bad", ["gossip", None, "CONTROL"])
def test_control_message_must_say_control(bad: Any) -> None:
    with pytest.raises(BadMessage, match="'message' must be 'control'"):
        parse_control({"message": bad, "online": True})


@pytest.mark.parametrize("bad", [None, [], "control", True])
def test_control_body_must_be_an_object(bad: Any) -> None:
    with pytest.raises(BadMessage, match="must be a JSON object"):
        parse_control(bad)
