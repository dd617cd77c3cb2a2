"""Cost of handling one gossip message with N records, in process, for each store.

The path measured is the endpoint's: JSON bytes -> decode -> parse + validate ->
merge -> build the reply (our whole state) -> encode. Each message carries the
receiver's own view with a tenth of the records newer (heartbeats), like a peer's
state in a running cluster. ``python -m benchmarks.merge [--sizes 10,100,1000,10000]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from flask_clustershazbot import _json
from flask_clustershazbot._json import decode_json, encode_json
from flask_clustershazbot.engine import Engine
from flask_clustershazbot.membership import Membership
from flask_clustershazbot.records import GossipServer, ServerList
from flask_clustershazbot.store import MemoryStore, Store

from .common import (
    EPOCH_MS,
    SECRET,
    NullScheduler,
    environment,
    members,
    settings,
    table,
)

StoreFactory = Callable[[Membership], Store]


def store_factories() -> dict[str, StoreFactory]:
    """Every store this installation has: memory always, others when their module exists."""
    factories: dict[str, StoreFactory] = {"memory": MemoryStore}
    try:  # the shared SQLite store (another module's; optional here)
        from .store import sqlite_factory  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:
        factories["sqlite"] = sqlite_factory()
    return factories


class Counter:
    """A wall clock that advances 1 ms per reading, so every heartbeat is a change."""

    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


def make_engine(n: int, factory: StoreFactory) -> Engine:
    me = "http://127.255.255.1:8080/"
    s = settings(me)
    clock = Counter(EPOCH_MS + 10 * n)
    m = Membership(me, False, clock(), 0.0)
    engine = Engine(
        s,
        store=factory(m),
        transport=object(),
        master_list=object(),  # no job ever runs (NullScheduler): neither is used
        scheduler=NullScheduler(),
        clock=clock,
        monotonic=time.monotonic,
        rng=random.Random(1),
    )
    engine.start()
    engine.table.merge(members(n - 1))
    return engine


def messages(n: int, count: int, rng: random.Random) -> list[bytes]:
    """``count`` successive states of a peer: each a tenth of records newer than the last."""
    base = members(n - 1)
    online, offline = list(base.online), list(base.offline)
    bodies = []
    for k in range(count):
        for lst in (online, offline):
            for i in rng.sample(range(len(lst)), len(lst) // 10):
                s = lst[i]
                lst[i] = GossipServer(s.base_url, s.monitor, s.last_update + 1000 * (k + 1))
        bodies.append(encode_json(ServerList(tuple(online), tuple(offline)).gossip_message()))
    return bodies


def measure(n: int, factory: StoreFactory, budget: float) -> dict[str, Any]:
    """Median times (us) of each step, and of the whole path as the view runs it."""
    engine = make_engine(n, factory)
    iterations = max(5, min(2000, int(200_000 / n)))
    bodies = messages(n, min(iterations, 20), random.Random(n))
    steps: dict[str, list[float]] = {
        "decode": [],
        "parse": [],
        "merge": [],
        "encode": [],
        "total": [],
    }
    sent = 0
    deadline = time.perf_counter() + budget
    for i in range(iterations):
        body = bodies[i % len(bodies)]
        t0 = time.perf_counter()
        data = decode_json(body, "the body")
        t1 = time.perf_counter()
        servers = ServerList.from_dict(data, message="gossip")
        t2 = time.perf_counter()
        reply = engine.table.merge(servers, heartbeat=True)
        t3 = time.perf_counter()
        out = encode_json(reply)
        t4 = time.perf_counter()
        # The same path as the view runs it, from bytes to bytes, for the headline figure
        # (with msgspec: typed decoding, known records skipped, the reply from cached bytes).
        raw = bodies[(i + 1) % len(bodies)]
        if hasattr(engine, "handle_gossip_body"):
            engine.handle_gossip_body(SECRET, raw)
        else:  # an older package
            encode_json(engine.handle_gossip(SECRET, decode_json(raw, "b")))
        t5 = time.perf_counter()
        for name, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            steps[name].append(value * 1e6)
        sent = len(out)
        if t5 > deadline and i >= 4:
            break
    med = {name: statistics.median(values) for name, values in steps.items()}
    return {
        "n": n,
        "iterations": len(steps["total"]),
        "us_msg": med["total"],
        "us_record": med["total"] / n,
        "decode": med["decode"],
        "parse": med["parse"],
        "merge": med["merge"],
        "encode": med["encode"],
        "reply_bytes": sent,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per size and store")
    parser.add_argument(
        "--codec",
        choices=["auto", "json"],
        default="auto",
        help="json: the standard library even when orjson is installed",
    )
    args = parser.parse_args(argv)
    if args.codec == "json":
        _json.loads, _json.dumps, _json.CODEC = _json.std_loads, _json.std_dumps, "json (forced)"
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"merge: one gossip message with N records in, the whole state out ({environment()})")
    results, rows = [], []
    for name, factory in store_factories().items():
        for n in sizes:
            r = measure(n, factory, args.budget)
            r["store"] = name
            results.append(r)
            rows.append(
                [
                    name,
                    n,
                    r["iterations"],
                    r["us_msg"],
                    r["us_record"],
                    r["decode"],
                    r["parse"],
                    r["merge"],
                    r["encode"],
                    r["reply_bytes"],
                ]
            )
    print(
        table(
            [
                "store",
                "N",
                "runs",
                "us/message",
                "us/record",
                "decode us",
                "parse us",
                "merge+reply us",
                "encode us",
                "reply bytes",
            ],
            rows,
        )
    )
    print(
        "medians; us/record = us/message / N (N records parsed and merged, N written back);"
        " target: <= 3 us/record in memory at N = 1,000"
    )
    return results


if __name__ == "__main__":
    main()
