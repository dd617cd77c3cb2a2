"""The msgspec fast path of the gossip endpoint decides every body as the standard path does.

``records.decode_gossip`` + ``Incoming.news`` (msgspec; records that cannot outrank the
table's entry skipped) against ``decode_json`` + ``ServerList.from_dict`` (the standard
path): the same bodies accepted, the same error where one is refused, and the same table
after merging either.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_clustershazbot import _json
from flask_clustershazbot._json import decode_json
from flask_clustershazbot.errors import BadMessage
from flask_clustershazbot.incoming import decode_gossip
from flask_clustershazbot.membership import Membership
from flask_clustershazbot.records import MAX_LAST_UPDATE, GossipServer, ServerList

pytest.importorskip("msgspec")

NOW = 1_700_000_000_000
ME = "http://127.0.0.1:8000/"
KNOWN = [GossipServer(f"http://127.0.0.1:{9000 + i}/", i % 3 == 0, NOW - i) for i in range(6)]


def table() -> Membership:
    m = Membership(ME, False, NOW, 0.0)
    m.merge(ServerList(tuple(KNOWN[:3]), tuple(KNOWN[3:])), NOW, 0.0, 600_000, 86_400_000)
    return m


def standard(raw: bytes) -> Any:
    """The standard path's verdict: the records or the error."""
    try:
        return ServerList.from_dict(decode_json(raw, "the body"), message="gossip")
    except BadMessage as exc:
        return str(exc)


def fast(raw: bytes, m: Membership) -> tuple[bool, Any]:
    """(whether msgspec decided, its verdict); the standard path's where msgspec refused."""
    incoming = decode_gossip(raw)
    if incoming is None:
        return False, standard(raw)
    try:
        return True, incoming.news(m.entries)
    except BadMessage as exc:
        return True, str(exc)


def merged(servers: ServerList) -> Any:
    m = table()
    changes = m.merge(servers, NOW, 1.0, 600_000, 86_400_000)
    entries = sorted((u, e.online, e.server) for u, e in m.entries.items())
    return entries, changes.joined, changes.left, changes.refuted


def same(raw: bytes) -> bool:
    """The verdicts agree, on ``raw`` and on it written compactly, as nodes write bodies
    (whose lists the fast path splits record by record: :class:`incoming._Pieces`)."""
    try:
        compact = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        compact = raw
    if compact != raw:
        agree(compact)
    return agree(raw)


def agree(raw: bytes) -> bool:
    used, verdict = fast(raw, table())
    expected = standard(raw)
    if isinstance(expected, str):
        assert verdict == expected, raw[:300]
    else:
        assert not isinstance(verdict, str), (verdict, raw[:300])
        assert merged(verdict) == merged(expected), raw[:300]
        # Records skipped as invalid are counted and named alike.
        assert (verdict.skipped, verdict.problem) == (expected.skipped, expected.problem)
    return used


def body(online: Any, offline: Any = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = {"message": "gossip", "online": online, **extra}
    if offline is not None:
        doc["offline"] = offline
    return json.dumps(doc).encode()


def rec(
    url: Any = "http://127.0.0.1:9100/", monitor: Any = False, stamp: Any = NOW
) -> dict[str, Any]:
    return {"baseUrl": url, "monitor": monitor, "lastUpdate": stamp}


def test_the_codec_is_not_forced_off() -> None:
    assert _json.TYPED


def test_records_that_cannot_change_the_table_are_skipped_and_new_ones_kept() -> None:
    older = GossipServer(KNOWN[1].base_url, True, KNOWN[1].last_update - 5)
    raw = body(
        [s.to_dict() for s in KNOWN[:3]] + [older.to_dict(), rec()],
        [s.to_dict() for s in KNOWN[3:]],
    )
    assert same(raw)  # msgspec decided: the fast path is the one under test
    used, verdict = fast(raw, table())
    assert verdict == ServerList((GossipServer("http://127.0.0.1:9100/", False, NOW),), ())


@pytest.mark.parametrize(
    "raw",
    [
        body([rec()]),
        body([rec("HTTP://127.0.0.1:9001")]),  # an alias of a known member: canonicalised, kept
        body(
            [rec(KNOWN[3].base_url, KNOWN[3].monitor, KNOWN[3].last_update)]
        ),  # known offline, now online
        body([rec(stamp=0), rec(stamp=MAX_LAST_UPDATE)], [rec(monitor=True)]),
        body([rec()], extra={"a": [1, {"b": None}]}),
        body([], None),
        # What splitting a compact list at "},{" gets wrong: the whole list decides.
        body([{**rec(), "x": "},{"}, rec(KNOWN[0].base_url, stamp=NOW + 1)]),
        body([{**rec(), "x": {"y": {}}}, {**rec(stamp=NOW + 2), "z": [{}, {}]}]),
        body([s.to_dict() for s in KNOWN[:3]], [{**s.to_dict(), "x": "},{"} for s in KNOWN[3:]]),
        body([rec("http://127.0.0.1:9101/", stamp=NOW - 5), rec(stamp=NOW + 5)]),  # one name twice
    ],
)
def test_accepted_alike(raw: bytes) -> None:
    assert same(raw)


@pytest.mark.parametrize(
    "raw",
    [
        body([rec("ftp://x/")]),
        body([rec(), rec("http://h/?q")]),
        body([rec()], [rec("http://u:p@h/")]),
        body([rec("http://h/a b")]),
        body([rec("HTTP://H/", stamp=1), rec("http://h/..", stamp=2)]),
    ],
)
def test_bad_base_urls_are_skipped_and_named_alike(raw: bytes) -> None:
    assert same(raw)
    verdict = fast(raw, table())[1]
    assert verdict.skipped >= 1 and "baseUrl" in verdict.problem


@pytest.mark.parametrize(
    "raw",
    [
        body([rec(monitor=1)]),
        body([rec(stamp=-1)]),
        body([rec(stamp=MAX_LAST_UPDATE + 1)]),
        body([rec(stamp=1.0)]),
        body([rec(stamp=2**64)]),
        body([rec(url=5)]),
        body([{"baseUrl": "http://a/"}]),
        body(None),
        body([rec()], offline={}),
        body([rec()], message="hi"),
        body([1]),
        body([rec(), {**rec(), "monitor": 1}]),  # one record of a compact list refused
        body([s.to_dict() for s in KNOWN[:3]] + [{}]),
        b'{"online":[]}',
        b"[]",
        b"",
        b"{",
        b'{"message":"gossip","online":[],"x":NaN}',
        b'{"message":"gossip","online":[]}x',
        b'\xef\xbb\xbf{"message":"gossip","online":[]}',
        b'{"message":"gossip","online":[],"x":"\xff"}',  # bad UTF-8 where msgspec would not look
        b'{"message":"gossip","online":[],"x":"\\ud800"}',  # a lone surrogate: fine for json
        b'{"message":"x","message":"gossip","online":[]}',  # duplicate keys: the last one counts
        b'{"message":"gossip","online":[],"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
        # Compact bodies of a known layout, split unread: a bad record is found late.
        b'{"online":[{"baseUrl":"http://127.0.0.1:9100/","monitor":false,"lastUpdate":1,'
        b'"x":NaN}],"offline":[],"message":"gossip"}',
        b'{"message":"gossip","online":[],"offline":[{"baseUrl":"http://127.0.0.1:9000/",'
        b'"monitor":false,"lastUpdate":1699999999999},{]}',
        b'{"online":[{"a":' + b"[" * 5000 + b"]" * 5000 + b'}],"offline":[],"message":"gossip"}',
        b'{"online":[{}],"offline":[{"baseUrl":5}],"message":"gossip"}',
        b'{"online":[{"baseUrl":"http://127.0.0.1:9000/","monitor":false,'
        b'"lastUpdate":1699999999999}],"offline":[],"message":"gossip"}x',
    ],
)
def test_everything_msgspec_refuses_is_decided_by_the_standard_path(raw: bytes) -> None:
    same(raw)


urls = st.sampled_from(
    [s.base_url for s in KNOWN]
    + [
        "http://127.0.0.1:9100/",
        "HTTP://127.0.0.1:9001",
        "http://127.0.0.1:09002/",
        "ftp://x/",
        "http://h/?q",
        "",
        "http://h/a%2f",
        ME,
    ]
) | st.text(max_size=12)
values = (
    st.none()
    | st.booleans()
    | st.integers(-5, 2**54)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
records = st.one_of(
    st.builds(
        rec,
        urls,
        st.booleans(),
        st.sampled_from([s.last_update + d for s in KNOWN for d in (-1, 0, 1)] + [0, NOW + 1]),
    ),
    st.builds(
        rec, urls | values, st.booleans() | values, st.integers(-1, MAX_LAST_UPDATE + 1) | values
    ),
    st.dictionaries(st.sampled_from(["baseUrl", "monitor", "lastUpdate", "x"]), values, max_size=4),
)


@settings(max_examples=400, deadline=None, database=None)
@given(st.lists(records, max_size=6), st.lists(records, max_size=6) | st.none())
def test_any_message_is_decided_alike(online: list[Any], offline: list[Any] | None) -> None:
    same(body(online, offline))


def test_records_the_table_holds_are_skipped_unread_and_the_rest_decoded() -> None:
    m = table()
    held = [s.to_dict() for s in KNOWN[:3]]
    raw = json.dumps({"message": "gossip", "online": held}, separators=(",", ":")).encode()
    incoming = decode_gossip(raw)
    assert incoming is not None and incoming.news(m.entries) == ServerList()
    newer = {**held[1], "lastUpdate": NOW + 1}
    text = json.dumps({"message": "gossip", "online": [held[0], newer]}, separators=(",", ":"))
    incoming = decode_gossip(text.encode())
    assert incoming is not None
    assert incoming.news(m.entries) == ServerList((GossipServer.from_dict(newer),), ())


def skip_index_holds(m: Membership) -> None:
    """The skip index holds every entry's record on its side, and otherwise only records
    older than their member's entry; the reply built from the index's parts is the table's."""
    index = m.entries.skip_index()

    def older(key: bytes) -> bool:
        record = GossipServer.from_dict(json.loads(b"{%b}" % key))
        return record.last_update < m.entries[record.base_url].server.last_update

    for side in (False, True):
        own = {
            json.dumps(e.server.to_dict(), separators=(",", ":")).encode()[1:-1]
            for e in m.entries.values()
            if e.online is side
        }
        assert own <= set(index.sides[side])
        assert all(older(key) for key in set(index.sides[side]) - own)
    assert m.gossip_body() == _json.encode_json(m.gossip_message())


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["merge", "hint", "settle", "beat", "offline", "cleanup", "cap"]),
            st.sampled_from([s.base_url for s in KNOWN] + ["http://127.0.0.1:9200/", ME]),
            st.booleans(),
            st.integers(-3, 3),
        ),
        max_size=25,
    )
)
def test_the_skip_index_follows_every_change_of_the_table(ops: list[Any]) -> None:
    m, mono, now = table(), 1.0, NOW
    m.entries.skip_index()
    for op, url, flag, delta in ops:
        mono, now = mono + 1, now + 1
        if op == "merge":
            record = GossipServer(url, flag, now + delta)
            m.merge(
                ServerList(*(((record,), ()) if flag else ((), (record,)))),
                now,
                mono,
                600_000,
                86_400_000,
            )
        elif op == "hint":  # from the master list
            record = GossipServer(url, False, now + delta)
            m.merge(ServerList((record,), ()), now, mono, 600_000, 86_400_000, hints=True)
        elif op == "settle":
            m.settle_hint(url, flag, mono)
        elif op == "beat":
            m.running = flag
            m.heartbeat(now + delta * 1000, mono, 500)
        elif op == "offline":
            m.mark_offline(url, now + delta, mono)
        elif op == "cleanup":
            m.cleanup(now, 5 + delta)
        else:
            m.merge(
                ServerList((), (GossipServer(f"http://127.0.0.1:{9300 + delta}/", flag, now),)),
                now,
                mono,
                600_000,
                86_400_000,
                max_members=len(m.entries),
            )
        skip_index_holds(m)
