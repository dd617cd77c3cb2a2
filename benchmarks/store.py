"""Cost of one merge transaction: SqliteStore (the gunicorn workers' shared file) vs MemoryStore.

A merge of N records of which a tenth are newer (heartbeats), as a running
cluster's gossip brings. Three cases:
- memory: the in-process table behind a lock;
- sqlite, same worker: one process merges again and again (its cached table is
  current: read the host row, write back the changed rows);
- sqlite, alternating workers: two stores on one file take turns, like gunicorn
  workers answering in turn (each first reads the rows the other one changed).
``python -m benchmarks.store [--sizes 100,1000] [--rounds 50]``; prints a table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from statistics import median

from flask_clustershazbot.membership import Membership
from flask_clustershazbot.records import GossipServer, ServerList
from flask_clustershazbot.sqlite_store import SqliteStore
from flask_clustershazbot.store import MemoryStore, Store

from .common import EPOCH_MS, environment, members, table

ME = "http://127.255.255.1:8080/"
DAY_MS = 86_400_000


def sqlite_factory(directory: str | None = None) -> Callable[[Membership], Store]:
    """Stores on fresh files in ``directory`` (default: a new temporary one); for benchmarks.merge."""
    where = directory or tempfile.mkdtemp(prefix="clustershazbot-bench-")
    count = 0

    def make(membership: Membership) -> Store:
        nonlocal count
        count += 1
        return SqliteStore(os.path.join(where, f"state-{count}.sqlite3"), membership)

    return make


def updates(n: int, rounds: int) -> list[ServerList]:
    """``rounds`` successive views of N members, each with a tenth of the records newer."""
    base = members(n)
    online, offline = list(base.online), list(base.offline)
    views = []
    for k in range(rounds):
        for lst in (online, offline):
            for i in range(k % 10, len(lst), 10):
                s = lst[i]
                lst[i] = GossipServer(s.base_url, s.monitor, s.last_update + 1000)
        views.append(ServerList(tuple(online), tuple(offline)))
    return views


def merge_ms(stores: list[Store], n: int, rounds: int) -> float:
    """Median ms of one merge transaction, the stores taking turns."""
    now = EPOCH_MS + 10_000_000
    views = updates(n, rounds + 1)
    for store in stores:  # load the table everywhere first
        store.transact(lambda m: m.merge(views[0], now, 1.0, 600_000, DAY_MS))
    times = []
    for k, view in enumerate(views[1:]):
        store = stores[k % len(stores)]
        t0 = time.perf_counter()
        store.transact(lambda m: m.merge(view, now, 1.0, 600_000, DAY_MS))
        times.append(time.perf_counter() - t0)
    return median(times) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    print(f"store: one merge of N records, a tenth of them newer ({environment()})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="clustershazbot-bench-") as where:
        for n in (int(x) for x in args.sizes.split(",")):

            def fresh() -> Membership:
                return Membership(ME, False, EPOCH_MS, 0.0)

            memory = merge_ms([MemoryStore(fresh())], n, args.rounds)
            path = os.path.join(where, f"same-{n}.sqlite3")
            same = merge_ms([SqliteStore(path, fresh())], n, args.rounds)
            path = os.path.join(where, f"alternating-{n}.sqlite3")
            alternating = merge_ms(
                [SqliteStore(path, fresh()), SqliteStore(path, fresh())], n, args.rounds
            )
            rows.append([n, memory, same, alternating, same / memory, alternating / memory])
    print(
        table(
            [
                "N",
                "memory ms",
                "sqlite ms (same worker)",
                "sqlite ms (alternating)",
                "same / memory",
                "alternating / memory",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
