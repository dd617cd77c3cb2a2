"""TLS between nodes: real gunicorn hosts serving HTTPS with certificates from a throwaway CA.

- Server TLS (``--certfile/--keyfile``; the nodes trust the CA through SHAZBOT_TLS_CA):
  three hosts converge; a node whose certificate comes from another CA is refused.
- Mutual TLS (``--ca-certs --cert-reqs 2``; the nodes present SHAZBOT_TLS_CERT/KEY): three
  hosts converge; a client without a certificate, or with one from another CA, is refused,
  and so is a node with a certificate from another CA; the CLI reaches a node with them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from cluster import CONTROL, SECRET, free_port, gunicorn_command, host_env, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 0.25


class Pki:
    """The cluster's CA and a stranger's, with a certificate for 127.0.0.1 from each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca, self.other = trustme.CA(), trustme.CA()
        self.ca_pem = self._write("ca.pem", self.ca.cert_pem.bytes())
        self.other_ca_pem = self._write("other-ca.pem", self.other.cert_pem.bytes())
        self.cert, self.key = self._leaf(self.ca, "node")
        self.other_cert, self.other_key = self._leaf(self.other, "stranger")

    def _write(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        return str(path)

    def _leaf(self, ca: trustme.CA, name: str) -> tuple[str, str]:
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return self._write(f"{name}.pem", chain), self._write(
            f"{name}.key", leaf.private_key_pem.bytes()
        )


class TlsHost:
    """A gunicorn host of tests/gunicorn_app.py serving HTTPS on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        name: str,
        master_list: Path,
        cert: str,
        key: str,
        trust: str,
        mutual: bool,
        pki: Pki,
        client_cert: bool = True,
    ) -> None:
        self.name, self.pki = name, pki
        self.dir = root / name
        self.dir.mkdir()
        self.port = free_port()
        self.base_url = f"https://127.0.0.1:{self.port}/"
        self.log_path = self.dir / "gunicorn.log"
        self.round_log = self.dir / "rounds.log"
        env = host_env(
            {
                "TMPDIR": str(self.dir),
                "SHAZBOT_SECRET": SECRET,
                "SHAZBOT_CONTROL_SECRET": CONTROL,
                "SHAZBOT_BASE_URL": self.base_url,
                "SHAZBOT_MASTER_LIST": str(master_list),
                "SHAZBOT_GOSSIP_INTERVAL": str(INTERVAL),
                "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": "0.5",
                "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": "1",
                "SHAZBOT_RETRY_DELAY": "0.3",
                "SHAZBOT_RETRIES": "2",
                "SHAZBOT_FAILURE_TIMEOUT": "30",  # offline sooner: a refused exchange, not a timeout
                "SHAZBOT_TLS_CA": trust,
                "TEST_SIGNAL_LOG": str(self.dir / "signals.log"),
                "TEST_ROUND_LOG": str(self.round_log),
            }
        )
        if client_cert:
            env.update(SHAZBOT_TLS_CERT=cert, SHAZBOT_TLS_KEY=key)
        tls = ["--certfile", cert, "--keyfile", key]
        if mutual:
            tls += ["--ca-certs", pki.ca_pem, "--cert-reqs", "2"]  # ssl.CERT_REQUIRED
        command = gunicorn_command(
            self.port, "gunicorn_app:create_app()", "--workers", "1", "--threads", "4", *tls
        )
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, env=env, cwd=self.dir, stdout=self.log, stderr=self.log, start_new_session=True
        )

    def view(self) -> dict[str, bool] | None:
        """{base_url: online} over HTTPS, as a client the cluster trusts."""
        try:
            data = requests.get(
                self.base_url + "clustershazbot/list",
                headers={"Authorization": CONTROL},
                verify=self.pki.ca_pem,
                cert=(self.pki.cert, self.pki.key),
                timeout=5,
            ).json()
        except (requests.RequestException, ValueError):
            return None
        view = {s["baseUrl"]: True for s in data["online"]}
        view.update({s["baseUrl"]: False for s in data["offline"]})
        return view

    def rounds(self) -> int:
        return len(self.round_log.read_text().splitlines()) if self.round_log.exists() else 0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def hosts(tmp_path: Path, pki: Pki) -> Iterator[Callable[..., TlsHost]]:
    started: list[TlsHost] = []

    def start(name: str, master_list: Path, **kw: Any) -> TlsHost:
        kw = {"cert": pki.cert, "key": pki.key, "trust": pki.ca_pem, "mutual": False, **kw}
        started.append(TlsHost(tmp_path, name, master_list, pki=pki, **kw))
        return started[-1]

    yield start
    for host in started:
        host.stop()


def failures_between(cluster: list[TlsHost]) -> list[str]:
    """Failed exchanges between members, from their logs."""
    urls = [h.base_url for h in cluster]
    return [
        line
        for h in cluster
        for line in h.log_text().splitlines()
        if "failed" in line and any(f"with {url}" in line for url in urls)
    ]


def converge(cluster: list[TlsHost]) -> set[str]:
    """Every member lists every member online, and stays so for 8 more rounds of each."""
    everyone = {h.base_url for h in cluster}
    for host in cluster:
        wait_until(
            lambda: host.process.poll() is not None or host.view() is not None,
            timeout=30,
            what=f"host {host.name} serving HTTPS",
        )
        assert host.process.poll() is None, host.log_text()
    wait_until(
        lambda: all(h.view() == dict.fromkeys(everyone, True) for h in cluster),
        timeout=30,
        what="the HTTPS cluster to converge",
    )
    start = [h.rounds() for h in cluster]
    wait_until(
        lambda: all(h.rounds() >= n + 8 for h, n in zip(cluster, start)),
        timeout=30,
        what="8 more rounds on each host",
    )
    assert all(h.view() == dict.fromkeys(everyone, True) for h in cluster)
    assert failures_between(cluster) == []
    return everyone


def test_https_cluster_converges_and_a_node_with_another_cas_certificate_is_refused(
    tmp_path: Path, pki: Pki, hosts: Callable[..., TlsHost]
) -> None:
    master = tmp_path / "master.json"
    cluster = [hosts(name, master) for name in "ABC"]
    everyone = converge(cluster)
    assert all(h.process.poll() is None for h in cluster)

    # A stranger: a certificate from another CA, trusting only that CA, with its own copy of
    # the master list. A holder of the gossip secret plants its record in A.
    stranger_list = tmp_path / "stranger-master.json"
    shutil.copy(master, stranger_list)
    stranger = hosts(
        "D", stranger_list, cert=pki.other_cert, key=pki.other_key, trust=pki.other_ca_pem
    )
    wait_until(lambda: stranger.rounds() >= 4, timeout=30, what="the stranger's rounds")
    planted = {
        "message": "gossip",
        "offline": [],
        "online": [
            {"baseUrl": stranger.base_url, "monitor": False, "lastUpdate": int(time.time() * 1000)}
        ],
    }
    reply = requests.post(
        cluster[0].base_url + "clustershazbot/gossip",
        json=planted,
        headers={"Authorization": SECRET},
        verify=pki.ca_pem,
        timeout=5,
    )
    assert reply.status_code == 200

    # Every member tries it, fails to verify its certificate, and takes it offline.
    wait_until(
        lambda: all((h.view() or {}).get(stranger.base_url) is False for h in cluster),
        timeout=30,
        what="the stranger offline everywhere",
    )
    assert any("SSLError" in h.log_text() for h in cluster)
    # ...and the stranger, which cannot verify theirs, reaches none of them either.
    wait_until(
        lambda: all(
            not online for url, online in stranger_view(stranger, pki).items() if url in everyone
        ),
        timeout=30,
        what="the members offline for D",
    )
    for host in cluster:
        assert {u for u, on in (host.view() or {}).items() if on} == everyone


def stranger_view(stranger: TlsHost, pki: Pki) -> dict[str, bool]:
    data = requests.get(
        stranger.base_url + "clustershazbot/list",
        verify=pki.other_ca_pem,
        headers={"Authorization": CONTROL},
        timeout=5,
    ).json()
    view = {s["baseUrl"]: True for s in data["online"]}
    view.update({s["baseUrl"]: False for s in data["offline"]})
    return view


def cli(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHAZBOT_TLS_")}
    return subprocess.run(
        [sys.executable, "-m", "flask_clustershazbot.cli", "members", url, "--json"],
        env={**base, "SHAZBOT_CONTROL_SECRET": CONTROL, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_mutual_tls_cluster_converges_and_refuses_clients_without_the_cas_certificate(
    tmp_path: Path, pki: Pki, hosts: Callable[..., TlsHost]
) -> None:
    master = tmp_path / "master.json"
    cluster = [hosts(name, master, mutual=True) for name in "ABC"]
    everyone = converge(cluster)
    url = cluster[0].base_url + "clustershazbot/list"

    with pytest.raises(requests.exceptions.ConnectionError):  # no client certificate
        requests.get(url, verify=pki.ca_pem, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):  # one from another CA
        requests.get(url, verify=pki.ca_pem, cert=(pki.other_cert, pki.other_key), timeout=5)
    assert requests.get(url, verify=pki.ca_pem, cert=(pki.cert, pki.key), timeout=5).ok

    # The CLI takes the same settings as a node.
    tls = {"SHAZBOT_TLS_CA": pki.ca_pem, "SHAZBOT_TLS_CERT": pki.cert, "SHAZBOT_TLS_KEY": pki.key}
    done = cli(cluster[1].base_url, **tls)
    assert done.returncode == 0, done.stderr
    assert {m["baseUrl"] for m in json.loads(done.stdout)["members"]} == everyone
    refused = cli(cluster[1].base_url, SHAZBOT_TLS_CA=pki.ca_pem)
    assert refused.returncode == 3, refused.stderr

    # A node with a certificate from another CA (trusting ours): every push it makes is refused.
    stranger_list = tmp_path / "stranger-master.json"
    shutil.copy(master, stranger_list)
    stranger = hosts("D", stranger_list, cert=pki.other_cert, key=pki.other_key, mutual=True)
    wait_until(lambda: stranger.rounds() >= 12, timeout=30, what="12 rounds of the stranger")
    for host in cluster:
        assert host.view() == dict.fromkeys(everyone, True)
    assert "SSLError" in stranger.log_text() or "ConnectionError" in stranger.log_text()


def test_the_master_list_over_https_verifies_the_ca_and_the_hostname(tmp_path: Path) -> None:
    """A real HTTPS master-list server whose certificate names ``localhost`` only."""
    import threading

    from flask import Flask
    from werkzeug.serving import make_server

    from flask_clustershazbot.config import load_settings
    from flask_clustershazbot.errors import TransportError
    from flask_clustershazbot.masterlist import MasterLists
    from flask_clustershazbot.transport import HttpTransport

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    ca_pem, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    app = Flask("master")
    app.get("/master.json")(
        lambda: {"online": [{"baseUrl": "http://127.0.0.1:9/", "monitor": False, "lastUpdate": 1}]}
    )
    server = make_server("127.0.0.1", 0, app, ssl_context=(str(cert), str(key)))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()

    def read(host: str, **tls: str) -> Any:
        settings = load_settings(
            {},
            {},
            {
                "secret": SECRET,
                "control_secret": CONTROL,
                "base_url": "http://127.0.0.1:1/",
                "master_list": f"https://{host}:{server.port}/master.json",
                "master_list_update": str(tmp_path / "unused.json"),
                "master_list_update_auth": "x",
                **tls,
            },
        )
        transport = HttpTransport(settings)
        try:
            return MasterLists(settings, transport).read()
        finally:
            transport.close()

    try:
        listed = read("localhost", tls_ca=str(ca_pem))
        assert [s.base_url for s in listed.online] == ["http://127.0.0.1:9/"]
        with pytest.raises(TransportError, match="SSLError"):  # the certificate names localhost
            read("127.0.0.1", tls_ca=str(ca_pem))
        with pytest.raises(TransportError, match="SSLError"):  # our CA is not a public one
            read("localhost")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
