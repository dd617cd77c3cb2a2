"""Hostile peers and leaked secrets: SHAZBOT_ALLOWED_PEERS, weak-secret warnings, no secret in logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask

from cluster import CONTROL, MASTER_AUTH, SECRET, MakeNode, MasterListServer, wait_until
from flask_clustershazbot import ClusterShazbot
from flask_clustershazbot.config import load_settings
from flask_clustershazbot.errors import ConfigError
from flask_clustershazbot.peers import PeerPolicy, parse_allowed_peers
from proxy import Proxy

KEY = "SHAZBOT_ALLOWED_PEERS"


def policy(value: Any, own: str = "http://10.1.2.3:3000/") -> PeerPolicy:
    return PeerPolicy(parse_allowed_peers(KEY, value), own)


@pytest.mark.parametrize(
    "entry, allowed, refused",
    [
        (
            "10.1.0.0/16",
            ["http://10.1.9.9:80/", "https://10.1.0.1/"],
            [
                "http://10.2.0.1/",
                "http://10.1.0.1.evil.net/",
                "http://2130706433/",
                "http://0x0a010001/",
            ],
        ),
        ("10.1.2.3", ["http://10.1.2.3:3000/", "https://10.1.2.3/"], ["http://10.1.2.4/"]),
        ("fd00::/8", ["http://[fd00::5]:80/"], ["http://[fe80::1]/"]),
        (
            "node1.example.com",
            ["https://NODE1.example.com:8443/", "http://node1.example.com/"],
            ["http://node2.example.com/", "http://node1.example.com.evil.net/"],
        ),
        (
            "*.svc.local",
            ["http://a.svc.local:80/", "http://b.c.svc.local/"],
            ["http://svc.local/", "http://evilsvc.local/"],
        ),
        (
            "https://node.example.com:8443",
            ["https://node.example.com:8443/", "HTTPS://Node.Example.com:8443/x/"],
            [
                "https://node.example.com:8443.evil.net/",
                "http://node.example.com:8443/",
                "https://node.example.com/",
            ],
        ),
    ],
)
def test_allow_list_entries_match_hosts_networks_and_prefixes(
    entry: str, allowed: list[str], refused: list[str]
) -> None:
    p = policy(f"{entry}, 10.1.2.3")
    for url in allowed:
        assert p.allows(url), url
    for url in refused:
        assert not p.allows(url), url


def test_empty_allow_list_allows_every_valid_base_url() -> None:
    assert policy("").allows("http://169.254.169.254/")


@pytest.mark.parametrize("bad", ["ftp://x/", "10.0.0.0/33", "http://u:p@host/", "not a host!", 42])
def test_bad_allow_list_entries_fail_at_start_naming_the_setting(
    config: dict[str, Any], bad: object
) -> None:
    with pytest.raises(ConfigError, match=KEY):
        load_settings({**config, KEY: bad})


def test_own_base_url_must_be_allowed(config: dict[str, Any]) -> None:
    app = Flask("own")
    app.config.update({**config, KEY: "10.0.0.0/8"})
    with pytest.raises(ConfigError, match="own SHAZBOT_BASE_URL"):
        ClusterShazbot(app)


def test_disallowed_records_are_dropped_never_contacted(
    config: dict[str, Any], make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    trap = Proxy()  # a would-be scan target: counts every connection it gets
    try:
        a = make_node(**{KEY: "127.0.0.1/32"})  # only IP literals in 127.0.0.1/32
        b = make_node(**{KEY: "127.0.0.1/32"})
        wait_until(lambda: a.view().get(b.base_url), what="allowed peers still gossip")
        now = a.engine.clock()
        hostile = f"http://localhost:{trap.port}/"  # same socket, but not an allowed host
        message = {
            "message": "gossip",
            "online": [
                {"baseUrl": hostile, "monitor": True, "lastUpdate": now},
                {"baseUrl": trap.url, "monitor": False, "lastUpdate": now - 10_000},  # allowed
            ],
        }
        r = requests.post(
            a.base_url + "clustershazbot/gossip",
            json=message,
            headers={"Authorization": SECRET},
            timeout=5,
        )
        assert r.status_code == 200  # the rest of the message is merged
        assert hostile not in a.view() and hostile not in r.text
        assert a.view().get(trap.url) is not None
        wait_until(
            lambda: a.view().get(trap.url) is False and b.view().get(trap.url) is False,
            what="the allowed dead record is probed and marked offline",
        )
        assert trap.accepted.get("127.0.0.1", 0) > 0  # allowed URLs are contacted ...
        assert hostile not in b.view()  # ... the refused one is neither stored nor forwarded
        assert sum(1 for r in caplog.records if hostile in r.getMessage()) == 1
    finally:
        trap.stop()


def test_weak_secrets_are_warned_about_without_quoting_them(
    config: dict[str, Any], make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_clustershazbot")
    make_node(SHAZBOT_SECRET="short-secret", SHAZBOT_CONTROL_SECRET="short-secret")
    text = "\n".join(r.getMessage() for r in caplog.records if "weak secret" in r.getMessage())
    assert "are equal" in text and "SHAZBOT_SECRET is shorter than 16" in text
    assert "SHAZBOT_CONTROL_SECRET is shorter" in text
    assert "short-secret" not in text
    caplog.clear()
    make_node()  # the test secrets: long and different
    assert not any("weak secret" in r.getMessage() for r in caplog.records)


@pytest.fixture
def all_logs() -> Iterator[list[str]]:
    """Every log line of every logger at DEBUG, formatted with arguments and tracebacks."""
    lines: list[str] = []
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    handler = Collect(logging.DEBUG)
    root = logging.getLogger()
    names = [
        "",
        "flask_clustershazbot",
        "werkzeug",
        "urllib3",
        "requests",
        "apscheduler",
        "flask_clustershazbot.apscheduler",
    ]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield lines
    root.removeHandler(handler)
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)


def test_no_secret_reaches_any_log_during_a_cluster_run(
    http_config: dict[str, Any],
    master_server: MasterListServer,
    make_node: MakeNode,
    all_logs: list[str],
) -> None:
    settings = {
        **http_config,
        "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 0.2,
        "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": 0.3,
    }
    a = make_node(base=settings)
    b = make_node(base=settings)
    wait_until(
        lambda: a.view().get(b.base_url) and master_server.puts > 1, what="a running cluster"
    )
    base = a.base_url + "clustershazbot/"
    # Wrong secrets, close misses, bad bodies, control, a refused master-list upload, a crash.
    for auth in (SECRET[:-1], SECRET + "x", "Bearer " + CONTROL, CONTROL, MASTER_AUTH):
        requests.post(
            base + "gossip",
            json={"message": "gossip", "online": []},
            headers={"Authorization": auth},
            timeout=5,
        )
        requests.post(
            base + "control",
            json={"message": "control", "online": True},
            headers={"Authorization": auth},
            timeout=5,
        )
    requests.post(base + "gossip", data=b"{not json", headers={"Authorization": SECRET}, timeout=5)
    requests.post(
        base + "control",
        json={"message": "control", "online": "no"},
        headers={"Authorization": CONTROL},
        timeout=5,
    )
    requests.get(base + "list", headers={"Authorization": CONTROL}, timeout=5)
    master_server.fail_puts_with = 500
    puts = master_server.rejected_puts
    wait_until(lambda: master_server.rejected_puts > puts, what="a refused upload")
    b.stop(graceful=False)
    wait_until(lambda: a.view().get(b.base_url) is False, what="crash detected")
    with pytest.raises(ConfigError) as bad:
        load_settings({**settings, "SHAZBOT_GOSSIP_INTERVAL": "fast"})
    a.stop()

    text = "\n".join(all_logs) + str(bad.value)
    assert len(all_logs) > 20, "the run was logged"
    assert "master list update failed" in text and "gossip with" in text
    for secret in (SECRET, CONTROL, MASTER_AUTH):
        assert secret not in text
