"""Key ownership: the cost of ``owner(key)``, and how often nodes disagree on owners.

Part 1, in process: microseconds per ``owner(key)`` call with N online members,
through the extension's path (``Ownership.owner``: the member-table version
check, then the ring) for a key not seen before (a full scan of the members),
and for a hot key (answered from the ring's cache).

Part 2, in the simulator (benchmarks/simulate.py: real engines, virtual time,
interval 30 s, default failure timeout): every live node's owner of K sampled
keys, over time, during a join, a crash and a partition into two halves that
heals. Per sample, the share of keys on which live nodes name different owners
(*disagree*), that two or more live nodes each believe they own (*twice*: a
singleton job would run twice), and that no live node believes it owns
(*orphaned*: its owner in every view is a crashed node; the job would not run).
Claims count only nodes that have read the master list once, as singleton jobs do.
A join or a crash can only move the keys of the member that came or went (about
1/N of all keys): for those events the keys sampled are that member's, so the
share of all keys is the figure shown times about 1/N.

``python -m benchmarks.ownership [--sizes 10,100,1000] [--sim-sizes 100,1000] [--keys 200,40]``
(N = 100 takes 20 s; N = 1,000 about 20 minutes on 2 busy cores; ``make bench`` runs 100.)
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from flask_clustershazbot.engine import Engine
from flask_clustershazbot.membership import Membership
from flask_clustershazbot.ownership import Ownership, Ring, _key_bytes, _member_hash
from flask_clustershazbot.records import GossipServer, ServerList
from flask_clustershazbot.testing import MemoryMasterList, MemoryTransport, Network

from .common import EPOCH_MS, NullScheduler, environment, settings, table
from .simulate import Cluster

#: Print a line per simulated event as it ends (long runs at N = 1,000).
PROGRESS = True


def loopback_url(i: int) -> str:
    return f"http://127.{i // 62500 + 1}.{i // 250 % 250}.{i % 250 + 1}:8080/"


def per_call_us(fn: Callable[[str], Any], keys: list[str], budget: float) -> float:
    """Median over batches of microseconds per call of ``fn`` on ``keys`` in turn."""
    results: list[float] = []
    deadline = time.perf_counter() + budget
    i = 0
    while time.perf_counter() < deadline or len(results) < 3:
        batch = keys[i % len(keys) :][:200] or keys[:200]
        i += len(batch)
        started = time.perf_counter()
        for k in batch:
            fn(k)
        results.append((time.perf_counter() - started) / len(batch) * 1e6)
    results.sort()
    return results[len(results) // 2]


def owner_cost(n: int, budget: float) -> dict[str, Any]:
    url = loopback_url(0)
    s = settings(url)
    # Never started: nothing is contacted, and the network is empty.
    net = Network(random.Random(0))
    transport = MemoryTransport(net, url, s.secret)
    engine = Engine(
        s, transport=transport, master_list=MemoryMasterList(net), scheduler=NullScheduler()
    )
    peers = ServerList(tuple(GossipServer(loopback_url(i), False, EPOCH_MS) for i in range(1, n)))

    def online(m: Membership) -> None:
        m.running = True
        m.heartbeat(EPOCH_MS, 0.0)
        m.merge(peers, EPOCH_MS, 0.0, s.max_clock_skew_ms, s.retention_ms)

    engine.store.transact(online)
    ownership = Ownership(engine)
    assert len(ownership.ring().members) == n
    fresh = iter(f"user-{i}" for i in range(10**9))
    started = time.perf_counter()
    Ring(ownership.ring().members)
    build_ms = (time.perf_counter() - started) * 1000
    return {
        "n": n,
        "cold_us": per_call_us(lambda _: ownership.owner(next(fresh)), ["x"] * 200, budget),
        "hot_us": per_call_us(ownership.owner, [f"hot-{i}" for i in range(100)], budget),
        "build_ms": build_ms,
    }


# -- disagreement in the simulator ---------------------------------------------


class Owners:
    """Every live node's owner of the sampled keys, from the same weights as :class:`Ring`."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self._order: dict[str, list[str]] = {}
        self._members: set[str] = set()

    def _weights(self, members: set[str]) -> None:
        if members <= self._members:
            return
        self._members |= members
        states = [(_member_hash(m), m) for m in self._members]
        for key in self.keys:
            data = _key_bytes(key)
            weighted = []
            for state, m in states:
                h = state.copy()
                h.update(data)
                weighted.append((h.digest(), m))
            weighted.sort(reverse=True)
            self._order[key] = [m for _, m in weighted]

    def sample(self, c: Cluster) -> dict[str, float]:
        live = c.live()
        views = {
            e.settings.base_url: e.store.transact(
                lambda m: {u for u, entry in m.entries.items() if entry.online}
            )
            for e in live
        }
        # Singleton jobs run only on nodes that have read the master list once.
        ready = {e.settings.base_url for e in live if e.last_master_sync is not None}
        self._weights(set().union(*views.values()))
        disagree = twice = orphaned = 0
        for key in self.keys:
            order = self._order[key]
            named = {}
            for node, view in views.items():
                named[node] = next((m for m in order if m in view), None)
            owners = set(named.values())
            claimants = sum(1 for node, owner in named.items() if owner == node and node in ready)
            disagree += len(owners) > 1
            twice += claimants > 1
            orphaned += claimants == 0
        k = len(self.keys)
        return {"disagree": disagree / k, "twice": twice / k, "orphaned": orphaned / k}


def check_weights(keys: list[str]) -> None:
    """The sampler's owners are :class:`Ring`'s."""
    members = {loopback_url(i) for i in range(20)}
    owners = Owners(keys)
    owners._weights(members)
    ring = Ring(members)
    assert all(owners._order[k][0] == ring.owner(k) for k in keys)


def timeline(
    c: Cluster,
    owners: Owners,
    rounds: float,
    step: float,
    t0: float,
    event: str,
    n: int,
    rows: list[dict[str, Any]],
    quiet_after: int = 0,
) -> None:
    """Sample every ``step`` rounds for ``rounds`` rounds (stop early after ``quiet_after``
    samples in a row with full agreement, once the event settled)."""
    calm = 0
    end = c.loop.now + rounds * c.interval
    while c.loop.now < end - 1e-9:
        s = owners.sample(c)
        rows.append({"n": n, "event": event, "round": (c.loop.now - t0) / c.interval, **s})
        calm = calm + 1 if not (s["disagree"] or s["twice"] or s["orphaned"]) else 0
        if quiet_after and calm >= quiet_after:
            break
        c.run_rounds(step)
    if PROGRESS:
        r = rows[-1]
        print(
            f"    N={n} {event}: {r['round']:g} rounds sampled, last sample: disagree "
            f"{r['disagree']:.1%}, twice {r['twice']:.1%}, orphaned {r['orphaned']:.1%}",
            flush=True,
        )


def keys_of(member: str, members: set[str], count: int) -> list[str]:
    """The first ``count`` keys ``key-<i>`` that ``member`` owns among ``members``."""
    ring, found = Ring(members), []
    for i in range(10**7):
        if ring.owner(f"key-{i}") == member:
            found.append(f"key-{i}")
            if len(found) == count:
                break
    return found


def disagreement(n: int, keys: int, seed: int, step: float, hold: float) -> list[dict[str, Any]]:
    """Join and crash: sampled among the keys of the member that came or went (the only keys
    that can disagree; about 1/N of all). Partition and heal: among ``keys`` random keys."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    c = Cluster(n, seed)
    for e in c.live():
        e.last_master_sync = c.loop.clock_ms()  # warm-started: as if bootstrapped
    c.run_rounds(2)
    settle = 40  # rounds: past every detection path (failure timeout: 24 rounds at N=100)
    t0 = c.loop.now
    newcomer = c.join()
    owners = Owners(keys_of(newcomer, set(c.net.nodes), keys))
    timeline(c, owners, settle, step, t0, "join", n, rows, quiet_after=4)
    victim = rng.choice(list(c.net.nodes))
    owners = Owners(keys_of(victim, set(c.net.nodes), keys))
    t0 = c.loop.now
    c.crash(victim)
    timeline(c, owners, settle, step, t0, "crash", n, rows, quiet_after=4)
    owners = Owners([f"key-{i}" for i in range(keys)])
    t0 = c.loop.now
    nodes = list(c.net.nodes)
    rng.shuffle(nodes)
    for url in nodes[: len(nodes) // 2]:
        c.net.groups[url] = 1
    timeline(c, owners, hold, step, t0, "partition", n, rows)
    for url in nodes:
        c.net.groups.pop(url, None)
    t0 = c.loop.now
    timeline(c, owners, settle, step, t0, "healed", n, rows, quiet_after=4)
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Per size and event: worst shares, and the round of the last disagreement."""
    out = []
    for key in dict.fromkeys((r["n"], r["event"]) for r in rows):
        rs = [r for r in rows if (r["n"], r["event"]) == key]
        bad = [r["round"] for r in rs if r["disagree"] or r["twice"] or r["orphaned"]]
        out.append(
            [
                *key,
                max(r["disagree"] for r in rs),
                max(r["twice"] for r in rs),
                max(r["orphaned"] for r in rs),
                max(bad) if bad else 0.0,
                rs[-1]["round"],
            ]
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000", help="members for the owner() cost")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per cost figure")
    parser.add_argument("--sim-sizes", default="100,1000", help="simulated cluster sizes")
    parser.add_argument("--keys", default="200,40", help="sampled keys (one value or one per size)")
    parser.add_argument("--step", default="0.5,1", help="rounds between samples (per size)")
    parser.add_argument("--hold", default="40,35", help="rounds the partition lasts (per size)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"ownership ({environment()})")
    costs = [owner_cost(int(n), args.budget) for n in args.sizes.split(",") if n]
    print(
        table(
            ["members", "owner(), new key (µs)", "owner(), hot key (µs)", "ring rebuild (ms)"],
            [[r["n"], r["cold_us"], r["hot_us"], r["build_ms"]] for r in costs],
        )
    )
    sim_sizes = [int(n) for n in args.sim_sizes.split(",") if n]

    def per_size(text: str) -> list[float]:
        values = [float(x) for x in text.split(",")]
        return [values[min(i, len(values) - 1)] for i in range(len(sim_sizes))]

    rows: list[dict[str, Any]] = []
    check_weights([f"key-{i}" for i in range(50)])
    for n, k, step, hold in zip(
        sim_sizes, per_size(args.keys), per_size(args.step), per_size(args.hold)
    ):
        started = time.perf_counter()
        rows += disagreement(n, int(k), args.seed, step, hold)
        print(
            f"  simulated N={n}, {int(k)} keys, a sample every {step:g} rounds: "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    if rows:
        print(
            "Share of sampled keys, per sample (round 0: the event; the partition heals at "
            "the end of its hold):"
        )
        print(
            table(
                ["N", "event", "round", "disagree", "twice", "orphaned"],
                [
                    [
                        r["n"],
                        r["event"],
                        r["round"],
                        f"{r['disagree']:.1%}",
                        f"{r['twice']:.1%}",
                        f"{r['orphaned']:.1%}",
                    ]
                    for r in rows
                    if r["round"] == 0
                    or (r["event"] == "partition" and r["round"] % 5 == 0)
                    or (
                        r["event"] != "partition" and (r["disagree"] or r["twice"] or r["orphaned"])
                    )
                ],
            )
        )
        print("Summary: worst share over the event, and the last round with any disagreement:")
        print(
            table(
                [
                    "N",
                    "event",
                    "max disagree",
                    "max twice",
                    "max orphaned",
                    "last bad round",
                    "rounds sampled",
                ],
                [
                    [n, e, f"{d:.1%}", f"{t:.1%}", f"{o:.1%}", last, total]
                    for n, e, d, t, o, last, total in summarize(rows)
                ],
            )
        )
    return {"costs": costs, "rows": rows}


if __name__ == "__main__":
    main()
