"""The optional orjson codec and the standard library give identical results."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_clustershazbot import _json
from flask_clustershazbot._json import decode_json, encode_json
from flask_clustershazbot.errors import BadMessage
from flask_clustershazbot.records import GossipServer, ServerList

orjson = pytest.importorskip("orjson")
assert _json.CODEC == "orjson"  # installed here, so the fast path is the one under test

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # beyond 64 bits: see below
    | st.text(max_size=20)
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def message(n: int) -> dict[str, Any]:
    servers = [
        GossipServer(f"http://10.0.{i // 250}.{i % 250}:8080/", i % 7 == 0, 1_700_000_000_000 + i)
        for i in range(n)
    ]
    return ServerList(tuple(servers[::2]), tuple(servers[1::2])).gossip_message()


@settings(max_examples=300, deadline=None)
@given(documents)
def test_both_codecs_encode_and_decode_alike(doc: Any) -> None:
    fast, std = _json.dumps(doc), _json.std_dumps(doc)
    assert fast == std
    assert _json.loads(fast) == _json.std_loads(std) == doc


def test_a_gossip_message_is_byte_identical_and_round_trips() -> None:
    msg = message(300)
    body = encode_json(msg)
    assert body == _json.std_dumps(msg)
    assert json.loads(body) == msg  # what any JSON peer (a node of the original) reads
    assert ServerList.from_dict(
        decode_json(body, "the body"), message="gossip"
    ) == ServerList.from_dict(msg)


def test_non_ascii_is_sent_as_utf8_by_both() -> None:
    doc = {"baseUrl": "http://bücher.example/", "error": "naïve ☃"}
    assert (
        _json.dumps(doc)
        == _json.std_dumps(doc)
        == json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    )


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"a":NaN}', b'{"a":Infinity}', b"[1,]", b"\xff\xfe", b'{"a":1}x'],
    ids=["empty", "open", "nan", "infinity", "trailing-comma", "not-utf8", "trailing-data"],
)
def test_both_codecs_reject_the_same_bad_bodies(body: bytes) -> None:
    with pytest.raises(ValueError):
        _json.std_loads(body)
    with pytest.raises(BadMessage, match="is not valid JSON"):
        decode_json(body, "the body")


def test_lone_surrogates_are_decided_like_the_standard_library() -> None:
    body = b'{"baseUrl":"\\ud800"}'  # valid JSON that orjson alone refuses
    assert _json.loads(body) == _json.std_loads(body)
    assert _json.dumps(_json.loads(body)) == _json.std_dumps(_json.std_loads(body)) == body


@pytest.mark.parametrize("stamp", [2**53, 2**64, 2**70, -(2**63) - 1])
def test_a_lastupdate_beyond_the_exact_range_is_skipped_by_both(stamp: int) -> None:
    # orjson reads integers beyond 64 bits as floats, the standard library as ints:
    # either way the record is skipped with the same problem.
    body = (
        b'{"message":"gossip","online":[{"baseUrl":"http://a/","monitor":false,"lastUpdate":%d}]}'
        % stamp
    )
    for loads in (_json.loads, _json.std_loads):
        servers = ServerList.from_dict(loads(body), message="gossip")
        assert servers.online == () and servers.skipped == 1
        assert (servers.problem or "").startswith("online[0].lastUpdate must be an integer")


def test_deep_nesting_is_a_bad_message_with_both() -> None:
    # The standard library hits its recursion limit; orjson parses it and the records refuse it.
    body = b'{"message":"gossip","online":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(RecursionError):
        _json.std_loads(body)
    with pytest.raises(BadMessage):
        ServerList.from_dict(decode_json(body, "the body"), message="gossip")
