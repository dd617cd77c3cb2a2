"""Errors that say what to do (issue 23), reproduced as a user met them: real nodes on
127.0.0.1, real TLS handshakes, real log lines."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from flask import Flask
from werkzeug.serving import make_server

from cluster import SECRET, Node, Server, free_port, wait_until
from flask_clustershazbot import ClusterShazbot
from flask_clustershazbot.engine import Engine
from flask_clustershazbot.errors import TransportError

OTHER_SECRET = "another-gossip-secret-0123456789"


def warnings(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    """The warnings logged so far that begin with ``start``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.getMessage().startswith(start)
    ]


def test_a_peer_with_another_secret_is_named_once_with_the_setting_to_check(
    make_node: Callable[..., Node], caplog: pytest.LogCaptureFixture
) -> None:
    """It read ``gossip with X failed: gossip with X: HTTP 401``: the peer twice, no hint."""
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    a = make_node()
    b = make_node(SHAZBOT_SECRET=OTHER_SECRET)  # same master list, another secret
    lines = wait_until(
        lambda: warnings(caplog, f"gossip with {b.base_url} failed"), what="a's failed gossip"
    )
    assert lines[0] == (
        f"gossip with {b.base_url} failed: HTTP 401 (the peer refuses this node's "
        "SHAZBOT_SECRET: the two nodes' secrets differ; during a rotation every node accepts "
        "a new secret before any sends it)"
    )
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failed and all(line.count("gossip with") == 1 for line in failed)
    assert SECRET not in caplog.text and OTHER_SECRET not in caplog.text
    assert a.view().get(b.base_url) is not True


class HttpsServer:
    """A real HTTPS server on 127.0.0.1 whose certificate, from ``ca``, names ``host``."""

    def __init__(self, tmp_path: Path, ca: trustme.CA, host: str) -> None:
        leaf = ca.issue_cert(host)
        cert, key = tmp_path / f"{host}-cert.pem", tmp_path / f"{host}-key.pem"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        app = Flask("https")
        self.server = make_server("127.0.0.1", 0, app, ssl_context=(str(cert), str(key)))
        self.base_url = f"https://127.0.0.1:{self.server.port}/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def cas(tmp_path: Path) -> Iterator[tuple[trustme.CA, Path]]:
    """The CA of a peer's certificate, and the file of another CA."""
    ca, other = trustme.CA(), trustme.CA()
    other_pem = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_pem))
    yield ca, other_pem


def list_with(path: Path, base_url: str) -> None:
    record = {"baseUrl": base_url, "monitor": False, "lastUpdate": int(time.time() * 1000)}
    path.write_text(json.dumps({"online": [record]}))


@pytest.mark.parametrize("case", ["another CA", "another host name"])
def test_a_certificate_that_fails_verification_points_to_the_setting(
    case: str,
    cas: tuple[trustme.CA, Path],
    make_node: Callable[..., Node],
    config: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It read ``... failed: gossip with X: SSLError: SSLCertVerificationError``."""
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    ca, other_pem = cas
    peer = HttpsServer(tmp_path, ca, "127.0.0.1" if case == "another CA" else "localhost")
    try:
        ca_pem = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_pem))
        trusted = other_pem if case == "another CA" else ca_pem
        list_with(Path(config["SHAZBOT_MASTER_LIST"]), peer.base_url)
        make_node(SHAZBOT_TLS_CA=str(trusted))
        lines = wait_until(
            lambda: warnings(caplog, f"gossip with {peer.base_url} failed"),
            what="the failed gossip with the HTTPS peer",
        )
        prefix = f"gossip with {peer.base_url} failed: SSLError: SSLCertVerificationError ("
        if case == "another CA":
            assert lines[0] == (
                f"{prefix}unable to get local issuer certificate: the certificate does not chain "
                f"to SHAZBOT_TLS_CA {trusted}; SHAZBOT_TLS_CA names the CA that signed the "
                "cluster's certificates)"
            )
        else:
            assert lines[0] == (
                f"{prefix}IP address mismatch, certificate is not valid for '127.0.0.1': the "
                "certificate must name the host of the URL)"
            )
    finally:
        peer.stop()


# -- the self-check: a base URL that leads elsewhere, a server that binds a moment later --


class Starting:
    """An app as a user writes it, its node started before its server listens (as
    ``flask run`` does: it binds its socket after loading the app), on ``port``."""

    def __init__(self, config: dict[str, Any], port: int, base_url: str) -> None:
        self.port = port
        self.app = Flask(f"starting{port}")
        self.app.config.update(config, SHAZBOT_BASE_URL=base_url, SHAZBOT_AUTOSTART=False)
        self.shazbot = ClusterShazbot(self.app)
        self.engine: Engine = self.app.extensions["clustershazbot"]
        self.refused = 0  # self-checks that found nothing listening
        identify: Callable[[str], str | None] = self.engine.transport.identify

        def counted(url: str) -> str | None:
            try:
                return identify(url)
            except TransportError as exc:
                self.refused += exc.refused
                raise

        self.engine.transport.identify = counted
        self.server: Server | None = None

    def start(self) -> Starting:
        self.shazbot.start(self.app)
        return self

    def serve(self) -> None:
        self.server = Server(self.app, port=self.port).start()

    def stop(self) -> None:
        self.engine.shutdown()
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def starting(config: dict[str, Any]) -> Iterator[Callable[..., Starting]]:
    started: list[Starting] = []

    def make(port: int, base_url: str) -> Starting:
        started.append(Starting(config, port, base_url).start())
        return started[-1]

    yield make
    for app in started:
        app.stop()


def self_check_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in warnings(caplog, "SHAZBOT_BASE_URL") if "does not lead back" in m]


def test_a_server_that_binds_a_moment_after_the_start_is_no_self_check_failure(
    starting: Callable[..., Starting], caplog: pytest.LogCaptureFixture
) -> None:
    """A healthy start whose first check found nothing listening yet counted a failure
    (1 start in 4 under ``flask run``), so an alert on the metric fired on healthy starts."""
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    port = free_port()
    node = starting(port, f"http://127.0.0.1:{port}/")
    wait_until(lambda: node.refused >= 1, what="a self-check that finds nothing listening yet")
    node.serve()
    wait_until(lambda: node.engine.live, what="the node acting as the node")
    assert node.engine.stats.self_check_failures == 0
    assert self_check_warnings(caplog) == []
    assert node.engine.health()["status"] == "ok"


def test_a_base_url_where_nothing_listens_is_reported_at_once(
    starting: Callable[..., Starting], caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong port was silent for 30 s, then one warning: now within the start's grace."""
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    port, wrong = free_port(), free_port()
    node = starting(port, f"http://127.0.0.1:{wrong}/")
    node.serve()  # the server listens on port; the base URL names another one
    lines = wait_until(lambda: self_check_warnings(caplog), timeout=10, what="the warning")
    assert lines == [
        f"SHAZBOT_BASE_URL http://127.0.0.1:{wrong}/ does not lead back to this node "
        f"(http://127.0.0.1:{wrong}/: ConnectionError: ConnectionRefusedError); checking until "
        "30 s after the start, then acting as the node anyway"
    ]
    assert node.engine.stats.self_check_failures >= 1 and not node.engine.live
    health = node.engine.health()
    assert health["status"] == "error" and health["error"].startswith(
        f"starting: SHAZBOT_BASE_URL http://127.0.0.1:{wrong}/ does not lead back"
    )


def test_a_base_url_answered_by_another_server_is_reported_at_the_first_check(
    starting: Callable[..., Starting], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    other = Server(Flask("another-app")).start()  # answers 404: not a clustershazbot node
    try:
        port = free_port()
        node = starting(port, other.url)
        node.serve()
        lines = wait_until(lambda: self_check_warnings(caplog), timeout=10, what="the warning")
        assert lines == [
            f"SHAZBOT_BASE_URL {other.url} does not lead back to this node (the answer is not "
            "from a clustershazbot node); checking until 30 s after the start, then acting "
            "as the node anyway"
        ]
        assert node.engine.stats.self_check_failures >= 1
        assert node.refused == 0
    finally:
        other.stop()
