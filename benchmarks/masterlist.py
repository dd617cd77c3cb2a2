"""N nodes announcing to one master list at the same moment, per backend: entries lost
and seconds until every announcement returned.

Each node has master lists of its own (its own connections, its own master-list objects)
in a thread of this process; all wait on one barrier, then publish their own record.
Every backend is a real server on 127.0.0.1 (tests/backends.py): a file, the tests' HTTP
master-list server with and without ETags, moto's S3 server, redis-server.
Requests time out after ``--timeout`` s (SHAZBOT_MASTER_LIST_TIMEOUT, default 10).
``python -m benchmarks.masterlist [--nodes 100] [--backends file,http-etag,http,s3,redis]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask_clustershazbot.config import Settings, load_settings
from flask_clustershazbot.masterlist import MasterLists
from flask_clustershazbot.records import GossipServer, ServerList
from flask_clustershazbot.transport import HttpTransport

from .common import CONTROL, SECRET, environment, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from backends import RedisServer, S3Server, restore_env, set_env  # noqa: E402
from cluster import MASTER_AUTH, MasterListServer  # noqa: E402

BACKENDS = "file,http-etag,http,s3,redis"


def master_lists(settings: Settings) -> MasterLists:
    return MasterLists(settings, HttpTransport(settings))


def member(i: int) -> str:
    return f"http://127.0.{6 + i // 250}.{i % 250 + 1}:9/"  # loopback, never contacted


@contextmanager
def backend(name: str) -> Iterator[tuple[dict[str, Any], Callable[[], str]]]:
    """Settings of the master list and a function describing the server's side."""
    if name == "file":
        with tempfile.TemporaryDirectory(prefix="clustershazbot-bench-") as where:
            yield {"master_list": os.path.join(where, "master.json")}, lambda: ""
    elif name in ("http", "http-etag"):
        server = MasterListServer(etags=name == "http-etag")
        try:
            yield (
                {
                    "master_list": server.url,
                    "master_list_update": server.url,
                    "master_list_update_auth": MASTER_AUTH,
                },
                lambda: f"{server.puts} PUTs, {server.conflicts} refused with 412",
            )
        finally:
            server.stop()
    elif name == "s3":
        s3 = S3Server()
        old = set_env(s3.env)
        try:
            s3.create_bucket("bench")
            yield {"master_list": "s3://bench/master.json"}, lambda: ""
        finally:
            restore_env(old)
            s3.stop()
    elif name == "redis":
        redis = RedisServer()
        try:
            yield {"master_list": redis.url}, lambda: ""
        finally:
            redis.stop()
    else:
        raise SystemExit(f"unknown backend {name!r}; known: {BACKENDS}")


def announce_at_once(
    options: dict[str, Any], n: int, timeout: float
) -> tuple[int, float, float, int]:
    """(entries lost, seconds until all returned, slowest one's seconds, errors)."""
    transports = [
        master_lists(
            load_settings(
                options={
                    "secret": SECRET,
                    "control_secret": CONTROL,
                    "base_url": member(i),
                    "master_list_timeout": timeout,
                    **options,
                }
            )
        )
        for i in range(n)
    ]
    for t in transports:  # as at a node's bootstrap: its client made, its connection open
        t.read()
    barrier = threading.Barrier(n + 1)
    took = [0.0] * n
    errors: list[Exception] = []

    def announce(i: int) -> None:
        barrier.wait(60)
        started = time.perf_counter()
        try:
            transports[i].publish(
                ServerList(online=(GossipServer(member(i), False, int(time.time() * 1000)),))
            )
        except Exception as exc:
            errors.append(exc)
        took[i] = time.perf_counter() - started

    threads = [threading.Thread(target=announce, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait(60)
    started = time.perf_counter()
    for t in threads:
        t.join(300)
    total = time.perf_counter() - started
    for exc in errors[:3]:
        print(f"  error: {exc}")
    listed = {s.base_url for s in transports[0].read().online}
    for t in transports:
        t.close()
    return n - len(listed & {member(i) for i in range(n)}), total, max(took), len(errors)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--backends", default=BACKENDS)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(f"masterlist: {args.nodes} nodes announce at once ({environment()})")
    rows = []
    for name in args.backends.split(","):
        with backend(name) as (options, server_side):
            lost, total, slowest, errors = announce_at_once(options, args.nodes, args.timeout)
            rows.append([name, args.nodes, lost, errors, total, slowest, server_side()])
        print(f"  {name} done", flush=True)
    print(table(["backend", "nodes", "lost", "errors", "all done s", "slowest s", "server"], rows))


if __name__ == "__main__":
    main()
