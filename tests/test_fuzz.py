"""Hostile input on the four endpoints: never a 500, never a state change on a 4xx, never a crash.

Hypothesis drives a started node through the Flask test client (the same app,
views and engine a WSGI server calls); a few huge or tricky bodies go over
real HTTP. The node does no rounds meanwhile (60 s interval), so that any
change of its table comes from the request under test.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster import CONTROL, SECRET, Node, wait_until

EXAMPLES = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("fuzz")
    n = Node(
        {
            "SHAZBOT_SECRET": SECRET,
            "SHAZBOT_CONTROL_SECRET": CONTROL,
            "SHAZBOT_MASTER_LIST": str(tmp / "master.json"),
            "SHAZBOT_GOSSIP_INTERVAL": 60,
            "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 600,
        }
    )
    wait_until(lambda: n.engine.last_master_sync is not None, what="bootstrap")
    yield n
    n.stop()


def snapshot(node: Node) -> Any:
    def read(m: Any) -> Any:
        table = sorted(
            (u, e.online, e.server.monitor, e.server.last_update) for u, e in m.entries.items()
        )
        return table, m.control_online, m.running

    return node.engine.store.transact(read)


URLS = [
    "http://127.0.0.1:9/",
    "https://peer.example:8443/",
    "http://[::1]:80/",
    "ftp://x/",
    "http://u:p@host/",
    "http:///",
    "http://h:0/",
    "http://h:99999/",
    "http://" + "a" * 2050 + "/",
    "http://h/\n",
    "",
    "/relative",
]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
records = (
    st.fixed_dictionaries(
        {"baseUrl": st.sampled_from(URLS) | st.text(max_size=30)},
        optional={
            "monitor": st.booleans() | json_scalars,
            "lastUpdate": st.integers(min_value=-5, max_value=2**64) | json_scalars,
            "extra": json_values,
        },
    )
    | json_values
)
gossip_bodies = (
    st.fixed_dictionaries(
        {
            "message": st.sampled_from(["gossip", "control", "Gossip", ""]) | json_scalars,
            "online": st.lists(records, max_size=6) | json_values,
        },
        optional={"offline": st.lists(records, max_size=6) | json_values},
    )
    | json_values
)
control_bodies = (
    st.fixed_dictionaries(
        {
            "message": st.sampled_from(["control", "gossip"]) | json_scalars,
            "online": st.sampled_from([True, False, "false", 0, 1, None]),
        },
    )
    | json_values
)
printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
auth_headers = (
    st.sampled_from(
        [
            SECRET,
            CONTROL,
            "Bearer " + SECRET,
            "bearer  " + CONTROL,
            " " + SECRET + " ",
            SECRET[:-1],
            "",
            None,
        ]
    )
    | printable
)


def encode(body: Any, raw: bytes | None, gzipped: bool) -> bytes:
    data = raw if raw is not None else json.dumps(body, allow_nan=True).encode()
    return gzip.compress(data) if gzipped else data


def post(node: Node, path: str, auth: str | None, data: bytes, headers: dict[str, str]) -> Any:
    if auth is not None:
        headers = {**headers, "Authorization": auth}
    return node.app.test_client().post(path, data=data, headers=headers)


def check(response: Any, before: Any, node: Node) -> None:
    assert response.status_code in (200, 400, 401, 413), response.status_code
    assert response.is_json, response.data[:200]
    if response.status_code != 200:
        assert isinstance(response.get_json()["error"], str)
        assert snapshot(node) == before, "a rejected request changed the state"


@EXAMPLES
@given(
    body=gossip_bodies,
    raw=st.none() | st.binary(max_size=64),
    gzipped=st.booleans(),
    auth=auth_headers,
    content_type=st.sampled_from(["application/json", "text/plain", ""]),
    encoding_header=st.sampled_from([None, "gzip", "GZIP", "br"]),
)
def test_gossip_endpoint_survives_anything(
    node: Node,
    body: Any,
    raw: bytes | None,
    gzipped: bool,
    auth: str | None,
    content_type: str,
    encoding_header: str | None,
) -> None:
    headers = {"Content-Type": content_type}
    if encoding_header:
        headers["Content-Encoding"] = encoding_header
    before = snapshot(node)
    response = post(node, "/clustershazbot/gossip", auth, encode(body, raw, gzipped), headers)
    check(response, before, node)
    if response.status_code == 200:
        reply = response.get_json()
        assert reply["message"] == "gossip" and isinstance(reply["online"], list)


@EXAMPLES
@given(body=control_bodies, raw=st.none() | st.binary(max_size=64), auth=auth_headers)
def test_control_endpoint_survives_anything(
    node: Node, body: Any, raw: bytes | None, auth: str | None
) -> None:
    before = snapshot(node)
    response = post(
        node,
        "/clustershazbot/control",
        auth,
        encode(body, raw, False),
        {"Content-Type": "application/json"},
    )
    check(response, before, node)
    if response.status_code == 200:
        assert response.get_json() == {"success": True}
        assert body == {"message": "control", "online": body["online"]}
        assert type(body["online"]) is bool
        node.engine.set_online(True)


@settings(max_examples=60, deadline=None, database=None)
@given(auth=auth_headers, query=printable)
def test_list_endpoint_survives_anything(node: Node, auth: str | None, query: str) -> None:
    before = snapshot(node)
    headers = {"Authorization": auth} if auth is not None else {}
    response = node.app.test_client().get(
        "/clustershazbot/list", headers=headers, query_string={"q": query}
    )
    assert response.status_code == 200
    data = response.get_json()
    full = (
        auth is not None
        and auth.strip().removeprefix("Bearer ").removeprefix("bearer ").strip() == CONTROL
    )
    assert ("offline" in data) is full
    assert snapshot(node) == before


def gossip_http(node: Node, data: bytes, **headers: str) -> requests.Response:
    return requests.post(
        node.base_url + "clustershazbot/gossip",
        data=data,
        timeout=30,
        headers={"Authorization": SECRET, "Content-Type": "application/json", **headers},
    )


def record(url: str, stamp: int, monitor: bool = False) -> dict[str, Any]:
    return {"baseUrl": url, "monitor": monitor, "lastUpdate": stamp}


def test_huge_and_tricky_bodies_over_real_http(node: Node) -> None:
    before = snapshot(node)
    hundred_thousand = json.dumps(
        {
            "message": "gossip",
            "online": [record(f"http://10.0.{i // 250}.{i % 250}:80/", 1) for i in range(100_000)],
        }
    ).encode()
    cases = [
        (hundred_thousand, {}, 413),  # 10^5 records, > 4 MiB
        (gzip.compress(b" " * (50 * 2**20)), {"Content-Encoding": "gzip"}, 413),  # gzip bomb
        (b"[" * 100_000 + b"]" * 100_000, {}, 400),  # nesting beyond recursion
        (
            b'{"message": "gossip", "online": [{"baseUrl": "http://h/", "monitor": true,'
            b' "lastUpdate": NaN}]}',
            {},
            400,
        ),
        (b'{"message": "gossip", "online": [], "offline": 1e999}', {}, 400),
        (b"\xff\xfe\x00garbage", {}, 400),
    ]
    for data, headers, status in cases:
        r = gossip_http(node, data, **headers)
        assert r.status_code == status, (data[:60], r.text[:200])
        assert "error" in r.json()
        assert snapshot(node) == before
    assert requests.get(node.base_url + "hello", timeout=5).text == "hello"


def test_duplicate_base_urls_in_one_message_merge_to_one_record(node: Node) -> None:
    now = node.engine.clock()
    for i, keys in enumerate((("online", "offline"), ("offline", "online"))):
        url = f"http://127.0.0.1:{20 + i}/"
        lists = {
            "online": [record(url, now - 5), record(url, now - 50)],
            "offline": [record(url, now - 5)],
        }
        body = {"message": "gossip", **{key: lists[key] for key in keys}}
        r = gossip_http(node, json.dumps(body).encode())
        assert r.status_code == 200
        entries = [s for key in ("online", "offline") for s in r.json()[key] if s["baseUrl"] == url]
        assert entries == [record(url, now - 5)]
        assert node.view()[url] is False  # offline wins a tie, whatever the order


probe_bodies = (
    st.fixed_dictionaries(
        {
            "message": st.sampled_from(["probe", "gossip"]) | json_scalars,
            "baseUrl": st.sampled_from([*URLS, "SELF"]) | json_scalars,
        },
        optional={
            "timeout": st.floats() | st.integers(min_value=-5, max_value=2**70) | json_scalars
        },
    )
    | json_values
)


@EXAMPLES
@given(body=probe_bodies, raw=st.none() | st.binary(max_size=64), auth=auth_headers)
def test_probe_endpoint_survives_anything_and_contacts_no_stranger(
    node: Node, body: Any, raw: bytes | None, auth: str | None
) -> None:
    if isinstance(body, dict) and body.get("baseUrl") == "SELF":
        body = {**body, "baseUrl": node.base_url}
    before = snapshot(node)
    response = post(
        node,
        "/clustershazbot/probe",
        auth,
        encode(body, raw, False),
        {"Content-Type": "application/json"},
    )
    check(response, before, node)
    if response.status_code == 200:
        # The node knows only itself: nothing else may be probed.
        assert body["baseUrl"] == node.base_url and response.get_json() == {"reachable": True}
