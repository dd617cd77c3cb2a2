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

from cluster import SECRET, Node, wait_until

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
