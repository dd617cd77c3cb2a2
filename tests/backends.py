"""Real master-list servers for tests and benchmarks, all on 127.0.0.1.

redis-server and moto's S3 server run as subprocesses; the DNS server is dnslib's,
in a thread; :class:`ConflictingS3` is a proxy in front of moto's server that refuses
every conditional write. Each ``start`` waits (with a deadline) until the server answers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Any

import requests
from werkzeug.wrappers import Request

from cluster import Server, free_port, wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
#: Credentials moto accepts; boto3 reads them from the environment (its usual chain).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class Subprocess:
    def __init__(self, args: list[str], ready: Any, what: str) -> None:
        # Output goes to a file: a pipe nobody reads fills up (moto logs every request)
        # and blocks the server in its logging lock.
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, text=True)

        def up() -> bool:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise AssertionError(f"{what} exited: {self.log.read()[-2000:]}")
            try:
                return bool(ready())
            except Exception:
                return False

        try:
            wait_until(up, timeout=60, what=f"{what} to answer")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


class RedisServer(Subprocess):
    """A throw-away redis-server: no persistence, loopback only."""

    def __init__(self) -> None:
        import redis

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        super().__init__(args, client.ping, "redis-server")
        client.close()


class S3Server(Subprocess):
    """moto's standalone S3-compatible server (``python -m moto.server``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

        def ready() -> bool:
            return requests.get(self.endpoint + "/", timeout=2).status_code < 500

        super().__init__(args, ready, "moto S3 server")

    @property
    def env(self) -> dict[str, str]:
        """What boto3 needs to find this server (``AWS_ENDPOINT_URL``) and sign requests."""
        return {**S3_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:
        """A boto3 S3 client of this server (the tests' own, not a node's)."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


#: S3's answer when a condition of a write does not hold (another writer changed the object).
PRECONDITION_FAILED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>'
    b"<Message>At least one of the pre-conditions you specified did not hold</Message>"
    b"<Condition>If-Match</Condition></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class ConflictingS3:
    """A proxy in front of ``s3`` that answers every conditional write (``If-Match``,
    ``If-None-Match``) 412 PreconditionFailed, as S3 does when another writer changed the
    object between a node's read and its write: the worst case of a busy list. Anything
    else is forwarded. ``env`` points boto3 at it."""

    def __init__(self, s3: S3Server) -> None:
        self.refused = 0
        lock = threading.Lock()
        upstream = requests.Session()
        upstream.trust_env = False

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            request = Request(environ)
            if request.method == "PUT" and (
                "If-Match" in request.headers or "If-None-Match" in request.headers
            ):
                with lock:
                    self.refused += 1
                start_response("412 Precondition Failed", [("Content-Type", "application/xml")])
                return [PRECONDITION_FAILED]
            reply = upstream.request(
                request.method,
                s3.endpoint + environ["RAW_URI"],
                headers={k: v for k, v in request.headers if k.lower() not in _HOP_BY_HOP},
                data=request.get_data(),
                allow_redirects=False,
                timeout=30,
            )
            headers = [(k, v) for k, v in reply.headers.items() if k.lower() not in _HOP_BY_HOP]
            start_response(f"{reply.status_code} {reply.reason}", headers)
            return [reply.content]

        self.server = Server(app).start()
        self.env = {**s3.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.server.port}"}

    def stop(self) -> None:
        self.server.stop()


class DnsServer:
    """dnslib's DNS server on UDP 127.0.0.1: ``records`` maps names to A/AAAA addresses."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        from dnslib import AAAA, QTYPE, RR, A, DNSLabel
        from dnslib.server import BaseResolver, DNSLogger, DNSServer

        self.records = records

        class Resolver(BaseResolver):  # type: ignore[misc]
            def resolve(self_, request: Any, handler: Any) -> Any:
                reply = request.reply()
                name = str(request.q.qname).rstrip(".")
                for address in records.get(name, []):
                    v6 = ":" in address
                    if request.q.qtype == (QTYPE.AAAA if v6 else QTYPE.A):
                        rdata = AAAA(address) if v6 else A(address)
                        reply.add_answer(RR(DNSLabel(name), request.q.qtype, rdata=rdata, ttl=5))
                if name not in records:
                    reply.header.rcode = 3  # NXDOMAIN
                return reply

        self.port = free_port(kind=socket.SOCK_DGRAM)
        self.server = DNSServer(
            Resolver(),
            address="127.0.0.1",
            port=self.port,
            logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"),
        )
        self.server.start_thread()
        self.resolver = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()
        self.server.server.server_close()


def set_env(env: dict[str, str]) -> dict[str, str | None]:
    """Set variables; return the previous values for :func:`restore_env`."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    return old


def restore_env(old: dict[str, str | None]) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
