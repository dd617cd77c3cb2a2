"""A cluster simulator: many real engines in one process, in virtual time.

Every node is the real :class:`~flask_clustershazbot.engine.Engine` with the real
records, membership and merge code; only three things are replaced through the
engine's injection points: the clock (virtual), the scheduler (one shared event
heap) and the transport (in memory). Randomness comes from seeded generators,
so a run with the same arguments repeats exactly.

Delivery is synchronous: a request and its reply happen in the same virtual
instant. A lost request, a lost reply, a partition or a broken link is a
:class:`TransportError` (weak evidence, as a lost message or a reset connection
would be; a lost reply still lets the peer merge the request); a dead peer's is
marked ``refused`` (strong evidence, as a refused connection). Message delay is
therefore not modelled (nor timeouts: no failure is "slow"); the 3 s retry and
the jittered rounds are. Indirect probes go through the real ``handle_probe`` of
the helper, with loss on each of the four messages.

Measured, for each N: rounds until a join, a graceful leave and a crash are
known to every live node (next to the push-pull bound log3(N) + ln(ln(N))),
false "offline" reports per node-hour under message loss, and wire bytes per
node per round (with and without gzip); and, with asymmetric link faults (one
direction of some links broken), false alarms and crash detection. ``--rule``
picks the failure detector: ``new`` (indirect probes, the default settings),
``old`` (retries only: ``probe_helpers=0``) or ``both``, side by side.

``python -m benchmarks.simulate [--sizes 100,1000] [--seeds 20] [--loss 0,0.05,0.2] [--rule both]``
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask_clustershazbot.engine import Engine
from flask_clustershazbot.membership import Changes, Membership
from flask_clustershazbot.records import ServerList
from flask_clustershazbot.store import MemoryStore
from flask_clustershazbot.testing import (
    EventLoop,
    MemoryMasterList,
    MemoryTransport,
    Network,
    VirtualScheduler,
)

from .common import (
    environment,
    member_url,
    percentile,
    settings,
    table,
)

STATIC = Path(__file__).resolve().parent.parent / "docs" / "_static"


class Cluster:
    """N real engines on one virtual network."""

    def __init__(
        self,
        n: int,
        seed: int,
        loss: float = 0.0,
        interval: float = 30.0,
        monitors: int = 0,
        rule: str = "new",
    ) -> None:
        # Thousands of engines log every lost message: keep the output to the figures.
        logging.getLogger("flask_clustershazbot").setLevel(logging.CRITICAL)
        self.loop = EventLoop()
        self.seed = seed
        self.interval = interval
        self.rng = random.Random(seed)
        self.net = Network(random.Random(seed + 1_000_003), loss)
        self.false_offline = 0
        self.monitors = monitors
        #: "new": indirect probes (the default settings); "old": retries only.
        self.rule = rule
        self._next = 0
        engines = [self._engine(self._new_url(), i < monitors) for i in range(n)]
        # A cluster that has run for a while: every node knows every other, schedules
        # are spread over an interval. The nodes that join later use the real start().
        everyone = ServerList(
            tuple(e.store.transact(lambda m: m.self_entry.server) for e in engines)
        )
        for e in engines:
            self._warm_start(e, everyone)
        self.net.master = everyone

    def _new_url(self) -> str:
        url = member_url(self._next)
        self._next += 1
        return url

    def _engine(self, url: str, monitor: bool = False) -> Engine:
        loop = self.loop
        old = {"probe_helpers": 0} if self.rule == "old" else {}
        s = settings(url, gossip_interval=self.interval, monitor=monitor, **old)
        membership = Membership(url, monitor, loop.clock_ms(), loop.monotonic())

        def listener(changes: Changes) -> None:
            for server in changes.left:
                peer = self.net.nodes.get(server.base_url)
                if peer is not None and peer.live:
                    self.false_offline += 1  # a live, online node reported offline

        engine = Engine(
            s,
            store=MemoryStore(membership),
            transport=MemoryTransport(self.net, url, s.secret),
            master_list=MemoryMasterList(self.net),
            scheduler=VirtualScheduler(loop),
            clock=loop.clock_ms,
            monotonic=loop.monotonic,
            rng=random.Random(self.rng.random()),
            listener=listener,
        )
        return engine

    def _warm_start(self, engine: Engine, everyone: ServerList) -> None:
        engine.warm_start(everyone, first_round=self.rng.uniform(0, self.interval))
        self.net.nodes[engine.settings.base_url] = engine

    # -- events ------------------------------------------------------------

    def join(self) -> str:
        engine = self._engine(self._new_url())
        url = engine.settings.base_url
        self.net.nodes[url] = engine
        engine.start()  # the real bootstrap: master list, then up to 20 peers
        return url

    def leave(self, url: str) -> None:
        self.net.nodes[url].shutdown()  # graceful: announces itself offline
        del self.net.nodes[url]

    def crash(self, url: str) -> None:
        self.net.nodes.pop(url).crash()

    def live(self) -> list[Engine]:
        return list(self.net.nodes.values())

    def known_by_all(self, url: str, online: bool) -> bool:
        def state(m: Membership) -> bool | None:
            e = m.entries.get(url)
            return None if e is None else e.online

        return all(
            e.store.transact(state) is online for e in self.live() if e.settings.base_url != url
        )

    def rounds_until(self, condition: Callable[[], bool], limit_rounds: float) -> float:
        start = self.loop.now
        ok = self.loop.run_until(
            start + limit_rounds * self.interval, condition, every=self.interval / 20
        )
        return (self.loop.now - start) / self.interval if ok else math.inf

    def run_rounds(self, rounds: float) -> None:
        self.loop.run_until(self.loop.now + rounds * self.interval)


def bound(n: int) -> float:
    """The push-pull dissemination bound, in rounds."""
    return math.log(n, 3) + math.log(math.log(n))


def dissemination(n: int, seed: int, limit: float = 60.0, rule: str = "new") -> dict[str, float]:
    """Rounds until a join, a graceful leave and a crash are known to all live nodes."""
    c = Cluster(n, seed, rule=rule)
    c.run_rounds(2)
    newcomer = c.join()
    joined = c.rounds_until(lambda: c.known_by_all(newcomer, True), limit)
    c.run_rounds(1)
    leaving = c.rng.choice([u for u in c.net.nodes if u != newcomer])
    c.leave(leaving)
    left = c.rounds_until(lambda: c.known_by_all(leaving, False), limit)
    c.run_rounds(1)
    victim = c.rng.choice(list(c.net.nodes))
    c.crash(victim)
    crashed = c.rounds_until(lambda: c.known_by_all(victim, False), limit)
    return {"join": joined, "leave": left, "crash": crashed}


def false_alarms(
    n: int, seed: int, loss: float, rounds: float, rule: str = "new"
) -> dict[str, float]:
    """False offline reports per node-hour, and wire bytes per node per round, under loss."""
    c = Cluster(n, seed, loss=loss, rule=rule)
    c.run_rounds(2)
    c.false_offline = 0
    c.net.count_bytes = True
    c.run_rounds(2)
    c.net.count_bytes = False
    c.run_rounds(rounds - 2)
    hours = n * rounds * c.interval / 3600
    return {
        "per_node_hour": c.false_offline / hours,
        "reports": c.false_offline,
        "node_hours": hours,
        "plain_bytes": c.net.plain_bytes / (n * 2),
        "wire_bytes": c.net.wire_bytes / (n * 2),
        "probes_per_node_round": c.net.probes / (n * rounds),
    }


def asymmetric(
    n: int, seed: int, links: int, rounds: float, rule: str = "new", loss: float = 0.0
) -> dict[str, float]:
    """Break one direction of ``links`` random links (a cannot reach b; b reaches a), run
    ``rounds`` rounds: false offline reports per node-hour; then crash one node that no
    broken link touches: rounds until every live node lists it offline."""
    c = Cluster(n, seed, loss=loss, rule=rule)
    c.run_rounds(2)
    urls = list(c.net.nodes)
    while len(c.net.cut) < links:
        a, b = c.rng.sample(urls, 2)
        if (b, a) not in c.net.cut:
            c.net.cut.add((a, b))
    c.false_offline = 0
    c.run_rounds(rounds)
    alarms = c.false_offline
    touched = {u for link in c.net.cut for u in link}
    victim = c.rng.choice([u for u in urls if u not in touched])
    c.crash(victim)
    crashed = c.rounds_until(lambda: c.known_by_all(victim, False), 60)
    hours = n * rounds * c.interval / 3600
    return {
        "reports": alarms,
        "node_hours": hours,
        "per_node_hour": alarms / hours,
        "crash": crashed,
    }


def plot(summary: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sizes = sorted({r["n"] for r in summary})
    xs = [10**k for k in [x / 10 for x in range(10, 41)]]
    ax.plot(xs, [bound(int(x)) for x in xs], "k--", label="log3(N) + ln(ln(N))")
    ax.plot(xs, [math.log(x, 3) + 3 for x in xs], "k:", label="log3(N) + 3 (target)")
    for event, marker in (("join", "o"), ("leave", "s"), ("crash", "^")):
        rows = [r for r in summary if r["event"] == event]
        ax.errorbar(
            [r["n"] for r in rows],
            [r["median"] for r in rows],
            yerr=[[0 for _ in rows], [r["p99"] - r["median"] for r in rows]],
            marker=marker,
            capsize=3,
            label=f"{event}: median (bar to p99)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("cluster size N")
    ax.set_ylabel("gossip rounds until known to all")
    ax.set_title("Dissemination in the simulator (real engines, virtual time)")
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{s:,}" for s in sizes])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        default="100",
        help="cluster sizes (1000 takes minutes per seed; 10000 needs ~20 GB)",
    )
    parser.add_argument("--seeds", default="5", help="seeds per size (one value or one per size)")
    parser.add_argument("--loss", default="0,0.05,0.2", help="message loss rates for false alarms")
    parser.add_argument(
        "--alarm-rounds",
        default="120",
        help="rounds per false-alarm run (one value or one per size)",
    )
    parser.add_argument("--out", default=str(STATIC), help="folder for the CSV and the PNG")
    parser.add_argument(
        "--rule",
        default="new",
        choices=("new", "old", "both"),
        help="failure detector: indirect probes (new), retries only (old), both",
    )
    parser.add_argument(
        "--asymmetric",
        default="1,10",
        help="broken one-way links for the asymmetric runs (empty: none)",
    )
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    rules = ["old", "new"] if args.rule == "both" else [args.rule]
    asym_links = [int(x) for x in args.asymmetric.split(",") if x]

    def per_size(text: str) -> list[int]:
        values = [int(x) for x in text.split(",")]
        return [values[min(i, len(values) - 1)] for i in range(len(sizes))]

    seeds, alarm_rounds = per_size(args.seeds), per_size(args.alarm_rounds)
    losses = [float(x) for x in args.loss.split(",")]
    print(f"simulate: real engines in virtual time, interval 30 s ({environment()})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw_rows, summary, alarm_rows, asym_rows = [], [], [], []
    for n, k, rounds in zip(sizes, seeds, alarm_rounds):
        for rule in rules:
            started = time.perf_counter()
            results = [dissemination(n, seed, rule=rule) for seed in range(k)]
            for seed, r in enumerate(results):
                for event, value in r.items():
                    raw_rows.append(
                        {"rule": rule, "n": n, "seed": seed, "event": event, "rounds": value}
                    )
            for event in ("join", "leave", "crash"):
                values = [r[event] for r in results]
                summary.append(
                    {
                        "rule": rule,
                        "n": n,
                        "event": event,
                        "seeds": k,
                        "median": percentile(values, 0.5),
                        "p99": percentile(values, 0.99),
                        "max": max(values),
                        "bound": bound(n),
                        "target": math.log(n, 3) + 3,
                    }
                )
            took = time.perf_counter() - started
            print(f"  N={n} {rule} rule: {k} seeds of dissemination in {took:.0f} s")
            for loss in losses:
                started = time.perf_counter()
                a = false_alarms(n, 10_000 + n, loss, rounds, rule=rule)
                alarm_rows.append({"rule": rule, "n": n, "loss": loss, "rounds": rounds, **a})
                print(
                    f"  N={n} {rule} rule, loss {loss:.0%}: {rounds} rounds in "
                    f"{time.perf_counter() - started:.0f} s"
                )
            for links in asym_links:
                started = time.perf_counter()
                runs = [asymmetric(n, 20_000 + seed, links, rounds, rule=rule) for seed in range(k)]
                hours = sum(r["node_hours"] for r in runs)
                reports = sum(r["reports"] for r in runs)
                crashes = [r["crash"] for r in runs]
                asym_rows.append(
                    {
                        "rule": rule,
                        "n": n,
                        "links": links,
                        "seeds": k,
                        "node_hours": hours,
                        "reports": reports,
                        "per_node_hour": reports / hours,
                        "crash_median": percentile(crashes, 0.5),
                        "crash_max": max(crashes),
                    }
                )
                print(
                    f"  N={n} {rule} rule, {links} broken links: {k} x {rounds} rounds in "
                    f"{time.perf_counter() - started:.0f} s"
                )
    print(
        table(
            [
                "rule",
                "N",
                "event",
                "seeds",
                "median rounds",
                "p99 rounds",
                "max",
                "log3N+lnlnN",
                "target log3N+3",
            ],
            [
                [
                    r["rule"],
                    r["n"],
                    r["event"],
                    r["seeds"],
                    r["median"],
                    r["p99"],
                    r["max"],
                    r["bound"],
                    r["target"],
                ]
                for r in summary
            ],
        )
    )
    print(
        table(
            [
                "rule",
                "N",
                "loss",
                "rounds",
                "node-hours",
                "false offline reports",
                "per node-hour",
                "probes/node/round",
                "bytes/node/round plain",
                "gzip",
            ],
            [
                [
                    r["rule"],
                    r["n"],
                    f"{r['loss']:.0%}",
                    r["rounds"],
                    r["node_hours"],
                    r["reports"],
                    r["per_node_hour"],
                    r["probes_per_node_round"],
                    r["plain_bytes"],
                    r["wire_bytes"],
                ]
                for r in alarm_rows
            ],
        )
    )
    if asym_rows:
        print("asymmetric links (one direction broken), no loss:")
        print(
            table(
                [
                    "rule",
                    "N",
                    "broken links",
                    "seeds",
                    "node-hours",
                    "false offline reports",
                    "per node-hour",
                    "crash: median rounds",
                    "max",
                ],
                [
                    [
                        r["rule"],
                        r["n"],
                        r["links"],
                        r["seeds"],
                        r["node_hours"],
                        r["reports"],
                        r["per_node_hour"],
                        r["crash_median"],
                        r["crash_max"],
                    ]
                    for r in asym_rows
                ],
            )
        )
    with open(out / "simulation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["rule", "n", "seed", "event", "rounds"])
        w.writeheader()
        w.writerows(raw_rows)
    for name, rows in (
        ("simulation-alarms.csv", alarm_rows),
        ("simulation-asymmetric.csv", asym_rows),
    ):
        with open(out / name, "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0]) if rows else ["n"])
            w.writeheader()
            w.writerows(rows)
    wrote = f"{out / 'simulation.csv'}, {out / 'simulation-alarms.csv'}, {out / 'simulation-asymmetric.csv'}"
    if plot([r for r in summary if r["rule"] == rules[-1]], out / "convergence.png"):
        print(f"wrote {wrote}, {out / 'convergence.png'}")
    else:
        print(f"wrote {wrote} (no matplotlib: no plot)")
    return {"summary": summary, "alarms": alarm_rows, "asymmetric": asym_rows}


if __name__ == "__main__":
    main()
