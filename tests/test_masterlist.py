"""Issue 13 and the cold-start parts of issue 9: master lists in a file, over HTTP (with
ETags), in S3 (moto's server), in Redis (redis-server) and from DNS (dnslib's server).

Every backend runs as a real server on 127.0.0.1 started here; nothing is mocked.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import REDIS_SERVER, ConflictingS3, DnsServer, RedisServer, S3Server
from cluster import (
    CONTROL,
    MASTER_AUTH,
    SECRET,
    MasterListServer,
    Node,
    Server,
    free_port,
    wait_until,
)
from flask_clustershazbot.config import Settings, load_settings
from flask_clustershazbot.errors import ConfigError, ShazbotError, TooLarge
from flask_clustershazbot.masterlist import MasterLists
from flask_clustershazbot.records import GossipServer, ServerList, rank
from flask_clustershazbot.settings_values import mask
from flask_clustershazbot.transport import HttpTransport
from proxy import Proxy
from test_lifecycle import SLOW_DETECTION, App, flask_run

ANNOUNCERS = 20


def member(i: int) -> str:
    """A loopback base URL nobody listens on: records only, never contacted here."""
    return f"http://127.0.3.{i + 1}:9/"


def settings_for(i: int, master: str, **kw: Any) -> Settings:
    return load_settings(
        options={
            "secret": SECRET,
            "control_secret": CONTROL,
            "base_url": member(i),
            "master_list": master,
            "master_list_timeout": 10,
            **kw,
        }
    )


def master_lists(settings: Settings) -> MasterLists:
    """What a node made with ``settings`` reads and updates, over its own HTTP client."""
    return MasterLists(settings, HttpTransport(settings))


def now_ms() -> int:
    return int(time.time() * 1000)


def listed(transport: MasterLists) -> set[str]:
    return {s.base_url for s in transport.read().online}


def announce_at_once(make: Callable[[int], MasterLists], count: int = ANNOUNCERS) -> set[str]:
    """``count`` nodes (one HTTP client and master list each) publish their own record at the same moment."""
    transports = [make(i) for i in range(count)]
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def announce(i: int) -> None:
        start.wait(30)
        record = GossipServer(member(i), False, now_ms())
        try:
            transports[i].publish(ServerList(online=(record,)))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=announce, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "an announcement hung"
    assert not errors, errors
    try:
        return listed(transports[0])
    finally:
        for t in transports:
            t.close()


EVERYONE = {member(i) for i in range(ANNOUNCERS)}
#: SHAZBOT_MASTER_LIST_TIMEOUT of the crowds below: with conditional writes they take their
#: turns at one object, which a busy machine's moto serves slowly; that each publish ends
#: within its timeout is tested on its own (test_s3_a_publish_that_always_conflicts...).
CROWD_TIMEOUT = 60


# -- servers ---------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip(f"{REDIS_SERVER} is not installed (apt install redis-server)")
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, request: Any) -> str:
    """A fresh bucket; boto3 finds the server and credentials through its environment."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    bucket = f"cluster-{request.node.name.lower().replace('_', '-')[:40]}-{os.getpid()}"
    s3_server.create_bucket(bucket)
    return f"s3://{bucket}/prod/master.json"


# -- every backend: announcements at the same moment all end up listed -------------


def test_file_announcements_at_once_are_all_listed(tmp_path: Path) -> None:
    master = str(tmp_path / "master.json")
    assert announce_at_once(lambda i: master_lists(settings_for(i, master))) == EVERYONE
    # the file keeps the original's format
    assert set(json.loads(Path(master).read_text())) == {"online"}


def test_http_announcements_with_etags_are_all_listed() -> None:
    server = MasterListServer(etags=True)
    try:
        url = server.url
        found = announce_at_once(
            lambda i: master_lists(
                settings_for(
                    i,
                    url,
                    master_list_update=url,
                    master_list_update_auth=MASTER_AUTH,
                    master_list_timeout=CROWD_TIMEOUT,
                )
            )
        )
        assert found == EVERYONE, f"lost {len(EVERYONE - found)}; {server.conflicts} PUTs got 412"
    finally:
        server.stop()


def test_http_update_url_that_takes_only_puts_is_written_as_before(
    master_server: MasterListServer,
) -> None:
    """A GET on the update URL answered 405 (a PUT-only or presigned URL): plain PUT."""
    t = master_lists(
        settings_for(
            0,
            master_server.url,
            master_list_update=master_server.upload_url,
            master_list_update_auth=MASTER_AUTH,
        )
    )
    t.publish(ServerList(online=(GossipServer(member(0), False, now_ms()),)))
    assert listed(t) == {member(0)}
    assert master_server.puts == 1


def test_s3_announcements_at_once_are_all_listed(s3_url: str) -> None:
    found = announce_at_once(
        lambda i: master_lists(settings_for(i, s3_url, master_list_timeout=CROWD_TIMEOUT))
    )
    assert found == EVERYONE


def test_redis_announcements_at_once_are_all_listed(redis_server: RedisServer) -> None:
    url = redis_server.url + "?key=prod:members"
    assert announce_at_once(lambda i: master_lists(settings_for(i, url))) == EVERYONE


# -- the merge on publish --------------------------------------------------------


@pytest.fixture(params=["file", "s3", "redis"])
def location(request: Any, tmp_path: Path) -> str:
    if request.param == "file":
        return str(tmp_path / "master.json")
    if request.param == "s3":
        return str(request.getfixturevalue("s3_url"))
    return str(request.getfixturevalue("redis_server").url)


def test_publishing_merges_by_the_protocol_rule(location: str) -> None:
    t = master_lists(settings_for(0, location))
    now = now_ms()
    a, b, c, d = member(10), member(11), member(12), member(13)
    t.publish(
        ServerList(
            online=(
                GossipServer(a, False, now),
                GossipServer(b, False, now),
                GossipServer(c, True, now),
            )
        )
    )
    # Another node knows a offline (newer), b offline at the same stamp, c online but older
    # than the stored record, and d online; it knows nothing of the rest.
    t.publish(
        ServerList(
            online=(GossipServer(c, False, now - 5000), GossipServer(d, False, now)),
            offline=(GossipServer(a, False, now + 1), GossipServer(b, False, now)),
        )
    )
    stored = t.read()
    assert {s.base_url: s for s in stored.online} == {
        c: GossipServer(c, True, now),
        d: GossipServer(d, False, now),
    }
    t.close()


def test_every_backend_keeps_the_record_the_protocols_rule_ranks_first(location: str) -> None:
    # Every pair of records of one member (stamps equal or one apart, online or offline,
    # monitor or not), the first published by one node, the second by another: what is
    # stored is the one records.rank puts first, the rule the member table merges by. For
    # Redis this checks the Lua script, which writes that rule a second time.
    now = now_ms()
    variants = [
        (GossipServer("", monitor, now + later), online)
        for later in (0, 1)
        for online in (True, False)
        for monitor in (False, True)
    ]
    pairs = [(first, second) for first in variants for second in variants]
    t = master_lists(settings_for(0, location))

    def publish(records: list[tuple[GossipServer, bool]]) -> None:
        placed = [
            (GossipServer(member(100 + i), s.monitor, s.last_update), online)
            for i, (s, online) in enumerate(records)
        ]
        t.publish(
            ServerList(
                online=tuple(s for s, online in placed if online),
                offline=tuple(s for s, online in placed if not online),
            )
        )

    publish([first for first, _ in pairs])
    publish([second for _, second in pairs])
    stored = t.read()
    got = {s.base_url: (s.monitor, s.last_update, True) for s in stored.online}
    got.update({s.base_url: (s.monitor, s.last_update, False) for s in stored.offline})
    # Redis keeps a member's offline record (a tombstone); a file or an S3 object holds online
    # records only: a member whose offline record wins leaves it, and is not remembered.
    tombstones = location.startswith("redis://")
    for i, (first, second) in enumerate(pairs):
        kept = [first] if first[1] or tombstones else []
        server, online = max([*kept, second], key=lambda record: rank(*record))
        expected = (server.monitor, server.last_update, online)
        assert got.get(member(100 + i)) == (expected if online or tombstones else None), (
            first,
            second,
        )
    t.close()


def test_entries_older_than_the_retention_are_dropped(location: str) -> None:
    t = master_lists(settings_for(0, location, retention=60))
    now = now_ms()
    crashed, live = member(20), member(21)
    t.publish(
        ServerList(
            online=(
                GossipServer(crashed, False, now - 61_000),
                GossipServer(live, False, now - 1000),
            )
        )
    )
    t.publish(ServerList(online=(GossipServer(member(0), False, now),)))
    assert listed(t) == {live, member(0)}
    t.close()


# -- file: cold start and errors --------------------------------------------------


def test_missing_file_logs_once_that_the_node_starts_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_clustershazbot")
    path = tmp_path / "master.json"
    t = master_lists(settings_for(0, str(path)))
    assert t.read() == ServerList()
    assert t.read() == ServerList()
    alone = [r.getMessage() for r in caplog.records if "starts alone" in r.getMessage()]
    assert len(alone) == 1
    assert "SHAZBOT_MASTER_LIST" in alone[0] and str(path) in alone[0]
    t.publish(ServerList(online=(GossipServer(member(0), False, now_ms()),)))
    assert listed(t) == {member(0)}


def read_and_write(t: MasterLists) -> tuple[Callable[[], Any], ...]:
    """A read and a write of ``t``'s master list: each must refuse a bad location alike."""
    return (
        t.read,
        lambda: t.publish(ServerList(online=(GossipServer(member(0), False, 1),))),
    )


def test_a_typod_directory_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "shraed" / "master.json"
    t = master_lists(settings_for(0, str(path)))
    for call in read_and_write(t):
        with pytest.raises(ShazbotError) as raised:
            call()
        assert "SHAZBOT_MASTER_LIST " + str(path) in str(raised.value)
        assert "does not exist" in str(raised.value)
    assert not path.parent.exists()


@pytest.mark.parametrize("body", [b"[]", b'"online"', b"{}", b"not json"])
def test_a_master_list_that_is_not_an_object_names_the_setting_and_path(
    tmp_path: Path, body: bytes
) -> None:
    path = tmp_path / "master.json"
    path.write_bytes(body)
    t = master_lists(settings_for(0, str(path)))
    for call in read_and_write(t):
        with pytest.raises(ShazbotError) as raised:
            call()
        assert f"SHAZBOT_MASTER_LIST {path}" in str(raised.value)
    assert path.read_bytes() == body  # bad input changes nothing


# -- s3: a publish, retries included, within SHAZBOT_MASTER_LIST_TIMEOUT ----------------


#: How late a thread's ``join(timeout)`` may return on a busy machine: the deadline is
#: kept, the caller just wakes up a little after it.
JOIN_LATENESS = 0.25


@pytest.fixture
def conflicting_s3(
    s3_server: S3Server, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ConflictingS3, str]]:
    """``s3_url``'s bucket behind a proxy that refuses every conditional write with 412."""
    proxy = ConflictingS3(s3_server)
    for key, value in proxy.env.items():
        monkeypatch.setenv(key, value)
    yield proxy, s3_url
    proxy.stop()


def test_s3_a_publish_that_always_conflicts_gives_up_within_the_timeout(
    conflicting_s3: tuple[ConflictingS3, str],
) -> None:
    """Issue 24: with every write conflicting, a publish went on for minutes (100 attempts,
    pauses growing to 5 s), past any shutdown's grace period."""
    proxy, url = conflicting_s3
    t = master_lists(settings_for(0, url, master_list_timeout=2))
    assert t.read() == ServerList()  # the S3 client made, as a node's is by then
    began = time.monotonic()
    with pytest.raises(ShazbotError) as raised:
        t.publish(ServerList(online=(GossipServer(member(0), False, now_ms()),)))
    took = time.monotonic() - began
    assert took <= 2.0 + JOIN_LATENESS
    assert proxy.refused >= 5  # it did retry, with growing pauses
    assert str(raised.value) == (
        f"SHAZBOT_MASTER_LIST {url}: gave up after {proxy.refused} conflicting writes within "
        "SHAZBOT_MASTER_LIST_TIMEOUT (2 s): other writers changed the list between each read "
        "and write"
    )
    t.close()


def test_http_a_publish_that_always_conflicts_gives_up_within_the_timeout() -> None:
    """The same bound for HTTP with ETags: a server whose list changes between every GET
    and PUT (each GET a new ETag, each PUT 412)."""
    from werkzeug.wrappers import Request, Response

    refused = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if Request(environ).method == "PUT":
            refused.append(1)
            return Response("changed meanwhile", 412)(environ, start_response)
        etag = f'"{len(refused)}"'
        return Response('{"online": []}', headers={"ETag": etag})(environ, start_response)

    server = Server(app).start()
    t = master_lists(
        settings_for(
            0,
            server.url,
            master_list_update=server.url,
            master_list_update_auth=MASTER_AUTH,
            master_list_timeout=2,
        )
    )
    try:
        began = time.monotonic()
        with pytest.raises(ShazbotError) as raised:
            t.publish(ServerList(online=(GossipServer(member(0), False, now_ms()),)))
        assert time.monotonic() - began <= 2.0 + JOIN_LATENESS
        assert len(refused) >= 5
        assert f"gave up after {len(refused)} conflicting writes within" in str(raised.value)
    finally:
        t.close()
        server.stop()


def test_s3_a_hung_server_costs_a_read_or_publish_no_more_than_the_timeout(
    s3_server: S3Server, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto3's timeouts are per socket operation and it retries by itself: a server that
    accepts and never answers cost twice the timeout and more."""
    hung = Proxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL", hung.url.rstrip("/"))
    t = master_lists(settings_for(0, s3_url, master_list_timeout=1))
    try:
        assert t.read() == ServerList()  # the S3 client made, through the proxy
        hung.set("hang")
        for call in read_and_write(t):
            began = time.monotonic()
            with pytest.raises(ShazbotError) as raised:
                call()
            assert time.monotonic() - began <= 1.0 + JOIN_LATENESS
            assert str(raised.value) == (
                f"SHAZBOT_MASTER_LIST {s3_url}: get_object did not finish within "
                "SHAZBOT_MASTER_LIST_TIMEOUT (1 s)"
            )
    finally:
        t.close()
        hung.stop()


def test_s3_a_node_with_the_shutdown_upload_exits_within_the_bound_after_sigterm(
    conflicting_s3: tuple[ConflictingS3, str],
    s3_server: S3Server,
    make_node: Callable[..., Node],
    tmp_path: Path,
) -> None:
    """Issue 24: a node with SHAZBOT_UPDATE_MASTER_LIST_ON_SHUTDOWN ran 45 s after SIGTERM
    while every write conflicted; docs/lifecycle.md promises SHAZBOT_REQUEST_TIMEOUT plus
    SHAZBOT_MASTER_LIST_TIMEOUT."""
    proxy, url = conflicting_s3
    peer = make_node(**SLOW_DETECTION)
    bucket, key = url[len("s3://") :].split("/", 1)
    seed = {"online": [{"baseUrl": peer.base_url, "monitor": False, "lastUpdate": now_ms()}]}
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(seed).encode())
    port = free_port()
    app = App(
        tmp_path,
        flask_run(port),
        port,
        SHAZBOT_MASTER_LIST=url,
        SHAZBOT_REQUEST_TIMEOUT=2,
        SHAZBOT_MASTER_LIST_TIMEOUT=3,
        SHAZBOT_UPDATE_MASTER_LIST_ON_SHUTDOWN="true",
        **proxy.env,
    )
    try:
        wait_until(lambda: peer.view().get(app.url) is True, 30, f"the app to join\n{app.log()}")
        began = time.monotonic()
        app.signal(signal.SIGTERM)
        status = app.wait()
        took = time.monotonic() - began
        print(f"exited {took:.2f} s after SIGTERM; {proxy.refused} conditional writes refused")
        assert status == 143
        assert took <= 2 + 3  # SHAZBOT_REQUEST_TIMEOUT + SHAZBOT_MASTER_LIST_TIMEOUT
        assert peer.view().get(app.url) is False  # the peers were told first
        log = app.log()
        assert f"master list update failed: SHAZBOT_MASTER_LIST {url}: gave up after" in log
        assert "Traceback" not in log
    finally:
        app.stop()


# -- errors name the setting and location, never a secret ---------------------------


def test_redis_errors_name_the_url_without_its_password() -> None:
    port = 1  # nothing listens on 127.0.0.1:1
    t = master_lists(
        settings_for(0, f"redis://:hunter2-secret@127.0.0.1:{port}/0", master_list_timeout=1)
    )
    for call in (t.read, lambda: t.publish(ServerList())):
        with pytest.raises(ShazbotError) as raised:
            call()
        message = str(raised.value)
        assert message.startswith(f"SHAZBOT_MASTER_LIST redis://***@127.0.0.1:{port}/0")
        assert "hunter2" not in message


def test_redis_errors_show_the_key_and_mask_passwords() -> None:
    """The hash's name (``?key=``) says where the list is, not how to get in: errors
    show it, so an operator sees which hash failed; passwords, in the URL's user part or
    as a query parameter (redis-py takes both), are still masked."""
    url = "redis://:hunter2-secret@127.0.0.1:1/0?key=prod:members&password=hunter3-secret"
    t = master_lists(settings_for(0, url, master_list_timeout=1))
    with pytest.raises(ShazbotError) as raised:
        t.read()
    message = str(raised.value)
    assert message.startswith(
        "SHAZBOT_MASTER_LIST redis://***@127.0.0.1:1/0?key=prod:members&password=***:"
    )
    assert "hunter" not in message
    # Elsewhere a query value is masked whatever its name: ?key= of an HTTP list may be a token.
    assert mask("https://m.example/list.json?key=k-123") == "https://m.example/list.json?key=***"


def test_http_errors_name_the_url_without_a_token(master_server: MasterListServer) -> None:
    master_server.fail_with = 503
    url = master_server.url + "?token=s3cr3t-token"
    t = master_lists(
        settings_for(0, url, master_list_update=url, master_list_update_auth=MASTER_AUTH)
    )
    with pytest.raises(ShazbotError) as raised:
        t.read()
    assert str(raised.value) == (
        f"SHAZBOT_MASTER_LIST {master_server.url}?token=***: GET answered HTTP 503"
    )
    with pytest.raises(ShazbotError) as raised:
        t.publish(ServerList())
    assert str(raised.value).startswith(f"SHAZBOT_MASTER_LIST_UPDATE {master_server.url}?token=***")


def test_s3_errors_name_the_setting_and_bucket(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    t = master_lists(settings_for(0, "s3://no-such-bucket-here/master.json"))
    with pytest.raises(ShazbotError) as raised:
        t.read()
    assert str(raised.value) == (
        "SHAZBOT_MASTER_LIST s3://no-such-bucket-here/master.json: get_object failed: NoSuchBucket"
    )
    assert s3_server.env["AWS_SECRET_ACCESS_KEY"] not in str(raised.value)


@pytest.mark.parametrize(
    "location, problem",
    [
        ("s3://bucket-only", "must be s3://bucket/key"),
        ("redis://:6379/0", "must name a host"),
        ("dns://:8080", "must be dns://name[:port]"),
        ("dns://nodes.example:http", "has an invalid port"),
        ("ftp://host/master.json", "must be a path or a file://, http(s)://, s3://"),
    ],
)
def test_bad_locations_are_refused_naming_the_setting(location: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_for(0, location)
    assert str(raised.value).startswith(f"SHAZBOT_MASTER_LIST {problem}")


# -- redis: tombstones and expiry ----------------------------------------------------


def test_redis_keeps_offline_records_so_an_old_online_one_cannot_revive(
    redis_server: RedisServer,
) -> None:
    t = master_lists(settings_for(0, redis_server.url))
    now = now_ms()
    t.publish(ServerList(offline=(GossipServer(member(5), False, now),)))
    t.publish(ServerList(online=(GossipServer(member(5), False, now - 1),)))
    stored = t.read()
    assert [s.base_url for s in stored.offline] == [member(5)] and not stored.online
    import redis

    client = redis.Redis.from_url(redis_server.url)
    ttl = client.pttl("clustershazbot:members")
    client.close()
    assert 0 < ttl <= 86_400_000  # an abandoned cluster's key goes away by itself


#: Values a Redis field may hold that no node of ours wrote (a hand edit, another program,
#: an older version), each planted under the field of a member.
MALFORMED_REDIS = {
    "not JSON": b"{not json",
    "not UTF-8": b"\xff\xfe",
    "a JSON array": b"[1, 2]",
    "a JSON number": b"17",
    "JSON null": b"null",
    "a record without monitor": b'{"baseUrl": "http://127.0.3.10:9/", "lastUpdate": 1}',
    "online not a boolean": (
        b'{"baseUrl": "http://127.0.3.10:9/", "monitor": false, "lastUpdate": 1, "online": 1}'
    ),
    "lastUpdate a string": (
        b'{"baseUrl": "http://127.0.3.10:9/", "monitor": false, "lastUpdate": "1", "online": true}'
    ),
    "lastUpdate a float": (
        b'{"baseUrl": "http://127.0.3.10:9/", "monitor": false, "lastUpdate": NOW.0, '
        b'"online": true}'
    ),
    "another member's record": (
        b'{"baseUrl": "http://127.0.3.11:9/", "monitor": false, "lastUpdate": NOW, "online": true}'
    ),
}


@pytest.mark.parametrize("value", MALFORMED_REDIS.values(), ids=MALFORMED_REDIS.keys())
def test_redis_a_malformed_field_never_fails_a_publish_and_is_dropped(
    value: bytes,
    redis_server: RedisServer,
    make_node: Callable[..., Node],
    config: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 24: the publish script failed on one such field, on every node, after writing
    part of its records and before the sweep and the PEXPIRE; the key of a live cluster
    then expired with the retention (30 s here)."""
    import redis

    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    client = redis.Redis.from_url(redis_server.url)
    key = "clustershazbot:members"
    client.hset(key, member(9), value.replace(b"NOW", str(now_ms()).encode()))
    client.pexpire(key, 30_000)
    base = {**config, "SHAZBOT_MASTER_LIST": redis_server.url, "SHAZBOT_RETENTION": 30}
    nodes = [make_node(base=base) for _ in range(3)]
    urls = {n.base_url for n in nodes}
    wait_until(
        lambda: {f.decode() for f in client.hkeys(key)} == urls,  # type: ignore[union-attr]
        timeout=30,
        what="the malformed field dropped and the three nodes listed",
    )
    synced = {n.base_url: n.engine.last_master_sync for n in nodes}
    wait_until(
        lambda: all(n.engine.last_master_sync != synced[n.base_url] for n in nodes),
        timeout=30,
        what="one more announcement of each node",
    )
    assert [n.engine.stats.master_list_failures for n in nodes] == [0, 0, 0]
    assert 0 < client.pttl(key) <= 30_000  # the key lives as long as announcements go on
    assert "dropped 1 unusable record(s)" in caplog.text
    client.close()


def redis_output_bytes(client: Any) -> int:
    """Bytes redis-server has sent to its clients so far (its own count, INFO stats)."""
    return int(client.info("stats")["total_net_output_bytes"])


@pytest.mark.parametrize("where", ["value", "name"])
def test_redis_an_oversized_field_is_never_read_and_is_deleted(
    where: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 24: a 30 MiB field was read whole by every read (+60 MiB of RSS)."""
    import redis

    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    client = redis.Redis.from_url(redis_server.url)
    key = "clustershazbot:members"
    huge = 30 << 20
    padded = {"baseUrl": member(9), "monitor": False, "lastUpdate": now_ms(), "online": True}
    if where == "value":
        client.hset(key, member(9), json.dumps({**padded, "pad": "x" * huge}))
    else:
        client.hset(key, member(9) + "x" * huge, json.dumps(padded))
    t = master_lists(settings_for(0, redis_server.url))
    t.publish(ServerList(online=(GossipServer(member(0), False, now_ms()),)))
    assert client.hkeys(key) == [member(0).encode()]  # the publish deleted it unread
    if where == "value":
        client.hset(key, member(9), json.dumps({**padded, "pad": "x" * huge}))
    else:
        client.hset(key, member(9) + "x" * huge, json.dumps(padded))
    sent = redis_output_bytes(client)
    assert listed(t) == {member(0)}
    assert redis_output_bytes(client) - sent < 64 * 1024  # the record, not the 30 MiB
    assert "skipped 1 unusable record(s)" in caplog.text
    t.close()
    client.close()


def test_redis_a_hash_larger_than_the_body_limit_is_refused_unread(
    redis_server: RedisServer,
) -> None:
    """As a file, HTTP or S3 list larger than ``SHAZBOT_MAX_BODY_BYTES`` is: TooLarge."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    key = "clustershazbot:members"
    stamp = now_ms()
    for i in range(2000):  # about 170 KB of records
        url = f"http://127.0.{10 + i // 250}.{1 + i % 250}:9/"
        record = {"baseUrl": url, "monitor": False, "lastUpdate": stamp, "online": True}
        client.hset(key, url, json.dumps(record))
    t = master_lists(settings_for(0, redis_server.url, max_body_bytes=64 * 1024))
    sent = redis_output_bytes(client)
    with pytest.raises(TooLarge) as raised:
        t.read()
    assert redis_output_bytes(client) - sent < 16 * 1024
    assert (
        str(raised.value) == f"SHAZBOT_MASTER_LIST {redis_server.url} is larger than the body limit"
    )
    t.close()
    client.close()


def test_redis_a_record_beyond_the_clock_guard_is_replaced_and_swept(
    redis_server: RedisServer,
) -> None:
    """Issue 24: a record stamped a day ahead was never replaced nor swept; the file, HTTP
    and S3 lists drop such records when they write (the merge ignores them anyway)."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    key = "clustershazbot:members"
    ahead = now_ms() + 86_400_000
    for i in (1, 2):
        record = {"baseUrl": member(i), "monitor": True, "lastUpdate": ahead, "online": False}
        client.hset(key, member(i), json.dumps(record))
    t = master_lists(settings_for(0, redis_server.url))
    assert t.read() == ServerList()  # ignored on reads, as before
    now = now_ms()
    t.publish(ServerList(online=(GossipServer(member(1), False, now),)))
    assert client.hkeys(key) == [member(1).encode()]  # member(2)'s swept
    assert t.read() == ServerList(online=(GossipServer(member(1), False, now),))
    t.close()
    client.close()


# -- dns: read-only discovery ------------------------------------------------------


def test_dns_lists_the_addresses_as_base_urls() -> None:
    dns = DnsServer({"nodes.cluster.test": ["127.0.4.1", "127.0.4.2", "::1"]})
    try:
        url = f"dns://nodes.cluster.test:8080?scheme=https&path=/app/&resolver={dns.resolver}"
        t = master_lists(settings_for(0, url))
        before = now_ms()
        stored = t.read()
        assert {(s.base_url, s.monitor) for s in stored.online} == {
            ("https://127.0.4.1:8080/app/", False),
            ("https://127.0.4.2:8080/app/", False),
            ("https://[::1]:8080/app/", False),
        }
        # hints: as old as a node still accepts (the retention, 24 h, less a minute)
        oldest = before - 86_400_000
        assert all(oldest < s.last_update <= oldest + 61_000 + 5_000 for s in stored.online)
        t.publish(stored)  # announcing is a no-op, not an error
        with pytest.raises(ShazbotError) as raised:
            master_lists(settings_for(0, url.replace("nodes.", "typo."))).read()
        assert str(raised.value).startswith("SHAZBOT_MASTER_LIST dns://typo.cluster.test:8080")
    finally:
        dns.stop()


def test_dns_without_a_resolver_uses_the_system_one() -> None:
    t = master_lists(settings_for(0, "dns://localhost:7000"))
    urls = {s.base_url for s in t.read().online}
    assert "http://127.0.0.1:7000/" in urls


# -- real clusters bootstrapping from each backend ----------------------------------


def converged(nodes: list[Node]) -> bool:
    urls = {n.base_url for n in nodes}
    return all({u for u, on in n.view().items() if on} == urls for n in nodes)


@pytest.mark.parametrize("backend", ["http-etag", "s3", "redis"])
def test_nodes_converge_through_each_backend(
    backend: str, make_node: Callable[..., Node], config: dict[str, Any], request: Any
) -> None:
    if backend == "http-etag":
        server = MasterListServer(etags=True)
        request.addfinalizer(server.stop)
        base = {
            **config,
            "SHAZBOT_MASTER_LIST": server.url,
            "SHAZBOT_MASTER_LIST_UPDATE": server.url,
            "SHAZBOT_MASTER_LIST_UPDATE_AUTH": MASTER_AUTH,
        }
    elif backend == "s3":
        base = {**config, "SHAZBOT_MASTER_LIST": request.getfixturevalue("s3_url")}
    else:
        base = {**config, "SHAZBOT_MASTER_LIST": request.getfixturevalue("redis_server").url}
    nodes = [make_node(base=base) for _ in range(3)]
    wait_until(lambda: converged(nodes), timeout=30, what=f"three nodes converge via {backend}")
    probe = master_lists(load_settings(options={**base, "SHAZBOT_BASE_URL": member(0)}))
    wait_until(
        lambda: listed(probe) == {n.base_url for n in nodes},
        timeout=30,
        what=f"all three listed in {backend}",
    )
    probe.close()


def test_nodes_converge_through_dns_discovery(config: dict[str, Any]) -> None:
    hosts = ["127.0.5.1", "127.0.5.2", "127.0.5.3"]
    port = free_port(hosts[0])  # nothing else binds 127.0.5.2 and .3: free there too
    dns = DnsServer({"nodes.cluster.test": hosts})
    nodes: list[Node] = []
    base = {
        **config,
        "SHAZBOT_MASTER_LIST": f"dns://nodes.cluster.test:{port}?resolver={dns.resolver}",
    }
    try:
        for host in hosts:
            nodes.append(Node(base, port=port, host=host))
        assert {n.base_url for n in nodes} == {f"http://{h}:{port}/" for h in hosts}
        wait_until(lambda: converged(nodes), timeout=30, what="three nodes found by DNS converge")
    finally:
        for n in nodes:
            n.stop()
        dns.stop()


def test_a_bad_stored_record_is_skipped_on_read_and_dropped_by_the_next_update(
    make_node: Callable[..., Node], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One unusable entry (an older writer's, a hand edit) is skipped when the list is read,
    as an invalid record of a message is; the next announcement writes the list back
    without that entry, keeping the others, so one bad record stays for no longer."""
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    master = tmp_path / "master.json"
    good = {
        "baseUrl": "http://127.0.3.7:9/",
        "monitor": False,
        "lastUpdate": int(time.time() * 1000),
    }
    bad = {
        "baseUrl": "http://node1..example.com/",
        "monitor": False,
        "lastUpdate": good["lastUpdate"],
    }
    master.write_text(json.dumps({"online": [good, bad]}))
    node = make_node(SHAZBOT_MASTER_LIST=str(master))
    wait_until(lambda: node.base_url in master.read_text(), what="the node's announcement")
    stored = {s["baseUrl"] for s in json.loads(master.read_text())["online"]}
    assert stored == {good["baseUrl"], node.base_url}
    assert "dropping 1 unusable record(s)" in caplog.text
