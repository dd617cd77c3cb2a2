"""Request handling of the three endpoints, lifecycle and signals, through app.test_client().

In process on purpose: this is about what each request gets and changes, not about
networking (tests/test_cluster.py runs real servers). Background activity is kept
out of the way with hour-long intervals, and where states are compared before and
after a request, the engine's wall clock is frozen so that only requests change state.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from flask import Flask, current_app, has_app_context, request
from werkzeug.test import TestResponse

from cluster import CONTROL, SECRET, wait_until
from flask_clustershazbot import (
    ClusterShazbot,
    ConfigError,
    GossipServer,
    ServerList,
    peer_joined,
    peer_left,
)
from flask_clustershazbot.engine import Engine, wall_clock_ms
from flask_clustershazbot.scheduling import BackgroundJobs

GOSSIP = "/clustershazbot/gossip"
LIST = "/clustershazbot/list"
CONTROL_PATH = "/clustershazbot/control"
ME = "http://127.0.0.1:1/"
# Peers nobody listens on: the only traffic they cause is a refused loopback connection.
P1, P2, P3 = "http://127.0.0.1:9/", "http://127.0.0.1:11/", "http://127.0.0.1:13/"
# Served by the test client, not at their base URL: no self-check.
QUIET = {
    "SHAZBOT_GOSSIP_INTERVAL": 3600,
    "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 3600,
    "SHAZBOT_SELF_CHECK": False,
}


@pytest.fixture(params=[True, False], ids=["fast-gossip", "flask-route"])
def make_app(
    config: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[Callable[..., Flask]]:
    """``make_app(**config)``: a Flask app with ClusterShazbot; engines are shut down at
    teardown. Every test runs twice: gossip answered before Flask's dispatch (the
    default) and by the Flask route (``SHAZBOT_FAST_GOSSIP=False``)."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = Flask(f"endpoints{len(apps)}")
        app.config.update({**config, **QUIET, "SHAZBOT_FAST_GOSSIP": request.param, **overrides})
        apps.append(app)
        ClusterShazbot(app)
        return app

    yield make
    for app in apps:
        engine = app.extensions.get("clustershazbot")
        if engine is not None:
            engine.shutdown()


def engine_of(app: Flask) -> Engine:
    return app.extensions["clustershazbot"]  # type: ignore[no-any-return]


def frozen(app: Flask) -> Engine:
    """Freeze the engine's wall clock (before start), so heartbeats change nothing."""
    engine = engine_of(app)
    now = wall_clock_ms()
    engine.clock = lambda: now
    return engine


def started(make_app: Callable[..., Flask], **overrides: Any) -> tuple[Flask, Engine]:
    app = make_app(SHAZBOT_AUTOSTART=False, **overrides)
    engine = frozen(app)
    engine.start()
    wait_until(lambda: engine.last_master_sync is not None, 10, "bootstrap")
    return app, engine


def record(url: str, stamp: int, monitor: bool = False) -> dict[str, Any]:
    return {"baseUrl": url, "monitor": monitor, "lastUpdate": stamp}


def gossip_body(
    online: Sequence[dict[str, Any]] = (), offline: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    return {"message": "gossip", "online": list(online), "offline": list(offline)}


def post(
    app: Flask,
    path: str,
    body: Any,
    auth: str | None = SECRET,
    raw: bytes | None = None,
    **headers: str,
) -> TestResponse:
    if auth is not None:
        headers["Authorization"] = auth
    data = raw if raw is not None else json.dumps(body).encode()
    return app.test_client().post(
        path, data=data, headers={"Content-Type": "application/json", **headers}
    )


def error_of(response: TestResponse, status: int) -> str:
    """Every error is JSON {"error": "<message>"}, never HTML."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    data = response.get_json()
    assert set(data) == {"error"} and isinstance(data["error"], str) and data["error"]
    return data["error"]


def snapshot(engine: Engine) -> tuple[Any, ...]:
    servers = engine.server_list(include_offline=True)
    return servers.online, servers.offline, engine.table.transact(lambda m: m.control_online)


# -- 503 before start ------------------------------------------------------------


def test_every_endpoint_answers_503_before_start(make_app: Callable[..., Flask]) -> None:
    app = make_app(SHAZBOT_AUTOSTART=False)
    client = app.test_client()
    error_of(client.get(LIST), 503)
    error_of(client.get(LIST, headers={"Authorization": CONTROL}), 503)
    error_of(post(app, GOSSIP, gossip_body()), 503)
    error_of(post(app, CONTROL_PATH, {"message": "control", "online": True}, auth=CONTROL), 503)
    assert engine_of(app).server_list().online == ()


def test_503_again_after_shutdown(make_app: Callable[..., Flask]) -> None:
    app, engine = started(make_app)
    assert app.test_client().get(LIST).status_code == 200
    engine.shutdown()
    assert "not started" in error_of(app.test_client().get(LIST), 503)
    error_of(post(app, GOSSIP, gossip_body()), 503)


# -- 401 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, "", "wrong", SECRET + "x", SECRET[:-1], CONTROL, "Bearer wrong", "Basic " + SECRET],
)
def test_gossip_with_a_wrong_or_missing_secret_is_401(
    make_app: Callable[..., Flask], auth: str | None
) -> None:
    app, engine = started(make_app)
    before = snapshot(engine)
    text = error_of(post(app, GOSSIP, gossip_body([record(P1, engine.clock())]), auth=auth), 401)
    assert SECRET not in text and CONTROL not in text
    assert snapshot(engine) == before


@pytest.mark.parametrize("auth", [None, "wrong", SECRET, "Bearer " + SECRET])
def test_control_with_a_wrong_or_missing_secret_is_401(
    make_app: Callable[..., Flask], auth: str | None
) -> None:
    app, engine = started(make_app)
    before = snapshot(engine)
    text = error_of(
        post(app, CONTROL_PATH, {"message": "control", "online": False}, auth=auth), 401
    )
    assert SECRET not in text and CONTROL not in text
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "auth", [SECRET, "Bearer " + SECRET, "bearer " + SECRET, f"  Bearer   {SECRET} "]
)
def test_gossip_secret_is_accepted_bare_or_as_bearer(
    make_app: Callable[..., Flask], auth: str
) -> None:
    app, engine = started(make_app)
    now = engine.clock()
    response = post(app, GOSSIP, gossip_body([record(P1, now - 5)]), auth=auth)
    assert response.status_code == 200
    reply = response.get_json()
    assert reply["message"] == "gossip"
    assert record(P1, now - 5) in reply["online"]
    assert any(s["baseUrl"] == ME for s in reply["online"])


@pytest.mark.parametrize("auth", [CONTROL, "Bearer " + CONTROL])
def test_control_secret_is_accepted_bare_or_as_bearer(
    make_app: Callable[..., Flask], auth: str
) -> None:
    app, engine = started(make_app)
    response = post(app, CONTROL_PATH, {"message": "control", "online": False}, auth=auth)
    assert response.status_code == 200 and response.get_json() == {"success": True}
    assert [s.base_url for s in engine.server_list(include_offline=True).offline] == [ME]


# -- 400 -------------------------------------------------------------------------

BAD_GOSSIP = [
    (b"{", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "JSON object"),
    (b'"gossip"', "JSON object"),
    (b'{"online": []}', "'message' must be 'gossip'"),
    (b'{"message": "control", "online": []}', "'message' must be 'gossip'"),
    (b'{"message": "gossip"}', "missing 'online'"),
    (b'{"message": "gossip", "online": {}}', "online must be a list"),
    (b'{"message": "gossip", "online": [], "offline": 5}', "offline must be a list"),
]


@pytest.mark.parametrize(("raw", "why"), BAD_GOSSIP)
def test_malformed_gossip_is_400_and_says_why(
    make_app: Callable[..., Flask], raw: bytes, why: str
) -> None:
    app, engine = started(make_app)
    before = snapshot(engine)
    assert why in error_of(post(app, GOSSIP, None, raw=raw), 400)
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "bad",
    [
        {"baseUrl": P3, "monitor": False, "lastUpdate": -1},
        {"baseUrl": "http://127.0.0.1:9/?tenant=a", "monitor": False, "lastUpdate": 5},
        {"baseUrl": "ftp://127.0.0.1:9/", "monitor": True, "lastUpdate": 5},
        {"baseUrl": P3, "monitor": 1, "lastUpdate": 5},
        "http://127.0.0.1:9/",
    ],
)
def test_one_bad_record_is_skipped_and_the_rest_merged(
    make_app: Callable[..., Flask], bad: Any
) -> None:
    """One record this version refuses (the original's nodes keep any string) must not fail
    the exchange, which would split a mixed cluster: it is skipped and counted, never
    stored or forwarded, and the rest of the message merges."""
    app, engine = started(make_app)
    now = engine.clock()
    body = gossip_body([record(P1, now), bad], offline=[bad, record(P2, now)])
    response = post(app, GOSSIP, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    reply = response.get_json()
    sent = [r["baseUrl"] for key in ("online", "offline") for r in reply[key]]
    assert P1 in sent and P2 in sent and len(sent) == 3  # and ourselves; the bad one never
    view = engine.server_list(include_offline=True)
    assert [s.base_url for s in view.online if s.base_url != ME] == [P1]
    assert [s.base_url for s in view.offline] == [P2]
    assert engine.stats.snapshot()["records_refused"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {"message": "control", "online": "false"},
        {"message": "control", "online": 0},
        {"message": "control"},
        {"message": "gossip", "online": False},
        [],
        "off",
    ],
)
def test_malformed_control_is_400(make_app: Callable[..., Flask], body: Any) -> None:
    app, engine = started(make_app)
    before = snapshot(engine)
    error_of(post(app, CONTROL_PATH, body, auth=CONTROL), 400)
    assert snapshot(engine) == before


# -- 413 and gzip ----------------------------------------------------------------

LIMIT = 1024


def padded(size: int, engine: Engine) -> bytes:
    """A valid gossip body of exactly ``size`` bytes naming P1 online."""
    body = gossip_body([record(P1, engine.clock() - 5)])
    body["padding"] = ""
    base = len(json.dumps(body).encode())
    body["padding"] = "x" * (size - base)
    data = json.dumps(body).encode()
    assert len(data) == size
    return data


def test_a_body_at_the_limit_is_accepted(make_app: Callable[..., Flask]) -> None:
    app, engine = started(make_app, SHAZBOT_MAX_BODY_BYTES=LIMIT)
    assert post(app, GOSSIP, None, raw=padded(LIMIT, engine)).status_code == 200
    assert P1 in {s.base_url for s in engine.server_list().online}


def test_a_body_over_the_limit_is_413(make_app: Callable[..., Flask]) -> None:
    app, engine = started(make_app, SHAZBOT_MAX_BODY_BYTES=LIMIT)
    before = snapshot(engine)
    assert str(LIMIT) in error_of(post(app, GOSSIP, None, raw=padded(LIMIT + 1, engine)), 413)
    big_control = json.dumps({"message": "control", "online": False, "pad": "x" * LIMIT}).encode()
    error_of(post(app, CONTROL_PATH, None, auth=CONTROL, raw=big_control), 413)
    assert snapshot(engine) == before


def test_a_body_without_length_over_the_limit_is_413(make_app: Callable[..., Flask]) -> None:
    """A chunked body declares no length; it is cut at the limit all the same."""
    app, engine = started(make_app, SHAZBOT_MAX_BODY_BYTES=LIMIT)
    before = snapshot(engine)
    response = app.test_client().post(
        GOSSIP,
        input_stream=io.BytesIO(padded(LIMIT * 4, engine)),
        headers={
            "Authorization": SECRET,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},  # as a WSGI server that de-chunks says
    )
    assert response.request.content_length is None
    error_of(response, 413)
    assert snapshot(engine) == before


def test_a_body_shorter_than_its_content_length_is_400(make_app: Callable[..., Flask]) -> None:
    """The client hung up mid-body: even when what came is valid JSON, nothing of it is used."""
    app, engine = started(make_app)
    before = snapshot(engine)
    raw = json.dumps(gossip_body([record(P1, engine.clock())])).encode()
    response = app.test_client().post(
        GOSSIP,
        data=raw,
        headers={"Authorization": SECRET},
        environ_overrides={"CONTENT_LENGTH": str(2 * len(raw))},
    )
    assert "Content-Length" in error_of(response, 400)
    assert snapshot(engine) == before


def test_a_gzip_body_is_accepted(make_app: Callable[..., Flask]) -> None:
    app, engine = started(make_app, SHAZBOT_MAX_BODY_BYTES=LIMIT)
    raw = gzip.compress(padded(LIMIT, engine))
    response = post(app, GOSSIP, None, raw=raw, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert P1 in {s.base_url for s in engine.server_list().online}


def test_a_gzip_body_that_inflates_past_the_limit_is_413(make_app: Callable[..., Flask]) -> None:
    app, engine = started(make_app, SHAZBOT_MAX_BODY_BYTES=LIMIT)
    before = snapshot(engine)
    bomb = gzip.compress(padded(LIMIT * 100, engine))
    assert len(bomb) < LIMIT  # small on the wire, large inflated
    assert "decompression" in error_of(
        post(app, GOSSIP, None, raw=bomb, **{"Content-Encoding": "gzip"}), 413
    )
    assert snapshot(engine) == before


def test_a_body_that_is_not_gzip_is_400(make_app: Callable[..., Flask]) -> None:
    app, engine = started(make_app)
    before = snapshot(engine)
    raw = json.dumps(gossip_body([record(P1, engine.clock())])).encode()
    assert "gzip" in error_of(post(app, GOSSIP, None, raw=raw, **{"Content-Encoding": "gzip"}), 400)
    assert snapshot(engine) == before


# -- list ------------------------------------------------------------------------


def test_list_shows_offline_members_only_with_the_control_secret(
    make_app: Callable[..., Flask],
) -> None:
    app, engine = started(make_app)
    now = engine.clock()
    assert (
        post(app, GOSSIP, gossip_body([record(P1, now - 5)], [record(P2, now - 5)])).status_code
        == 200
    )
    client = app.test_client()
    for headers in ({}, {"Authorization": "wrong"}, {"Authorization": SECRET}):
        data = client.get(LIST, headers=headers).get_json()
        assert set(data) == {"online"}
        assert {s["baseUrl"] for s in data["online"]} == {ME, P1}
    for auth in (CONTROL, "Bearer " + CONTROL):
        data = client.get(LIST, headers={"Authorization": auth}).get_json()
        assert {s["baseUrl"] for s in data["online"]} == {ME, P1}
        assert data["offline"] == [record(P2, now - 5)]


# -- control ---------------------------------------------------------------------


def control(app: Flask, online: bool) -> None:
    response = post(app, CONTROL_PATH, {"message": "control", "online": online}, auth=CONTROL)
    assert response.status_code == 200 and response.get_json() == {"success": True}


def own(engine: Engine) -> tuple[bool, int]:
    servers = engine.server_list(include_offline=True)
    for online, found in ((True, servers.online), (False, servers.offline)):
        for server in found:
            if server.base_url == ME:
                return online, server.last_update
    raise AssertionError("this node is missing from its own list")


def test_control_offline_is_sticky_until_online_again(make_app: Callable[..., Flask]) -> None:
    app = make_app()  # real clock: heartbeats really try to advance
    engine = engine_of(app)
    control(app, False)
    offline_at = own(engine)[1]
    assert ME not in {s["baseUrl"] for s in app.test_client().get(LIST).get_json()["online"]}
    # gossip requests (each a heartbeat), a peer's newer "online" rumour and a round
    assert post(app, GOSSIP, gossip_body()).status_code == 200
    rumour = gossip_body([record(ME, wall_clock_ms() + 1000)])
    assert post(app, GOSSIP, rumour).status_code == 200
    engine.gossip_round()
    control(app, False)  # saying it twice changes nothing
    online, stamp = own(engine)
    assert online is False and stamp > offline_at  # the rumour was outbid, not believed
    control(app, True)
    online, back_at = own(engine)
    assert online is True and back_at > stamp
    assert ME in {s["baseUrl"] for s in app.test_client().get(LIST).get_json()["online"]}


# -- lifecycle -------------------------------------------------------------------


class CountingJobs(BackgroundJobs):
    """The real scheduler, recording what is scheduled and which schedulers were started."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled: list[str] = []
        self.schedulers: list[Any] = []

    def start(self) -> None:
        super().start()
        if self._scheduler not in self.schedulers:
            self.schedulers.append(self._scheduler)

    def after(self, delay: float, fn: Callable[[], Any]) -> None:
        self.scheduled.append(getattr(fn, "__name__", "?"))
        super().after(delay, fn)


def test_registering_twice_raises_and_keeps_the_first(make_app: Callable[..., Flask]) -> None:
    app = make_app(SHAZBOT_AUTOSTART=False)
    engine = engine_of(app)
    with pytest.raises(ConfigError, match="already registered"):
        ClusterShazbot(app)
    shazbot = ClusterShazbot()
    with pytest.raises(ConfigError, match="already registered"):
        shazbot.init_app(app)
    assert engine_of(app) is engine


def test_start_and_shutdown_twice_and_shutdown_without_start_are_no_ops(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(SHAZBOT_AUTOSTART=False)
    engine = engine_of(app)
    jobs = CountingJobs()
    engine.scheduler = jobs
    engine.shutdown()  # never started
    engine.shutdown()
    assert jobs.schedulers == [] and not engine.started
    engine.start()
    engine.start()
    # Each job of a start once (the bootstrap, already running, may schedule its own).
    started = {"_announcement_job", "run", "bootstrap"}
    assert sorted(name for name in jobs.scheduled if name in started) == sorted(started)
    assert len(jobs.schedulers) == 1
    engine.shutdown()
    engine.shutdown()
    assert not jobs.schedulers[0].running
    assert own(engine)[0] is False
    engine.start()  # and it can start again
    assert own(engine)[0] is True and len(jobs.schedulers) == 2


def test_extension_methods_find_the_only_app_they_were_given(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(SHAZBOT_AUTOSTART=False)
    shazbot = ClusterShazbot()
    other = Flask("second")
    other.config.update(app.config)  # the effective values of the first app
    shazbot.init_app(other)
    try:
        shazbot.start()
        assert engine_of(other).started and not engine_of(app).started
        assert [s.base_url for s in shazbot.server_list().online] == [ME]
    finally:
        shazbot.shutdown()
    assert not engine_of(other).started


def test_health_shapes(make_app: Callable[..., Flask]) -> None:
    app = make_app(SHAZBOT_AUTOSTART=False)
    shazbot = ClusterShazbot()
    other = Flask("health")
    other.config.update({**app.config, "SHAZBOT_AUTOSTART": False})
    shazbot.init_app(other)
    engine = engine_of(other)
    try:
        health = shazbot.health()
        assert health["status"] == "error" and "not started" in health["error"]
        assert set(health) == {"status", "error"}
        shazbot.start()
        health = shazbot.health()
        assert health["status"] == "ok" and set(health) == {"status", "cluster"}
        assert set(health["cluster"]) == {"online", "offline"}
        assert [s["baseUrl"] for s in health["cluster"]["online"]] == [ME]
        assert json.loads(json.dumps(health)) == health
    finally:
        shazbot.shutdown()
    assert shazbot.health()["status"] == "error"
    assert not engine.started


# -- signals ---------------------------------------------------------------------


def test_signals_fire_once_per_transition_with_the_app_and_the_server(
    make_app: Callable[..., Flask],
) -> None:
    app, engine = started(make_app)
    now = engine.clock()
    events: list[tuple[str, Any, GossipServer]] = []

    def joined(sender: Any, server: GossipServer) -> None:
        events.append(("joined", sender, server))

    def left(sender: Any, server: GossipServer) -> None:
        events.append(("left", sender, server))

    with peer_joined.connected_to(joined, sender=app), peer_left.connected_to(left, sender=app):
        post(app, GOSSIP, gossip_body([record(P1, now - 10)]))
        post(app, GOSSIP, gossip_body([record(P1, now - 10)]))  # the same news
        post(app, GOSSIP, gossip_body([record(P1, now - 9)]))  # a heartbeat of P1
        post(app, GOSSIP, gossip_body([record(ME, now)], [record(ME, now)]))  # about this node
        post(app, GOSSIP, gossip_body([], [record(P1, now - 8)]))
        post(app, GOSSIP, gossip_body([record(P1, now - 8)]))  # stale: does not revive
        control(app, False)
        control(app, True)
    assert events == [
        ("joined", app, GossipServer(P1, False, now - 10)),
        ("left", app, GossipServer(P1, False, now - 8)),
    ]
    assert all(type(server) is GossipServer for _, _, server in events)


def test_signals_of_another_app_are_not_received(make_app: Callable[..., Flask]) -> None:
    app, engine = started(make_app)
    other = Flask("other")
    seen: list[GossipServer] = []

    def joined(sender: Any, server: GossipServer) -> None:
        seen.append(server)

    with peer_joined.connected_to(joined, sender=other):
        post(app, GOSSIP, gossip_body([record(P1, engine.clock())]))
    assert seen == []


def test_a_receiver_may_read_the_server_list_without_deadlock(
    make_app: Callable[..., Flask],
) -> None:
    """Signals are sent after the state lock is released."""
    app, engine = started(make_app)
    shazbot = ClusterShazbot()  # an object that only reads
    seen: list[set[str]] = []

    def joined(sender: Flask, server: GossipServer) -> None:
        seen.append({s.base_url for s in sender.extensions["clustershazbot"].server_list().online})
        seen.append({s.base_url for s in shazbot.server_list(app=sender).online})

    results: list[int] = []
    with peer_joined.connected_to(joined, sender=app):
        worker = threading.Thread(
            target=lambda: results.append(
                post(app, GOSSIP, gossip_body([record(P1, engine.clock())])).status_code
            ),
            daemon=True,
        )
        worker.start()
        worker.join(10)
    assert not worker.is_alive(), "the request deadlocked in a signal receiver"
    assert results == [200]
    assert seen == [{ME, P1}, {ME, P1}]


def test_a_raising_receiver_is_logged_and_others_still_run(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app, engine = started(make_app)
    now = engine.clock()
    seen: list[str] = []

    def broken(sender: Any, server: GossipServer) -> None:
        raise RuntimeError("receiver bug")

    def working(sender: Any, server: GossipServer) -> None:
        seen.append(server.base_url)

    with caplog.at_level(logging.ERROR, "flask_clustershazbot"):
        with (
            peer_joined.connected_to(broken, sender=app),
            peer_joined.connected_to(working, sender=app),
        ):
            response = post(app, GOSSIP, gossip_body([record(P1, now), record(P2, now)]))
    assert response.status_code == 200
    assert sorted(seen) == sorted([P1, P2])
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert [r.getMessage() for r in failures] == ["a peer-joined receiver failed"] * 2
    assert {P1, P2} <= {s.base_url for s in engine.server_list().online}


# -- the fast gossip path (views.FastGossip) -------------------------------------


def test_the_apps_request_hooks_run_for_every_request_but_an_accepted_fast_gossip(
    make_app: Callable[..., Flask],
) -> None:
    """Refusals (a wrong secret, before the body is read; a bad body, after) and other
    routes always go through the app; an accepted gossip only without the fast path."""
    app = make_app(SHAZBOT_AUTOSTART=False)
    hooks: list[str] = []
    app.before_request(lambda: hooks.append("before " + request.path))
    app.after_request(lambda response: hooks.append(f"after {response.status_code}") or response)  # type: ignore[func-returns-value]
    engine = frozen(app)
    engine.start()
    wait_until(lambda: engine.last_master_sync is not None, 10, "bootstrap")
    news = gossip_body([record(P1, engine.clock())])
    assert post(app, GOSSIP, news).status_code == 200
    accepted = [] if engine.settings.fast_gossip else [f"before {GOSSIP}", "after 200"]
    assert hooks == accepted
    hooks.clear()
    error_of(post(app, GOSSIP, news, auth="wrong"), 401)
    error_of(post(app, GOSSIP, None, raw=b"{"), 400)
    assert app.test_client().get(LIST).status_code == 200
    assert hooks == [f"before {GOSSIP}", "after 401", f"before {GOSSIP}", "after 400"] + [
        f"before {LIST}",
        "after 200",
    ]


def others(message: dict[str, Any]) -> dict[str, Any]:
    """A message less this node's own record (its heartbeat counts the node's requests)."""
    return {
        k: [r for r in v if r["baseUrl"] != ME] if isinstance(v, list) else v
        for k, v in message.items()
    }


def test_fast_gossip_answers_as_the_flask_route(make_app: Callable[..., Flask]) -> None:
    """Same status, headers, reply, table and byte counts, plain and gzip either way."""
    now = wall_clock_ms()
    apps = [make_app(SHAZBOT_AUTOSTART=False, SHAZBOT_FAST_GOSSIP=fast) for fast in (True, False)]
    for app in apps:
        engine_of(app).clock = lambda: now
        engine_of(app).start()
        wait_until(lambda app=app: engine_of(app).last_master_sync is not None, 10, "bootstrap")  # type: ignore[misc]
    # Offline members enough for a reply past GZIP_MIN_BYTES (never contacted: offline).
    gone = [record(f"http://127.0.3.{i}:9/", now - 7) for i in range(1, 31)]
    news = json.dumps(gossip_body([record(P1, now - 5)], gone)).encode()
    cases: list[tuple[bytes, dict[str, str], str | None]] = [
        (news, {}, None),
        (news, {"Accept-Encoding": "gzip"}, "gzip"),
        (gzip.compress(news), {"Content-Encoding": "gzip", "Accept-Encoding": "gzip;q=0"}, None),
        (json.dumps(gossip_body()).encode(), {"Accept-Encoding": "br, gzip;q=0.5"}, "gzip"),
    ]
    for raw, headers, encoding in cases:
        answers = []
        for app in apps:
            sent = engine_of(app).stats.snapshot()
            response = post(app, GOSSIP, None, raw=raw, **headers)
            counted = engine_of(app).stats.snapshot()
            body = wire = response.get_data()
            if response.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(wire)
            answers.append(
                (
                    response.status_code,
                    response.mimetype,
                    response.headers.get("Vary"),
                    response.headers.get("Content-Encoding"),
                    response.headers.get("X-Clustershazbot-Instance") == engine_of(app).instance,
                    others(json.loads(body)),
                    # the stats count the bytes on the wire (the reply's size varies with
                    # our own heartbeat, once gzipped)
                    counted["bytes_received"] - sent["bytes_received"] == len(raw),
                    counted["bytes_sent"] - sent["bytes_sent"] == len(wire),
                    others(engine_of(app).server_list().to_dict()),
                )
            )
        assert answers[0] == answers[1], headers
        assert answers[0][0] == 200 and all(answers[0][4:5] + answers[0][6:8])
        assert answers[0][3] == encoding


def test_signal_receivers_run_in_the_apps_context(make_app: Callable[..., Flask]) -> None:
    """Whether a gossip request or a round (a thread with no app context) made the change."""
    app, engine = started(make_app)
    contexts: list[Any] = []

    def joined(sender: Any, server: GossipServer) -> None:
        contexts.append(current_app._get_current_object() if has_app_context() else None)  # type: ignore[attr-defined]

    with peer_joined.connected_to(joined, sender=app):
        post(app, GOSSIP, gossip_body([record(P1, engine.clock())]))
        thread = threading.Thread(
            target=engine.merge, args=(ServerList((GossipServer(P2, False, engine.clock()),)),)
        )
        thread.start()
        thread.join(10)
    assert contexts == [app, app]


def test_invalid_records_are_logged_once_a_minute_per_sender(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app, engine = started(make_app)
    bad = {"baseUrl": "http://127.0.0.1:9/?tenant=a", "monitor": False, "lastUpdate": 5}
    with caplog.at_level(logging.WARNING, logger="flask_clustershazbot"):
        for _ in range(3):
            assert post(app, GOSSIP, gossip_body([bad, bad])).status_code == 200
    lines = [r.getMessage() for r in caplog.records if "invalid record" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "skipped 2 invalid record(s) from a gossip request from" in lines[0]
    assert "online[0].baseUrl must not carry a query or fragment" in lines[0]
    assert engine.stats.snapshot()["records_refused"] == 6
